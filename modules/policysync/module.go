// Package policysync is policy_sync: the Kafka consumer that keeps
// res_policy in step with the policy feed (the seed "Module 20" behaviour).
//
// # Messages
//
// One JSON object per Kafka message, the same JSON-lines format "policy load"
// and res_policy's seed_file read (see respolicy.ParseMessage):
// BEGIN_SYNC opens a pending table for a group (invisible to readers),
// ADD_DOMAIN goes to the pending table when a sync is open and to the active
// policy otherwise, REMOVE_DOMAIN removes from both, SYNC_COMPLETE builds the
// pending table and swaps it in atomically, ADD_MALICIOUS updates the global
// malicious table. Malformed JSON, unknown types, missing or invalid fields,
// SYNC_COMPLETE without BEGIN_SYNC and a second BEGIN_SYNC for an open group
// are counted per reason (switchboard_policy_rejected_total{source="kafka"}),
// logged rate-limited and skipped; the consumer goes on.
//
// # Offsets and the consumer group
//
// Offsets are committed by hand (enable.auto.commit=false), synchronously,
// and only at a SYNC_COMPLETE, and only on a partition no still-open sync
// has used (Feeder), so a committed offset always points just past a
// SYNC_COMPLETE and a consumer that resumes from it replays any incomplete
// sync from its BEGIN_SYNC.
//
// Tables live in memory, so a switchboard that restarts must read the whole
// topic again, never resume from a committed offset. And every instance must
// receive every partition, never a share. Both follow from the consumer
// group policy_sync uses: "<group_id>.<store id>", where group_id defaults
// to "switchboard-policy-<hostname>-<8 hex digits of a hash of the config
// directory>" (unique per instance) and the store id is a random token
// res_policy chooses when it starts (its tables are new). So:
//
//   - a restart (or a kill -9) gets a new group and reads from the earliest
//     offset: the tables are rebuilt from the whole topic, and end exactly as
//     a clean run ends;
//   - a restart of the consumer alone (policy_sync reload or unload/load, a
//     consumer restarted by res_kafka) keeps the group and resumes from the
//     last commit; the messages it re-reads that the store already holds are
//     skipped by offset (the Feeder, kept with the store, remembers them).
//
// Old groups are left to the broker's offsets.retention.minutes (7 days by
// default). Unload closes the consumer, which leaves the group at once.
//
// # The topic
//
// policy_sync never creates the feed topic: the provisioning system that
// publishes the feed owns it and its settings (partitions, retention, no
// compaction; see docs/DEPLOYMENT.md). A topic that does not exist yet when
// policy_sync starts is waited for (res_kafka's MissingTopicGrace, 30 s):
// "policy show sync" says "waiting for topic <topic> to be created" and
// nothing is logged as a problem; once it is created the consumer reads it
// from the earliest offset. Still missing after that, it is a warning and
// the consumer's last error, shown in "policy show sync" exactly as
// "kafka show consumer policy_sync" shows it (with its time, and as
// recovered once partitions are assigned, a message arrives or a commit
// succeeds).
package policysync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/lograte"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
)

// Name is the module's name.
const Name = "policy_sync"

// ConfigFile is the module's configuration file.
const ConfigFile = "policy_sync.conf"

// Info returns the module's registration.
func Info() core.ModuleInfo {
	return core.ModuleInfo{
		Name:        Name,
		Description: "Kafka consumer of the policy feed: pending syncs, atomic swaps, commits at SYNC_COMPLETE",
		Priority:    core.PriorityApplication,
		Requires:    []string{reskafka.Name, respolicy.Name},
		Support:     core.SupportCore,
		Configs:     []core.ConfigFile{{Name: ConfigFile, New: func() any { return new(File) }}},
		New:         func() core.Module { return new(Module) },
	}
}

func init() { core.Register(Info()) }

// missingTopicGrace is how long the consumer waits for a feed topic that
// does not exist yet before res_kafka reports it (0: reskafka.
// MissingTopicGrace); tests shorten it.
var missingTopicGrace time.Duration

// File is policy_sync.conf.
type File struct {
	General Config `section:"general"`
}

// Validate rejects an empty topic.
func (f *File) Validate(cf *conf.File) error {
	var errs conf.Errors
	if f.General.Topic == "" {
		errs.At(cf, "general", "topic", "must not be empty")
	}
	return errs.Err()
}

// Config is the [general] section of policy_sync.conf.
type Config struct {
	Enabled    bool   `conf:"enabled" default:"yes"`
	Connection string `conf:"connection" default:"default"`
	Topic      string `conf:"topic" default:"policy_updates"`
	// GroupID is the consumer group prefix; empty means DefaultGroupID of
	// the configuration directory.
	GroupID string `conf:"group_id"`
}

// DefaultGroupID returns the default group_id prefix for a configuration
// directory: "switchboard-policy-<hostname>-<hash of the directory>".
func DefaultGroupID(configDir string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	abs, err := filepath.Abs(configDir)
	if err != nil {
		abs = configDir
	}
	sum := sha256.Sum256([]byte(abs))
	return "switchboard-policy-" + host + "-" + hex.EncodeToString(sum[:4])
}

// Module is policy_sync.
type Module struct {
	cfg    *Config
	logger *slog.Logger
	lim    *lograte.Limiter
	kafka  *reskafka.Module
	policy *respolicy.Module

	mu      sync.Mutex
	sub     *reskafka.Subscription
	feeder  *Feeder
	group   string
	started time.Time

	commits      atomic.Int64
	commitErrors atomic.Int64
	lastCommit   atomic.Pointer[CommitPoint]
}

var (
	_ core.Starter         = (*Module)(nil)
	_ core.Stopper         = (*Module)(nil)
	_ core.Reloader        = (*Module)(nil)
	_ prometheus.Collector = (*Module)(nil)
)

// config returns the decoded configuration with the group prefix resolved.
func config(ctx *core.Context) *Config {
	cfg := core.Config[*File](ctx).General
	if cfg.GroupID == "" {
		cfg.GroupID = DefaultGroupID(ctx.ConfigDir())
	}
	return &cfg
}

// Start implements core.Starter: it subscribes to the topic through
// res_kafka and feeds res_policy.
func (m *Module) Start(ctx *core.Context) error {
	m.cfg = config(ctx)
	if !m.cfg.Enabled {
		return core.Decline("%s: enabled = no", ConfigFile)
	}
	m.logger = ctx.Logger
	m.lim = lograte.New(ctx.Logger, 10*time.Second)
	k, err := core.Dep[*reskafka.Module](ctx, reskafka.Name)
	if err != nil {
		return err
	}
	p, err := core.Dep[*respolicy.Module](ctx, respolicy.Name)
	if err != nil {
		return err
	}
	m.kafka, m.policy = k, p
	if err := m.subscribe(); err != nil {
		return err
	}
	p.SetSyncReporter(m.report)
	return nil
}

// subscribe starts the consumer on the current configuration.
func (m *Module) subscribe() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	store := m.policy.Store()
	group := m.cfg.GroupID + "." + store.ID()
	// The feeder lives as long as the store: a policy_sync restarted while
	// res_policy keeps its tables resumes with the offsets already applied.
	feeder := store.Value("policy_sync/"+group, func() any { return NewFeeder(m.policy, "kafka", nil) }).(*Feeder)
	feeder.SetOnReject(func(reason string, err error) {
		m.lim.Warn("reject/"+reason, "policy message skipped", "reason", reason, "err", err)
	})
	m.feeder = feeder
	m.group = group
	h := func(_ context.Context, msg *reskafka.Message) error {
		for _, cp := range feeder.Handle(TP{msg.Topic, msg.Partition}, msg.Offset, msg.Value) {
			m.commit(cp)
		}
		return nil
	}
	sub, err := m.kafka.Subscribe(m.cfg.Connection, []string{m.cfg.Topic}, h, reskafka.SubscribeOptions{
		Name: Name, GroupID: group, ManualCommit: true, AutoOffsetReset: "earliest", MissingTopicGrace: missingTopicGrace})
	if err != nil {
		return fmt.Errorf("subscribe to %s on %s: %w", m.cfg.Topic, m.cfg.Connection, err)
	}
	m.sub = sub
	m.started = time.Now()
	m.logger.Info("policy feed consumer started", "connection", m.cfg.Connection, "topic", m.cfg.Topic, "group", group)
	return nil
}

// commit commits just past a SYNC_COMPLETE.
func (m *Module) commit(cp CommitPoint) {
	m.mu.Lock()
	sub := m.sub
	m.mu.Unlock()
	if sub == nil {
		return
	}
	err := sub.Commit(&reskafka.Message{Topic: cp.TP.Topic, Partition: cp.TP.Partition, Offset: cp.Offset})
	if err != nil {
		m.commitErrors.Add(1)
		m.lim.Error("commit", "offset commit failed (the next SYNC_COMPLETE commits again)", "partition", cp.TP.String(),
			"offset", cp.Offset+1, "err", err)
		return
	}
	m.commits.Add(1)
	m.lastCommit.Store(&cp)
}

// Stop implements core.Stopper: the consumer leaves the group at once (or
// goes on leaving in the background once ctx ends).
func (m *Module) Stop(ctx context.Context) error {
	if m.policy != nil {
		m.policy.SetSyncReporter(nil)
	}
	m.mu.Lock()
	sub := m.sub
	m.sub = nil
	m.mu.Unlock()
	if sub != nil {
		return core.Within(ctx, sub.Close)
	}
	return nil
}

// Reload implements core.Reloader: a changed connection, topic or group
// restarts the consumer (resuming from the last commit).
func (m *Module) Reload(ctx *core.Context) error {
	cfg := config(ctx)
	if !cfg.Enabled {
		return fmt.Errorf("%s: enabled = no: unload the module instead", ConfigFile)
	}
	m.mu.Lock()
	same := m.cfg != nil && *m.cfg == *cfg
	m.mu.Unlock()
	if same {
		return nil
	}
	if err := m.Stop(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	m.cfg = cfg
	m.mu.Unlock()
	if err := m.subscribe(); err != nil {
		return err
	}
	m.policy.SetSyncReporter(m.report)
	return nil
}

// Feeder returns the running state machine (nil before Start).
func (m *Module) Feeder() *Feeder {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.feeder
}

// Group returns the consumer group in use.
func (m *Module) Group() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.group
}

// Subscription returns the running subscription (nil when stopped).
func (m *Module) Subscription() *reskafka.Subscription {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sub
}

// report writes the consumer section of "policy show sync".
func (m *Module) report(w io.Writer) {
	m.mu.Lock()
	sub, feeder, cfg, group, started := m.sub, m.feeder, m.cfg, m.group, m.started
	m.mu.Unlock()
	fmt.Fprintf(w, "Consumer (policy_sync): connection %s, topic %s\n", cfg.Connection, cfg.Topic)
	fmt.Fprintf(w, "  Group: %s\n", group)
	if sub == nil {
		fmt.Fprintln(w, "  State: stopped")
		return
	}
	st := sub.Status()
	state := "running since " + started.Format(time.TimeOnly)
	if len(st.WaitingTopics) > 0 {
		state += ", waiting for topic " + strings.Join(st.WaitingTopics, ", ") + " to be created"
	}
	if st.Paused {
		state += " (paused: handler queue full)"
	}
	if le := st.LastError.String(); le != "" {
		state += ", last error: " + le
	}
	fmt.Fprintf(w, "  State: %s\n", state)
	fmt.Fprintf(w, "  Received %d, handled %d, handler errors %d, rebalances %d\n", st.Received, st.Handled,
		st.HandlerErrors, st.Rebalances)
	fs := feeder.Stats()
	fmt.Fprintf(w, "  Commits %d, commit errors %d (sub: %d), replays skipped %d\n", m.commits.Load(),
		m.commitErrors.Load(), st.CommitErrors, fs.Replayed)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PARTITION\tAPPLIED\tCOMMITTED\tHIGH\tLAG\tHELD COMMIT")
	for _, p := range st.Partitions {
		tp := TP{p.Topic, p.Partition}
		applied, held := "-", "-"
		if o, ok := fs.Applied[tp]; ok {
			applied = fmt.Sprint(o)
		}
		if o, ok := fs.Held[tp]; ok {
			held = fmt.Sprint(o + 1)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\n", tp, applied, num(p.Committed), num(p.High), num(p.Lag), held)
	}
	_ = tw.Flush()
	if len(fs.Open) > 0 {
		var gs []string
		for g, parts := range fs.Open {
			ps := make([]string, len(parts))
			for i, p := range parts {
				ps[i] = p.String()
			}
			gs = append(gs, g+" ("+strings.Join(ps, ",")+")")
		}
		sort.Strings(gs)
		fmt.Fprintf(w, "  Open syncs: %s\n", strings.Join(gs, ", "))
	}
	for _, r := range respolicy.RejectReasons {
		if e, ok := fs.LastErr[r]; ok {
			fmt.Fprintf(w, "  Last %s: %s\n", r, e)
		}
	}
}

func num(n int64) string {
	if n < 0 {
		return "-"
	}
	return fmt.Sprint(n)
}

// Ready implements core.Readier: the policy has completed a sync (a
// SYNC_COMPLETE applied from the topic, or tables a sync left before this
// consumer started).
func (m *Module) Ready() (bool, string) {
	m.mu.Lock()
	p, feeder := m.policy, m.feeder
	m.mu.Unlock()
	if feeder != nil && feeder.Stats().ByType[respolicy.TypeSyncComplete] > 0 {
		return true, ""
	}
	if p != nil {
		for _, g := range p.Store().Snapshot().Groups() {
			if g.Syncs > 0 {
				return true, ""
			}
		}
	}
	return false, "no policy sync completed yet"
}

var _ core.Readier = (*Module)(nil)
