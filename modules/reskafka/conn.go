package reskafka

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Connection states shown by the CLI.
const (
	stateIdle       = "idle"       // no client created yet
	stateConnecting = "connecting" // clients exist, nothing heard yet
	stateUp         = "up"
	stateDown       = "down"        // all brokers down
	stateAuthFailed = "auth failed" // SASL / SSL authentication failed
	stateError      = "error"
	stateFatal      = "fatal"
	stateRemoved    = "removed" // removed by a reload, still held
)

// Reasons a message is dropped by Produce.
const (
	dropQueueFull = iota
	dropRejected
	dropClosed
	numDrops
)

var dropReasons = [numDrops]string{"queue_full", "rejected", "closed"}

// conn is one named connection at run time.
type conn struct {
	m    *Module
	name string

	cfgp      atomic.Pointer[Connection]
	bootstrap atomic.Pointer[string]

	mu       sync.Mutex
	producer *Producer
	holds    int
	subs     map[*Subscription]struct{}
	removed  bool
	closed   atomic.Bool

	produced  atomic.Int64
	delivered atomic.Int64
	failed    atomic.Int64
	dropped   [numDrops]atomic.Int64
	errorsN   atomic.Int64
	rebuilds  atomic.Int64 // the connection changed by a reload

	reloadSwaps   atomic.Int64 // producers replaced by a reload
	fatalErrors   atomic.Int64 // fatal errors of its producers
	rebuildsFatal atomic.Int64 // producers rebuilt after a fatal error
	rebuiltFailed atomic.Int64 // messages handed back with ErrProducerRebuilt
	statsInvalid  atomic.Int64 // statistics documents that did not parse
	// fatalPending is set from a fatal error until the handle's current
	// producer (not the one that failed) delivered a message.
	fatalPending atomic.Bool

	// unconfirmed is set while the state is not up or the last error has
	// not recovered: the hot paths that confirm the connection works
	// (deliveries, received messages) take smu only then.
	unconfirmed atomic.Bool

	smu       sync.Mutex // guards the fields below
	state     string
	lastErr   LastError
	lastFatal LastError // recovered once a new producer delivered
	rebuiltAt time.Time // when the producer was rebuilt after lastFatal
	secrets   []string
}

func newConn(m *Module, cfg *Connection, bootstrap string) *conn {
	c := &conn{m: m, name: cfg.Name, subs: map[*Subscription]struct{}{}, state: stateIdle}
	c.unconfirmed.Store(true)
	c.setConfig(cfg, bootstrap)
	return c
}

func (c *conn) setConfig(cfg *Connection, bootstrap string) {
	c.cfgp.Store(cfg)
	c.bootstrap.Store(&bootstrap)
	c.smu.Lock()
	c.secrets = cfg.secrets()
	c.smu.Unlock()
}

func (c *conn) cfg() *Connection { return c.cfgp.Load() }

func (c *conn) droppedTotal() int64 {
	var n int64
	for i := range c.dropped {
		n += c.dropped[i].Load()
	}
	return n
}

// mask replaces every secret of the connection in s by ********.
func (c *conn) mask(s string) string {
	c.smu.Lock()
	secrets := c.secrets
	c.smu.Unlock()
	for _, sec := range secrets {
		if len(sec) >= 3 {
			s = strings.ReplaceAll(s, sec, "********")
		}
	}
	return s
}

// setStateLocked sets the state; c.smu held.
func (c *conn) setStateLocked(s string) {
	c.state = s
	c.unconfirmed.Store(c.state != stateUp || (c.lastErr.Message != "" && !c.lastErr.Recovered))
}

func (c *conn) getState() (state string, lastErr LastError) {
	c.smu.Lock()
	defer c.smu.Unlock()
	state = c.state
	if c.removed {
		state += " (" + stateRemoved + ")"
	}
	return state, c.lastErr
}

// confirmUp records that the connection works (a message delivered or
// received, a partition assignment, an offset commit): the state becomes up
// unless a client failed fatally, and a last error recorded before is marked
// recovered.
func (c *conn) confirmUp() {
	if !c.unconfirmed.Load() {
		return
	}
	c.smu.Lock()
	c.confirmUpLocked(time.Now())
	c.smu.Unlock()
}

// confirmUpLocked is confirmUp with c.smu held.
func (c *conn) confirmUpLocked(now time.Time) {
	if c.state == stateFatal {
		return
	}
	c.lastErr.recover(now)
	c.setStateLocked(stateUp)
}

// setError records a client error as the connection's last error and
// derives the state from it.
func (c *conn) setError(err error) {
	msg := c.mask(err.Error())
	state := ""
	var kerr kafka.Error
	if errors.As(err, &kerr) {
		switch kerr.Code() {
		case kafka.ErrAllBrokersDown:
			state = stateDown
		case kafka.ErrAuthentication, kafka.ErrSaslAuthenticationFailed, kafka.ErrSsl,
			kafka.ErrTopicAuthorizationFailed, kafka.ErrGroupAuthorizationFailed, kafka.ErrClusterAuthorizationFailed:
			state = stateAuthFailed
		case kafka.ErrTransport, kafka.ErrResolve:
			// One broker connection failed; _ALL_BROKERS_DOWN says when all
			// did. A TLS alert from the broker, though, is its refusal of
			// our client certificate (or of none): authentication failed.
			if tlsRefused(kerr) {
				state = stateAuthFailed
			}
		default:
			state = stateError
		}
		if kerr.IsFatal() {
			state = stateFatal
		}
	}
	c.errorsN.Add(1)
	now := time.Now()
	c.smu.Lock()
	// "All brokers down" after an authentication failure says less than
	// the failure itself: keep the latter as the state and last error,
	// failing as of now.
	if c.state == stateAuthFailed && (state == stateDown || state == "") {
		c.lastErr.set(c.lastErr.Message, now)
	} else {
		c.lastErr.set(msg, now)
		if state != "" {
			c.state = state
		}
	}
	c.setStateLocked(c.state)
	c.smu.Unlock()
}

// handleClientError logs and records an error event of any client.
func (c *conn) handleClientError(client string, e kafka.Error) {
	c.setError(e)
	msg := c.mask(e.Error())
	if e.IsFatal() {
		c.m.logger.Error("kafka fatal error", "connection", c.name, "client", client, "err", msg)
		return
	}
	level := "warn"
	switch e.Code() {
	case kafka.ErrAuthentication, kafka.ErrSaslAuthenticationFailed, kafka.ErrSsl:
		level = "error"
	}
	if tlsRefused(e) {
		level = "error"
	}
	if level == "error" {
		c.m.lim.Error("err:"+c.name+":"+e.Code().String(), "kafka authentication failed", "connection", c.name, "client", client, "err", msg)
	} else {
		c.m.lim.Warn("err:"+c.name+":"+e.Code().String(), "kafka client error", "connection", c.name, "client", client, "err", msg)
	}
}

// tlsRefused reports whether e is a broker connection that failed on a TLS
// alert the broker sent (librdkafka reports those as transport errors,
// "Receive failed: ... SSL alert number 42"): with ssl.client.auth =
// required, a missing, expired or untrusted client certificate.
func tlsRefused(e kafka.Error) bool {
	return e.Code() == kafka.ErrTransport && strings.Contains(e.String(), "SSL alert number")
}

func topicOf(tp kafka.TopicPartition) string {
	if tp.Topic == nil {
		return ""
	}
	return *tp.Topic
}

// newKafkaProducer creates a librdkafka producer from the current
// configuration for the handle p and registers it with the poll goroutine.
func (c *conn) newKafkaProducer(p *Producer) (*rdProducer, error) {
	cfg := c.cfg()
	cm := cfg.producerConfig(*c.bootstrap.Load(), nil)
	kp, err := newRdProducer(cm, c.m.poll.wakeFd())
	if err != nil {
		err = fmt.Errorf("connection %s: creating producer: %s", c.name, c.mask(err.Error()))
		c.setError(err)
		return nil, err
	}
	c.m.clientNames.Store(kp.String(), c)
	c.m.poll.add(kp, p, c)
	c.smu.Lock()
	if c.state == stateIdle {
		c.setStateLocked(stateConnecting)
	}
	c.smu.Unlock()
	return kp, nil
}

// retire flushes a librdkafka producer of handle p for up to timeout,
// purges what is left (whose delivery callbacks then report failure), stops
// polling it and destroys it. It returns how many messages were not
// delivered.
func (c *conn) retire(p *Producer, kp *rdProducer, timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	left := kp.len()
	for left > 0 {
		now := time.Now()
		if by := c.m.stopFlushBy.Load(); by != 0 && now.UnixNano() >= by {
			break
		}
		if !now.Before(deadline) {
			break
		}
		left = kp.flush(min(deadline.Sub(now), 100*time.Millisecond))
	}
	if left > 0 {
		c.m.logger.Warn("kafka producer closing with undelivered messages; purging them",
			"connection", c.name, "undelivered", left, "flush_timeout", timeout)
		kp.purge()
		kp.flush(time.Second)
	}
	c.m.poll.remove(kp)
	kp.disableWake()
	// Serve what the poll goroutine left, until librdkafka holds nothing.
	for end := time.Now().Add(2 * time.Second); ; {
		n := c.serve(p, kp, 1000)
		if n == 0 && (kp.len() == 0 || time.Now().After(end)) {
			break
		}
		if n == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	kp.destroy()
	c.m.clientNames.Delete(kp.String())
	return left
}

// release gives back one hold of the producer.
func (c *conn) release() {
	c.mu.Lock()
	if c.holds > 0 {
		c.holds--
	}
	done := c.removed && c.holds == 0 && len(c.subs) == 0
	c.mu.Unlock()
	if done {
		c.m.closeRemoved(c)
	}
}

// queued returns the producer's queue length.
func (c *conn) queued() int {
	c.mu.Lock()
	p := c.producer
	c.mu.Unlock()
	if p == nil {
		return 0
	}
	return p.Len()
}
