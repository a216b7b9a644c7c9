package reskafka

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/core"
)

// testSendTimeout bounds how long "kafka test send" waits for the delivery
// report.
var testSendTimeout = 10 * time.Second

func (m *Module) commands() []*cli.Command {
	connNames := func(args []string, prefix string) []string {
		if len(args) != 0 {
			return nil
		}
		return m.matching(m.Connections(), prefix)
	}
	return []*cli.Command{
		m.publishCommand(),
		{
			Path:    "kafka show status",
			Summary: "Show every Kafka connection with its state and counters",
			Usage:   "kafka show status",
			Run:     m.cliStatus,
		},
		{
			Path:     "kafka show connection",
			Summary:  "Show a Kafka connection's settings and runtime state",
			Usage:    "kafka show connection <name>",
			Run:      m.cliConnection,
			Complete: connNames,
		},
		{
			Path:    "kafka show consumers",
			Summary: "List Kafka consumers (subscriptions)",
			Usage:   "kafka show consumers",
			Run:     m.cliConsumers,
		},
		{
			Path:    "kafka show consumer",
			Summary: "Show one Kafka consumer: group, partitions, offsets, lag",
			Usage:   "kafka show consumer <name>",
			Run:     m.cliConsumer,
			Complete: func(args []string, prefix string) []string {
				if len(args) != 0 {
					return nil
				}
				return m.matching(m.subscriptionNames(), prefix)
			},
		},
		{
			Path:     "kafka test fatal",
			Summary:  "Raise a fatal error on a connection's producer (a drill of its rebuild)",
			Usage:    "kafka test fatal connection <name> [reason <text>]",
			Run:      m.cliTestFatal,
			Complete: m.completeKeywords("connection", "reason"),
		},
		{
			Path:     "kafka test send",
			Summary:  "Produce one message and wait for its delivery report",
			Usage:    "kafka test send connection <name> topic <topic> message <text> [key <key>]",
			Run:      m.cliTestSend,
			Complete: m.completeKeywords("connection", "topic", "message", "key"),
		},
	}
}

// completeKeywords completes a "keyword value keyword value ..." command
// line: the next keyword at a keyword's place, connection names after
// "connection", nothing for other values.
func (m *Module) completeKeywords(keywords ...string) func(args []string, prefix string) []string {
	return func(args []string, prefix string) []string {
		n := len(args)
		switch {
		case n%2 == 0 && n/2 < len(keywords):
			return []string{keywords[n/2]}
		case n%2 == 1 && args[n-1] == "connection":
			return m.matching(m.Connections(), prefix)
		}
		return nil
	}
}

func (m *Module) matching(names []string, prefix string) []string {
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

func (m *Module) subscriptionNames() []string {
	var out []string
	for _, s := range m.allSubscriptions() {
		out = append(out, s.name)
	}
	return out
}

func (m *Module) allSubscriptions() []*Subscription {
	m.mu.RLock()
	var conns []*conn
	for _, c := range m.conns {
		conns = append(conns, c)
	}
	for c := range m.removed {
		conns = append(conns, c)
	}
	m.mu.RUnlock()
	var out []*Subscription
	for _, c := range conns {
		out = append(out, c.subscriptions()...)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// ConnectionStatus is one row of "kafka show status".
type ConnectionStatus struct {
	Name, Brokers, State                                 string
	Produced, Delivered, Failed, Dropped, QueueFullDrops int64
	Queued                                               int
	Errors, Rebuilds                                     int64
	ProducerCreated                                      bool
	Consumers                                            int

	// LastError is the connection's last client error, with its time and
	// whether it recovered (the connection was confirmed up after it).
	LastError LastError

	// FatalErrors counts the fatal errors of the connection's producers,
	// FatalRebuilds the producers rebuilt after one, and HandedBack the
	// messages handed back failed with ErrProducerRebuilt.
	FatalErrors, FatalRebuilds, HandedBack int64
	// LastFatal is the last fatal error ("CODE_NAME: reason"); it is
	// recovered once a producer created after it delivered a message.
	// RebuiltAt is when the producer was rebuilt after it (zero: not yet).
	LastFatal LastError
	RebuiltAt time.Time
}

// Status returns the state and counters of a connection.
func (m *Module) Status(name string) (ConnectionStatus, error) {
	c, err := m.conn(name)
	if err != nil {
		return ConnectionStatus{}, err
	}
	return m.status(c), nil
}

func (m *Module) status(c *conn) ConnectionStatus {
	state, lastErr := c.getState()
	c.mu.Lock()
	prod := c.producer != nil
	nsubs := len(c.subs)
	c.mu.Unlock()
	c.smu.Lock()
	lastFatal, rebuiltAt := c.lastFatal, c.rebuiltAt
	c.smu.Unlock()
	return ConnectionStatus{
		Name: c.name, Brokers: m.brokersLabel(c.cfg()), State: state, LastError: lastErr,
		Produced: c.produced.Load(), Delivered: c.delivered.Load(), Failed: c.failed.Load(),
		Dropped: c.droppedTotal(), QueueFullDrops: c.dropped[dropQueueFull].Load(), Queued: c.queued(),
		Errors: c.errorsN.Load(), Rebuilds: c.rebuilds.Load(), ProducerCreated: prod, Consumers: nsubs,
		FatalErrors: c.fatalErrors.Load(), FatalRebuilds: c.rebuildsFatal.Load(), HandedBack: c.rebuiltFailed.Load(),
		LastFatal: lastFatal, RebuiltAt: rebuiltAt,
	}
}

func (m *Module) cliStatus(_ context.Context, w io.Writer, args []string) error {
	if err := cli.NoArgs(args); err != nil {
		return err
	}
	fmt.Fprintln(w, "Connections:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Name\tBrokers\tState\tProduced\tDelivered\tFailed\tDropped\tQueued")
	names := m.Connections()
	for _, n := range names {
		c, err := m.conn(n)
		if err != nil {
			continue
		}
		st := m.status(c)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", st.Name, st.Brokers, st.State,
			st.Produced, st.Delivered, st.Failed, st.Dropped, st.Queued)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d connection(s)\n", len(names))
	if m.embAddr != "" {
		fmt.Fprintf(w, "Embedded broker at %s: keeps nothing on disk; for demos and development, not production.\n", m.embAddr)
	}
	return nil
}

func (m *Module) cliConnection(_ context.Context, w io.Writer, args []string) error {
	if err := cli.ExactArgs(args, "<name>"); err != nil {
		return err
	}
	c, err := m.conn(args[0])
	if err != nil {
		fmt.Fprintf(w, "No connection named %s\n", args[0])
		return nil
	}
	cfg := c.cfg()
	st := m.status(c)
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	line := func(label, value string) { fmt.Fprintf(tw, "%s:\t%s\n", label, value) }
	line("Name", c.name)
	for _, kv := range cfg.settings() {
		if kv[0] == "Brokers" {
			kv[1] = m.brokersLabel(cfg)
		}
		line(kv[0], kv[1])
	}
	if cfg.EmbeddedPort >= 0 {
		line("Embedded broker", m.embAddr+" (keeps nothing on disk; for demos and development, not production)")
	}
	line("State", st.State)
	yes := map[bool]string{true: "yes", false: "no"}
	c.mu.Lock()
	p := c.producer
	holds := c.holds
	c.mu.Unlock()
	line("Producer created", yes[p != nil])
	if p != nil {
		p.mu.RLock()
		if p.inner != nil {
			line("Producer client", p.name+" (since "+p.created.Format(time.RFC3339)+")")
		}
		p.mu.RUnlock()
	}
	line("Producer holders", strconv.Itoa(holds))
	line("Consumers", strconv.Itoa(st.Consumers))
	line("Produced", strconv.FormatInt(st.Produced, 10))
	line("Delivered", strconv.FormatInt(st.Delivered, 10))
	line("Failed", strconv.FormatInt(st.Failed, 10))
	drops := make([]string, 0, numDrops)
	for i := range c.dropped {
		drops = append(drops, fmt.Sprintf("%s %d", dropReasons[i], c.dropped[i].Load()))
	}
	line("Dropped", fmt.Sprintf("%d (%s)", st.Dropped, strings.Join(drops, ", ")))
	line("Queued", strconv.Itoa(st.Queued))
	line("Client errors", strconv.FormatInt(st.Errors, 10))
	line("Rebuilds (reload)", strconv.FormatInt(st.Rebuilds, 10))
	if le := st.LastError.String(); le != "" {
		line("Last error", le)
	} else {
		line("Last error", "(none)")
	}
	line("Fatal errors", strconv.FormatInt(st.FatalErrors, 10))
	line("Producer rebuilds (fatal)", strconv.FormatInt(st.FatalRebuilds, 10))
	line("Handed back (rebuilt)", strconv.FormatInt(st.HandedBack, 10))
	if lf := st.LastFatal.String(); lf != "" {
		if !st.RebuiltAt.IsZero() {
			lf += fmt.Sprintf("; producer rebuilt %s later", st.RebuiltAt.Sub(st.LastFatal.At).Round(time.Millisecond))
		}
		line("Last fatal error", lf)
	} else {
		line("Last fatal error", "(none)")
	}
	if cfg.StatisticsIntervalMs == 0 {
		line("Statistics", "off (set statistics_interval_ms)")
	} else {
		line("Statistics", fmt.Sprintf("every %d ms", cfg.StatisticsIntervalMs))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if cfg.StatisticsIntervalMs == 0 {
		return nil
	}
	if p != nil {
		if err := writeStats(w, statsClientProducer, &p.stats); err != nil {
			return err
		}
	}
	for _, s := range c.subscriptions() {
		if err := writeStats(w, "consumer "+s.name, &s.stats); err != nil {
			return err
		}
	}
	return nil
}

func (m *Module) cliConsumers(_ context.Context, w io.Writer, args []string) error {
	if err := cli.NoArgs(args); err != nil {
		return err
	}
	subs := m.allSubscriptions()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Name\tConnection\tGroup\tTopics\tPartitions\tReceived\tHandled\tErrors\tLag")
	for _, s := range subs {
		st := s.Status()
		lag := int64(0)
		known := false
		for _, p := range st.Partitions {
			if p.Lag >= 0 {
				lag += p.Lag
				known = true
			}
		}
		lagS := "unknown"
		if known {
			lagS = strconv.FormatInt(lag, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\n", st.Name, st.Connection, st.Group,
			strings.Join(st.Topics, ","), len(st.Partitions), st.Received, st.Handled, st.HandlerErrors, lagS)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d consumer(s)\n", len(subs))
	return nil
}

func (m *Module) cliConsumer(_ context.Context, w io.Writer, args []string) error {
	if err := cli.ExactArgs(args, "<name>"); err != nil {
		return err
	}
	var s *Subscription
	for _, x := range m.allSubscriptions() {
		if x.name == args[0] {
			s = x
		}
	}
	if s == nil {
		fmt.Fprintf(w, "No consumer named %s\n", args[0])
		return nil
	}
	st := s.Status()
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	line := func(label, value string) { fmt.Fprintf(tw, "%s:\t%s\n", label, value) }
	line("Name", st.Name)
	line("Connection", st.Connection)
	line("Group", st.Group)
	line("Topics", strings.Join(st.Topics, ", "))
	proto := st.Protocol
	if proto == "" {
		proto = "(not joined yet)"
	}
	line("Rebalance protocol", proto)
	assignor := s.opts.Assignor
	if assignor == "" {
		assignor = "(librdkafka default)"
	}
	line("Assignor", assignor)
	line("Commits", map[bool]string{true: "automatic (after the handler returns)", false: "manual"}[s.autoCommit()])
	line("Client", st.Client)
	line("Messages received", strconv.FormatInt(st.Received, 10))
	line("Messages handled", strconv.FormatInt(st.Handled, 10))
	line("Handler errors", strconv.FormatInt(st.HandlerErrors, 10))
	line("Handler queue", fmt.Sprintf("%d/%d", st.Queued, cap(s.queue)))
	line("Paused (handler behind)", map[bool]string{true: "yes", false: "no"}[st.Paused])
	line("Pauses", strconv.FormatInt(st.Pauses, 10))
	line("Rebalances", strconv.FormatInt(st.Rebalances, 10))
	line("Discarded on revocation", strconv.FormatInt(st.Discarded, 10))
	line("Commit errors", strconv.FormatInt(st.CommitErrors, 10))
	if len(st.WaitingTopics) > 0 {
		line("Waiting for topics", fmt.Sprintf("%s (not created yet, since %s; a warning if still missing %s after the start)",
			strings.Join(st.WaitingTopics, ", "), st.WaitingSince.Format(time.TimeOnly), s.grace))
	}
	if le := st.LastError.String(); le != "" {
		line("Last error", le)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "Assigned partitions:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  Topic\tPartition\tPosition\tCommitted\tHigh\tLag")
	num := func(v int64) string {
		if v < 0 {
			return "-"
		}
		return strconv.FormatInt(v, 10)
	}
	for _, p := range st.Partitions {
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\n", p.Topic, p.Partition, num(p.Position), num(p.Committed), num(p.High), num(p.Lag))
	}
	return tw.Flush()
}

func (m *Module) cliTestSend(ctx context.Context, w io.Writer, args []string) error {
	for i, kv := range [][2]string{{"connection", "<name>"}, {"topic", "<topic>"}, {"message", "<text>"}} {
		if err := cli.Keyword(args, 2*i, kv[0], kv[1]); err != nil {
			return err
		}
	}
	name, topic := args[1], args[3]
	rest := args[5:]
	var key []byte
	if len(rest) >= 3 && rest[len(rest)-2] == "key" {
		key = []byte(rest[len(rest)-1])
		rest = rest[:len(rest)-2]
	}
	text := strings.Join(rest, " ")
	c, err := m.conn(name)
	if err != nil {
		return err
	}
	p, err := m.Producer(name)
	if err != nil {
		return fmt.Errorf("connection %s: %s", name, c.mask(err.Error()))
	}
	defer p.Release()
	done := make(chan Delivery, 1)
	if err := p.Produce(topic, key, []byte(text), nil, func(d Delivery) { done <- d }); err != nil {
		return fmt.Errorf("message not queued: %s", c.mask(err.Error()))
	}
	timer := time.NewTimer(testSendTimeout)
	defer timer.Stop()
	select {
	case d := <-done:
		if d.Err != nil {
			return fmt.Errorf("message delivery to %s failed: %s (%s)", topic, c.mask(d.Err.Error()), d.Status)
		}
		fmt.Fprintf(w, "Message delivered to %s [%d] at offset %d\n", d.Topic, d.Partition, d.Offset)
	case <-timer.C:
		state, lastErr := c.getState()
		le := ""
		if lastErr.Message != "" {
			le = ", last error: " + lastErr.String()
		}
		return fmt.Errorf("message not delivered within %s; it stays queued (connection state %s%s)", testSendTimeout, state, le)
	case <-ctx.Done():
		return errors.New("interrupted; the message stays queued")
	}
	return nil
}

// cliTestFatal raises a fatal error (OUT_OF_ORDER_SEQUENCE_NUMBER, through
// librdkafka's test hook) on the connection's producer, which res_kafka
// then rebuilds; it does not create a producer.
func (m *Module) cliTestFatal(_ context.Context, w io.Writer, args []string) error {
	if err := cli.Keyword(args, 0, "connection", "<name>"); err != nil {
		return err
	}
	reason := "raised by kafka test fatal"
	if len(args) > 2 {
		if err := cli.Keyword(args, 2, "reason", "<text>"); err != nil {
			return err
		}
		reason = strings.Join(args[3:], " ")
	}
	c, err := m.conn(args[1])
	if err != nil {
		return err
	}
	c.mu.Lock()
	p := c.producer
	c.mu.Unlock()
	if p == nil {
		return fmt.Errorf("connection %s has no producer yet (nothing to fail)", c.name)
	}
	if err := p.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, reason); err != nil {
		return fmt.Errorf("connection %s: %s", c.name, c.mask(err.Error()))
	}
	fmt.Fprintf(w, "Fatal error raised on the producer of connection %s; res_kafka rebuilds it and hands back what it did not deliver (see kafka show connection %s)\n", c.name, c.name)
	return nil
}

// Ready implements core.Readier: every connection a module uses (one with a
// producer or a consumer) is up.
func (m *Module) Ready() (bool, string) {
	var down []string
	for _, name := range m.Connections() {
		c, err := m.conn(name)
		if err != nil {
			continue
		}
		st := m.status(c)
		if (st.ProducerCreated || st.Consumers > 0) && st.State != stateUp {
			down = append(down, fmt.Sprintf("connection %s is %s", name, st.State))
		}
	}
	if len(down) > 0 {
		return false, strings.Join(down, "; ")
	}
	return true, ""
}

var _ core.Readier = (*Module)(nil)
