package cdrkafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/cdr/spool"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// fakeProducer queues messages until deliver is called.
type fakeProducer struct {
	mu        sync.Mutex
	cap       int
	q         []fakeMsg
	delivered []fakeMsg
	k         *Backend
	auto      bool                     // deliver at once
	calls     int                      // produceBatch calls
	refuse    func(value string) error // non-nil: refuses a message with a non-queue-full error
}

type fakeMsg struct {
	key, value string
	opaque     any
}

func (f *fakeProducer) produce(key, value []byte, opaque any) error {
	f.mu.Lock()
	if f.refuse != nil {
		if err := f.refuse(string(value)); err != nil {
			f.mu.Unlock()
			return err
		}
	}
	if len(f.q) >= f.cap {
		f.mu.Unlock()
		return fmt.Errorf("fake: %w", errQueueFull)
	}
	m := fakeMsg{string(key), string(value), opaque}
	if f.auto {
		f.delivered = append(f.delivered, m)
		f.mu.Unlock()
		f.k.onDelivery(opaque, nil)
		return nil
	}
	f.q = append(f.q, m)
	f.mu.Unlock()
	return nil
}

// callCount returns how many produceBatch calls were made.
func (f *fakeProducer) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// produceBatch produces msgs one by one and stops at the first refusal, as
// res_kafka's ProduceBatch does.
func (f *fakeProducer) produceBatch(msgs []reskafka.OutMessage) (int, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	for i := range msgs {
		if err := f.produce(msgs[i].Key, msgs[i].Value, msgs[i].Opaque); err != nil {
			return i, err
		}
	}
	return len(msgs), nil
}

// deliver reports the n oldest queued messages with err.
func (f *fakeProducer) deliver(n int, err error) {
	f.mu.Lock()
	n = min(n, len(f.q))
	batch := append([]fakeMsg(nil), f.q[:n]...)
	f.q = f.q[n:]
	if err == nil {
		f.delivered = append(f.delivered, batch...)
	}
	f.mu.Unlock()
	for _, m := range batch {
		f.k.onDelivery(m.opaque, err)
	}
}

func (f *fakeProducer) flush(time.Duration) int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.q) }
func (f *fakeProducer) len() int                { f.mu.Lock(); defer f.mu.Unlock(); return len(f.q) }

func (f *fakeProducer) seqs(t *testing.T) map[uint64]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[uint64]int{}
	for _, m := range f.delivered {
		var w struct{ Seq uint64 }
		if err := json.Unmarshal([]byte(m.value), &w); err != nil {
			t.Fatalf("bad JSON %q", m.value)
		}
		out[w.Seq]++
	}
	return out
}

type rig struct {
	e   *cdr.Engine
	k   *Backend
	fp  *fakeProducer
	reg *cdr.Registration
}

func newRig(t *testing.T, cfg *Config, fp *fakeProducer, spoolDir string) *rig {
	t.Helper()
	e := cdr.NewEngine()
	k := newBackend(cfg, fp, slog.New(slog.DiscardHandler), nil)
	fp.k = k
	loaded := 0
	if cfg.mode() == modeSpool {
		var err error
		if loaded, err = k.openSpool(spool.Options{Dir: spoolDir, FsyncInterval: 10 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := e.Register(k)
	if err != nil {
		t.Fatal(err)
	}

	if k.sp != nil {
		k.startReplay(loaded)
	}
	return &rig{e: e, k: k, fp: fp, reg: reg}
}

func (r *rig) stop() {
	r.reg.Unregister()
	r.k.shutdown(time.Duration(r.k.cfg.Load().ShutdownFlushMs) * time.Millisecond)
}

func record(i int) *cdr.Record {
	return &cdr.Record{TS: 1717430400123, IP: netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}), SubscriberID: "subscriber-42",
		Domain: []byte("malware.ru"), QType: 1, Action: decision.Sinkhole, Group: 3, Category: 1, Seq: uint64(i + 1)}
}

func check(t *testing.T, reg *cdr.Registration) cdr.Snapshot {
	t.Helper()
	s := reg.Snapshot()
	if !s.Balanced() {
		t.Fatalf("unbalanced: %+v", s)
	}
	return s
}

func TestDropModeCountsExactly(t *testing.T) {
	cfg := defaults()
	cfg.BatchMax = 10
	fp := &fakeProducer{cap: 25}
	r := newRig(t, cfg, fp, "")
	p := r.e.NewPoster()
	for i := range 100 {
		p.Post(record(i))
		check(t, r.reg)
	}
	s := check(t, r.reg)
	// 10 batches of 10: 25 fit, the 3rd batch loses its last 5, batches 4..10 lose all.
	if s.Posted != 100 || s.Dropped != 75 || s.DroppedBy[cdr.DropQueueFull] != 75 || s.Inflight != 25 {
		t.Fatalf("%+v", s)
	}
	fp.deliver(20, nil)
	fp.deliver(5, fmt.Errorf("boom"))
	s = check(t, r.reg)
	if s.Delivered != 20 || s.Failed != 5 || s.Queued != 0 {
		t.Fatalf("%+v", s)
	}
	p.Close()
	r.stop()
}

func TestKeyForms(t *testing.T) {
	for _, form := range []string{"ip_binary", "ip_text"} {
		cfg := defaults()
		cfg.Key, cfg.BatchMax = form, 1
		fp := &fakeProducer{cap: 10, auto: true}
		r := newRig(t, cfg, fp, "")
		r.e.Post(record(42))
		fp.mu.Lock()
		m := fp.delivered[0]
		fp.mu.Unlock()
		want := string([]byte{192, 168, 0, 42})
		if form == "ip_text" {
			want = "192.168.0.42"
		}
		if m.key != want {
			t.Fatalf("%s: key %q", form, m.key)
		}
		if m.value != `{"ts":1717430400123,"ip":"192.168.0.42","subscriber_id":"subscriber-42","domain":"malware.ru","qtype":1,"action":"sinkhole","group":3,"category":"0x00000001","id":"`+
			fmt.Sprintf("%016x", r.e.Instance())+`-1","seq":43}` {
			t.Fatalf("value %s", m.value)
		}
		r.stop()
	}
}

func TestBlockModeWaitsThenDrops(t *testing.T) {
	cfg := defaults()
	cfg.OnQueueFull, cfg.BatchMax, cfg.BlockMs = "block", 5, 300
	fp := &fakeProducer{cap: 5}
	r := newRig(t, cfg, fp, "")
	p := r.e.NewPoster()
	for i := range 5 {
		p.Post(record(i))
	}
	go func() { time.Sleep(5 * time.Millisecond); fp.deliver(5, nil) }()
	for i := range 5 {
		p.Post(record(5 + i)) // blocks until the deliver above makes room
	}
	s := check(t, r.reg)
	if s.Dropped != 0 || s.Enqueued != 10 {
		t.Fatalf("%+v", s)
	}
	start := time.Now()
	for i := range 5 {
		p.Post(record(10 + i)) // full, nobody delivers: block_ms then drop
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("did not block: %v", d)
	}
	s = check(t, r.reg)
	if s.DroppedBy[cdr.DropBlockTimeout] != 5 {
		t.Fatalf("%+v", s)
	}
	p.Close()
	r.stop()
}

// TestSpoolModeEndToEnd: queue full -> spool; failed delivery -> spool;
// shutdown with records in the producer -> spool; a new run replays them
// all before new records, each exactly once.
func TestSpoolModeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	cfg := defaults()
	cfg.OnQueueFull, cfg.BatchMax = "spool", 10
	fp := &fakeProducer{cap: 30}
	r := newRig(t, cfg, fp, dir)
	p := r.e.NewPoster()
	for i := range 100 {
		p.Post(record(i))
		check(t, r.reg)
	}
	p.Flush()
	s := check(t, r.reg)
	if s.Spooled != 70 || s.Dropped != 0 || s.Inflight+s.SpoolPending != 100 {
		t.Fatalf("%+v", s)
	}
	fp.deliver(10, nil)
	fp.deliver(5, fmt.Errorf("broker said no")) // -> spool
	s = check(t, r.reg)
	if s.Delivered != 10 || s.Spooled != 75 || s.Failed != 0 {
		t.Fatalf("%+v", s)
	}
	p.Close()
	r.stop() // what is still in the producer -> spool
	s = check(t, r.reg)
	if s.Inflight != 0 || s.Delivered != 10 || s.Queued != 90 {
		t.Fatalf("after stop %+v", s)
	}
	// The old producer's late reports are ignored (they were spooled).
	fp.deliver(100, fmt.Errorf("purged"))

	// Second run: broker up (auto delivery).
	fp2 := &fakeProducer{cap: 1000, auto: true}
	r2 := newRig(t, cfg, fp2, dir)
	if s := check(t, r2.reg); s.Loaded != 90 {
		t.Fatalf("loaded %+v", s)
	}
	p2 := r2.e.NewPoster()
	for i := 100; i < 110; i++ {
		p2.Post(record(i))
	}
	p2.Flush()
	testwait.UntilState(t, 5*time.Second, "the queue drained", func() (bool, string) {
		s := check(t, r2.reg)
		return s.Queued == 0, fmt.Sprintf("%+v", s)
	})
	p2.Close()
	r2.stop()
	all := fp.seqs(t)
	for seq, n := range fp2.seqs(t) {
		all[seq] += n
	}
	for i := 1; i <= 110; i++ {
		if all[uint64(i)] != 1 {
			t.Fatalf("seq %d delivered %d times", i, all[uint64(i)])
		}
	}
	// Old records came before new ones.
	fp2.mu.Lock()
	last := fp2.delivered[len(fp2.delivered)-1].value
	fp2.mu.Unlock()
	var w struct{ Seq int }
	json.Unmarshal([]byte(last), &w)
	if w.Seq < 101 {
		t.Fatalf("new records not last: %s", last)
	}
}

// TestSpoolLateDeliveryAcked: a record spooled at shutdown that the
// producer delivers afterwards is acknowledged and not replayed.
func TestSpoolLateDeliveryAcked(t *testing.T) {
	dir := t.TempDir()
	cfg := defaults()
	cfg.OnQueueFull, cfg.BatchMax = "spool", 5
	fp := &fakeProducer{cap: 100}
	r := newRig(t, cfg, fp, dir)
	p := r.e.NewPoster()
	for i := range 5 {
		p.Post(record(i))
	}
	p.Close()
	r.stop()
	fp.deliver(3, nil) // late success for seq 1..3
	fp2 := &fakeProducer{cap: 100, auto: true}
	r2 := newRig(t, cfg, fp2, dir)
	if s := check(t, r2.reg); s.Loaded != 2 {
		t.Fatalf("loaded %d, want 2", s.Loaded)
	}
	r2.stop()
}

func BenchmarkPipelineFake(b *testing.B) {
	cfg := defaults()
	fp := &fakeProducer{cap: 1 << 30, auto: true}
	e := cdr.NewEngine()
	k := newBackend(cfg, fp, slog.New(slog.DiscardHandler), nil)
	fp.k = k
	e.Register(k)

	p := e.NewPoster()
	rec := record(1)
	b.ReportAllocs()
	for b.Loop() {
		p.Post(rec)
		if len(fp.delivered) > 100000 {
			fp.delivered = fp.delivered[:0]
		}
	}
}

// nopProducer accepts everything and reports nothing.
type nopProducer struct{}

func (nopProducer) produceBatch(msgs []reskafka.OutMessage) (int, error) { return len(msgs), nil }
func (nopProducer) flush(time.Duration) int                              { return 0 }
func (nopProducer) len() int                                             { return 0 }

// BenchmarkPostEncode is the hot path without Kafka: Post -> batch ->
// encode -> hand-over. It must not allocate.
func BenchmarkPostEncode(b *testing.B) {
	e := cdr.NewEngine()
	k := newBackend(defaults(), nopProducer{}, slog.New(slog.DiscardHandler), nil)
	e.Register(k)

	p := e.NewPoster()
	rec := record(1)
	b.ReportAllocs()
	for b.Loop() {
		p.Post(rec)
	}
}

// defaults returns the configuration of a missing cdr_kafka.conf.
func defaults() *Config {
	var f File
	if err := conf.DecodeFile(nil, &f); err != nil {
		panic(err)
	}
	return &f.General
}

// The sample documents the defaults: decoded, it is the missing file's
// configuration.
func TestSampleConfigDecodes(t *testing.T) {
	f, err := conf.Load("../../samples/cdr_kafka.conf")
	if err != nil {
		t.Fatal(err)
	}
	var cfg File
	if err := conf.DecodeFile(f, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.General != *defaults() {
		t.Fatalf("sample differs from the defaults:\n%+v\n%+v", cfg.General, *defaults())
	}
}

// deliveredSeqs returns the seq of every delivered message, in order.
func (f *fakeProducer) deliveredSeqs(t *testing.T) []uint64 {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []uint64
	for _, m := range f.delivered {
		var w struct{ Seq uint64 }
		if err := json.Unmarshal([]byte(m.value), &w); err != nil {
			t.Fatalf("bad JSON %q", m.value)
		}
		out = append(out, w.Seq)
	}
	return out
}

// TestBatchHandoverOneCall: a batch goes to the producer in one call; a
// partially accepted batch continues through the queue-full path in order.
func TestBatchHandoverOneCall(t *testing.T) {
	t.Run("whole batch", func(t *testing.T) {
		cfg := defaults()
		cfg.BatchMax = 10
		fp := &fakeProducer{cap: 100, auto: true}
		r := newRig(t, cfg, fp, "")
		p := r.e.NewPoster()
		for i := range 30 {
			p.Post(record(i))
		}
		if s := check(t, r.reg); s.Delivered != 30 || fp.callCount() != 3 {
			t.Fatalf("calls %d, %+v", fp.callCount(), s)
		}
		p.Close()
		r.stop()
	})
	t.Run("drop partial", func(t *testing.T) {
		cfg := defaults()
		cfg.BatchMax = 10
		fp := &fakeProducer{cap: 4}
		r := newRig(t, cfg, fp, "")
		p := r.e.NewPoster()
		for i := range 10 {
			p.Post(record(i))
		}
		// 4 accepted by the batch call, the 5th retried once, 6 dropped.
		s := check(t, r.reg)
		if s.Enqueued != 4 || s.DroppedBy[cdr.DropQueueFull] != 6 || fp.callCount() != 2 || r.k.queueFull.Load() != 1 || r.k.retried.Load() != 1 {
			t.Fatalf("calls %d, %+v", fp.callCount(), s)
		}
		p.Close()
		r.stop()
	})
	t.Run("block partial", func(t *testing.T) {
		cfg := defaults()
		cfg.OnQueueFull, cfg.BatchMax, cfg.BlockMs = "block", 10, 5000
		fp := &fakeProducer{cap: 4}
		r := newRig(t, cfg, fp, "")
		p := r.e.NewPoster()
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				case <-time.After(time.Millisecond):
					fp.deliver(1, nil)
				}
			}
		}()
		for i := range 20 {
			p.Post(record(i))
		}
		deadline := time.Now().Add(10 * time.Second)
		for check(t, r.reg).Delivered < 20 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		close(stop)
		<-done
		s := check(t, r.reg)
		if s.Delivered != 20 || s.Dropped != 0 {
			t.Fatalf("%+v", s)
		}
		for i, seq := range fp.deliveredSeqs(t) {
			if seq != uint64(i+1) {
				t.Fatalf("out of order at %d: %v", i, fp.deliveredSeqs(t))
			}
		}
		p.Close()
		r.stop()
	})
	t.Run("refused", func(t *testing.T) {
		cfg := defaults()
		cfg.BatchMax = 10
		fp := &fakeProducer{cap: 100, auto: true, refuse: func(v string) error {
			if strings.Contains(v, `"seq":3}`) {
				return errors.New("fake: message too large")
			}
			return nil
		}}
		r := newRig(t, cfg, fp, "")
		p := r.e.NewPoster()
		for i := range 10 {
			p.Post(record(i))
		}
		// 2 in the batch call, the 3rd refused, the other 7 one by one.
		s := check(t, r.reg)
		if s.Delivered != 9 || s.DroppedBy[cdr.DropProduceError] != 1 || fp.callCount() != 8 {
			t.Fatalf("calls %d, %+v", fp.callCount(), s)
		}
		p.Close()
		r.stop()
	})
	t.Run("spool partial", func(t *testing.T) {
		cfg := defaults()
		cfg.OnQueueFull, cfg.BatchMax = "spool", 10
		fp := &fakeProducer{cap: 4}
		r := newRig(t, cfg, fp, t.TempDir())
		p := r.e.NewPoster()
		for i := range 10 {
			p.Post(record(i))
		}
		// One call took 4 and the rest went to the spool; the replayer
		// may already have tried the spooled rest again (queue still
		// full), so later calls are not counted here.
		s := check(t, r.reg)
		if s.Enqueued != 4 || s.Spooled != 6 || fp.callCount() < 1 {
			t.Fatalf("calls %d, %+v", fp.callCount(), s)
		}
		deadline := time.Now().Add(10 * time.Second)
		for check(t, r.reg).Delivered < 10 && time.Now().Before(deadline) {
			fp.deliver(4, nil)
			time.Sleep(time.Millisecond)
		}
		if s := check(t, r.reg); s.Delivered != 10 {
			t.Fatalf("%+v", s)
		}
		for i, seq := range fp.deliveredSeqs(t) {
			if seq != uint64(i+1) {
				t.Fatalf("out of order at %d: %v", i, fp.deliveredSeqs(t))
			}
		}
		p.Close()
		r.stop()
	})
}

// TestRefusedInSpoolModeAndReplay: a message the producer refuses for
// another reason than a full queue is dropped (produce_error) in spool mode
// too, at hand-over and at replay, and the others go on in order.
func TestRefusedInSpoolModeAndReplay(t *testing.T) {
	refuse := func(seq string) func(string) error {
		return func(v string) error {
			if strings.Contains(v, `"seq":`+seq+`}`) {
				return errors.New("fake: message too large")
			}
			return nil
		}
	}
	cfg := defaults()
	cfg.OnQueueFull, cfg.BatchMax = "spool", 10
	t.Run("hand-over", func(t *testing.T) {
		fp := &fakeProducer{cap: 100, auto: true, refuse: refuse("3")}
		r := newRig(t, cfg, fp, t.TempDir())
		p := r.e.NewPoster()
		for i := range 10 {
			p.Post(record(i))
		}
		s := check(t, r.reg)
		if s.Delivered != 9 || s.DroppedBy[cdr.DropProduceError] != 1 || s.Spooled != 0 || s.Queued != 0 {
			t.Fatalf("%+v", s)
		}
		if got := fmt.Sprint(fp.deliveredSeqs(t)); got != "[1 2 4 5 6 7 8 9 10]" {
			t.Fatalf("delivered %s", got)
		}
		p.Close()
		r.stop()
	})
	t.Run("replay", func(t *testing.T) {
		dir := t.TempDir()
		fp := &fakeProducer{cap: 0} // every hand-over meets a full queue
		r := newRig(t, cfg, fp, dir)
		p := r.e.NewPoster()
		for i := range 10 {
			p.Post(record(i))
		}
		p.Close()
		r.stop()
		if s := check(t, r.reg); s.SpoolPending != 10 || s.Queued != 10 {
			t.Fatalf("first run %+v", s)
		}
		fp2 := &fakeProducer{cap: 100, auto: true, refuse: refuse("5")}
		r2 := newRig(t, cfg, fp2, dir)
		testwait.UntilState(t, 5*time.Second, "the spool replayed", func() (bool, string) {
			s := check(t, r2.reg)
			return s.Queued == 0 && r2.k.sp.Status().Segments == 0, fmt.Sprintf("%+v %+v", s, r2.k.sp.Status())
		})
		s := check(t, r2.reg)
		if s.Loaded != 10 || s.Replayed != 10 || s.Delivered != 9 || s.DroppedBy[cdr.DropProduceError] != 1 {
			t.Fatalf("%+v", s)
		}
		if got := fmt.Sprint(fp2.deliveredSeqs(t)); got != "[1 2 3 4 6 7 8 9 10]" {
			t.Fatalf("delivered %s", got)
		}
		r2.stop()
	})
}
