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

// drOpaque carries a delivery callback with the caller's opaque value
// through librdkafka.
type drOpaque struct {
	cb     func(Delivery)
	opaque any
}

// Producer is a connection's shared producer. It is a stable handle: the
// librdkafka producer behind it may be replaced by a reload (after its queue
// was flushed) without the holders noticing. Every method is safe for
// concurrent use.
type Producer struct {
	c *conn

	mu    sync.RWMutex // held shared by Produce, exclusively to swap inner
	inner *kafka.Producer
	name  string // librdkafka instance name of inner

	topics  sync.Map // topic -> *string, so a message needs no new string header
	msgPool sync.Pool
	retired atomic.Int64 // messages still queued in replaced inner producers
	created time.Time
}

func newProducerHandle(c *conn) *Producer {
	p := &Producer{c: c}
	p.msgPool.New = func() any { return new(kafka.Message) }
	return p
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
	m := p.msgPool.Get().(*kafka.Message)
	m.TopicPartition.Topic = p.topic(topic)
	m.TopicPartition.Partition = kafka.PartitionAny
	m.Key, m.Value = key, value
	if len(headers) > 0 {
		hs := make([]kafka.Header, len(headers))
		for i, h := range headers {
			hs[i] = kafka.Header{Key: h.Key, Value: h.Value}
		}
		m.Headers = hs
	}
	if onDelivery != nil {
		if opaque == nil {
			m.Opaque = onDelivery
		} else {
			m.Opaque = &drOpaque{cb: onDelivery, opaque: opaque}
		}
	}
	defer func() {
		*m = kafka.Message{}
		p.msgPool.Put(m)
	}()
	var deadline time.Time
	var wait time.Duration
	for {
		p.mu.RLock()
		inner := p.inner
		if inner == nil {
			p.mu.RUnlock()
			var err error
			if inner, err = p.ensure(); err != nil {
				c.countDrop(dropClosed)
				return err
			}
			continue
		}
		err := inner.Produce(m, nil)
		p.mu.RUnlock()
		if err == nil {
			c.produced.Add(1)
			return nil
		}
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull {
			now := time.Now()
			if deadline.IsZero() {
				deadline = now.Add(time.Duration(c.cfg().QueueFullTimeoutMs) * time.Millisecond)
				wait = 200 * time.Microsecond
			}
			if !now.Before(deadline) {
				c.countDrop(dropQueueFull)
				c.m.lim.Warn("queue-full:"+c.name, "kafka producer queue full; message dropped",
					"connection", c.name, "topic", topic, "queued", p.Len(), "dropped", c.dropped[dropQueueFull].Load())
				return fmt.Errorf("connection %s topic %s: %w (queue stayed full for %d ms)", c.name, topic, ErrQueueFull, c.cfg().QueueFullTimeoutMs)
			}
			c.m.poll.kick()
			d := min(wait, deadline.Sub(now))
			time.Sleep(d)
			wait = min(wait*2, 5*time.Millisecond)
			continue
		}
		c.countDrop(dropRejected)
		c.setError(err)
		c.m.lim.Warn("produce-err:"+c.name, "kafka produce refused; message dropped",
			"connection", c.name, "topic", topic, "err", c.mask(err.Error()))
		return fmt.Errorf("connection %s topic %s: %w", c.name, topic, err)
	}
}

// ensure creates the librdkafka producer if there is none (first use, or a
// closed handle); it returns ErrClosed once the module has stopped.
func (p *Producer) ensure() (*kafka.Producer, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.inner != nil {
		return p.inner, nil
	}
	if p.c.closed.Load() {
		return nil, fmt.Errorf("connection %s: %w", p.c.name, ErrClosed)
	}
	kp, err := p.c.newKafkaProducer()
	if err != nil {
		return nil, err
	}
	p.inner, p.name, p.created = kp, kp.String(), time.Now()
	return kp, nil
}

// topic returns a shared *string for a topic name.
func (p *Producer) topic(t string) *string {
	if v, ok := p.topics.Load(t); ok {
		return v.(*string)
	}
	s := new(string)
	*s = t
	v, _ := p.topics.LoadOrStore(t, s)
	return v.(*string)
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
		ms := int(min(remain, 100*time.Millisecond) / time.Millisecond)
		innerLeft := inner.Flush(max(ms, 0))
		p.mu.RUnlock()
		left := innerLeft + int(p.retired.Load())
		if left == 0 {
			// The last delivery reports left the channel; wait until the
			// poll goroutine has finished handling them (callbacks ran).
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
		n += p.inner.Len()
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
	kp, err := p.c.newKafkaProducer()
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.inner, p.name, p.created = kp, kp.String(), time.Now()
	// Count the old queue as part of Len while it drains.
	n := int64(old.Len())
	p.retired.Add(n)
	p.mu.Unlock()
	m := p.c.m
	m.retiring.Add(1)
	go func() {
		defer m.retiring.Done()
		left := p.c.retire(old, flushTimeout)
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
	return p.c.retire(old, flushTimeout)
}

// persistence guesses librdkafka's message status from a delivery error, as
// the Go client does not expose rd_kafka_message_status().
func persistence(err error) Persistence {
	if err == nil {
		return Persisted
	}
	var kerr kafka.Error
	if !errors.As(err, &kerr) {
		return PossiblyPersisted
	}
	switch kerr.Code() {
	case kafka.ErrPurgeQueue, kafka.ErrQueueFull, kafka.ErrMsgSizeTooLarge, kafka.ErrUnknownTopicOrPart,
		kafka.ErrUnknownTopic, kafka.ErrUnknownPartition, kafka.ErrTopicAuthorizationFailed,
		kafka.ErrInvalidMsg, kafka.ErrInvalidMsgSize, kafka.ErrRecordListTooLarge, kafka.ErrNotEnoughReplicas,
		kafka.ErrInvalidRequiredAcks, kafka.ErrClusterAuthorizationFailed, kafka.ErrAuthentication,
		kafka.ErrSaslAuthenticationFailed, kafka.ErrFatal, kafka.ErrInvalidRecord:
		return NotPersisted
	}
	return PossiblyPersisted
}
