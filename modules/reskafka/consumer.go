package reskafka

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// Message is one consumed record.
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   []Header
	Timestamp time.Time

	epoch uint64 // assignment epoch of its partition when fetched
}

// Handler processes one message. A returned error is counted (and logged,
// rate-limited) as a handler error; the message is not redelivered.
type Handler func(ctx context.Context, msg *Message) error

// SubscribeOptions tune one subscription.
type SubscribeOptions struct {
	// Name identifies the subscription in the CLI; "" means
	// "<connection>/<group>" (with "#2", "#3"... when taken).
	Name string
	// GroupID overrides the connection's group_id.
	GroupID string
	// ManualCommit disables automatic commits: the handler commits with
	// Subscription.Commit. Otherwise offsets are committed automatically
	// (enable_auto_commit), but only for messages whose handler returned.
	ManualCommit bool
	// AutoOffsetReset overrides the connection's auto_offset_reset
	// ("earliest", "latest", "none"); "" keeps it.
	AutoOffsetReset string
	// Assignor is the partition assignment strategy: "" (librdkafka's
	// default, range,roundrobin), "range", "roundrobin" or
	// "cooperative-sticky".
	Assignor string
	// MissingTopicGrace is how long after Subscribe a subscribed topic that
	// does not exist yet is waited for before it is reported as an error:
	// 0 means MissingTopicGrace (30 s), a negative value no waiting at all.
	MissingTopicGrace time.Duration
}

type tpKey struct {
	topic     string
	partition int32
}

// Subscription is one consumer group member with its handler.
type Subscription struct {
	m      *Module
	c      *conn
	name   string
	group  string
	opts   SubscribeOptions
	topics []string
	h      Handler

	ctx    context.Context
	cancel context.CancelFunc

	// started is when Subscribe was called; a subscribed topic librdkafka
	// reports missing within grace after it is waited for (topicwait.go).
	started  time.Time
	grace    time.Duration
	waitingN atomic.Int32 // len(waiting)
	checking atomic.Bool  // verifyTopics runs

	queue chan *Message // bounded hand-off to the handler goroutine
	space chan struct{} // the handler took a message (capacity 1)

	// hmu is held by the handler goroutine while a handler runs, and by a
	// revocation while it discards queued messages of revoked partitions.
	hmu sync.Mutex
	// omu guards owned, epoch and closing; it is never held for long, so
	// the poll goroutine can take it while a handler runs.
	omu     sync.Mutex
	owned   map[tpKey]uint64 // assigned partition -> epoch
	epoch   uint64
	closing bool // the consumer is closing: handle nothing more

	// kc is the running consumer for the handler goroutine (StoreOffsets,
	// Commit), which must not take runMu: Close holds it while the consumer
	// waits for the handler. kcMu guards destruction against Status.
	kc   atomic.Pointer[kafka.Consumer]
	kcMu sync.RWMutex

	runMu    sync.Mutex // serialises restart and Close
	consumer *kafka.Consumer
	stopPoll chan struct{}
	pollDone chan struct{}
	closed   bool
	hDone    chan struct{}

	// state for the CLI, guarded by smu
	smu        sync.Mutex
	assigned   []kafka.TopicPartition
	committed  map[tpKey]int64
	lastErr    LastError
	waiting    map[string]*topicWait // subscribed topics not created yet
	protocol   string
	paused     bool
	pending    []*Message // poll goroutine only
	clientName string

	// failing is set while lastErr has not recovered, so that the message
	// path takes smu only then.
	failing atomic.Bool

	received      atomic.Int64
	handled       atomic.Int64
	handlerErrors atomic.Int64
	discarded     atomic.Int64 // queued messages of revoked partitions (re-fetched by the new owner)
	rebalances    atomic.Int64
	pauses        atomic.Int64
	commitErrors  atomic.Int64

	stats clientStats // the consumer's latest statistics (stats.go)
}

// Subscribe joins the consumer group of the connection (group_id, or
// opts.GroupID) for topics and calls h for every message, from a goroutine of
// the subscription's own (one message at a time, in order per partition).
func (m *Module) Subscribe(connName string, topics []string, h Handler, opts SubscribeOptions) (*Subscription, error) {
	if m.stopped.Load() {
		return nil, fmt.Errorf("res_kafka: %w", ErrClosed)
	}
	if len(topics) == 0 {
		return nil, errors.New("subscribe: no topics")
	}
	if h == nil {
		return nil, errors.New("subscribe: nil handler")
	}
	switch opts.Assignor {
	case "", "range", "roundrobin", "cooperative-sticky":
	default:
		return nil, fmt.Errorf("subscribe: unknown assignor %q (want range, roundrobin or cooperative-sticky)", opts.Assignor)
	}
	switch opts.AutoOffsetReset {
	case "", "earliest", "latest", "none":
	default:
		return nil, fmt.Errorf("subscribe: unknown auto offset reset %q", opts.AutoOffsetReset)
	}
	c, err := m.conn(connName)
	if err != nil {
		return nil, err
	}
	cfg := c.cfg()
	group := cfg.groupFor(opts)
	if group == "" {
		return nil, fmt.Errorf("connection %s has no group_id (set it in %s or in SubscribeOptions.GroupID)", connName, ConfigFile)
	}
	s := &Subscription{m: m, c: c, group: group, opts: opts, topics: append([]string(nil), topics...), h: h,
		queue: make(chan *Message, cfg.HandlerQueue), space: make(chan struct{}, 1), owned: map[tpKey]uint64{}, committed: map[tpKey]int64{},
		waiting: map[string]*topicWait{}, hDone: make(chan struct{}), started: time.Now(), grace: opts.MissingTopicGrace}
	switch {
	case s.grace == 0:
		s.grace = MissingTopicGrace
	case s.grace < 0:
		s.grace = 0
	}
	s.ctx, s.cancel = context.WithCancel(m.ctx)
	m.mu.Lock()
	name := opts.Name
	if name == "" {
		name = connName + "/" + group
	}
	base := name
	for i := 2; m.subNameTaken(name); i++ {
		name = fmt.Sprintf("%s#%d", base, i)
	}
	s.name = name
	m.mu.Unlock()
	if err := s.startConsumer(); err != nil {
		s.cancel()
		return nil, err
	}
	c.mu.Lock()
	c.subs[s] = struct{}{}
	c.mu.Unlock()
	go s.handlerLoop()
	m.logger.Info("kafka subscription started", "connection", connName, "subscription", s.name, "group", group, "topics", topics)
	return s, nil
}

// subNameTaken reports whether a running subscription has the name; m.mu held.
func (m *Module) subNameTaken(name string) bool {
	for _, c := range m.conns {
		c.mu.Lock()
		for s := range c.subs {
			if s.name == name {
				c.mu.Unlock()
				return true
			}
		}
		c.mu.Unlock()
	}
	return false
}

// Name returns the subscription's name as the CLI shows it.
func (s *Subscription) Name() string { return s.name }

// startConsumer creates the librdkafka consumer, subscribes and starts the
// poll goroutine.
func (s *Subscription) startConsumer() error {
	cfg := s.c.cfg()
	cm := cfg.consumerConfig(*s.c.bootstrap.Load(), s.m.poll.logs, s.opts)
	cm["group.id"] = s.group
	kc, err := kafka.NewConsumer(&cm)
	if err != nil {
		err = fmt.Errorf("connection %s: creating consumer: %s", s.c.name, s.c.mask(err.Error()))
		s.c.setError(err)
		return err
	}
	s.m.clientNames.Store(kc.String(), s.c)
	s.stats.clear() // those of a consumer this one replaces
	if err := kc.SubscribeTopics(s.topics, s.rebalance); err != nil {
		kc.Close()
		s.m.clientNames.Delete(kc.String())
		return fmt.Errorf("connection %s: subscribing to %v: %w", s.c.name, s.topics, err)
	}
	s.c.smu.Lock()
	if s.c.state == stateIdle {
		s.c.setStateLocked(stateConnecting)
	}
	s.c.smu.Unlock()
	s.smu.Lock()
	s.clientName = kc.String()
	s.smu.Unlock()
	s.consumer = kc
	s.omu.Lock()
	s.closing = false
	s.omu.Unlock()
	s.kc.Store(kc)
	s.stopPoll = make(chan struct{})
	s.pollDone = make(chan struct{})
	go s.pollLoop(kc, s.stopPoll, s.pollDone)
	return nil
}

// stopConsumer stops the poll goroutine, which closes the consumer (leaving
// the group after committing what the handler finished).
func (s *Subscription) stopConsumer() {
	if s.consumer == nil {
		return
	}
	close(s.stopPoll)
	<-s.pollDone
	s.m.clientNames.Delete(s.clientName)
	s.consumer = nil
}

// restart rebuilds the consumer from the connection's current configuration
// (reload). The handler goroutine and the handle stay.
func (s *Subscription) restart() error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.closed {
		return nil
	}
	s.stopConsumer()
	return s.startConsumer()
}

// Close stops the subscription: its consumer leaves the group at once
// (committing what the handler finished when commits are automatic), the
// handler's context is cancelled, queued messages are dropped (the group's
// next owner gets them again) and the handler goroutine ends.
func (s *Subscription) Close() error {
	s.runMu.Lock()
	if s.closed {
		s.runMu.Unlock()
		return nil
	}
	s.closed = true
	s.cancel()
	s.stopConsumer()
	s.runMu.Unlock()
	<-s.hDone
	s.c.mu.Lock()
	delete(s.c.subs, s)
	done := s.c.removed && s.c.holds == 0 && len(s.c.subs) == 0
	s.c.mu.Unlock()
	if done {
		s.m.closeRemoved(s.c)
	}
	s.m.logger.Info("kafka subscription closed", "connection", s.c.name, "subscription", s.name,
		"received", s.received.Load(), "handled", s.handled.Load(), "handler_errors", s.handlerErrors.Load())
	return nil
}

// Unsubscribe is Close.
func (s *Subscription) Unsubscribe() error { return s.Close() }

// Commit synchronously commits msg.Offset+1 for msg's partition (for
// ManualCommit subscriptions; it works for the others too).
func (s *Subscription) Commit(msg *Message) error {
	kc := s.kc.Load()
	if kc == nil {
		return fmt.Errorf("subscription %s: %w", s.name, ErrClosed)
	}
	topic := msg.Topic
	tp := kafka.TopicPartition{Topic: &topic, Partition: msg.Partition, Offset: kafka.Offset(msg.Offset + 1)}
	if _, err := kc.CommitOffsets([]kafka.TopicPartition{tp}); err != nil {
		s.commitErrors.Add(1)
		err = fmt.Errorf("subscription %s: commit %s [%d] offset %d: %w", s.name, topic, msg.Partition, msg.Offset+1, err)
		s.setErr(err.Error())
		return err
	}
	s.smu.Lock()
	s.committed[tpKey{topic, msg.Partition}] = msg.Offset + 1
	s.smu.Unlock()
	s.working()
	return nil
}

// setErr records msg (masked here) as the subscription's last error.
func (s *Subscription) setErr(msg string) {
	msg = s.c.mask(msg)
	s.smu.Lock()
	s.lastErr.set(msg, time.Now())
	s.failing.Store(true)
	s.smu.Unlock()
}

// clientError records and logs an error event of the subscription's
// consumer, as the subscription's and the connection's last error.
func (s *Subscription) clientError(e kafka.Error) {
	s.setErr(e.Error())
	s.c.handleClientError("consumer", e)
}

// working records that the subscription works (a message received, an
// offset committed): its last error and the connection's are recovered and
// the connection is up.
func (s *Subscription) working() {
	s.recoverErr()
	s.c.confirmUp()
}

// recoverErr marks the subscription's last error recovered.
func (s *Subscription) recoverErr() {
	if s.failing.Load() {
		s.smu.Lock()
		s.lastErr.recover(time.Now())
		s.failing.Store(false)
		s.smu.Unlock()
	}
}

// consumerPollMs is how long one Poll of an idle consumer blocks. Each
// return costs the Go runtime a wakeup of its own (the blocked cgo call
// holds a P that sysmon must take back), so an idle daemon wakes less with
// a longer wait; a stop waits for it at most this long.
const consumerPollMs = 500

// pollLoop serves the consumer: messages into the handler queue, rebalances,
// errors, statistics. It closes the consumer when told to stop.
func (s *Subscription) pollLoop(kc *kafka.Consumer, stop, done chan struct{}) {
	defer close(done)
	wait := time.NewTimer(time.Hour)
	defer wait.Stop()
	for {
		select {
		case <-stop:
			s.closeConsumer(kc)
			return
		default:
		}
		s.feed(kc)
		// Poll returns as soon as an event arrives; the timeout only bounds
		// how long a stop waits for it.
		timeout := consumerPollMs
		if len(s.pending) > 0 {
			// The handler is behind: wait until it takes a message (or
			// 100 ms pass), then serve the consumer without blocking.
			wait.Reset(100 * time.Millisecond)
			select {
			case <-s.space:
			case <-wait.C:
			case <-stop:
			}
			if !wait.Stop() {
				select {
				case <-wait.C:
				default:
				}
			}
			s.feed(kc)
			timeout = 0
		}
		ev := kc.Poll(timeout)
		s.checkWaitingTopics()
		if ev == nil {
			continue
		}
		switch e := ev.(type) {
		case *kafka.Message:
			if e.TopicPartition.Error != nil {
				s.clientError(toKafkaError(e.TopicPartition.Error))
				continue
			}
			s.received.Add(1)
			s.working()
			msg := convertMessage(e)
			key := tpKey{msg.Topic, msg.Partition}
			s.omu.Lock()
			ep, ok := s.owned[key]
			s.omu.Unlock()
			if !ok {
				s.discarded.Add(1)
				continue
			}
			msg.epoch = ep
			s.pending = append(s.pending, msg)
			s.feed(kc)
		case kafka.Error:
			if s.waitForTopic(e) {
				continue
			}
			s.clientError(e)
		case kafka.OffsetsCommitted:
			ok := false
			s.smu.Lock()
			for _, tp := range e.Offsets {
				if tp.Error == nil && tp.Offset >= 0 && tp.Topic != nil {
					s.committed[tpKey{*tp.Topic, tp.Partition}] = int64(tp.Offset)
					ok = true
				}
			}
			s.smu.Unlock()
			var ke kafka.Error
			switch {
			case e.Error == nil && ok:
				s.working()
			case e.Error == nil:
				// Nothing was committed.
			case errors.As(e.Error, &ke) && ke.Code() == kafka.ErrNoOffset:
				// Nothing new to commit: not a failure.
			default:
				s.commitErrors.Add(1)
				s.setErr(e.Error.Error())
			}
		case *kafka.Stats:
			s.c.handleStatsString(&s.stats, e.String())
		case kafka.OAuthBearerTokenRefresh:
			s.refreshToken(kc, e)
		}
	}
}

// refreshToken answers the consumer's request for a new OAUTHBEARER token
// in the unsecured JWT mode (the oidc method fetches its tokens inside
// librdkafka and never asks): a token made from sasl_oauthbearer_config as
// librdkafka makes it, or the failure, which librdkafka reports as an
// authentication error.
func (s *Subscription) refreshToken(kc *kafka.Consumer, e kafka.OAuthBearerTokenRefresh) {
	tok, err := unsecuredToken(e.Config, time.Now())
	if err == nil {
		err = kc.SetOAuthBearerToken(tok)
	}
	if err != nil {
		msg := s.c.mask("OAUTHBEARER token refresh: " + err.Error())
		if ferr := kc.SetOAuthBearerTokenFailure(msg); ferr != nil {
			s.clientError(kafka.NewError(kafka.ErrAuthentication, msg, false))
		}
	}
}

func toKafkaError(err error) kafka.Error {
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke
	}
	return kafka.NewError(kafka.ErrUnknown, err.Error(), false)
}

// feed moves pending messages into the handler queue, pausing the assigned
// partitions while the queue is full and resuming them once it drained.
func (s *Subscription) feed(kc *kafka.Consumer) {
	for len(s.pending) > 0 {
		select {
		case s.queue <- s.pending[0]:
			s.pending[0] = nil
			s.pending = s.pending[1:]
			continue
		default:
		}
		break
	}
	if len(s.pending) == 0 {
		s.pending = nil
	}
	s.smu.Lock()
	paused := s.paused
	assigned := s.assigned
	s.smu.Unlock()
	switch {
	case !paused && len(s.pending) >= cap(s.queue):
		if err := kc.Pause(assigned); err == nil {
			s.pauses.Add(1)
			s.setPaused(true)
		}
	case paused && len(s.pending) == 0 && len(s.queue) <= cap(s.queue)/2:
		if err := kc.Resume(assigned); err == nil {
			s.setPaused(false)
		}
	}
}

func (s *Subscription) setPaused(p bool) {
	s.smu.Lock()
	s.paused = p
	s.smu.Unlock()
}

// rebalance handles assignment changes under both protocols: Assign /
// Unassign under EAGER, IncrementalAssign / IncrementalUnassign under
// COOPERATIVE. On revocation it waits for the running handler, drops queued
// messages of the revoked partitions (their next owner fetches them again
// from the committed offset) and commits what was handled.
func (s *Subscription) rebalance(kc *kafka.Consumer, ev kafka.Event) error {
	proto := kc.GetRebalanceProtocol()
	s.smu.Lock()
	s.protocol = proto
	s.smu.Unlock()
	coop := proto == "COOPERATIVE"
	switch e := ev.(type) {
	case kafka.AssignedPartitions:
		s.rebalances.Add(1)
		s.omu.Lock()
		s.epoch++
		for _, tp := range e.Partitions {
			s.owned[tpKey{*tp.Topic, tp.Partition}] = s.epoch
		}
		s.omu.Unlock()
		var err error
		if coop {
			err = kc.IncrementalAssign(e.Partitions)
		} else {
			err = kc.Assign(e.Partitions)
		}
		if err != nil {
			s.c.setError(err)
			s.setErr("assign: " + err.Error())
			s.m.logger.Error("kafka assign failed", "subscription", s.name, "err", err)
		}
		s.smu.Lock()
		if coop {
			s.assigned = append(append([]kafka.TopicPartition(nil), s.assigned...), e.Partitions...)
		} else {
			s.assigned = append([]kafka.TopicPartition(nil), e.Partitions...)
		}
		paused := s.paused
		sortTPs(s.assigned)
		s.smu.Unlock()
		if paused {
			_ = kc.Pause(e.Partitions)
		}
		s.m.logger.Info("kafka partitions assigned", "subscription", s.name, "protocol", proto, "partitions", tpString(e.Partitions))
		if err == nil {
			// The group works: the connection is up. The subscription's
			// last error clears with partitions to consume.
			if len(e.Partitions) > 0 {
				s.recoverErr()
			}
			s.c.confirmUp()
		}
		s.topicsAssigned(e.Partitions)
	case kafka.RevokedPartitions:
		s.rebalances.Add(1)
		lost := kc.AssignmentLost()
		revoked := map[tpKey]bool{}
		for _, tp := range e.Partitions {
			revoked[tpKey{*tp.Topic, tp.Partition}] = true
		}
		// Wait for the running handler, then forget the revoked partitions
		// so no queued message of theirs is handled.
		s.hmu.Lock()
		s.omu.Lock()
		for k := range revoked {
			delete(s.owned, k)
		}
		s.omu.Unlock()
		var keep []*Message
	drain:
		for {
			select {
			case msg := <-s.queue:
				if revoked[tpKey{msg.Topic, msg.Partition}] {
					s.discarded.Add(1)
				} else {
					keep = append(keep, msg)
				}
			default:
				break drain
			}
		}
		for _, msg := range s.pending {
			if revoked[tpKey{msg.Topic, msg.Partition}] {
				s.discarded.Add(1)
			} else {
				keep = append(keep, msg)
			}
		}
		s.pending = keep
		if !lost && s.autoCommit() {
			if _, err := kc.Commit(); err != nil {
				var ke kafka.Error
				if !errors.As(err, &ke) || ke.Code() != kafka.ErrNoOffset {
					s.commitErrors.Add(1)
					s.setErr("commit on revocation: " + err.Error())
					s.m.lim.Warn("commit:"+s.name, "kafka commit on revocation failed", "subscription", s.name, "err", err)
				}
			} else {
				s.working()
			}
		}
		s.hmu.Unlock()
		var err error
		if coop {
			err = kc.IncrementalUnassign(e.Partitions)
		} else {
			err = kc.Unassign()
		}
		if err != nil {
			s.m.logger.Error("kafka unassign failed", "subscription", s.name, "err", err)
		}
		s.smu.Lock()
		if coop {
			var rest []kafka.TopicPartition
			for _, tp := range s.assigned {
				if !revoked[tpKey{*tp.Topic, tp.Partition}] {
					rest = append(rest, tp)
				}
			}
			s.assigned = rest
		} else {
			s.assigned = nil
		}
		s.smu.Unlock()
		s.m.logger.Info("kafka partitions revoked", "subscription", s.name, "protocol", proto, "lost", lost, "partitions", tpString(e.Partitions))
	}
	return nil
}

func (s *Subscription) autoCommit() bool {
	return s.c.cfg().EnableAutoCommit && !s.opts.ManualCommit
}

// closeConsumer leaves the group (the revocation commits) and destroys the
// consumer.
func (s *Subscription) closeConsumer(kc *kafka.Consumer) {
	s.hmu.Lock() // wait for the running handler (if any)
	s.omu.Lock()
	s.closing = true
	s.omu.Unlock()
	s.hmu.Unlock()
	s.kcMu.Lock()
	if err := kc.Close(); err != nil {
		s.m.logger.Warn("kafka consumer close", "subscription", s.name, "err", err)
	}
	s.kc.Store(nil)
	s.kcMu.Unlock()
	s.omu.Lock()
	for k := range s.owned {
		delete(s.owned, k)
	}
	s.omu.Unlock()
	s.pending = nil
	s.smu.Lock()
	s.assigned, s.paused = nil, false
	s.smu.Unlock()
}

// handlerLoop runs the handler for every queued message of a partition the
// subscription still owns.
func (s *Subscription) handlerLoop() {
	defer close(s.hDone)
	for {
		select {
		case <-s.ctx.Done():
			return
		case msg := <-s.queue:
			select {
			case s.space <- struct{}{}:
			default:
			}
			s.handle(msg)
		}
	}
}

func (s *Subscription) handle(msg *Message) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	s.omu.Lock()
	ep, ok := s.owned[tpKey{msg.Topic, msg.Partition}]
	stale := !ok || ep != msg.epoch || s.closing
	s.omu.Unlock()
	if stale {
		s.discarded.Add(1)
		return
	}
	if err := s.call(msg); err != nil {
		s.handlerErrors.Add(1)
		s.m.lim.Warn("handler:"+s.name, "kafka message handler failed", "subscription", s.name,
			"topic", msg.Topic, "partition", msg.Partition, "offset", msg.Offset, "err", err)
	}
	s.handled.Add(1)
	if s.autoCommit() {
		if kc := s.kc.Load(); kc != nil {
			topic := msg.Topic
			_, _ = kc.StoreOffsets([]kafka.TopicPartition{{Topic: &topic, Partition: msg.Partition, Offset: kafka.Offset(msg.Offset + 1)}})
		}
	}
}

func (s *Subscription) call(msg *Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return s.h(s.ctx, msg)
}

func convertMessage(e *kafka.Message) *Message {
	msg := &Message{Topic: topicOf(e.TopicPartition), Partition: e.TopicPartition.Partition,
		Offset: int64(e.TopicPartition.Offset), Key: e.Key, Value: e.Value, Timestamp: e.Timestamp}
	if len(e.Headers) > 0 {
		msg.Headers = make([]Header, len(e.Headers))
		for i, h := range e.Headers {
			msg.Headers[i] = Header{Key: h.Key, Value: h.Value}
		}
	}
	return msg
}

func sortTPs(tps []kafka.TopicPartition) {
	sort.Slice(tps, func(i, j int) bool {
		if *tps[i].Topic != *tps[j].Topic {
			return *tps[i].Topic < *tps[j].Topic
		}
		return tps[i].Partition < tps[j].Partition
	})
}

func tpString(tps []kafka.TopicPartition) string {
	b := make([]byte, 0, 16*len(tps))
	for i, tp := range tps {
		if i > 0 {
			b = append(b, ' ')
		}
		b = fmt.Appendf(b, "%s[%d]", *tp.Topic, tp.Partition)
	}
	return string(b)
}

// SubscriptionStatus is what "kafka show consumer" prints.
type SubscriptionStatus struct {
	Name, Connection, Group, Protocol, Client string
	Topics                                    []string
	Partitions                                []PartitionStatus
	Received, Handled, HandlerErrors          int64
	Discarded, Rebalances, Pauses             int64
	CommitErrors                              int64
	Queued                                    int
	Paused                                    bool

	// LastError is the subscription's last error, with its time and
	// whether it recovered (see LastError for what clears it).
	LastError LastError
	// WaitingTopics are subscribed topics that did not exist yet within
	// MissingTopicGrace of the start, sorted; WaitingSince is when the
	// first of them was reported missing.
	WaitingTopics []string
	WaitingSince  time.Time
}

// PartitionStatus is one assigned partition.
type PartitionStatus struct {
	Topic     string
	Partition int32
	Position  int64 // next offset to fetch, -1 unknown
	Committed int64 // -1 unknown
	High      int64 // high watermark, -1 unknown
	Lag       int64 // -1 unknown
}

// Status returns the subscription's state.
func (s *Subscription) Status() SubscriptionStatus {
	s.smu.Lock()
	st := SubscriptionStatus{Name: s.name, Connection: s.c.name, Group: s.group, Protocol: s.protocol,
		Client: s.clientName, Topics: s.topics, Paused: s.paused, LastError: s.lastErr}
	st.WaitingTopics, st.WaitingSince = s.waitingTopicsLocked()
	assigned := append([]kafka.TopicPartition(nil), s.assigned...)
	committed := make(map[tpKey]int64, len(s.committed))
	for k, v := range s.committed {
		committed[k] = v
	}
	s.smu.Unlock()
	st.Received, st.Handled, st.HandlerErrors = s.received.Load(), s.handled.Load(), s.handlerErrors.Load()
	st.Discarded, st.Rebalances, st.Pauses, st.CommitErrors = s.discarded.Load(), s.rebalances.Load(), s.pauses.Load(), s.commitErrors.Load()
	st.Queued = len(s.queue)
	s.kcMu.RLock()
	kc := s.kc.Load()
	var pos []kafka.TopicPartition
	if kc != nil && len(assigned) > 0 {
		pos, _ = kc.Position(assigned)
	}
	for _, tp := range assigned {
		ps := PartitionStatus{Topic: *tp.Topic, Partition: tp.Partition, Position: -1, Committed: -1, High: -1, Lag: -1}
		if c, ok := committed[tpKey{ps.Topic, ps.Partition}]; ok {
			ps.Committed = c
		}
		for _, p := range pos {
			if p.Topic != nil && *p.Topic == ps.Topic && p.Partition == ps.Partition && p.Offset >= 0 {
				ps.Position = int64(p.Offset)
			}
		}
		if kc != nil {
			if _, high, err := kc.GetWatermarkOffsets(ps.Topic, ps.Partition); err == nil && high >= 0 {
				ps.High = high
				switch {
				case ps.Position >= 0:
					ps.Lag = max(high-ps.Position, 0)
				case ps.Committed >= 0:
					ps.Lag = max(high-ps.Committed, 0)
				}
			}
		}
		st.Partitions = append(st.Partitions, ps)
	}
	s.kcMu.RUnlock()
	return st
}
