package pktengine

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/dataplane"
	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
	"github.com/switchboard-dp/switchboard/modules/dataplane/subscribers"
	"github.com/switchboard-dp/switchboard/modules/pktengine/capgen"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// fakeDecider blocks names under blocked domains and sinkholes names
// containing "malware".
type fakeDecider struct {
	blocked map[string]bool
	closed  *sync.WaitGroup
}

func (f *fakeDecider) decide(q []byte) dataplane.Decision {
	if bytes.Contains(q, []byte("malware")) {
		return dataplane.Decision{Action: decision.Sinkhole, Group: 9, Category: 1}
	}
	for s := string(q); s != ""; {
		if f.blocked[s] {
			return dataplane.Decision{Action: decision.Block, Group: 7, Category: 2}
		}
		_, rest, ok := strings.Cut(s, ".")
		if !ok {
			break
		}
		s = rest
	}
	return dataplane.Decision{Action: decision.Allow, Group: 1}
}

func (f *fakeDecider) DecideBurst(groups []string, q [][]byte, out []dataplane.Decision) {
	for i := range q {
		out[i] = f.decide(q[i])
		if groups[i] == "" {
			panic("empty group")
		}
	}
}

func (f *fakeDecider) Close() {
	if f.closed != nil {
		f.closed.Done()
	}
}

type gotCDR struct {
	cdr.Record
	domain string
}

type fakePoster struct {
	mu   *sync.Mutex
	recs *[]gotCDR
}

func (p *fakePoster) Post(r *cdr.Record) {
	p.mu.Lock()
	*p.recs = append(*p.recs, gotCDR{Record: *r, domain: string(r.Domain)})
	p.mu.Unlock()
}
func (p *fakePoster) Close() {}

type harness struct {
	e    *Engine
	mu   sync.Mutex
	recs []gotCDR
	dec  *fakeDecider
}

func newHarness(t *testing.T, workers int, set decision.ActionSet, subs *subscribers.Holder) *harness {
	t.Helper()
	h := &harness{dec: &fakeDecider{blocked: map[string]bool{"0-google.com": true, "tracker.ads.example": true}}}
	e, err := New(EngineOptions{
		Workers:     workers,
		Batch:       32,
		Queue:       4,
		NewDecider:  func() dataplane.Decider { return h.dec },
		NewPoster:   func() dataplane.Poster { return &fakePoster{mu: &h.mu, recs: &h.recs} },
		CDRActions:  set,
		Subscribers: subs,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.e = e
	t.Cleanup(func() { e.Close(context.Background()) })
	return h
}

func writeCapture(t testing.TB, cfg capgen.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.pcap")
	if cfg.NG {
		path += "ng"
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := capgen.Generate(f, cfg); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func (h *harness) replay(t *testing.T, path string, speed float64) {
	t.Helper()
	src, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := h.e.Start(src, speed)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.e.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := h.e.Drain(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestEngineDecidesEveryQueryInOrder(t *testing.T) {
	tab, err := subscribers.Build(&subscribers.Subscriber{ID: "unknown", Group: "default"}, []subscribers.Entry{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Subscriber: &subscribers.Subscriber{ID: "pool4", Group: "family"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, 3, decision.AllActions, subscribers.NewHolder(tab))
	path := writeCapture(t, capgen.Config{Queries: 3000, Seed: 5, Subscribers: 40, IPv6Share: 0.3, TCPShare: 0.1, Responses: true,
		Blocked: []string{"0-google.com", "tracker.ads.example", "malware-c2.example.ru"}, BlockedShare: 0.5, MixedCaseShare: 0.2})
	h.replay(t, path, 0)
	st := h.e.Status()
	if st.Totals.Packets != 6000 || st.Totals.Queries != 3000 || st.Totals.Responses != 3000 {
		t.Fatalf("counters %+v", st.Totals)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.recs) != 3000 || st.CDRs != 3000 {
		t.Fatalf("%d CDRs recorded, %d counted", len(h.recs), st.CDRs)
	}
	lastTS := map[netip.Addr]int64{}
	var byAction [decision.NumActions]int
	for _, r := range h.recs {
		want := h.dec.decide([]byte(r.domain))
		if r.Action != want.Action || r.Group != want.Group || r.Category != want.Category {
			t.Fatalf("%s: CDR %+v, want %+v", r.domain, r.Record, want)
		}
		if r.domain != strings.ToLower(r.domain) {
			t.Fatalf("domain not folded: %s", r.domain)
		}
		if r.IP.Is4() && r.SubscriberID != "pool4" || r.IP.Is6() && r.SubscriberID != "unknown" {
			t.Fatalf("subscriber of %v: %s", r.IP, r.SubscriberID)
		}
		if r.TS < lastTS[r.IP] {
			t.Fatalf("CDRs of %v out of order", r.IP)
		}
		lastTS[r.IP] = r.TS
		byAction[r.Action]++
	}
	for a := range byAction {
		if uint64(byAction[a]) != st.Decided[a] {
			t.Errorf("%v: %d CDRs, %d decided", decision.Action(a), byAction[a], st.Decided[a])
		}
		if byAction[a] == 0 {
			t.Errorf("no %v decisions in the mix", decision.Action(a))
		}
	}
	if len(lastTS) < 30 {
		t.Errorf("only %d subscribers", len(lastTS))
	}
}

func TestCDRActionsFilter(t *testing.T) {
	h := newHarness(t, 2, decision.SetOf(decision.Block, decision.Sinkhole), nil)
	path := writeCapture(t, capgen.Config{Queries: 1000, Seed: 6, Subscribers: 20, Blocked: []string{"0-google.com"}, BlockedShare: 0.3})
	h.replay(t, path, 0)
	st := h.e.Status()
	if st.CDRs != st.Decided[decision.Block]+st.Decided[decision.Sinkhole] || st.Skipped[decision.Allow] != st.Decided[decision.Allow] || st.Decided[decision.Block] == 0 {
		t.Fatalf("cdrs %d decided %v skipped %v", st.CDRs, st.Decided, st.Skipped)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.recs {
		if r.Action == decision.Allow {
			t.Fatal("allow CDR with cdr_actions = block,sinkhole")
		}
	}
}

// TestCDRActionsNone: cdr_actions = none (the empty set) posts no CDR and
// counts every decision as skipped.
func TestCDRActionsNone(t *testing.T) {
	h := newHarness(t, 2, 0, nil)
	path := writeCapture(t, capgen.Config{Queries: 300, Seed: 6, Subscribers: 20, Blocked: []string{"0-google.com"}, BlockedShare: 0.3})
	h.replay(t, path, 0)
	st := h.e.Status()
	if st.CDRs != 0 || st.Skipped != st.Decided || st.Decided[decision.Allow]+st.Decided[decision.Block] != 300 {
		t.Fatalf("cdrs %d decided %v skipped %v", st.CDRs, st.Decided, st.Skipped)
	}
}

func TestReplayPace(t *testing.T) {
	// 200 queries at 1000 packets/s: 0.2 s of capture time.
	path := writeCapture(t, capgen.Config{Queries: 200, Seed: 7, PPS: 1000})
	h := newHarness(t, 2, decision.AllActions, nil)
	start := time.Now()
	h.replay(t, path, 1)
	if d := time.Since(start); d < 180*time.Millisecond {
		t.Errorf("speed 1 replay of 0.2 s took %v", d)
	}
	start = time.Now()
	h.replay(t, path, 4)
	if d := time.Since(start); d < 40*time.Millisecond || d > 190*time.Millisecond {
		t.Logf("speed 4 replay of 0.2 s took %v (expected ~50ms)", d)
	}
	if st := h.e.Status(); st.Totals.Queries != 400 || st.CDRs != 400 {
		t.Fatalf("queries %d cdrs %d", st.Totals.Queries, st.CDRs)
	}
}

func TestStopSource(t *testing.T) {
	// 10 s of capture at speed 1: stop it early; what was read is decided.
	path := writeCapture(t, capgen.Config{Queries: 1000, Seed: 8, PPS: 100})
	h := newHarness(t, 2, decision.AllActions, nil)
	src, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	id, err := h.e.Start(src, 1)
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "the first query read", func() bool { return h.e.Status().Totals.Queries > 0 })
	n, err := h.e.StopSource(context.Background(), 0)
	if err != nil || n != 1 {
		t.Fatalf("stopped %d: %v", n, err)
	}
	h.e.Drain(context.Background())
	st := h.e.Status()
	if st.Totals.Queries == 0 || st.Totals.Queries >= 1000 || st.CDRs != st.Totals.Queries {
		t.Fatalf("queries %d cdrs %d", st.Totals.Queries, st.CDRs)
	}
	if len(st.Sources) != 1 || st.Sources[0].ID != id || st.Sources[0].State != "stopped" {
		t.Fatalf("sources %+v", st.Sources)
	}
}

func TestMalformedCounted(t *testing.T) {
	// Corrupt the first label of every 3rd query of a generated capture.
	path := writeCapture(t, capgen.Config{Queries: 300, Seed: 9})
	data, _ := os.ReadFile(path)
	// Corrupt: the first label length byte sits right after the 12-octet
	// DNS header, 14+20+8+12 = 54 octets into each frame (IPv4/UDP, no
	// VLAN); frames start after the 24-octet file header and 16-octet
	// record headers.
	off, i := 24, 0
	for off+16 <= len(data) {
		caplen := int(data[off+8]) | int(data[off+9])<<8 | int(data[off+10])<<16 | int(data[off+11])<<24
		if i%3 == 0 {
			data[off+16+54] = 0x80 // reserved label type
		}
		off += 16 + caplen
		i++
	}
	os.WriteFile(path, data, 0o644)
	h := newHarness(t, 2, decision.AllActions, nil)
	h.replay(t, path, 0)
	st := h.e.Status()
	if st.Totals.Reasons[dnsdecode.MalformedBadLabel] != 100 || st.Totals.Malformed() != 100 {
		t.Fatalf("malformed %d (%v)", st.Totals.Malformed(), st.Totals.Reasons)
	}
	if st.Totals.Queries != 200 || st.CDRs != 200 {
		t.Fatalf("queries %d cdrs %d", st.Totals.Queries, st.CDRs)
	}
}

func TestSubscriberSwapUnderTraffic(t *testing.T) {
	holder := subscribers.NewHolder(nil)
	h := newHarness(t, 2, decision.AllActions, holder)
	path := writeCapture(t, capgen.Config{Queries: 20000, Seed: 10, Subscribers: 100})
	src, _ := OpenFile(path)
	id, err := h.e.Start(src, 0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			time.Sleep(time.Millisecond)
			g := "a"
			if i%2 == 1 {
				g = "b"
			}
			tab, _ := subscribers.Build(&subscribers.Subscriber{ID: g, Group: g}, nil)
			holder.Swap(tab)
			if h.e.Status().Totals.Queries == 20000 {
				return
			}
		}
	}()
	h.e.Wait(context.Background(), id)
	<-done
	h.e.Drain(context.Background())
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.recs) != 20000 {
		t.Fatalf("%d CDRs", len(h.recs))
	}
	for _, r := range h.recs {
		if r.SubscriberID != "a" && r.SubscriberID != "b" && r.SubscriberID != "unknown" {
			t.Fatalf("subscriber %q", r.SubscriberID)
		}
	}
}

func TestCloseDrainsAndClosesDeciders(t *testing.T) {
	var closed sync.WaitGroup
	closed.Add(3)
	dec := &fakeDecider{blocked: map[string]bool{}, closed: &closed}
	var mu sync.Mutex
	var recs []gotCDR
	e, err := New(EngineOptions{Workers: 3, NewDecider: func() dataplane.Decider { return dec }, NewPoster: func() dataplane.Poster { return &fakePoster{mu: &mu, recs: &recs} }, CDRActions: decision.AllActions})
	if err != nil {
		t.Fatal(err)
	}
	src, _ := OpenFile(writeCapture(t, capgen.Config{Queries: 5000, Seed: 11}))
	if _, err := e.Start(src, 0); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	closed.Wait()
	st := e.Status()
	if st.CDRs != st.Totals.Queries || uint64(len(recs)) != st.CDRs {
		t.Fatalf("queries %d cdrs %d recorded %d", st.Totals.Queries, st.CDRs, len(recs))
	}
	if _, err := e.Start(src, 0); err == nil {
		t.Fatal("start after close")
	}
}
