package reskafka

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// ErrQueueFull is returned (wrapped) by Produce when librdkafka's local queue
// stayed full for longer than the connection's queue_full_timeout_ms. The
// message was not accepted; the drop is counted.
var ErrQueueFull = errors.New("kafka: local producer queue full")

// ErrClosed is returned (wrapped) by Produce after res_kafka stopped, or after
// the connection was removed and its producer released.
var ErrClosed = errors.New("kafka: producer closed")

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Persistence is librdkafka's message status: whether a message that failed
// may nevertheless be stored by the broker. It tells a caller whether
// retrying may duplicate the message.
type Persistence int

// Persistence values, as librdkafka's rd_kafka_msg_status_t.
const (
	// NotPersisted: the message was never acknowledged and was not (or could
	// not have been) sent: retrying is safe.
	NotPersisted Persistence = iota
	// PossiblyPersisted: the message was sent but no acknowledgement came
	// back (timeout, connection lost): retrying may duplicate it.
	PossiblyPersisted
	// Persisted: the broker acknowledged the message.
	Persisted
)

func (p Persistence) String() string {
	switch p {
	case NotPersisted:
		return "not persisted"
	case PossiblyPersisted:
		return "possibly persisted"
	case Persisted:
		return "persisted"
	}
	return fmt.Sprintf("persistence(%d)", int(p))
}

// Delivery is the final outcome of one produced message.
type Delivery struct {
	Topic     string
	Partition int32
	Offset    int64
	// Err is nil when the message was delivered.
	Err error
	// Status says whether a failed message may be stored anyway.
	Status Persistence
	// Opaque is the value given to ProduceOpaque.
	Opaque any
}

// cbEntry is a delivery callback with the caller's opaque value, kept in
// the producer's table while its message is in flight; librdkafka carries
// only the entry's index.
type cbEntry struct {
	cb     func(Delivery)
	opaque any
}

// cbTable maps message opaque values (index + 1) to callbacks.
type cbTable struct {
	mu   sync.Mutex
	ents []cbEntry
	free []uint32
}

func (t *cbTable) put(e cbEntry) uintptr {
	t.mu.Lock()
	var i uint32
	if n := len(t.free); n > 0 {
		i = t.free[n-1]
		t.free = t.free[:n-1]
		t.ents[i] = e
	} else {
		i = uint32(len(t.ents))
		t.ents = append(t.ents, e)
	}
	t.mu.Unlock()
	return uintptr(i) + 1
}

// take removes and returns the entries of handles h (0: none) into out.
func (t *cbTable) take(hs []uintptr, out []cbEntry) {
	t.mu.Lock()
	for k, h := range hs {
		if h == 0 {
			out[k] = cbEntry{}
			continue
		}
		i := uint32(h - 1)
		out[k] = t.ents[i]
		t.ents[i] = cbEntry{}
		t.free = append(t.free, i)
	}
	t.mu.Unlock()
}

// Producer is a connection's shared producer. It is a stable handle: the
// librdkafka producer behind it may be replaced by a reload (after its queue
// was flushed) or after a fatal error (its undelivered messages are handed
// back with ErrProducerRebuilt) without the holders having to do anything
// else. Every method is safe for concurrent use.
type Producer struct {
	c *conn

	mu    sync.RWMutex // held shared while inner is used, exclusively to swap it
	inner *rdProducer
	name  string      // librdkafka instance name of inner
	ready atomic.Bool // inner exists (Produce's fast path)

	st      stage // accepted messages on their way into inner (stage.go)
	cbs     cbTable
	space   spaceSignal
	created time.Time
	stats   clientStats // inner's latest statistics (stats.go)
}

func newProducerHandle(c *conn) *Producer {
	p := &Producer{c: c}
	p.st.init()
	return p
}

// Produce queues one message for topic. It never blocks on the network: the
// key, value and headers are copied, and onDelivery (which may be nil) is
// called from res_kafka's poll goroutine with the final outcome; it must be
// cheap and must not block. When the local queue is full
// (queue_buffering_max_messages or _kbytes of messages accepted and not yet
// reported), Produce waits up to the connection's queue_full_timeout_ms for
// room and then returns an error wrapping ErrQueueFull; the drop is counted.
// A message larger than message_max_bytes is refused at once.
func (p *Producer) Produce(topic string, key, value []byte, headers []Header, onDelivery func(Delivery)) error {
	return p.ProduceOpaque(topic, key, value, headers, onDelivery, nil)
}

// ProduceOpaque is Produce with a caller value handed back in
// Delivery.Opaque, so a batching caller can use one callback for all its
// messages.
func (p *Producer) ProduceOpaque(topic string, key, value []byte, headers []Header, onDelivery func(Delivery), opaque any) error {
	msg := [1]OutMessage{{Key: key, Value: value, Opaque: opaque}}
	_, err := p.produce(topic, msg[:], headers, onDelivery)
	return err
}

// OutMessage is one message of ProduceBatch.
type OutMessage struct {
	Key   []byte
	Value []byte
	// Headers are the message's headers (copied, as key and value are).
	Headers []Header
	// Opaque is handed back in Delivery.Opaque.
	Opaque any
}

// ProduceBatch queues msgs for topic (the keys and values are copied), each
// message as Produce would, under one lock. onDelivery (which may be nil)
// is called for every message with its outcome. When the local queue is
// full, ProduceBatch waits up to the connection's queue_full_timeout_ms for
// room (the wait starts again whenever some room was found); it returns how
// many messages it accepted (the first n of msgs) and, when n < len(msgs),
// an error (wrapping ErrQueueFull after the wait); the rest are dropped and
// counted.
func (p *Producer) ProduceBatch(topic string, msgs []OutMessage, onDelivery func(Delivery)) (int, error) {
	return p.produce(topic, msgs, nil, onDelivery)
}

// produce stages msgs for the drainer, each with its own headers or, when
// it has none, with headers.
func (p *Producer) produce(topic string, msgs []OutMessage, headers []Header, onDelivery func(Delivery)) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	c := p.c
	if !p.ready.Load() {
		if _, err := p.ensure(); err != nil {
			c.dropped[dropClosed].Add(int64(len(msgs)))
			return 0, err
		}
	}
	cfg := c.cfg()
	maxMsgs, maxBytes := int64(cfg.QueueBufferingMaxMessages), int64(cfg.QueueBufferingMaxKbytes)*1024
	hsize := 0
	for _, h := range headers {
		hsize += len(h.Key) + len(h.Value)
	}
	s := &p.st
	room := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.out < maxMsgs && s.outBytes < maxBytes && !s.fill.full()
	}
	done := 0
	var deadline time.Time
	var wait time.Duration
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.dropped[dropClosed].Add(int64(len(msgs) - done))
			return done, fmt.Errorf("connection %s: %w", c.name, ErrClosed)
		}
		b := s.fill
		wasEmpty := b.len() == 0
		direct := wasEmpty && !s.busy && len(msgs)-done >= directMin
		n := 0
		tooBig := 0
		stageFull := false
		for i := done; i < len(msgs); i++ {
			m := &msgs[i]
			size := int64(len(m.Key) + len(m.Value))
			mh, mhsize := headers, hsize
			if len(m.Headers) > 0 {
				mh, mhsize = m.Headers, 0
				for _, h := range m.Headers {
					mhsize += len(h.Key) + len(h.Value)
				}
			}
			if int(size)+mhsize > cfg.MessageMaxBytes {
				tooBig = int(size) + mhsize
				break
			}
			if s.out >= maxMsgs || (s.outBytes+size > maxBytes && s.out > 0) {
				break
			}
			if b.full() {
				stageFull = true
				break
			}
			var h uintptr
			if onDelivery != nil {
				h = p.cbs.put(cbEntry{cb: onDelivery, opaque: m.Opaque})
			}
			b.add(topic, m.Key, m.Value, mh, h)
			s.out++
			s.outBytes += size
			n++
		}
		var mine *stageBuf
		if direct && n >= directMin {
			mine = s.takeLocked()
		}
		s.mu.Unlock()
		if mine != nil {
			if p.push(mine, true) {
				s.giveBack(mine)
			} else {
				s.handOver(mine)
			}
		} else if n > 0 && wasEmpty {
			s.kick()
		}
		if n > 0 {
			done += n
			c.produced.Add(int64(n))
			deadline = time.Time{}
		}
		if tooBig > 0 {
			err := kafka.NewError(kafka.ErrMsgSizeTooLarge, fmt.Sprintf("message of %d bytes is larger than message_max_bytes %d", tooBig, cfg.MessageMaxBytes), false)
			return done, p.rejected(topic, err, len(msgs)-done)
		}
		if done == len(msgs) {
			return done, nil
		}
		now := time.Now()
		if deadline.IsZero() {
			bound := time.Duration(cfg.QueueFullTimeoutMs) * time.Millisecond
			if stageFull {
				// Only the stage is full: the drainer takes it in moments
				// unless librdkafka refuses, i.e. its queue is full.
				bound = max(bound, stageFullWait)
			}
			deadline = now.Add(bound)
			wait = 200 * time.Microsecond
		}
		if !now.Before(deadline) {
			return done, p.queueFull(topic, len(msgs)-done)
		}
		p.waitSpace(min(wait, deadline.Sub(now)), room)
		wait = min(wait*2, 5*time.Millisecond)
	}
}

// spaceSignal wakes producers waiting for room in a full queue as soon as
// the poll goroutine has served delivery reports (which is when librdkafka
// frees the room), instead of after a fixed sleep.
type spaceSignal struct {
	waiters atomic.Int32
	mu      sync.Mutex
	ch      chan struct{}
}

// broadcast wakes every waiter (poll goroutine, after deliveries).
func (s *spaceSignal) broadcast() {
	if s.waiters.Load() == 0 {
		return
	}
	s.mu.Lock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
	s.mu.Unlock()
}

// waitSpace waits up to d until the poll goroutine served delivery reports
// (which makes room), unless room (may be nil) says there is room already.
func (p *Producer) waitSpace(d time.Duration, room func() bool) {
	s := &p.space
	s.waiters.Add(1)
	defer s.waiters.Add(-1)
	s.mu.Lock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	ch := s.ch
	s.mu.Unlock()
	p.c.m.poll.kick()
	if room != nil && room() {
		return // room was made before we armed the signal: retry now
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// queueFull counts and logs n messages dropped on a full queue.
func (p *Producer) queueFull(topic string, n int) error {
	c := p.c
	c.dropped[dropQueueFull].Add(int64(n))
	c.m.lim.Warn("queue-full:"+c.name, "kafka producer queue full; message dropped",
		"connection", c.name, "topic", topic, "queued", p.Len(), "dropped", c.dropped[dropQueueFull].Load())
	return fmt.Errorf("connection %s topic %s: %w (queue stayed full for %d ms)", c.name, topic, ErrQueueFull, c.cfg().QueueFullTimeoutMs)
}

// rejected counts and logs n messages librdkafka refused.
func (p *Producer) rejected(topic string, err error, n int) error {
	c := p.c
	c.dropped[dropRejected].Add(int64(n))
	c.setError(err)
	c.m.lim.Warn("produce-err:"+c.name, "kafka produce refused; message dropped",
		"connection", c.name, "topic", topic, "err", c.mask(err.Error()))
	return fmt.Errorf("connection %s topic %s: %w", c.name, topic, err)
}

// ensure creates the librdkafka producer if there is none (first use, or a
// closed handle); it returns ErrClosed once the module has stopped.
func (p *Producer) ensure() (*rdProducer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inner != nil {
		return p.inner, nil
	}
	if p.c.closed.Load() {
		return nil, fmt.Errorf("connection %s: %w", p.c.name, ErrClosed)
	}
	kp, err := p.c.newKafkaProducer(p)
	if err != nil {
		return nil, err
	}
	p.inner, p.name, p.created = kp, kp.String(), time.Now()
	p.ready.Store(true)
	p.startDrainer()
	return kp, nil
}

// Flush waits up to timeout until every accepted message has been delivered
// or has failed (and its delivery callback has run), and returns how many
// are still undelivered. It must not be called from a delivery callback.
func (p *Producer) Flush(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		left := p.Len()
		remain := time.Until(deadline)
		if left == 0 || remain <= 0 {
			return left
		}
		step := min(remain, 100*time.Millisecond)
		if !p.st.waitDrained(step) {
			continue
		}
		innerLeft := 0
		p.mu.RLock()
		if p.inner != nil {
			// rd_kafka_flush also makes librdkafka send at once (no linger).
			innerLeft = p.inner.flush(step)
		}
		p.mu.RUnlock()
		if innerLeft == 0 && p.Len() > 0 {
			// The poll goroutine is handling the last delivery reports, or
			// a replaced producer is still draining.
			p.waitSpace(min(time.Until(deadline), time.Millisecond), nil)
		}
	}
}

// Len returns how many accepted messages are not yet reported: staged,
// queued or in flight in librdkafka, or delivered with the delivery report
// not yet handed to its callback.
func (p *Producer) Len() int { return int(p.st.outstanding()) }

// Connection returns the name of the producer's connection.
func (p *Producer) Connection() string { return p.c.name }

// Release tells res_kafka that the caller no longer uses the producer. It is
// optional: it only lets a connection removed by a reload close sooner.
func (p *Producer) Release() { p.c.release() }

// swap replaces the librdkafka producer by one built from the connection's
// current configuration, then flushes the old one (no accepted message is
// lost: the old producer keeps delivering until its queue is empty or its
// messages time out) and closes it. Holders keep using the handle.
func (p *Producer) swap(flushTimeout time.Duration) error {
	p.mu.Lock()
	old := p.inner
	if old == nil {
		p.mu.Unlock()
		return nil
	}
	kp, err := p.c.newKafkaProducer(p)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	old.retired.Store(true)
	p.inner, p.name, p.created = kp, kp.String(), time.Now()
	n := old.len()
	p.mu.Unlock()
	p.stats.clear()
	m := p.c.m
	m.retiring.Add(1)
	go func() {
		defer m.retiring.Done()
		left := p.c.retire(p, old, flushTimeout)
		if left > 0 {
			m.logger.Error("kafka messages not delivered by the replaced producer", "connection", p.c.name, "undelivered", left)
		} else {
			m.logger.Info("replaced kafka producer flushed and closed", "connection", p.c.name, "messages", n)
		}
	}()
	return nil
}

// close hands over what is staged, then flushes and closes the librdkafka
// producer, all within flushTimeout; Produce then fails with ErrClosed (the
// connection is marked closed first). It returns how many messages were not
// delivered.
func (p *Producer) close(flushTimeout time.Duration) int {
	deadline := time.Now().Add(flushTimeout)
	left := p.stopStage(flushTimeout)
	p.mu.Lock()
	old := p.inner
	p.inner = nil
	p.ready.Store(false)
	if old != nil {
		old.retired.Store(true)
	}
	p.mu.Unlock()
	if old == nil {
		return left
	}
	return left + p.c.retire(p, old, max(time.Until(deadline), 0))
}
