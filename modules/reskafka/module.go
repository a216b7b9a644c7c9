// Package reskafka is res_kafka, the resource module every Kafka user of
// switchboard depends on: named connections read from kafka.conf, one lazily
// created producer per connection shared by every module that produces
// through it, one consumer per subscription (Subscribe: each has its own
// group membership, offsets and handler), a short-lived admin client per
// admin request, one poll goroutine, a produce / consume / admin Go API and
// the "kafka ..." CLI.
//
// # Goroutines
//
// Producers are res_kafka's own thin cgo layer on the librdkafka that
// confluent-kafka-go links (rdk.go). Produce and ProduceBatch copy messages
// into the producer's stage (stage.go) and return; one drainer goroutine
// per producer, locked to its thread, hands the staged batches to
// librdkafka with one cgo call per chunk (a large batch that finds the stage
// idle is handed over by its caller). res_kafka's single poll goroutine
// serves every producer's librdkafka event queue (delivery reports, read in
// C in batches: successes without a callback are only counted; errors,
// statistics, log lines) and the log channel of the confluent-kafka-go
// consumers and admin clients: at once when librdkafka signals events
// through a pipe or a log line arrives, and otherwise not at all (a
// once-a-second pass is the safety net; without the pipe it polls every
// poll_interval_ms, default 100 ms). It runs delivery callbacks and keeps
// state and counters.
//
// Every subscription has its own poll goroutine (serving its consumer queue
// and rebalances) and its own handler goroutine fed through a bounded queue
// (handler_queue, default 1024). When that queue fills, the subscription
// pauses its partitions and keeps polling, so a slow handler neither leaves
// the group (max.poll.interval.ms) nor delays delivery reports of producers
// or messages of other subscriptions. Consumers are not served by the shared
// poll goroutine because a revocation must wait for the message a handler is
// processing: in a shared loop one slow handler would delay everybody.
//
// # Topics that do not exist yet
//
// A subscription may start before its topic exists: on a fresh deployment
// the topic's producer (cdr_kafka, the policy publisher, "kafka publish")
// creates it moments later. For MissingTopicGrace (30 s) after Subscribe,
// librdkafka's "Subscribed topic not available: <topic>: Broker: Unknown
// topic or partition" is a waiting state, not an error: it is logged once at
// INFO ("kafka subscription waiting for topic to be created"), leaves the
// connection's state, error count and last error alone, and "kafka show
// consumer" shows "Waiting for topics: <topic>" (SubscriptionStatus.
// WaitingTopics). The wait ends when partitions of the topic are assigned or
// a metadata request finds the topic (asked after an assignment that left
// topics waited for, and when the grace period ends). A topic still missing
// when the grace period ends is a client error like any other: a warning
// (rate-limited), the connection's state and last error, the subscription's
// last error. Subscriptions do not create their topics (librdkafka's
// allow.auto.create.topics is false for consumers unless kafka.conf passes
// it through).
//
// # Last errors
//
// Every connection and subscription keeps its last error with its time
// (ConnectionStatus.LastError, SubscriptionStatus.LastError, "kafka show
// connection", "kafka show consumer"), shown as "(at <time>, still failing)"
// until the condition clears and as "(at <time>, recovered at <time>)"
// after. A subscription's error clears with a later successful partition
// assignment, message received or offset commit; a connection's when the
// connection is confirmed up after it (a delivery, an assignment, a message
// received or committed, a broker UP in the statistics). See LastError.
//
// # Fatal errors
//
// librdkafka raises a fatal error when a producer can no longer keep its
// guarantees (the idempotent producer's out-of-order sequence number or a
// fenced producer; rd_kafka_fatal_error); the instance is then dead. res_kafka
// heals it. It logs the error once, at ERROR, with its code and reason
// ("kafka producer fatal error; rebuilding the producer", code=..., reason=...,
// secrets masked), counts it and records it as the connection's last error
// and last fatal error (state "fatal"). At once (in about a millisecond; a
// failed attempt is retried within a second) it creates a new librdkafka
// producer from the connection's configuration behind the same *Producer
// handle: holders keep using the handle, and messages accepted but not yet
// handed to librdkafka go to the new producer. Every message the old
// producer had not delivered (its queue, which librdkafka purges, and what
// is still in flight after request_timeout_ms plus a second) is handed back
// to its owner through the ordinary failure path: its delivery callback
// gets a Delivery whose Err wraps ErrProducerRebuilt (test it with
// errors.Is; it also wraps the message's own kafka.Error) with librdkafka's
// Persistence (NotPersisted: re-producing it is safe; PossiblyPersisted: it
// may be stored already). An owner that wants the message delivered
// re-produces it through the same handle (cdr_kafka in spool mode spools
// it, as any failed message, and replays it). Such messages count as
// failed and, apart, as handed back. The connection goes to "connecting",
// then "up" as the new producer works; the last fatal error shows
// "recovered at" once a producer created after it delivered a message.
// "kafka show connection" shows the fatal errors, the rebuilds, the
// messages handed back and the last fatal error with its time; the metrics
// are switchboard_kafka_fatal_errors_total{connection},
// switchboard_kafka_producer_rebuilds_total{connection,reason="fatal"|"reload"}
// and switchboard_kafka_delivery_failed_rebuilt_total{connection}. "kafka
// test fatal" (Producer.TestFatalError) raises one on purpose, through
// librdkafka's own test hook. A consumer's fatal error is logged and
// recorded but its subscription is not rebuilt.
//
// # Statistics
//
// With statistics_interval_ms > 0 every client (the connection's producer,
// each subscription's consumer) keeps the latest librdkafka statistics
// document it received (field names of librdkafka's STATISTICS.md), decoded
// in place without allocating (stats.go), and exports it as metrics labelled
// connection and client ("producer" or "consumer:<subscription>") and then
// broker or topic and partition only: per broker switchboard_kafka_broker_up
// {state}, _broker_rtt_seconds{quantile="0.5"|"0.99"}, _broker_rtt_avg_seconds
// (over the last interval; absent when no request completed),
// _broker_outbuf_requests, _broker_waitresp_requests, _broker_tx_errors_total
// and _broker_rx_errors_total; per partition
// switchboard_kafka_partition_queue_messages{queue="msgq"|"xmit_msgq"} and,
// for consumers, _partition_consumer_lag_messages. Bootstrap and logical
// brokers, librdkafka's internal partition -1 and partitions the client
// neither produced to nor consumes are left out, and whatever a new document
// no longer lists disappears from the metrics. "kafka show connection"
// prints the same figures, a table of brokers and one of partitions per
// client. A broker UP in the statistics confirms the connection up.
//
// # Reload
//
// Unchanged connections are untouched. A changed connection gets a new
// librdkafka producer behind the same *Producer handle; the old one is
// flushed (up to message_timeout_ms) before it is closed, so no message
// Produce accepted is lost (ordering between the old and the new producer is
// not kept). Subscriptions of a changed connection are restarted. A removed
// connection is closed once no module holds it (Producer.Release,
// Subscription.Close).
package reskafka

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/lograte"
)

func init() {
	core.Register(Info())
}

// Info returns res_kafka's registration record.
func Info() core.ModuleInfo {
	return core.ModuleInfo{
		Name:        Name,
		Description: "Kafka connections: shared producers, consumers and admin for other modules",
		Priority:    core.PriorityResource,
		Support:     core.SupportCore,
		Configs:     []core.ConfigFile{{Name: ConfigFile, New: func() any { return new(Config) }}},
		New:         func() core.Module { return new(Module) },
	}
}

// Module is the running res_kafka. A module that lists reskafka.Name in its
// Requires gets it with core.Dep[*reskafka.Module](ctx, reskafka.Name).
type Module struct {
	logger *slog.Logger
	lim    *lograte.Limiter
	ctx    context.Context

	mu      sync.RWMutex
	cfg     *Config
	conns   map[string]*conn
	removed map[*conn]struct{} // removed by reload, still held
	subSeq  map[string]int

	poll        *poller
	clientNames sync.Map // librdkafka instance name -> *conn

	emb     embeddedBroker
	embAddr string

	logLines        atomic.Int64
	callbackPanics  atomic.Int64
	ensureOK        atomic.Int64
	ensureFailed    atomic.Int64
	stopped         atomic.Bool
	stopFlushBy     atomic.Int64 // unix nanoseconds: retiring producers give up then
	retiring        sync.WaitGroup
	lastUndelivered atomic.Int64
}

var (
	_ core.Starter       = (*Module)(nil)
	_ core.Stopper       = (*Module)(nil)
	_ core.Reloader      = (*Module)(nil)
	_ core.Commander     = (*Module)(nil)
	_ core.StopTimeouter = (*Module)(nil)
)

// Start refuses a linked librdkafka outside the versions res_kafka's C
// declarations are written for, then starts the embedded broker if a
// connection names it and the poll goroutine. No client is created yet and
// nothing waits for a broker.
func (m *Module) Start(ctx *core.Context) error {
	m.logger = ctx.Logger
	m.lim = lograte.New(m.logger, 10*time.Second)
	m.ctx = context.WithoutCancel(ctx)
	cfg := core.Config[*Config](ctx)
	if !cfg.General.Enabled {
		return core.Decline("%s: [general] enabled = no", ConfigFile)
	}
	if err := checkRdkafkaVersion(rdkafkaLinkedVersion()); err != nil {
		return err
	}
	if cfg.Missing {
		m.logger.Warn("no kafka.conf; running with no connections", "path", ctx.ConfigPath(ConfigFile))
	}
	if err := m.ensureEmbedded(cfg); err != nil {
		return err
	}
	m.poll = newPoller(m, time.Duration(cfg.General.PollIntervalMs)*time.Millisecond)
	m.poll.start()
	m.mu.Lock()
	m.cfg = cfg
	m.conns = map[string]*conn{}
	m.removed = map[*conn]struct{}{}
	m.subSeq = map[string]int{}
	for _, name := range cfg.Order {
		c := newConn(m, cfg.Connections[name], m.bootstrapFor(cfg.Connections[name]))
		m.conns[name] = c
		m.logger.Info("kafka connection configured", "connection", name, "brokers", m.brokersLabel(c.cfg()))
	}
	m.mu.Unlock()
	return nil
}

// ensureEmbedded starts the embedded broker when the configuration needs it
// and it is not running.
func (m *Module) ensureEmbedded(cfg *Config) error {
	port, used := cfg.EmbeddedPort()
	retention := int64(cfg.General.EmbeddedRetentionMB) << 20
	if m.emb != nil {
		m.emb.SetRetention(retention)
	}
	if !used || m.emb != nil {
		return nil
	}
	b, err := startEmbedded(port, retention)
	if err != nil {
		return fmt.Errorf("starting the embedded Kafka broker on port %d: %w", port, err)
	}
	m.emb, m.embAddr = b, b.Addr()
	m.logger.Warn("embedded Kafka broker started: keeps nothing on disk, for demos and development, not production",
		"address", m.embAddr, "retention_mb", cfg.General.EmbeddedRetentionMB)
	return nil
}

func (m *Module) bootstrapFor(c *Connection) string {
	if c.EmbeddedPort >= 0 {
		return m.embAddr
	}
	return c.Brokers
}

func (m *Module) brokersLabel(c *Connection) string {
	if c.EmbeddedPort >= 0 {
		if m.emb != nil {
			budget, kept, trimmed := m.emb.Retention()
			return fmt.Sprintf("embedded (%s; keeps the newest %d MB: %.1f MB kept, %d older records dropped)",
				m.embAddr, budget>>20, float64(kept)/(1<<20), trimmed)
		}
		return "embedded (" + m.embAddr + ")"
	}
	return c.Brokers
}

// Stop closes every subscription (leaving its group), flushes every producer
// for up to shutdown_flush_timeout_ms (5 s) or until ctx is done, logs how
// many messages were not delivered, and stops the embedded broker last.
func (m *Module) Stop(ctx context.Context) error {
	if m.poll == nil || !m.stopped.CompareAndSwap(false, true) {
		return nil
	}
	m.mu.Lock()
	var all []*conn
	for _, c := range m.conns {
		all = append(all, c)
	}
	for c := range m.removed {
		all = append(all, c)
	}
	flush := time.Duration(m.cfg.General.ShutdownFlushTimeoutMs) * time.Millisecond
	m.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		if d := time.Until(dl) - 500*time.Millisecond; d < flush {
			flush = max(d, 0)
		}
	}
	m.stopFlushBy.Store(time.Now().Add(flush).UnixNano())
	for _, c := range all {
		c.closed.Store(true)
	}
	var wg sync.WaitGroup
	for _, c := range all {
		for _, s := range c.subscriptions() {
			wg.Add(1)
			go func() { defer wg.Done(); _ = s.Close() }()
		}
	}
	// A handler that does not return must not hold the producers' flush
	// past the stop deadline: the subscriptions go on closing behind it.
	if err := core.Within(ctx, func() error { wg.Wait(); return nil }); err != nil {
		m.logger.Warn("kafka subscriptions still closing at the stop deadline", "err", err)
	}
	var total atomic.Int64
	var closing sync.WaitGroup
	for _, c := range all {
		closing.Add(1)
		go func() {
			defer closing.Done()
			c.mu.Lock()
			p := c.producer
			c.mu.Unlock()
			if p == nil {
				return
			}
			left := p.close(flush)
			total.Add(int64(left))
			if left > 0 {
				m.logger.Error("kafka messages not delivered at unload", "connection", c.name, "undelivered", left)
			} else {
				m.logger.Info("kafka producer flushed and closed", "connection", c.name,
					"delivered", c.delivered.Load(), "failed", c.failed.Load())
			}
		}()
	}
	closing.Wait()
	m.retiring.Wait()
	m.lastUndelivered.Store(total.Load())
	if n := total.Load(); n > 0 {
		m.logger.Error("res_kafka unloaded with undelivered messages", "undelivered", n)
	} else {
		m.logger.Info("res_kafka unloaded; every queued message delivered")
	}
	m.poll.shutdown()
	if m.emb != nil {
		m.emb.Close()
		m.logger.Info("embedded Kafka broker stopped", "address", m.embAddr)
	}
	return nil
}

// StopTimeout implements core.StopTimeouter: the producers' shutdown flush
// (shutdown_flush_timeout_ms) and a second to close the clients.
func (m *Module) StopTimeout() time.Duration {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.cfg == nil {
		return 0
	}
	return time.Duration(m.cfg.General.ShutdownFlushTimeoutMs)*time.Millisecond + time.Second
}

// Undelivered returns how many messages the last Stop could not deliver.
func (m *Module) Undelivered() int64 { return m.lastUndelivered.Load() }

// Reload switches to the new kafka.conf (the host keeps the running
// configuration when the file is invalid).
func (m *Module) Reload(ctx *core.Context) error {
	cfg := core.Config[*Config](ctx)
	if !cfg.General.Enabled {
		return fmt.Errorf("%s: [general] enabled = no; unload the module instead (configuration kept)", ConfigFile)
	}
	return m.apply(cfg)
}

// apply switches to a new validated configuration.
func (m *Module) apply(cfg *Config) error {
	if port, used := cfg.EmbeddedPort(); used && m.emb != nil && port != 0 {
		if want := fmt.Sprintf(":%d", port); len(m.embAddr) < len(want) || m.embAddr[len(m.embAddr)-len(want):] != want {
			return fmt.Errorf("the embedded broker runs at %s; moving it to port %d needs a restart (configuration kept)", m.embAddr, port)
		}
	}
	if err := m.ensureEmbedded(cfg); err != nil {
		return err
	}
	m.mu.Lock()
	old := m.conns
	m.cfg = cfg
	next := map[string]*conn{}
	var changed, gone []*conn
	for _, name := range cfg.Order {
		nc := cfg.Connections[name]
		if c, ok := old[name]; ok {
			next[name] = c
			if !c.cfg().equal(nc) {
				c.setConfig(nc, m.bootstrapFor(nc))
				changed = append(changed, c)
			}
			continue
		}
		next[name] = newConn(m, nc, m.bootstrapFor(nc))
		m.logger.Info("kafka connection added", "connection", name, "brokers", m.brokersLabel(nc))
	}
	for name, c := range old {
		if _, ok := next[name]; !ok {
			gone = append(gone, c)
		}
	}
	m.conns = next
	m.mu.Unlock()

	for _, c := range changed {
		m.logger.Info("kafka connection changed; rebuilding its clients after flushing", "connection", c.name)
		c.rebuilds.Add(1)
		c.mu.Lock()
		p := c.producer
		subs := c.subscriptionsLocked()
		c.mu.Unlock()
		if p != nil {
			flush := time.Duration(c.cfg().MessageTimeoutMs)*time.Millisecond + 5*time.Second
			if err := p.swap(flush); err != nil {
				m.logger.Error("kafka producer rebuild failed; keeping the old one", "connection", c.name, "err", err)
			} else {
				c.reloadSwaps.Add(1)
			}
		}
		for _, s := range subs {
			if err := s.restart(); err != nil {
				m.logger.Error("kafka subscription restart failed", "connection", c.name, "subscription", s.name, "err", err)
			}
		}
	}
	for _, c := range gone {
		c.mu.Lock()
		held := c.holds > 0 || len(c.subs) > 0
		c.removed = true
		c.mu.Unlock()
		if held {
			m.mu.Lock()
			m.removed[c] = struct{}{}
			m.mu.Unlock()
			m.logger.Warn("kafka connection removed from kafka.conf but still held; closing it when released", "connection", c.name)
			continue
		}
		m.logger.Info("kafka connection removed", "connection", c.name)
		m.closeConn(c)
	}
	return nil
}

// closeRemoved closes a removed connection once its last holder let go.
func (m *Module) closeRemoved(c *conn) {
	m.mu.Lock()
	_, ok := m.removed[c]
	delete(m.removed, c)
	m.mu.Unlock()
	if ok {
		go m.closeConn(c)
	}
}

func (m *Module) closeConn(c *conn) {
	c.closed.Store(true)
	c.mu.Lock()
	p := c.producer
	c.mu.Unlock()
	if p != nil {
		flush := time.Duration(c.cfg().MessageTimeoutMs) * time.Millisecond
		if left := p.close(flush); left > 0 {
			m.logger.Error("kafka messages not delivered closing a removed connection", "connection", c.name, "undelivered", left)
		}
	}
}

// conn returns a configured connection.
func (m *Module) conn(name string) (*conn, error) {
	m.mu.RLock()
	c := m.conns[name]
	m.mu.RUnlock()
	if c == nil {
		return nil, fmt.Errorf("no connection named %s", name)
	}
	return c, nil
}

func (m *Module) connByClient(client string) *conn {
	if v, ok := m.clientNames.Load(client); ok {
		return v.(*conn)
	}
	return nil
}

// Connections returns the configured connection names, sorted.
func (m *Module) Connections() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.conns))
	for n := range m.conns {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// EmbeddedAddr returns the embedded broker's address, "" when it is not
// running.
func (m *Module) EmbeddedAddr() string { return m.embAddr }

// Producer returns the connection's shared producer, creating it on first
// use. Every caller asking for the same connection gets the same handle;
// the handle stays valid across reloads.
func (m *Module) Producer(connName string) (*Producer, error) {
	if m.stopped.Load() {
		return nil, fmt.Errorf("res_kafka: %w", ErrClosed)
	}
	c, err := m.conn(connName)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.producer == nil {
		p := newProducerHandle(c)
		if _, err := p.ensure(); err != nil {
			return nil, err
		}
		c.producer = p
		m.logger.Info("kafka producer created", "connection", c.name, "client", p.name)
	}
	c.holds++
	return c.producer, nil
}

// callback runs a delivery callback, containing a panic.
func (m *Module) callback(c *conn, cb func(Delivery), d Delivery) {
	defer func() {
		if r := recover(); r != nil {
			m.callbackPanics.Add(1)
			m.lim.Error("cbpanic:"+c.name, "kafka delivery callback panicked", "connection", c.name, "panic", fmt.Sprint(r))
		}
	}()
	cb(d)
}

// Commands implements core.Commander.
func (m *Module) Commands() []*cli.Command { return m.commands() }

func (c *conn) subscriptions() []*Subscription {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subscriptionsLocked()
}

func (c *conn) subscriptionsLocked() []*Subscription {
	out := make([]*Subscription, 0, len(c.subs))
	for s := range c.subs {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}
