package pktengine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dp/switchboard/internal/lograte"
	"github.com/switchboard-dp/switchboard/modules/dataplane"
	"github.com/switchboard-dp/switchboard/modules/dataplane/subscribers"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// EngineOptions configure an Engine.
type EngineOptions struct {
	// Workers is the number of decision workers (default runtime.NumCPU()).
	Workers int
	// Batch is the number of queries handed to a worker at once (default 256).
	Batch int
	// Queue is the number of batches that may wait per worker (default 16).
	Queue int
	// FlushAfter bounds how long a partly filled batch waits in a reader
	// before it is handed to its worker (default 5ms).
	FlushAfter time.Duration
	// Ports are the DNS ports (default 53).
	Ports []uint16
	// NewDecider returns one worker's decider (required).
	NewDecider func() dataplane.Decider
	// NewPoster returns one worker's CDR poster (nil: no CDRs; every
	// decision is counted as cdr_skipped).
	NewPoster func() dataplane.Poster
	// Subscribers holds the subscriber table (default: everything in group
	// "default", subscriber "unknown").
	Subscribers *subscribers.Holder
	// CDRActions are the actions that produce CDRs (the empty set: none;
	// cdr_actions = none).
	CDRActions decision.ActionSet
	// Logger logs (default slog.Default()).
	Logger *slog.Logger
}

// Engine turns decoded DNS queries into decisions and CDRs. Readers (one per
// running source) decode packets and hand queries, hashed by subscriber
// address, to N workers; each worker owns its decider and its CDR poster,
// so one subscriber's CDRs keep their order.
type Engine struct {
	opts    EngineOptions
	log     *slog.Logger
	lim     *lograte.Limiter
	shared  *dataplane.Shared
	workers []*worker
	wg      sync.WaitGroup
	abort   chan struct{} // closed when Close gives up waiting

	mu       sync.Mutex
	sources  map[int]*runningSource
	nextID   int
	finished []SourceStatus // most recent last
	retired  readerCounters // counters of finished sources
	closed   bool

	rate dataplane.RateMeter
}

// New starts an engine's workers. Close stops it.
func New(opts EngineOptions) (*Engine, error) {
	if opts.NewDecider == nil {
		return nil, errors.New("pktengine: NewDecider is required")
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	if opts.Batch <= 0 {
		opts.Batch = 256
	}
	if opts.Queue <= 0 {
		opts.Queue = 16
	}
	if opts.FlushAfter <= 0 {
		opts.FlushAfter = 5 * time.Millisecond
	}
	if len(opts.Ports) == 0 {
		opts.Ports = []uint16{53}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &Engine{
		opts:    opts,
		log:     opts.Logger,
		lim:     lograte.New(opts.Logger, 10*time.Second),
		shared:  dataplane.NewShared(opts.Subscribers, opts.CDRActions),
		abort:   make(chan struct{}),
		sources: map[int]*runningSource{},
	}
	for i := 0; i < opts.Workers; i++ {
		w := &worker{
			e:    e,
			id:   i,
			in:   make(chan *batch, opts.Queue),
			free: make(chan *batch, opts.Queue+2),
		}
		for j := 0; j < opts.Queue+2; j++ {
			w.free <- newBatch(opts.Batch)
		}
		var post dataplane.Poster
		if opts.NewPoster != nil {
			post = opts.NewPoster()
		}
		w.path = dataplane.NewPath(e.shared, opts.NewDecider(), post)
		e.workers = append(e.workers, w)
	}
	for _, w := range e.workers {
		e.wg.Add(1)
		go w.run()
	}
	e.rate.Start = time.Now()
	return e, nil
}

// SetCDRActions changes which actions produce CDRs; workers see it at their
// next batch.
func (e *Engine) SetCDRActions(s decision.ActionSet) { e.shared.SetCDRActions(s) }

// CDRActions returns the actions that produce CDRs.
func (e *Engine) CDRActions() decision.ActionSet { return e.shared.CDRActions() }

// Subscribers returns the holder of the subscriber table (Swap to reload).
func (e *Engine) Subscribers() *subscribers.Holder { return e.shared.Subscribers() }

// Workers returns the number of workers.
func (e *Engine) Workers() int { return len(e.workers) }

// Close stops every source (delivering what they read), lets the workers
// finish their queues, and closes deciders and posters. If ctx ends first,
// what is still queued is dropped and counted.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	srcs := make([]*runningSource, 0, len(e.sources))
	for _, s := range e.sources {
		srcs = append(srcs, s)
	}
	e.mu.Unlock()
	for _, s := range srcs {
		s.cancel()
	}
	done := make(chan struct{})
	go func() {
		for _, s := range srcs {
			<-s.done
		}
		for _, w := range e.workers {
			close(w.in)
		}
		e.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		close(e.abort)
		<-done
		return fmt.Errorf("pktengine: stopped before the queues drained: %w", ctx.Err())
	}
}

// item is one query waiting for its decision.
type item struct {
	ts    int64 // epoch ms
	ip    netip.Addr
	qtype uint16
	off   uint32 // name = arena[off:off+n]
	n     uint16
}

// batch is a reader -> worker hand-off: queries of one worker plus the bytes
// of their names.
type batch struct {
	items []item
	arena []byte
	first time.Time // when the first item went in (reader clock)
}

func newBatch(n int) *batch {
	return &batch{items: make([]item, 0, n), arena: make([]byte, 0, n*64)}
}

// worker decides the queries of the subscribers hashed to it.
type worker struct {
	e    *Engine
	id   int
	in   chan *batch
	free chan *batch
	path *dataplane.Path

	queued atomic.Int64 // queries handed over and not yet decided
	wc     workerCounters

	// burst scratch
	qs  []dataplane.Query
	out []dataplane.Result
}

// workerCounters are published once per batch.
type workerCounters struct {
	batches atomic.Uint64
	dropped atomic.Uint64 // queued when Close gave up
}

func (w *worker) run() {
	defer w.e.wg.Done()
	defer w.path.Close()
	for b := range w.in {
		select {
		case <-w.e.abort:
			w.wc.dropped.Add(uint64(len(b.items)))
			w.queued.Add(-int64(len(b.items)))
			continue
		default:
		}
		w.process(b)
		n := len(b.items)
		b.items, b.arena = b.items[:0], b.arena[:0]
		w.free <- b
		w.queued.Add(-int64(n))
	}
}

func (w *worker) process(b *batch) {
	n := len(b.items)
	if cap(w.qs) < n {
		w.qs = make([]dataplane.Query, n)
		w.out = make([]dataplane.Result, n)
	}
	qs := w.qs[:n]
	for i := range b.items {
		it := &b.items[i]
		qs[i] = dataplane.Query{TS: it.ts, IP: it.ip, QType: it.qtype, Name: b.arena[it.off : it.off+uint32(it.n) : it.off+uint32(it.n)]}
	}
	w.path.Decide(qs, w.out[:n])
	for i := range qs {
		qs[i].Name = nil
	}
	w.wc.batches.Add(1)
}
