package cdr

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/lograte"
	"github.com/switchboard-dp/switchboard/internal/metrics"
)

// Name is the engine's module name.
const Name = "cdr"

func init() { core.Register(Info()) }

// Info returns the cdr module's registration record. A module that lists
// cdr.Name in Requires gets the running engine with
// core.Dep[*cdr.Engine](ctx, cdr.Name).
func Info() core.ModuleInfo {
	return core.ModuleInfo{
		Name:        Name,
		Description: "CDR engine: records posted by any module, batched per worker for every registered backend",
		Priority:    core.PriorityEngine,
		Support:     core.SupportCore,
		New:         func() core.Module { return NewEngine() },
	}
}

var (
	_ core.Starter         = (*Engine)(nil)
	_ core.Stopper         = (*Engine)(nil)
	_ core.Commander       = (*Engine)(nil)
	_ prometheus.Collector = (*Engine)(nil)
)

type limWarner struct{ l *lograte.Limiter }

func (w limWarner) warn(key, msg string) { w.l.Warn(key, msg) }

// Start starts the flusher. The engine has no configuration file: batch
// sizes and flush ages belong to each backend.
func (e *Engine) Start(ctx *core.Context) error {
	e.logger = ctx.Logger
	e.lim = limWarner{lograte.New(ctx.Logger, 10*time.Second)}
	e.StartFlusher()
	return nil
}

// Stop stops the flusher and hands over what is still batched (backends
// stop before the engine, so normally nothing is left).
func (e *Engine) Stop(ctx context.Context) error {
	if err := core.Within(ctx, func() error { e.Close(); return nil }); err != nil {
		return err
	}
	if n := e.Unrouted(); n > 0 && e.logger != nil {
		e.logger.Warn("CDRs were posted while no backend was registered; they went nowhere", "records", n)
	}
	return nil
}

// Commands implements core.Commander.
func (e *Engine) Commands() []*cli.Command {
	return []*cli.Command{{
		Path:    "cdr show status",
		Summary: "CDR backends with their state and counters",
		Usage: "cdr show status\n" +
			"  For every registered backend: state, counters (posted, batched, enqueued, in flight,\n" +
			"  delivered, failed, dropped by reason, spooled, replayed) and the invariant\n" +
			"  posted + loaded = delivered + failed + dropped + spool_lost + queued,\n" +
			"  queued = batched + in flight + spool.",
		Run: func(_ context.Context, w io.Writer, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			return e.WriteStatus(w)
		},
	}, e.testPostCommand()}
}

// WriteStatus writes what "cdr show status" prints.
func (e *Engine) WriteStatus(w io.Writer) error {
	e.mu.Lock()
	posters := len(e.posters)
	e.mu.Unlock()
	regs := e.Registrations()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CDR engine: %d backends, %d posters, %d unrouted (posted with no backend)\n", len(regs), posters, e.Unrouted())
	for _, r := range regs {
		s := r.Snapshot()
		fmt.Fprintf(tw, "\nBackend %s\t%s\n", s.Backend, s.State)
		row := func(label string, v any) { fmt.Fprintf(tw, "  %s\t%v\n", label, v) }
		row("posted", s.Posted)
		row("batched", s.Batched)
		row("enqueued", s.Enqueued)
		row("inflight", s.Inflight)
		row("delivered", s.Delivered)
		row("failed", s.Failed)
		drops := ""
		for i, n := range s.DroppedBy {
			if n > 0 {
				drops += fmt.Sprintf(" %s=%d", DropReason(i), n)
			}
		}
		if drops != "" {
			drops = " (" + drops[1:] + ")"
		}
		row("dropped", fmt.Sprintf("%d%s", s.Dropped, drops))
		row("spooled", s.Spooled)
		row("spool pending", s.SpoolPending)
		row("replayed", s.Replayed)
		row("loaded", s.Loaded)
		row("spool lost", s.SpoolLost)
		row("queued", s.Queued)
		row("oldest record age", s.OldestBatched.Round(time.Millisecond))
		row("hand-over wait max", fmt.Sprintf("%v (late %d)", s.WaitMax.Round(100*time.Microsecond), s.WaitLate))
		ok := "ok"
		if !s.Balanced() {
			ok = "VIOLATED"
		}
		row("invariant", fmt.Sprintf("posted+loaded %d = delivered+failed+dropped+spool_lost+queued %d: %s",
			s.Posted+s.Loaded, s.Delivered+s.Failed+s.Dropped+s.SpoolLost+s.Queued, ok))
		if sw, ok := r.backend.(StatusWriter); ok {
			sw.WriteStatus(func(label, value string) { row(label, value) })
		}
	}
	return tw.Flush()
}

var (
	descPosted    = prometheus.NewDesc("switchboard_cdr_posted_total", "CDRs posted to the backend.", []string{"backend"}, nil)
	descEnqueued  = prometheus.NewDesc("switchboard_cdr_enqueued_total", "CDRs accepted by the backend's producer (including replays).", []string{"backend"}, nil)
	descDelivered = prometheus.NewDesc("switchboard_cdr_delivered_total", "CDRs delivered.", []string{"backend"}, nil)
	descFailed    = prometheus.NewDesc("switchboard_cdr_failed_total", "CDRs whose delivery failed and that were not spooled (lost).", []string{"backend"}, nil)
	descDropped   = prometheus.NewDesc("switchboard_cdr_dropped_total", "CDRs dropped, by reason.", []string{"backend", "reason"}, nil)
	descSpooled   = prometheus.NewDesc("switchboard_cdr_spooled_total", "CDRs written to the spool.", []string{"backend"}, nil)
	descReplayed  = prometheus.NewDesc("switchboard_cdr_replayed_total", "CDRs read back from the spool and produced.", []string{"backend"}, nil)
	descLoaded    = prometheus.NewDesc("switchboard_cdr_spool_loaded_total", "CDRs found in the spool at start.", []string{"backend"}, nil)
	descSpoolLost = prometheus.NewDesc("switchboard_cdr_spool_lost_total", "Spooled CDRs that could not be read back.", []string{"backend"}, nil)
	descQueued    = prometheus.NewDesc("switchboard_cdr_queued", "CDRs accepted and not yet final, by where they are.", []string{"backend", "where"}, nil)
	descOldest    = prometheus.NewDesc("switchboard_cdr_oldest_batched_seconds", "Age of the oldest batched CDR.", []string{"backend"}, nil)
	descWaitMax   = prometheus.NewDesc("switchboard_cdr_handover_wait_max_seconds", "Longest time a CDR waited in a batch before hand-over.", []string{"backend"}, nil)
	descLate      = prometheus.NewDesc("switchboard_cdr_handover_late_total", "Hand-overs whose oldest CDR waited longer than flush age + 20 ms.", []string{"backend"}, nil)
	descUnrouted  = prometheus.NewDesc("switchboard_cdr_unrouted_total", "CDRs posted while no backend was registered.", nil, nil)

	descs = metrics.Descs{descPosted, descEnqueued, descDelivered, descFailed, descDropped, descSpooled,
		descReplayed, descLoaded, descSpoolLost, descQueued, descOldest, descWaitMax, descLate, descUnrouted}
)

// Describe implements prometheus.Collector.
func (e *Engine) Describe(ch chan<- *prometheus.Desc) { descs.Describe(ch) }

// Collect implements prometheus.Collector.
func (e *Engine) Collect(ch chan<- prometheus.Metric) {
	out := metrics.Sink(ch)
	for _, r := range e.Registrations() {
		s := r.Snapshot()
		b := s.Backend
		out.CounterUint(descPosted, s.Posted, b)
		out.CounterUint(descEnqueued, s.Enqueued, b)
		out.CounterUint(descDelivered, s.Delivered, b)
		out.CounterUint(descFailed, s.Failed, b)
		for i, n := range s.DroppedBy {
			out.CounterUint(descDropped, n, b, DropReason(i).String())
		}
		out.CounterUint(descSpooled, s.Spooled, b)
		out.CounterUint(descReplayed, s.Replayed, b)
		out.CounterUint(descLoaded, s.Loaded, b)
		out.CounterUint(descSpoolLost, s.SpoolLost, b)
		out.Gauge(descQueued, float64(s.Batched), b, "batch")
		out.Gauge(descQueued, float64(s.Inflight), b, "producer")
		out.Gauge(descQueued, float64(s.SpoolPending), b, "spool")
		out.Gauge(descOldest, s.OldestBatched.Seconds(), b)
		out.Gauge(descWaitMax, s.WaitMax.Seconds(), b)
		out.CounterUint(descLate, s.WaitLate, b)
	}
	out.CounterUint(descUnrouted, e.Unrouted())
}
