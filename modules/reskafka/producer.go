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

// putN stores n entries sharing one callback and opaque values from
// opaque(i), writing their handles to out.
func (t *cbTable) putN(out []uintptr, cb func(Delivery), opaque func(i int) any) {
	t.mu.Lock()
	for k := range out {
		e := cbEntry{cb: cb, opaque: opaque(k)}
		var i uint32
		if n := len(t.free); n > 0 {
			i = t.free[n-1]
			t.free = t.free[:n-1]
			t.ents[i] = e
		} else {
			i = uint32(len(t.ents))
			t.ents = append(t.ents, e)
		}
		out[k] = uintptr(i) + 1
	}
	t.mu.Unlock()
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
// was flushed) without the holders noticing. Every method is safe for
// concurrent use.
type Producer struct {
	c *conn

	mu    sync.RWMutex // held shared by Produce, exclusively to swap inner
	inner *rdProducer
	name  string // librdkafka instance name of inner

	cbs     cbTable
	space   spaceSignal
	retired atomic.Int64 // messages still queued in replaced inner producers
	created time.Time
}

func newProducerHandle(c *conn) *Producer {
	return &Producer{c: c}
}

// Produce queues one message for topic. It never blocks on the network: the
// key, value and headers are copied, and onDelivery (which may be nil) is
// called from res_kafka's poll goroutine with the final outcome; it must be
// cheap and must not block. When librdkafka's local queue is full, Produce
// waits up to the connection's queue_full_timeout_ms for room and then
// returns an error wrapping ErrQueueFull; the drop is counted.
func (p *Producer) Produce(topic string, key, value []byte, headers []Header, onDelivery func(Delivery)) error {
	return p.ProduceOpaque(topic, key, value, headers, onDelivery, nil)
}

// ProduceOpaque is Produce with a caller value handed back in
// Delivery.Opaque, so a batching caller can use one callback for all its
// messages.
func (p *Producer) ProduceOpaque(topic string, key, value []byte, headers []Header, onDelivery func(Delivery), opaque any) error {
	c := p.c
	var h uintptr
	if onDelivery != nil {
		h = p.cbs.put(cbEntry{cb: onDelivery, opaque: opaque})
	}
	var deadline time.Time
	var wait time.Duration
	for {
		p.mu.RLock()
		inner := p.inner
		if inner == nil {
			p.mu.RUnlock()
			var err error
			if inner, err = p.ensure(); err != nil {
				p.dropHandle(h)
				c.countDrop(dropClosed)
				return err
			}
			continue
		}
		rkt, err := inner.topic(topic)
		var code int
		if err == nil {
			code = inner.produce(rkt, key, value, headers, h)
		}
		p.mu.RUnlock()
		if err == nil && code == 0 {
			c.produced.Add(1)
			return nil
		}
		if err == nil && code == rdErrQueueFull {
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(time.Duration(c.cfg().QueueFullTimeoutMs) * time.Millisecond)
				wait = 200 * time.Microsecond
			}
			if !now.Before(deadline) {
				p.dropHandle(h)
				return p.queueFull(topic, 1)
			}
			p.waitSpace(inner, min(wait, deadline.Sub(now)))
			wait = min(wait*2, 5*time.Millisecond)
			continue
		}
		if err == nil {
			err = kafka.NewError(kafka.ErrorCode(code), kafka.ErrorCode(code).String(), false)
		}
		p.dropHandle(h)
		return p.rejected(topic, err, 1)
	}
}

// OutMessage is one message of ProduceBatch.
type OutMessage struct {
	Key   []byte
	Value []byte
	// Opaque is handed back in Delivery.Opaque.
	Opaque any
}

// ProduceBatch queues msgs for topic with one call into librdkafka (the
// keys and values are copied), each message as Produce would. onDelivery
// (which may be nil) is called for every message with its outcome. When
// librdkafka's local queue is full, ProduceBatch waits up to the
// connection's queue_full_timeout_ms for room; it returns how many messages
// it accepted (the first n of msgs) and, when n < len(msgs), an error
// (wrapping ErrQueueFull after the wait); the rest are dropped and counted.
func (p *Producer) ProduceBatch(topic string, msgs []OutMessage, onDelivery func(Delivery)) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	c := p.c
	bs := batchPool.Get().(*batchBuf)
	defer batchPool.Put(bs)
	bs.pack(msgs)
	var hs []uintptr
	if onDelivery != nil {
		if cap(bs.hs) < len(msgs) {
			bs.hs = make([]uintptr, len(msgs))
		}
		hs = bs.hs[:len(msgs)]
		p.cbs.putN(hs, onDelivery, func(i int) any { return msgs[i].Opaque })
	}
	done := 0
	var deadline time.Time
	var wait time.Duration
	fail := func(err error) (int, error) {
		if hs != nil {
			for _, h := range hs[done:] {
				p.dropHandle(h)
			}
		}
		return done, err
	}
	for {
		p.mu.RLock()
		inner := p.inner
		if inner == nil {
			p.mu.RUnlock()
			if _, err := p.ensure(); err != nil {
				c.dropped[dropClosed].Add(int64(len(msgs) - done))
				return fail(err)
			}
			continue
		}
		rkt, err := inner.topic(topic)
		var n int
		var code int
		if err == nil {
			var ops []uintptr
			if hs != nil {
				ops = hs[done:]
			}
			n, code = inner.produceBatch(rkt, bs.buf, bs.offs[4*done:], ops)
		}
		p.mu.RUnlock()
		done += n
		c.produced.Add(int64(n))
		if err == nil && done == len(msgs) {
			return done, nil
		}
		if n > 0 {
			deadline = time.Time{}
		}
		if err == nil && code == rdErrQueueFull {
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(time.Duration(c.cfg().QueueFullTimeoutMs) * time.Millisecond)
				wait = 200 * time.Microsecond
			}
			if !now.Before(deadline) {
				return fail(p.queueFull(topic, len(msgs)-done))
			}
			p.waitSpace(inner, min(wait, deadline.Sub(now)))
			wait = min(wait*2, 5*time.Millisecond)
			continue
		}
		if err == nil {
			err = kafka.NewError(kafka.ErrorCode(code), kafka.ErrorCode(code).String(), false)
		}
		return fail(p.rejected(topic, err, len(msgs)-done))
	}
}

// batchBuf packs a batch's keys and values for one cgo call.
type batchBuf struct {
	buf  []byte
	offs []int32
	hs   []uintptr
}

var batchPool = sync.Pool{New: func() any { return new(batchBuf) }}

func (b *batchBuf) pack(msgs []OutMessage) {
	size := 0
	for i := range msgs {
		size += len(msgs[i].Key) + len(msgs[i].Value)
	}
	if cap(b.buf) < size {
		b.buf = make([]byte, 0, size)
	}
	if cap(b.offs) < 4*len(msgs) {
		b.offs = make([]int32, 4*len(msgs))
	}
	buf, offs := b.buf[:0], b.offs[:4*len(msgs)]
	for i := range msgs {
		m := &msgs[i]
		o := offs[4*i : 4*i+4]
		o[0], o[1] = int32(len(buf)), int32(len(m.Key))
		if len(m.Key) == 0 {
			o[1] = -1
		}
		buf = append(buf, m.Key...)
		o[2], o[3] = int32(len(buf)), int32(len(m.Value))
		if m.Value == nil {
			o[3] = -1
		}
		buf = append(buf, m.Value...)
	}
	b.buf, b.offs = buf, offs
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

// waitSpace waits until delivery reports were served or d passed, unless
// inner has room already.
func (p *Producer) waitSpace(inner *rdProducer, d time.Duration) {
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
	if inner.len() < p.c.cfg().QueueBufferingMaxMessages {
		return // room was made before we armed the signal: retry now
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

// dropHandle forgets the callback of a message librdkafka did not take.
func (p *Producer) dropHandle(h uintptr) {
	if h != 0 {
		var e [1]cbEntry
		p.cbs.take([]uintptr{h}, e[:])
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
	return kp, nil
}

// Flush waits up to timeout until every queued message has been delivered
// or has failed (and its delivery callback has run), and returns how many
// are still undelivered. It must not be called from a delivery callback.
func (p *Producer) Flush(timeout time.Duration) int {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.RLock()
		inner := p.inner
		if inner == nil {
			p.mu.RUnlock()
			return int(p.retired.Load())
		}
		remain := time.Until(deadline)
		innerLeft := inner.flush(max(min(remain, 100*time.Millisecond), 0))
		p.mu.RUnlock()
		left := innerLeft + int(p.retired.Load())
		if left == 0 {
			// The last delivery reports were read; wait until the poll
			// goroutine has finished handling them (callbacks ran).
			p.c.m.poll.do(func() {})
			return 0
		}
		if time.Now().After(deadline) {
			return left
		}
		if innerLeft == 0 {
			time.Sleep(time.Millisecond) // only replaced producers are draining
		}
	}
}

// Len returns how many messages are queued or in flight (including delivery
// reports not yet handed to their callbacks).
func (p *Producer) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	n := int(p.retired.Load())
	if p.inner != nil {
		n += p.inner.len()
	}
	return n
}

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
	p.inner, p.name, p.created = kp, kp.String(), time.Now()
	// Count the old queue as part of Len while it drains.
	n := int64(old.len())
	p.retired.Add(n)
	p.mu.Unlock()
	m := p.c.m
	m.retiring.Add(1)
	go func() {
		defer m.retiring.Done()
		left := p.c.retire(p, old, flushTimeout)
		p.retired.Add(-n)
		if left > 0 {
			m.logger.Error("kafka messages not delivered by the replaced producer", "connection", p.c.name, "undelivered", left)
		} else {
			m.logger.Info("replaced kafka producer flushed and closed", "connection", p.c.name, "messages", n)
		}
	}()
	return nil
}

// close flushes and closes the librdkafka producer; Produce then fails with
// ErrClosed (the connection is marked closed first).
func (p *Producer) close(flushTimeout time.Duration) int {
	p.mu.Lock()
	old := p.inner
	p.inner = nil
	p.mu.Unlock()
	if old == nil {
		return 0
	}
	return p.c.retire(p, old, flushTimeout)
}
