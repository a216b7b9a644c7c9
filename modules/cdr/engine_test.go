package cdr

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// fakeBackend records hand-overs; it "delivers" synchronously.
type fakeBackend struct {
	name  string
	max   int
	age   time.Duration
	reg   *Registration
	mu    sync.Mutex
	got   []string
	sizes []int
	slow  time.Duration
	hold  atomic.Bool // keep records in flight (neither delivered nor failed)
}

func (f *fakeBackend) Name() string              { return f.name }
func (f *fakeBackend) Attach(r *Registration)    { f.reg = r }
func (f *fakeBackend) FlushAfter() time.Duration { return f.age }
func (f *fakeBackend) NewBatcher() Batcher       { return &fakeBatcher{f: f} }

type fakeBatcher struct {
	f    *fakeBackend
	recs []string
}

func (b *fakeBatcher) Add(r *Record) bool {
	b.recs = append(b.recs, string(AppendJSON(nil, r)))
	return len(b.recs) >= b.f.max
}
func (b *fakeBatcher) Len() int { return len(b.recs) }
func (b *fakeBatcher) Flush() {
	f := b.f
	if f.slow > 0 {
		time.Sleep(f.slow)
	}
	f.mu.Lock()
	f.got = append(f.got, b.recs...)
	f.sizes = append(f.sizes, len(b.recs))
	f.mu.Unlock()
	st := f.reg.Stats()
	st.AddEnqueued(uint64(len(b.recs)))
	if !f.hold.Load() {
		st.AddDelivered(uint64(len(b.recs)))
	}
	b.recs = b.recs[:0]
}

// records returns a copy of every record the backend got, as JSON.
func (f *fakeBackend) records() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

func (f *fakeBackend) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.got)
}

func rec(i int) *Record {
	return &Record{TS: int64(i), IP: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), SubscriberID: "s", Domain: []byte("d.example"), Action: decision.Allow, Seq: uint64(i + 1)}
}

func TestBatchMaxAndTimer(t *testing.T) {
	e := NewEngine()
	e.StartFlusher()
	defer e.Close()
	f := &fakeBackend{name: "fake", max: 10, age: 50 * time.Millisecond}
	reg, err := e.Register(f)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Register(&fakeBackend{name: "fake"}); err == nil {
		t.Fatal("duplicate name accepted")
	}
	p := e.NewPoster()
	for i := range 25 {
		p.Post(rec(i))
	}
	if f.count() != 20 {
		t.Fatalf("after 25 posts with batch 10: %d handed over", f.count())
	}
	// The timer takes over the idle batch of 5.
	testwait.Until(t, 5*time.Second, "timer flush", func() bool { return f.count() == 25 })
	s := reg.Snapshot()
	if s.Posted != 25 || s.Delivered != 25 || s.Queued != 0 || !s.Balanced() {
		t.Fatalf("snapshot %+v", s)
	}
	if s.WaitMax > 50*time.Millisecond+lateMargin {
		t.Fatalf("waited %v", s.WaitMax)
	}
	p.Close()
	p.Post(rec(99)) // ignored after Close
	if reg.Snapshot().Posted != 25 {
		t.Fatal("post after close counted")
	}
}

func TestNoBackendCountsUnrouted(t *testing.T) {
	e := NewEngine()
	e.Post(rec(1))
	if e.Unrouted() != 1 {
		t.Fatal("unrouted not counted")
	}
}

// TestInvariantConcurrent posts from several goroutines while a reader
// checks the invariant on every snapshot.
func TestInvariantConcurrent(t *testing.T) {
	e := NewEngine()
	e.StartFlusher()
	defer e.Close()
	f := &fakeBackend{name: "fake", max: 7, age: 2 * time.Millisecond}
	reg, _ := e.Register(f)
	g := &fakeBackend{name: "second", max: 3, age: 5 * time.Millisecond}
	reg2, _ := e.Register(g)
	var stop atomic.Bool
	var wg sync.WaitGroup
	const workers, per = 4, 5000
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := e.NewPoster()
			defer p.Close()
			for i := range per {
				p.Post(rec(w*per + i))
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !stop.Load() {
			for _, r := range []*Registration{reg, reg2} {
				s := r.Snapshot()
				if !s.Balanced() {
					t.Errorf("unbalanced snapshot %+v", s)
					return
				}
			}
		}
	}()
	wg.Wait()
	stop.Store(true)
	<-done
	for _, r := range []*Registration{reg, reg2} {
		s := r.Snapshot()
		if s.Posted != workers*per || s.Delivered != workers*per || s.Batched != 0 {
			t.Fatalf("final %+v", s)
		}
	}
}

func TestUnregisterHandsOver(t *testing.T) {
	e := NewEngine()
	f := &fakeBackend{name: "fake", max: 100, age: time.Hour}
	reg, _ := e.Register(f)
	p := e.NewPoster()
	for i := range 5 {
		p.Post(rec(i))
	}
	reg.Unregister()
	if f.count() != 5 {
		t.Fatalf("unregister handed over %d of 5", f.count())
	}
	p.Post(rec(6)) // goes nowhere: no backend
	if e.Unrouted() != 1 {
		t.Fatalf("unrouted %d", e.Unrouted())
	}
	if s := reg.Snapshot(); s.State != StateUnregistered || s.Posted != 5 {
		t.Fatalf("%+v", s)
	}
	// Register again: the poster picks it up.
	f2 := &fakeBackend{name: "fake", max: 1, age: time.Hour}
	_, err := e.Register(f2)
	if err != nil {
		t.Fatal(err)
	}
	p.Post(rec(7))
	if f2.count() != 1 {
		t.Fatal("re-registered backend got nothing")
	}
}

func TestSuspendHoldsHandOvers(t *testing.T) {
	e := NewEngine()
	f := &fakeBackend{name: "fake", max: 2, age: time.Hour}
	reg, _ := e.Register(f)
	reg.Suspend()
	if reg.State() != StateSuspended {
		t.Fatal(reg.State())
	}
	done := make(chan struct{})
	go func() {
		p := e.NewPoster()
		p.Post(rec(1))
		p.Post(rec(2)) // full: waits for Resume
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("hand-over ran while suspended")
	case <-time.After(20 * time.Millisecond):
	}
	reg.Resume()
	<-done
	if f.count() != 2 {
		t.Fatal("not handed over after resume")
	}
}

// jitter measures how late a 5 ms ticker fires while the test runs: the
// machine's scheduling delay, which no flusher can beat.
func jitter() (stop func() time.Duration) {
	done := make(chan struct{})
	res := make(chan time.Duration)
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		last, worst := time.Now(), time.Duration(0)
		for {
			select {
			case <-done:
				res <- worst
				return
			case now := <-t.C:
				_ = now
				n := time.Now()
				worst = max(worst, n.Sub(last)-5*time.Millisecond)
				last = n
			}
		}
	}()
	return func() time.Duration { close(done); return <-res }
}

// lateBound is how late past its flush age a hand-over may be: the
// scheduling delay the sampler saw, twice over because the sampler and the
// flusher are different goroutines and the flusher's own delay can exceed
// what the sampler caught, plus 20 ms for the race detector's slower paths
// on a loaded machine. A flusher that misses its wake-up never hands the
// batch over at all, which the tests' waits catch.
func lateBound(age, worst time.Duration) time.Duration {
	return age + 2*worst + 20*time.Millisecond
}

// TestTimerFlushLatency posts at 10 records/s and checks, from the
// engine's own measurement of each hand-over, that no record waited past
// flush age + the scheduling delay measured meanwhile (lateBound).
func TestTimerFlushLatency(t *testing.T) {
	e := NewEngine()
	e.StartFlusher()
	defer e.Close()
	f := &fakeBackend{name: "fake", max: 256, age: 100 * time.Millisecond}
	reg, _ := e.Register(f)
	p := e.NewPoster()
	defer p.Close()
	stopJitter := jitter()
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	for i := range 15 {
		<-tk.C
		p.Post(rec(i))
	}
	testwait.Until(t, 5*time.Second, "all handed over", func() bool { return f.count() == 15 })
	worst := stopJitter()
	s := reg.Snapshot()
	if s.WaitMax > lateBound(100*time.Millisecond, worst) {
		t.Fatalf("max wait %v (scheduling delay seen %v)", s.WaitMax, worst)
	}
	t.Logf("max wait %v, scheduling delay %v, late %d", s.WaitMax, worst, s.WaitLate)
}

func BenchmarkPost(b *testing.B) {
	e := NewEngine()
	f := &fakeBackend{name: "fake", max: 256, age: time.Hour}
	e.Register(f)
	p := e.NewPoster()
	r := rec(1)
	b.ReportAllocs()
	for b.Loop() {
		p.Post(r)
	}
	_ = fmt.Sprint()
}

// TestHandoverOrderPerPoster: batches of one Poster reach the backend in
// the order they were filled, even when the flusher (age) and the Poster
// (full batch) hand over at the same moment.
func TestHandoverOrderPerPoster(t *testing.T) {
	e := NewEngine()
	f := &fakeBackend{name: "ordered", max: 16, age: time.Millisecond, slow: 100 * time.Microsecond}
	_, err := e.Register(f)
	if err != nil {
		t.Fatal(err)
	}
	e.StartFlusher()
	p := e.NewPoster()
	const n = 20000
	for i := 0; i < n; i++ {
		p.Post(rec(i))
		if i%7 == 0 {
			time.Sleep(time.Duration(i%3) * 300 * time.Microsecond) // let batches age now and then
		}
	}
	p.Close()
	e.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) != n {
		t.Fatalf("got %d records, want %d", len(f.got), n)
	}
	for i, g := range f.got {
		if want := fmt.Sprintf(`"seq":%d}`, i+1); !strings.Contains(g, want) {
			t.Fatalf("record %d out of order: %s", i, g)
		}
	}
}

// TestFlusherSleepsWhenIdle: with nothing pending the flusher stops
// ticking, and the Post that starts the next batch wakes it, so that batch
// still goes out at its flush age.
func TestFlusherSleepsWhenIdle(t *testing.T) {
	e := NewEngine()
	e.StartFlusher()
	defer e.Close()
	f := &fakeBackend{name: "fake", max: 256, age: 50 * time.Millisecond}
	reg, _ := e.Register(f)
	p := e.NewPoster()
	defer p.Close()
	stopJitter := jitter()
	for i := range 5 {
		p.Post(rec(i))
		testwait.Until(t, 5*time.Second, "handed over", func() bool { return f.count() == i+1 })
		testwait.Until(t, 5*time.Second, "flusher idle", func() bool { return e.idle.Load() })
	}
	worst := stopJitter()
	if s := reg.Snapshot(); s.WaitMax > lateBound(50*time.Millisecond, worst) {
		t.Fatalf("max wait %v after idle periods (scheduling delay seen %v)", s.WaitMax, worst)
	}
}
