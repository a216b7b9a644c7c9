package pktengine

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/blocklist"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/dataplane"
	"github.com/switchboard-dp/switchboard/modules/dataplane/subscribers"
	"github.com/switchboard-dp/switchboard/modules/pktengine/capgen"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// blocklistDir holds the real block lists the repository carries.
func blocklistDir() string { return filepath.Join("..", "..", blocklist.Dir) }

// benchPolicy is what the benchmarks decide against: res_policy running in a
// host, seeded with up to `domains` block-list domains for group "family"
// (phishing, tracking, scam), the ransomware list as malicious (sinkhole)
// and a few whitelisted names.
type benchPolicy struct {
	host    *core.Host
	pol     *respolicy.Module
	blocked []string // the blacklisted + malicious domains, for the capture
	entries int
}

func newBenchPolicy(tb testing.TB, domains int) *benchPolicy {
	tb.Helper()
	dir := tb.TempDir()
	load := func(name string) []string {
		d, err := blocklist.Read(filepath.Join(blocklistDir(), name))
		if err != nil {
			tb.Fatal(err)
		}
		return d
	}
	seed, err := os.Create(filepath.Join(dir, "seed.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriter(seed)
	enc := json.NewEncoder(w)
	bp := &benchPolicy{}
	enc.Encode(map[string]any{"type": "BEGIN_SYNC", "group_id": "family"})
	seen := map[string]bool{}
	for i, list := range []string{"phishing-nl.txt", "tracking-nl.txt", "scam-nl.txt"} {
		for _, d := range load(list) {
			if bp.entries >= domains || seen[d] {
				continue
			}
			seen[d] = true
			enc.Encode(map[string]any{"type": "ADD_DOMAIN", "group_id": "family", "domain": d, "action": "blacklist", "category": 1 << i})
			bp.blocked = append(bp.blocked, d)
			bp.entries++
		}
	}
	for _, d := range []string{"google.com", "wikipedia.org", "debian.org"} {
		enc.Encode(map[string]any{"type": "ADD_DOMAIN", "group_id": "family", "domain": d, "action": "whitelist"})
	}
	enc.Encode(map[string]any{"type": "SYNC_COMPLETE", "group_id": "family"})
	for _, d := range load("ransomware-nl.txt") {
		enc.Encode(map[string]any{"type": "ADD_MALICIOUS", "domain": d, "category": 8, "confidence": 90})
		bp.blocked = append(bp.blocked, d)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	seed.Close()
	// hyperscan = no: the hash tier is res_policy's default burst engine, and
	// a background Hyperscan compile would steal CPU from the measurement.
	os.WriteFile(filepath.Join(dir, "res_policy.conf"), []byte("[general]\nseed_file = seed.jsonl\nhyperscan = no\n[groups]\nfamily = 3\n"), 0o644)
	reg := core.NewRegistry()
	if err := reg.Register(respolicy.Info()); err != nil {
		tb.Fatal(err)
	}
	h := core.New(core.Options{Registry: reg, ConfigDir: dir, DataDir: tb.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := h.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Stop(core.StopMode(0)) })
	inst, ok := h.Instance("res_policy")
	if !ok {
		tb.Fatal("res_policy not running")
	}
	bp.host, bp.pol = h, inst.(*respolicy.Module)
	return bp
}

// jsonBackend is a CDR backend that encodes every record as the wire JSON
// (cdr.AppendJSON) and throws the batch away: the CDR-encode cost without a
// broker.
type jsonBackend struct {
	records, bytes atomic.Uint64
}

func (b *jsonBackend) Name() string              { return "bench_json" }
func (b *jsonBackend) Attach(*cdr.Registration)  {}
func (b *jsonBackend) FlushAfter() time.Duration { return 100 * time.Millisecond }
func (b *jsonBackend) NewBatcher() cdr.Batcher {
	return &jsonBatcher{b: b, buf: make([]byte, 0, 64<<10)}
}
func (b *jsonBackend) WriteStatus(func(string, string)) {}

type jsonBatcher struct {
	b   *jsonBackend
	buf []byte
	n   int
}

func (j *jsonBatcher) Add(r *cdr.Record) bool {
	j.buf = cdr.AppendJSON(j.buf, r)
	j.n++
	return j.n >= 256
}
func (j *jsonBatcher) Len() int { return j.n }
func (j *jsonBatcher) Flush() {
	j.b.records.Add(uint64(j.n))
	j.b.bytes.Add(uint64(len(j.buf)))
	j.buf, j.n = j.buf[:0], 0
}

// benchEngine is a full engine: res_policy decisions, cdr engine posting,
// JSON encoding of every CDR.
type benchEngine struct {
	e       *Engine
	cdrEng  *cdr.Engine
	backend *jsonBackend
}

func newBenchEngine(tb testing.TB, bp *benchPolicy, workers int) *benchEngine {
	tb.Helper()
	ce := cdr.NewEngine()
	be := &jsonBackend{}
	if _, err := ce.Register(be); err != nil {
		tb.Fatal(err)
	}
	ce.StartFlusher()
	tab, err := subscribers.Build(&subscribers.Subscriber{ID: "unknown", Group: "default"}, []subscribers.Entry{
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Subscriber: &subscribers.Subscriber{ID: "residential", Group: "family"}},
		{Prefix: netip.MustParsePrefix("2001:db8:1000::/36"), Subscriber: &subscribers.Subscriber{ID: "residential6", Group: "family"}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	e, err := New(EngineOptions{
		Workers:     workers,
		NewDecider:  func() dataplane.Decider { return dataplane.NewPolicyDecider(bp.pol.NewMatcher()) },
		NewPoster:   func() dataplane.Poster { return ce.NewPoster() },
		CDRActions:  decision.AllActions,
		Subscribers: subscribers.NewHolder(tab),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return &benchEngine{e: e, cdrEng: ce, backend: be}
}

// close stops the engine and hands every CDR batch to the backend.
func (be *benchEngine) close() {
	be.e.Close(context.Background())
	be.cdrEng.FlushAll()
	be.cdrEng.Close()
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchResult is one replay's measurement.
type benchResult struct {
	Packets, Queries, CDRs, JSONBytes uint64
	Decided                           [decision.NumActions]uint64
	Wall, CPU                         time.Duration
}

func (r benchResult) PPS() float64       { return float64(r.Packets) / r.Wall.Seconds() }
func (r benchResult) PPSPerCPU() float64 { return float64(r.Packets) / r.CPU.Seconds() }

// replayOnce runs one capture through a fresh engine and waits until every
// CDR has been encoded.
func replayOnce(tb testing.TB, bp *benchPolicy, path string, workers int) benchResult {
	be := newBenchEngine(tb, bp, workers)
	src, err := OpenFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	runtime.GC()
	c0, t0 := cpuTime(), time.Now()
	id, err := be.e.Start(src, 0)
	if err != nil {
		tb.Fatal(err)
	}
	be.e.Wait(context.Background(), id)
	be.close()
	r := benchResult{Wall: time.Since(t0), CPU: cpuTime() - c0}
	st := be.e.Status()
	r.Packets, r.Queries, r.CDRs, r.Decided = st.Totals.Packets, st.Totals.Queries, st.CDRs, st.Decided
	r.JSONBytes = be.backend.bytes.Load()
	if got := be.backend.records.Load(); got != r.CDRs || r.CDRs != r.Queries {
		tb.Fatalf("queries %d, CDRs posted %d, encoded %d", r.Queries, r.CDRs, got)
	}
	return r
}

// BenchmarkEngine replays a 200k-query capture (30% block-list names)
// through decode + res_policy decision (300k-domain policy) + CDR encode,
// and reports packets/s (wall) and packets per CPU-second.
func BenchmarkEngine(b *testing.B) {
	bp := newBenchPolicy(b, 300000)
	path := filepath.Join(b.TempDir(), "bench.pcap")
	f, _ := os.Create(path)
	if _, err := capgen.Generate(f, capgen.Config{Queries: 200000, Seed: 1, IPv6Share: 0.2, Blocked: bp.blocked, BlockedShare: 0.3, MixedCaseShare: 0.05}); err != nil {
		b.Fatal(err)
	}
	f.Close()
	for _, workers := range []int{1, runtime.NumCPU()} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			var tot benchResult
			for i := 0; i < b.N; i++ {
				r := replayOnce(b, bp, path, workers)
				tot.Packets += r.Packets
				tot.Wall += r.Wall
				tot.CPU += r.CPU
			}
			b.ReportMetric(tot.PPS(), "pkts/s")
			b.ReportMetric(tot.PPSPerCPU(), "pkts/cpu-s")
			b.ReportMetric(float64(tot.CPU.Nanoseconds())/float64(tot.Packets), "cpu-ns/pkt")
		})
	}
}

// TestBenchFile measures the engine on the capture named by PKT_BENCH_PCAP
// (scripts/bench-engine.sh): decode + decide against PKT_BENCH_DOMAINS
// (default 300000) block-list domains + encode every CDR. It prints one
// line "RESULT ..." for the script.
func TestBenchFile(t *testing.T) {
	path := os.Getenv("PKT_BENCH_PCAP")
	if path == "" {
		t.Skip("set PKT_BENCH_PCAP (see scripts/bench-engine.sh)")
	}
	domains := 300000
	if s := os.Getenv("PKT_BENCH_DOMAINS"); s != "" {
		fmt.Sscan(s, &domains)
	}
	workers := runtime.NumCPU()
	if s := os.Getenv("PKT_BENCH_WORKERS"); s != "" {
		fmt.Sscan(s, &workers)
	}
	bp := newBenchPolicy(t, domains)
	// Warm the page cache and the policy tables once.
	replayOnce(t, bp, path, workers)
	r := replayOnce(t, bp, path, workers)
	fmt.Printf("RESULT packets=%d queries=%d cdrs=%d json_bytes=%d allow=%d block=%d sinkhole=%d policy_domains=%d workers=%d wall_s=%.3f cpu_s=%.3f pps=%.0f pps_per_cpu=%.0f\n",
		r.Packets, r.Queries, r.CDRs, r.JSONBytes, r.Decided[decision.Allow], r.Decided[decision.Block], r.Decided[decision.Sinkhole],
		bp.entries, workers, r.Wall.Seconds(), r.CPU.Seconds(), r.PPS(), r.PPSPerCPU())
}
