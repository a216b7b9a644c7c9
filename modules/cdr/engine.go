package cdr

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is a CDR backend, registered with Engine.Register (as Asterisk's
// ast_cdr_register). The engine keeps one Batcher of the backend per Poster
// (per producing goroutine), adds records to it and hands it over to the
// backend (Batcher.Flush) when it is full or when its oldest record is
// FlushAfter old.
type Backend interface {
	// Name is the backend's unique name ("kafka").
	Name() string
	// Attach hands the backend its Registration (its Stats above all).
	// Register calls it once, before the backend is visible to any Poster,
	// so no record can reach a Batcher of the backend before Attach returns.
	Attach(r *Registration)
	// NewBatcher returns an empty Batcher. The engine never uses one Batcher
	// from two goroutines at once.
	NewBatcher() Batcher
	// FlushAfter is the age of a batch's oldest record at which the batch is
	// handed over even if it is not full (flush_ms).
	FlushAfter() time.Duration
}

// Batcher accumulates a backend's copy of records.
type Batcher interface {
	// Add copies (encodes) r into the batch and reports whether the batch
	// is now full. It must not keep r or anything r points to.
	Add(r *Record) (full bool)
	// Len returns the number of records in the batch.
	Len() int
	// Flush hands every record of the batch to the backend's destination
	// and leaves the Batcher empty and reusable. The engine has already
	// counted the records as flushed; Flush must account for each of them
	// in the Registration's Stats (enqueued then delivered/failed, dropped,
	// or spooled). It may block up to the backend's back-pressure bound.
	Flush()
}

// StatusWriter is implemented by backends that add lines to "cdr show
// status" below their counters.
type StatusWriter interface {
	WriteStatus(w func(label, value string))
}

// Backend states.
const (
	StateActive       = "active"
	StateSuspended    = "suspended"
	StateUnregistered = "unregistered"
)

// Registration is a backend's membership in the engine. It holds the
// backend's counters.
type Registration struct {
	e       *Engine
	backend Backend
	name    string
	stats   Stats

	flushAge atomic.Int64 // ns
	state    atomic.Value // string

	// hand is held shared during a hand-over and exclusively while the
	// backend is suspended or unregistering, so no hand-over overlaps a
	// reload and none happens after Unregister returns.
	hand sync.RWMutex

	pool sync.Pool

	retiredPosted atomic.Uint64 // posted by posters that closed or dropped the slot
}

// Name returns the backend's name.
func (r *Registration) Name() string { return r.name }

// Stats returns the backend's counters, for the backend to update.
func (r *Registration) Stats() *Stats { return &r.stats }

// State returns StateActive, StateSuspended or StateUnregistered.
func (r *Registration) State() string { return r.state.Load().(string) }

// Suspend stops hand-overs to the backend until Resume: it waits for those
// in progress, then makes new ones wait (records keep being batched; a
// producing goroutine whose batch is full waits). Use it around a reload
// that swaps the backend's destination, and keep it short.
func (r *Registration) Suspend() {
	r.hand.Lock()
	r.state.Store(StateSuspended)
}

// Resume ends a Suspend and re-reads the backend's FlushAfter. Batchers are
// reused across a reload: a Batcher should pick up its backend's new
// configuration whenever it is empty (after Flush); records batched before
// the reload are handed over as they were encoded.
func (r *Registration) Resume() {
	r.state.Store(StateActive)
	r.flushAge.Store(int64(r.backend.FlushAfter()))
	r.stats.lateAfter.Store(int64(r.backend.FlushAfter()) + int64(lateMargin))
	r.hand.Unlock()
	r.e.resetTick()
}

// SetFlushAfter tells the engine that the backend's FlushAfter changed (used
// by a reload that does not need Suspend).
func (r *Registration) SetFlushAfter(d time.Duration) {
	r.flushAge.Store(int64(d))
	r.stats.lateAfter.Store(int64(d) + int64(lateMargin))
	r.e.resetTick()
}

// Snapshot returns a consistent copy of the backend's counters.
func (r *Registration) Snapshot() Snapshot {
	return r.e.snapshot(r)
}

// Unregister removes the backend: every record batched for it is handed
// over first, and once Unregister returns no hand-over is in progress or
// will start (a late one is counted as dropped, reason "unregistered").
func (r *Registration) Unregister() {
	r.e.unregister(r)
}

func (r *Registration) getBatcher() Batcher {
	if b, ok := r.pool.Get().(Batcher); ok {
		return b
	}
	return r.backend.NewBatcher()
}

// handover gives a taken batch to the backend. first is the engine time of
// its oldest record.
func (r *Registration) handover(b Batcher, first int64) {
	n := b.Len()
	if n == 0 {
		r.pool.Put(b)
		return
	}
	r.hand.RLock()
	if first != 0 {
		r.stats.observeWait(r.e.now() - first)
	}
	r.stats.addFlushed(uint64(n))
	if r.State() == StateUnregistered {
		r.stats.AddDropped(DropUnregistered, uint64(n))
		r.hand.RUnlock()
		r.e.lim.warn("cdr-unregistered-"+r.name, fmt.Sprintf("cdr: %d records handed over after backend %s unregistered: dropped", n, r.name))
		return // the batcher is not reused: it belongs to a gone backend
	}
	b.Flush()
	r.hand.RUnlock()
	r.pool.Put(b)
}

// lateMargin is the scheduling margin above flush_ms after which a hand-over
// counts as late.
const lateMargin = 20 * time.Millisecond

// slot is one Poster's batch for one backend.
type slot struct {
	reg *Registration
	mu  sync.Mutex // the producing goroutine holds it per record; the flusher only to swap the batch out
	// hmu orders hand-overs: it is taken while mu is held, right after a
	// batch is swapped out, and released when the hand-over returns, so the
	// Poster's batches reach the backend in the order they were filled even
	// when the flusher (age) and the Poster (full batch) race.
	hmu    sync.Mutex
	b      Batcher
	dead   bool         // backend unregistered (under mu)
	first  atomic.Int64 // engine time of the oldest record, 0 when empty
	posted atomic.Uint64
	_      [32]byte // keep hot slots of different posters off one cache line
}

// take swaps the batch out for an empty one. The caller holds s.mu.
func (s *slot) take() (Batcher, int64) {
	b := s.b
	s.b = s.reg.getBatcher()
	return b, s.first.Swap(0)
}

// Poster posts records from one goroutine. Each producing goroutine (a
// packet worker) should have its own: it owns that goroutine's batch of
// every backend, so posting takes no lock another worker holds. A Poster
// must not be used from two goroutines at once; Close it when done.
type Poster struct {
	e      *Engine
	gen    uint64
	slots  []*slot
	mu     sync.Mutex // guards slots against the flusher and Unregister
	closed bool

	idNext, idEnd uint64 // the block of record numbers this Poster hands out
}

// idBlock is how many record numbers a Poster takes from its engine at a
// time, so that numbering takes no shared atomic per record.
const idBlock = 4096

// warner is what the engine needs of a rate-limited logger.
type warner interface{ warn(key, msg string) }

type nopWarner struct{}

func (nopWarner) warn(string, string) {}

// Engine is the CDR engine (the "cdr" module). Modules post records with a
// Poster (one per producing goroutine) or with Engine.Post; backends
// register with Register.
type Engine struct {
	epoch    time.Time
	lim      warner
	logger   *slog.Logger
	instance uint64        // the Instance of every record ID
	ids      atomic.Uint64 // record numbers handed out to Posters, in blocks

	mu      sync.Mutex // guards regs, posters, gen changes
	regs    []*Registration
	posters map[*Poster]struct{}
	gen     atomic.Uint64

	unrouted atomic.Uint64 // posted while no backend was registered

	sharedMu sync.Mutex
	shared   *Poster

	tickCh  chan struct{}
	wakeCh  chan struct{} // a batch became pending while the flusher was idle
	idle    atomic.Bool   // the flusher sleeps until a batch becomes pending
	stopCh  chan struct{}
	doneCh  chan struct{}
	started bool
}

// NewEngine returns an engine with its flusher not yet running (see
// StartFlusher). The cdr module makes one in Start.
func NewEngine() *Engine {
	e := &Engine{
		epoch:    time.Now(),
		lim:      nopWarner{},
		instance: rand.Uint64(),
		posters:  make(map[*Poster]struct{}),
		tickCh:   make(chan struct{}, 1),
		wakeCh:   make(chan struct{}, 1),
	}
	e.gen.Store(1)
	return e
}

// Instance returns the Instance part of the IDs this engine gives records.
func (e *Engine) Instance() uint64 { return e.instance }

// now returns the engine's monotonic clock in ns (never 0).
func (e *Engine) now() int64 { return int64(time.Since(e.epoch)) + 1 }

// Register adds a backend: it calls b.Attach with the new Registration,
// then makes the backend visible to every Poster. Its name must be unique
// among registered ones.
func (e *Engine) Register(b Backend) (*Registration, error) {
	if b == nil || b.Name() == "" {
		return nil, errors.New("cdr: register: backend without a name")
	}
	r := &Registration{e: e, backend: b, name: b.Name()}
	r.state.Store(StateActive)
	r.flushAge.Store(int64(b.FlushAfter()))
	r.stats.lateAfter.Store(int64(b.FlushAfter()) + int64(lateMargin))
	e.mu.Lock()
	for _, o := range e.regs {
		if o.name == r.name {
			e.mu.Unlock()
			return nil, fmt.Errorf("cdr: register: backend %q is already registered", r.name)
		}
	}
	// The backend gets its counters before the new generation makes any
	// Poster add a slot for it.
	b.Attach(r)
	regs := make([]*Registration, 0, len(e.regs)+1)
	regs = append(regs, e.regs...)
	e.regs = append(regs, r)
	e.gen.Add(1)
	e.mu.Unlock()
	e.resetTick()
	return r, nil
}

func (e *Engine) unregister(r *Registration) {
	var taken []struct {
		b     Batcher
		first int64
	}
	e.mu.Lock()
	regs := make([]*Registration, 0, len(e.regs))
	found := false
	for _, o := range e.regs {
		if o == r {
			found = true
			continue
		}
		regs = append(regs, o)
	}
	if !found {
		e.mu.Unlock()
		return
	}
	e.regs = regs
	e.gen.Add(1)
	for p := range e.posters {
		p.mu.Lock()
		for _, s := range p.slots {
			if s.reg != r {
				continue
			}
			s.mu.Lock()
			s.dead = true
			if s.b.Len() > 0 {
				b, first := s.take()
				taken = append(taken, struct {
					b     Batcher
					first int64
				}{b, first})
			}
			s.mu.Unlock()
		}
		p.mu.Unlock()
	}
	e.mu.Unlock()
	for _, t := range taken {
		r.handover(t.b, t.first)
	}
	// Wait for hand-overs already running in producing goroutines.
	r.hand.Lock()
	r.state.Store(StateUnregistered)
	r.hand.Unlock()
}

// Backends returns the registered backends' names, sorted.
func (e *Engine) Backends() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	names := make([]string, 0, len(e.regs))
	for _, r := range e.regs {
		names = append(names, r.name)
	}
	sort.Strings(names)
	return names
}

// Registrations returns the registered backends in registration order.
func (e *Engine) Registrations() []*Registration {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*Registration(nil), e.regs...)
}

// Unrouted returns how many records were posted while no backend was
// registered (they went nowhere).
func (e *Engine) Unrouted() uint64 { return e.unrouted.Load() }

// NewPoster returns a Poster for one producing goroutine.
func (e *Engine) NewPoster() *Poster {
	p := &Poster{e: e}
	e.mu.Lock()
	e.posters[p] = struct{}{}
	e.mu.Unlock()
	p.resync()
	return p
}

// resync brings p's slots in line with the registered backends.
func (p *Poster) resync() {
	e := p.e
	e.mu.Lock()
	p.mu.Lock()
	old := p.slots
	slots := make([]*slot, 0, len(e.regs))
	for _, r := range e.regs {
		var keep *slot
		for _, s := range old {
			if s.reg == r {
				keep = s
				break
			}
		}
		if keep == nil {
			keep = &slot{reg: r, b: r.getBatcher()}
		}
		slots = append(slots, keep)
	}
	for _, s := range old {
		if !containsSlot(slots, s) {
			// Its backend unregistered: unregister took the batch.
			s.reg.retiredPosted.Add(s.posted.Load())
		}
	}
	p.slots = slots
	p.gen = e.gen.Load()
	p.mu.Unlock()
	e.mu.Unlock()
}

func containsSlot(slots []*slot, s *slot) bool {
	for _, o := range slots {
		if o == s {
			return true
		}
	}
	return false
}

// Post gives r its ID (r.ID) and adds it to this Poster's batch of every
// registered backend, handing a batch over when it fills. It copies what it
// needs; the caller may reuse r at once. It blocks only while a full batch
// is handed over (bounded by the backend's back-pressure setting).
func (p *Poster) Post(r *Record) {
	if p.gen != p.e.gen.Load() {
		if p.closed {
			return
		}
		p.resync()
	}
	if p.idNext == p.idEnd {
		p.idEnd = p.e.ids.Add(idBlock)
		p.idNext = p.idEnd - idBlock
	}
	p.idNext++
	r.ID = ID{Instance: p.e.instance, N: p.idNext}
	if len(p.slots) == 0 {
		p.e.unrouted.Add(1)
		return
	}
	var now int64
	for _, s := range p.slots {
		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			continue
		}
		if s.first.Load() == 0 {
			if now == 0 {
				now = p.e.now()
			}
			s.first.Store(now)
			if p.e.idle.Load() {
				p.e.wake()
			}
		}
		s.posted.Add(1)
		if s.b.Add(r) {
			b, first := s.take()
			s.hmu.Lock()
			s.mu.Unlock()
			s.reg.handover(b, first)
			s.hmu.Unlock()
			continue
		}
		s.mu.Unlock()
	}
}

// Flush hands over every non-empty batch of this Poster now.
func (p *Poster) Flush() {
	p.mu.Lock()
	slots := append([]*slot(nil), p.slots...)
	p.mu.Unlock()
	for _, s := range slots {
		s.flush()
	}
}

func (s *slot) flush() {
	s.mu.Lock()
	if s.dead || s.b.Len() == 0 {
		s.mu.Unlock()
		return
	}
	b, first := s.take()
	s.hmu.Lock()
	s.mu.Unlock()
	s.reg.handover(b, first)
	s.hmu.Unlock()
}

// Close hands over this Poster's batches and forgets it. Post after Close
// does nothing.
func (p *Poster) Close() {
	if p.closed {
		return
	}
	p.Flush()
	e := p.e
	e.mu.Lock()
	p.mu.Lock()
	p.closed = true
	for _, s := range p.slots {
		s.mu.Lock()
		s.dead = true
		b := s.b
		s.mu.Unlock()
		s.reg.retiredPosted.Add(s.posted.Load())
		if b.Len() > 0 { // only if the owner broke the one-goroutine rule
			s.reg.handover(b, s.first.Swap(0))
		}
	}
	p.slots = nil
	delete(e.posters, p)
	p.mu.Unlock()
	e.mu.Unlock()
	p.gen = 0
}

// Post posts r through a shared Poster under a lock. It is meant for
// occasional callers; a hot path should own a Poster.
func (e *Engine) Post(r *Record) {
	e.sharedMu.Lock()
	if e.shared == nil {
		e.shared = e.NewPoster()
	}
	e.shared.Post(r)
	e.sharedMu.Unlock()
}

// FlushAll hands over every non-empty batch of every Poster now.
func (e *Engine) FlushAll() {
	e.flushDue(true, 0)
}

// flushDue hands over the batches whose oldest record is at least its
// backend's flush age minus slack old (all of them if all). It reports
// whether a batch is left pending.
func (e *Engine) flushDue(all bool, slack int64) (pending bool) {
	e.mu.Lock()
	posters := make([]*Poster, 0, len(e.posters))
	for p := range e.posters {
		posters = append(posters, p)
	}
	e.mu.Unlock()
	var slots []*slot
	for _, p := range posters {
		p.mu.Lock()
		slots = append(slots[:0], p.slots...)
		p.mu.Unlock()
		for _, s := range slots {
			f := s.first.Load()
			if f == 0 {
				continue
			}
			if !all && e.now()-f < s.reg.flushAge.Load()-slack {
				pending = true
				continue
			}
			s.flush()
		}
	}
	return pending
}

// anyPending reports whether some batch holds records.
func (e *Engine) anyPending() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for p := range e.posters {
		p.mu.Lock()
		for _, s := range p.slots {
			if s.first.Load() != 0 {
				p.mu.Unlock()
				return true
			}
		}
		p.mu.Unlock()
	}
	return false
}

// wake tells an idle flusher that a batch became pending.
func (e *Engine) wake() {
	select {
	case e.wakeCh <- struct{}{}:
	default:
	}
}

// tick returns the flusher's period: a tenth of the smallest flush age,
// between 1 ms and 10 ms. Batches are handed over two periods before they
// reach their flush age, so no record waits longer than the flush age plus
// scheduling delay.
func (e *Engine) tick() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	t := 10 * time.Millisecond
	for _, r := range e.regs {
		if d := time.Duration(r.flushAge.Load()) / 10; d < t {
			t = d
		}
	}
	return max(t, time.Millisecond)
}

func (e *Engine) resetTick() {
	select {
	case e.tickCh <- struct{}{}:
	default:
	}
}

// StartFlusher starts the goroutine that hands over batches that reach
// their flush age while their Poster posts nothing more.
func (e *Engine) StartFlusher() {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return
	}
	e.started = true
	e.stopCh = make(chan struct{})
	e.doneCh = make(chan struct{})
	e.mu.Unlock()
	go e.flushLoop()
}

// flushLoop ticks while a batch is pending and sleeps otherwise: after a
// pass that leaves nothing pending it marks itself idle, and the Post that
// next starts a batch wakes it. The idle flag is set before the batches are
// checked once more and read by Post after it marks a batch started, so
// one of the two always sees the other.
func (e *Engine) flushLoop() {
	defer close(e.doneCh)
	period := e.tick()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-e.stopCh:
			return
		case <-e.tickCh:
			period = e.tick()
			t.Reset(period)
		case <-t.C:
			if e.flushDue(false, 2*int64(period)) {
				continue
			}
			e.idle.Store(true)
			if e.anyPending() {
				e.idle.Store(false)
				continue
			}
			t.Stop()
			select {
			case <-e.stopCh:
				return
			case <-e.wakeCh:
			case <-e.tickCh:
				period = e.tick()
			}
			e.idle.Store(false)
			t.Reset(period)
		}
	}
}

// Close stops the flusher and hands over every batch. Backends should have
// unregistered already (cdr_kafka stops before cdr).
func (e *Engine) Close() {
	e.mu.Lock()
	started := e.started
	e.started = false
	e.mu.Unlock()
	if started {
		close(e.stopCh)
		<-e.doneCh
	}
	e.FlushAll()
}

// snapshot reads r's counters consistently.
func (e *Engine) snapshot(r *Registration) Snapshot {
	var out Snapshot
	out.Backend = r.name
	out.State = r.State()
	now := e.now()
	e.mu.Lock()
	r.stats.mu.Lock()
	r.stats.fill(&out)
	posted := r.retiredPosted.Load()
	var oldest int64
	for p := range e.posters {
		p.mu.Lock()
		for _, s := range p.slots {
			if s.reg != r {
				continue
			}
			posted += s.posted.Load()
			if f := s.first.Load(); f != 0 && (oldest == 0 || f < oldest) {
				oldest = f
			}
		}
		p.mu.Unlock()
	}
	r.stats.mu.Unlock()
	e.mu.Unlock()
	out.Posted = posted
	if oldest != 0 && now > oldest {
		out.OldestBatched = time.Duration(now - oldest)
	}
	out.finish()
	return out
}
