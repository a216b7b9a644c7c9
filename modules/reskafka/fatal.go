package reskafka

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ErrProducerRebuilt is wrapped by the Delivery.Err of every accepted
// message that a connection's librdkafka producer had not delivered when it
// failed fatally (an idempotent producer's out-of-order sequence or fenced
// producer, rd_kafka_fatal_error): res_kafka rebuilt the producer and hands
// such messages back to their owners instead of delivering them. Test it
// with errors.Is; the same error also wraps the message's own librdkafka
// error (errors.As with kafka.Error: typically "purged in queue" or "purged
// in flight"). Delivery.Status says whether the message may have been
// stored all the same (PossiblyPersisted: re-producing it may duplicate it;
// NotPersisted: it is safe to re-produce). The Producer handle keeps
// working: re-producing through it goes to the new librdkafka producer.
var ErrProducerRebuilt = errors.New("kafka: producer rebuilt after a fatal error; message not delivered")

// rebuiltError is the Delivery.Err of a message handed back after a fatal
// error: ErrProducerRebuilt and the message's own error.
type rebuiltError struct {
	fatal string // the fatal error, "CODE_NAME: reason" (secrets masked)
	err   error  // the message's own librdkafka error
}

func (e *rebuiltError) Error() string {
	return "kafka: message not delivered: its producer failed fatally (" + e.fatal + ") and was rebuilt: " + e.err.Error()
}

// Unwrap returns ErrProducerRebuilt and the message's own error.
func (e *rebuiltError) Unwrap() []error { return []error{ErrProducerRebuilt, e.err} }

// fatalText returns a fatal error as "CODE_NAME: reason", secrets masked.
func (c *conn) fatalText(e kafka.Error) string {
	return c.mask(errName(e.Code()) + ": " + strings.TrimPrefix(e.Error(), "Fatal error: "))
}

// onFatal handles the fatal error e of kp, the librdkafka producer behind
// p, once per instance (the error event, a failed delivery report or a
// refused message may report it first): it counts and logs it, records it
// as the connection's last error and last fatal error (state "fatal"), and
// starts the rebuild. From then on every failure kp reports is handed back
// as ErrProducerRebuilt.
func (c *conn) onFatal(p *Producer, kp *rdProducer, e kafka.Error) {
	if !kp.fatal.CompareAndSwap(nil, &e) {
		return
	}
	now := time.Now()
	text := c.fatalText(e)
	c.fatalErrors.Add(1)
	c.setError(fmt.Errorf("%w [%s] on producer %s", e, errName(e.Code()), kp.name))
	c.smu.Lock()
	c.lastFatal.set(text, now)
	c.rebuiltAt = time.Time{}
	c.fatalPending.Store(true)
	c.smu.Unlock()
	rebuild := !c.closed.Load() && !c.m.stopped.Load()
	c.m.logger.Error("kafka producer fatal error; rebuilding the producer", "connection", c.name, "client", kp.name,
		"code", errName(e.Code()), "code_num", int(e.Code()), "reason", c.mask(strings.TrimPrefix(e.Error(), "Fatal error: ")),
		"in_producer", kp.len(), "rebuild", rebuild, "fatal_errors", c.fatalErrors.Load())
	if !rebuild {
		return // closing: whoever closes retires kp
	}
	c.m.retiring.Add(1)
	go p.rebuildAfterFatal(kp)
}

// rebuildRetryMax bounds the wait between two attempts to create the new
// producer.
const rebuildRetryMax = time.Second

// rebuildAfterFatal replaces old, the handle's librdkafka producer that
// failed fatally, by a new one from the connection's configuration (at
// once; attempts are repeated until one succeeds or the connection
// closes), then retires old: what it still has in flight gets up to
// request_timeout_ms plus a second to be acknowledged, the rest is purged,
// and every message it did not deliver is handed back (ErrProducerRebuilt).
// Messages staged meanwhile go to the new producer.
func (p *Producer) rebuildAfterFatal(old *rdProducer) {
	c, m := p.c, p.c.m
	defer m.retiring.Done()
	var client string
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, rebuildRetryMax) {
		p.mu.Lock()
		if p.inner != old || c.closed.Load() {
			// Replaced (reload) or closed meanwhile: whoever did it retires
			// old, and the producer that failed is not the connection's.
			replaced := p.inner != old
			p.mu.Unlock()
			if replaced {
				c.leaveFatal()
			}
			return
		}
		kp, err := c.newKafkaProducer(p)
		if err == nil {
			old.retired.Store(true)
			p.inner, p.name, p.created = kp, kp.String(), time.Now()
			client = p.name
			p.mu.Unlock()
			break
		}
		p.mu.Unlock()
		m.lim.Error("rebuild:"+c.name, "kafka producer rebuild after a fatal error failed; retrying",
			"connection", c.name, "err", c.mask(err.Error()), "retry_in", wait)
		time.Sleep(wait)
	}
	p.stats.clear()
	now := time.Now()
	c.smu.Lock()
	c.rebuiltAt = now
	took := now.Sub(c.lastFatal.At)
	c.smu.Unlock()
	c.rebuildsFatal.Add(1)
	c.leaveFatal()
	m.logger.Warn("kafka producer rebuilt after a fatal error; the messages the old one did not deliver are handed back to their owners",
		"connection", c.name, "old_client", old.name, "client", client, "took", took.Round(time.Microsecond), "in_old_producer", old.len())
	left := c.retire(p, old, time.Duration(c.cfg().RequestTimeoutMs)*time.Millisecond+time.Second)
	m.logger.Info("kafka producer that failed fatally closed", "connection", c.name, "client", old.name,
		"handed_back", old.handedBack.Load(), "purged_in_flight", left)
}

// leaveFatal ends the "fatal" state once the producer that failed is no
// longer the connection's: "connecting" until the current one is heard from.
func (c *conn) leaveFatal() {
	c.smu.Lock()
	if c.state == stateFatal {
		c.setStateLocked(stateConnecting)
	}
	c.smu.Unlock()
}

// fatalRecovered marks the last fatal error recovered: the handle's current
// producer delivered a message.
func (c *conn) fatalRecovered() {
	c.smu.Lock()
	if c.fatalPending.Load() {
		c.lastFatal.recover(time.Now())
		c.fatalPending.Store(false)
	}
	c.smu.Unlock()
}

// TestFatalError raises a fatal error with code (for example
// kafka.ErrOutOfOrderSequenceNumber) and reason on the librdkafka producer
// behind p, through librdkafka's test hook (rd_kafka_test_fatal_error),
// exactly as the idempotent producer raises a real one: res_kafka then
// rebuilds the producer and hands back every message the failed one did not
// deliver (ErrProducerRebuilt). It is meant for tests and recovery drills
// ("kafka test fatal"). It fails when p has no librdkafka producer (closed)
// or when that one had a fatal error already.
func (p *Producer) TestFatalError(code kafka.ErrorCode, reason string) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.inner == nil {
		return fmt.Errorf("connection %s: %w", p.c.name, ErrClosed)
	}
	return p.inner.testFatalError(code, reason)
}
