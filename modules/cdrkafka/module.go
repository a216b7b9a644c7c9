// Package cdrkafka is the cdr_kafka module: the Kafka backend of the CDR
// engine. It registers with the engine (modules/cdr) at start, encodes each
// record as one JSON message keyed by the subscriber's IP, and produces it
// through a res_kafka connection; with on_queue_full = spool, CDRs that
// cannot be delivered are kept in a crash-safe spool (package spool,
// modules/cdr/spool) and replayed.
//
// # What a crash can lose
//
// A CDR is first batched in memory (per posting goroutine) and handed over
// when the batch is full (batch_max) or its oldest record is flush_ms old;
// then it sits in the producer (librdkafka) until its delivery report.
// Without the journal, a kill -9 loses what is batched and what is in the
// producer: the spool only receives what the producer refused or failed.
//
// With on_queue_full = spool and journal = yes, every batch is appended to a
// write-ahead journal (<spool_dir>/journal, one write(2) per batch) before it
// is produced, and acknowledged when its delivery report arrives (or when it
// moved to the spool). At the next start the unacknowledged journal records
// are moved into the spool and replayed before new CDRs. The window:
//
//   - process crash (kill -9, panic, OOM kill): a CDR is safe once its batch
//     was handed over, i.e. at most flush_ms after Post returned (sooner when
//     the batch filled); what is still batched then is lost;
//   - OS crash or power loss: add the fsync window, spool_fsync_ms or
//     spool_fsync_records journal records, whichever comes first.
//
// Delivery is at least once: a CDR delivered in the last spool_fsync_ms
// before a crash (its acknowledgement not yet written) is produced again
// after the restart, with the id it had. Consumers de-duplicate on "id"
// where they need exactly once.
//
// Producer settings (acks, linger, compression, queue size, idempotence)
// belong to the res_kafka connection in kafka.conf: name a dedicated
// connection (e.g. [cdr]) in cdr_kafka.conf to give CDRs their own; see
// samples/cdr_kafka.conf.
package cdrkafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/lograte"
	"github.com/switchboard-dp/switchboard/internal/metrics"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/cdr/spool"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
)

// Name is the module's name.
const Name = "cdr_kafka"

func init() { core.Register(Info()) }

// Info returns cdr_kafka's registration record.
func Info() core.ModuleInfo {
	return core.ModuleInfo{
		Name:        Name,
		Description: "CDR backend: JSON CDRs to a Kafka topic, keyed by subscriber IP, with an optional spool",
		Priority:    core.PriorityBackend,
		Requires:    []string{reskafka.Name, cdr.Name},
		Support:     core.SupportCore,
		Configs:     []core.ConfigFile{{Name: ConfigFile, New: func() any { return new(File) }}},
		New:         func() core.Module { return new(Module) },
	}
}

// Module is the running cdr_kafka.
type Module struct {
	logger *slog.Logger
	lim    *lograte.Limiter

	rk   *reskafka.Module
	eng  *cdr.Engine
	conn string
	k    *Backend
	reg  *cdr.Registration
}

var (
	_ core.Starter         = (*Module)(nil)
	_ core.Stopper         = (*Module)(nil)
	_ core.Reloader        = (*Module)(nil)
	_ core.Greeter         = (*Module)(nil)
	_ core.StopTimeouter   = (*Module)(nil)
	_ prometheus.Collector = (*Module)(nil)
)

// chooseConnection resolves an empty connection setting.
func chooseConnection(rk *reskafka.Module, want string) (string, error) {
	names := rk.Connections()
	if want != "" {
		if !slices.Contains(names, want) {
			return "", fmt.Errorf("connection %q is not defined in kafka.conf (have %v)", want, names)
		}
		return want, nil
	}
	if slices.Contains(names, "cdr") {
		return "cdr", nil
	}
	if len(names) == 1 {
		return names[0], nil
	}
	return "", fmt.Errorf("no connection set and kafka.conf has %d connections (%v): set connection in %s", len(names), names, ConfigFile)
}

// resProducer adapts a res_kafka producer to the backend's producer.
type resProducer struct {
	p     *reskafka.Producer
	topic string
	cb    func(reskafka.Delivery)
}

// produceBatch hands msgs to res_kafka with one ProduceBatch call (one
// lock, and one cgo crossing when res_kafka's stage is idle).
func (r *resProducer) produceBatch(msgs []reskafka.OutMessage) (int, error) {
	n, err := r.p.ProduceBatch(r.topic, msgs, r.cb)
	if err != nil && errors.Is(err, reskafka.ErrQueueFull) {
		return n, fmt.Errorf("%w: %w", errQueueFull, err)
	}
	return n, err
}

func (r *resProducer) flush(d time.Duration) int { return r.p.Flush(d) }
func (r *resProducer) len() int                  { return r.p.Len() }

func (m *Module) newProducer(cfg *Config, conn string) (*resProducer, error) {
	p, err := m.rk.Producer(conn)
	if err != nil {
		return nil, fmt.Errorf("res_kafka producer for connection %s: %w", conn, err)
	}
	rp := &resProducer{p: p, topic: cfg.Topic}
	return rp, nil
}

func spoolOpts(ctx *core.Context, cfg *Config) spool.Options {
	dir := cfg.SpoolDir
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(ctx.DataDir(), dir)
	}
	return spool.Options{Dir: dir, MaxBytes: int64(cfg.SpoolMaxMB) << 20,
		FsyncInterval: time.Duration(cfg.SpoolFsyncMs) * time.Millisecond, FsyncRecords: cfg.SpoolFsyncRecords}
}

// config returns a copy of the decoded [general] section (the backend keeps
// it and a reload swaps it whole).
func config(ctx *core.Context) *Config {
	cfg := core.Config[*File](ctx).General
	return &cfg
}

// Start opens the spool (spool mode) and registers the backend with the CDR
// engine. It does not wait for a broker.
func (m *Module) Start(ctx *core.Context) error {
	cfg := config(ctx)
	if !cfg.Enabled {
		return core.Decline("%s: [general] enabled = no", ConfigFile)
	}
	m.logger = ctx.Logger
	m.lim = lograte.New(ctx.Logger, 10*time.Second)
	rk, err := core.Dep[*reskafka.Module](ctx, reskafka.Name)
	if err != nil {
		return err
	}
	eng, err := core.Dep[*cdr.Engine](ctx, cdr.Name)
	if err != nil {
		return err
	}
	m.rk, m.eng = rk, eng
	conn, err := chooseConnection(rk, cfg.Connection)
	if err != nil {
		return core.Decline("%s", err.Error())
	}
	rp, err := m.newProducer(cfg, conn)
	if err != nil {
		return err
	}
	m.conn = conn
	warn := func(key, msg string, args ...any) { m.lim.Warn(key, msg, args...) }
	k := newBackend(cfg, rp, ctx.Logger, warn)
	rp.cb = k.deliveryCallback()
	var loaded int
	if cfg.mode() == modeSpool {
		if loaded, err = k.openSpool(spoolOpts(ctx, cfg)); err != nil {
			return err
		}
		if cfg.Journal {
			moved, err := k.openJournal(journalOpts(ctx, cfg))
			if err != nil {
				k.sp.Close()
				return err
			}
			loaded += moved
		}
	}
	reg, err := eng.Register(k)
	if err != nil {
		if k.sp != nil {
			k.sp.Close()
		}
		if k.jr != nil {
			k.jr.Close()
		}
		return err
	}
	m.k, m.reg = k, reg
	if k.sp != nil {
		k.startReplay(loaded)
	}
	if cfg.TopicPartitions > 0 {
		rk.EnsureTopicAsync(conn, cfg.Topic, cfg.TopicPartitions, cfg.TopicReplication)
	}
	ctx.Logger.Info("cdr_kafka registered", "connection", conn, "topic", cfg.Topic, "key", cfg.Key,
		"on_queue_full", cfg.OnQueueFull, "journal", cfg.Journal, "batch_max", cfg.BatchMax, "flush_ms", cfg.FlushMs)
	return nil
}

// Greeting tells the console where the CDRs go and the kcat command that
// reads them.
func (m *Module) Greeting() []string {
	if m.k == nil {
		return nil
	}
	topic := m.k.cfg.Load().Topic
	line := fmt.Sprintf("CDRs go to topic %s on Kafka connection %s.", topic, m.conn)
	kc, err := m.rk.KcatCommand(m.conn, topic)
	if err != nil {
		return []string{line}
	}
	return []string{line, "Read them with: " + kc}
}

// deliveryCallback returns the one res_kafka callback used for every
// message (no allocation per message).
func (k *Backend) deliveryCallback() func(reskafka.Delivery) {
	return func(d reskafka.Delivery) { k.onDelivery(d.Opaque, d.Err) }
}

// stopSpoolTime is what Stop keeps of its budget, after the flush, to spool
// the CDRs still undelivered.
const stopSpoolTime = 2 * time.Second

// StopTimeout implements core.StopTimeouter: the shutdown flush
// (shutdown_flush_ms) and the time to spool what is left after it.
func (m *Module) StopTimeout() time.Duration {
	if m.k == nil {
		return 0
	}
	return time.Duration(m.k.cfg.Load().ShutdownFlushMs)*time.Millisecond + stopSpoolTime
}

// Stop unregisters from the engine (which hands over every batch), flushes
// the producer up to shutdown_flush_ms, cut short so that the spooling of
// what is left (spool mode) still ends before ctx does, and reports what is
// left.
func (m *Module) Stop(ctx context.Context) error {
	if m.reg == nil {
		return nil
	}
	m.reg.Unregister()
	flush := time.Duration(m.k.cfg.Load().ShutdownFlushMs) * time.Millisecond
	if dl, ok := ctx.Deadline(); ok {
		flush = max(0, min(flush, time.Until(dl)-stopSpoolTime))
	}
	left := m.k.shutdown(flush)
	s := m.reg.Snapshot()
	m.logger.Info("cdr_kafka stopped", "posted", s.Posted, "delivered", s.Delivered, "failed", s.Failed,
		"dropped", s.Dropped, "spooled", s.Spooled, "undelivered_after_flush", left)
	return nil
}

// Reload re-reads cdr_kafka.conf. Topic, key, batch_max, flush_ms,
// block_ms, replay_inflight, shutdown_flush_ms and connection change in
// place (hand-overs are suspended for the swap); on_queue_full and the
// spool settings need the module unloaded and loaded again.
func (m *Module) Reload(ctx *core.Context) error {
	cfg := config(ctx)
	old := m.k.cfg.Load()
	if cfg.OnQueueFull != old.OnQueueFull || cfg.SpoolDir != old.SpoolDir || cfg.Journal != old.Journal {
		return fmt.Errorf("on_queue_full, journal and spool_dir cannot change by reload (unload and load cdr_kafka); old configuration kept")
	}
	if !cfg.Enabled {
		return fmt.Errorf("enabled = no needs an unload; old configuration kept")
	}
	conn, err := chooseConnection(m.rk, cfg.Connection)
	if err != nil {
		return err
	}
	rp, err := m.newProducer(cfg, conn)
	if err != nil {
		return err
	}
	rp.cb = m.k.deliveryCallback()
	m.reg.Suspend()
	m.k.cfg.Store(cfg)
	m.k.prod.Store(&prodBox{rp})
	m.k.gen.Add(1)
	m.conn = conn
	m.reg.Resume()
	if m.k.sp != nil {
		m.k.sp.SetPolicy(spoolOpts(ctx, cfg))
	}
	if m.k.jr != nil {
		m.k.jr.SetPolicy(journalOpts(ctx, cfg))
	}
	return nil
}

// journalOpts are the journal's spool options: <spool dir>/journal, the
// spool's fsync policy, small segments (removed once fully acknowledged).
func journalOpts(ctx *core.Context, cfg *Config) spool.Options {
	o := spoolOpts(ctx, cfg)
	o.Dir = filepath.Join(o.Dir, "journal")
	o.MaxBytes = 0 // the journal holds only what is in flight
	o.SegmentBytes = 4 << 20
	o.Journal = true
	return o
}

var (
	descSpoolBytes    = prometheus.NewDesc("switchboard_cdr_kafka_spool_bytes", "Size of the CDR spool files.", nil, nil)
	descSpoolSegments = prometheus.NewDesc("switchboard_cdr_kafka_spool_segments", "Spool segment files.", nil, nil)
	descSpoolRecords  = prometheus.NewDesc("switchboard_cdr_kafka_spool_records", "Spooled CDRs not yet read back for replay.", nil, nil)
	descSpoolCorrupt  = prometheus.NewDesc("switchboard_cdr_kafka_spool_corrupt_bytes_total", "Corrupt spool bytes skipped.", nil, nil)
	descSpoolRegions  = prometheus.NewDesc("switchboard_cdr_kafka_spool_corrupt_regions_total", "Corrupt spool regions skipped.", nil, nil)
	descSpoolWErr     = prometheus.NewDesc("switchboard_cdr_kafka_spool_write_errors_total", "Failed spool writes.", nil, nil)
	descSpooling      = prometheus.NewDesc("switchboard_cdr_kafka_spooling", "1 while new CDRs queue behind the spool.", nil, nil)
	descQueueFull     = prometheus.NewDesc("switchboard_cdr_kafka_queue_full_total", "Hand-overs that met a full producer queue.", nil, nil)
	descDelivErr      = prometheus.NewDesc("switchboard_cdr_kafka_delivery_errors_total", "Failed delivery reports (spooled or not).", nil, nil)
	descLate          = prometheus.NewDesc("switchboard_cdr_kafka_late_reports_total", "Delivery reports for CDRs already spooled at shutdown.", []string{"outcome"}, nil)
	descReplayInfl    = prometheus.NewDesc("switchboard_cdr_kafka_replay_inflight", "Replayed CDRs awaiting their delivery report.", nil, nil)
	descJournalPend   = prometheus.NewDesc("switchboard_cdr_kafka_journal_pending", "Journaled CDRs awaiting their delivery report (journal = yes).", nil, nil)
	descJournalErr    = prometheus.NewDesc("switchboard_cdr_kafka_journal_errors_total", "Batches produced without their journal write (write failed).", nil, nil)

	descs = metrics.Descs{descSpoolBytes, descSpoolSegments, descSpoolRecords, descSpoolCorrupt, descSpoolRegions,
		descSpoolWErr, descSpooling, descQueueFull, descDelivErr, descLate, descReplayInfl, descJournalPend, descJournalErr}
)

// Describe implements prometheus.Collector.
func (m *Module) Describe(ch chan<- *prometheus.Desc) { descs.Describe(ch) }

// Collect implements prometheus.Collector. The per-backend CDR counters are
// the cdr module's (switchboard_cdr_*{backend="kafka"}).
func (m *Module) Collect(ch chan<- prometheus.Metric) {
	k := m.k
	if k == nil {
		return
	}
	out := metrics.Sink(ch)
	out.CounterUint(descQueueFull, k.queueFull.Load())
	out.CounterUint(descDelivErr, k.deliveryErrors.Load())
	out.CounterUint(descLate, k.lateDelivered.Load(), "delivered")
	out.CounterUint(descLate, k.lateFailed.Load(), "failed")
	if k.sp != nil {
		s := k.sp.Status()
		out.Gauge(descSpoolBytes, float64(s.Bytes))
		out.Gauge(descSpoolSegments, float64(s.Segments))
		out.Gauge(descSpoolRecords, float64(s.Records))
		out.CounterUint(descSpoolCorrupt, s.CorruptBytes)
		out.CounterUint(descSpoolRegions, s.CorruptRegions)
		out.CounterUint(descSpoolWErr, s.WriteErrors)
		out.GaugeBool(descSpooling, k.spooling.Load())
		out.Gauge(descReplayInfl, float64(k.replayInflight.Load()))
	}
	if k.jr != nil {
		out.Gauge(descJournalPend, float64(k.jr.JournalOutstanding()))
		out.CounterUint(descJournalErr, k.journalErrors.Load())
	}
}
