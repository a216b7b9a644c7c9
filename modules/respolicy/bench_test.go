package respolicy

import (
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/blocklist"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// cpuTime returns the process's user+system CPU time. The benchmarks report
// it per operation ("cpu-ns/op") besides wall time, so that numbers taken on
// a busy machine (other processes competing for the cores) stay comparable.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU starts CPU accounting for b; call the returned func at the end.
func reportCPU(b *testing.B) func() {
	start := cpuTime()
	return func() {
		b.ReportMetric(float64((cpuTime()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

// reportHits reports the share of mt's lookups its decision cache answered.
func reportHits(b *testing.B, mt *Matcher) {
	if h, m := mt.CacheStats(); h+m > 0 {
		b.ReportMetric(100*float64(h)/float64(h+m), "cache-hit-%")
	}
}

// The benchmarks use the real lists: phishing (~190k) and tracking (~144k)
// as one group's blacklist, the ransomware list as the malicious table, and
// a query mix of one third exact entries, one third subdomains of entries
// ("www.<entry>.") and one third misses, over 64Ki distinct names picked at
// random (so the tables are read at random, as real traffic spread over
// many domains would).
//
//	go test -run '^$' -bench . -benchtime 2000000x ./modules/respolicy/
//
// Hyperscan's sub-benchmark compiles the 334k literals once (about 40 s and
// several hundred MB); set RESPOLICY_BENCH_NO_HS=1 to skip it.

const blockLists = "../../" + blocklist.Dir + "/"

var bench struct {
	once    sync.Once
	store   *Store
	gomap   *goMapPolicy
	queries [][]byte
	zipf    [][]byte
	n       int
	hsOnce  sync.Once
	hsStore *Store
}

// goMapPolicy is the baseline: plain Go maps and a suffix walk that
// lower-cases into a buffer and looks every label suffix up; it implements
// the same decision rules as Snapshot.Decide (verified by
// TestGoMapBaselineAgrees).
type goMapPolicy struct {
	lists         map[string]entry // group whitelist + blacklist
	mal           map[string]entry
	whitelistWins bool
	bytes         int
}

func (p *goMapPolicy) decide(buf []byte, q []byte) (decision.Action, string, uint32) {
	if n := len(q); n > 0 && q[n-1] == '.' {
		q = q[:n-1]
	}
	if len(q) == 0 || len(q) > MaxNameLen {
		return decision.Allow, "", 0
	}
	buf = buf[:0]
	for _, c := range q {
		buf = append(buf, lower[c])
	}
	var white, black, mal string
	var wc, bc, mc uint32
	// Most specific first: the first hit of each table is kept.
	for i := 0; i < len(buf); i++ {
		if i != 0 && buf[i-1] != '.' || buf[i] == '.' {
			continue
		}
		if e, ok := p.lists[string(buf[i:])]; ok {
			if e.List == ListWhitelist && white == "" {
				white, wc = "w", e.Category
			} else if e.List == ListBlacklist && black == "" {
				black, bc = "b", e.Category
			}
		}
		if mal == "" {
			if e, ok := p.mal[string(buf[i:])]; ok {
				mal, mc = "m", e.Category
			}
		}
	}
	switch {
	case mal != "" && (white == "" || !p.whitelistWins):
		return decision.Sinkhole, TableMalicious, mc
	case white != "":
		return decision.Allow, TableWhitelist, wc
	case black != "":
		return decision.Block, TableBlacklist, bc
	}
	return decision.Allow, "", 0
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// benchMessages returns the group sync and the malicious adds.
func benchMessages(tb testing.TB) (group []Message, mal []Message) {
	ph := loadList(tb, blockLists+"phishing-nl.txt")
	tr := loadList(tb, blockLists+"tracking-nl.txt")
	rw := loadList(tb, blockLists+"ransomware-nl.txt")
	group = append(group, Message{Type: TypeBeginSync, Group: "g"})
	for _, d := range ph {
		group = append(group, Message{Type: TypeAddDomain, Group: "g", Domain: d, List: ListBlacklist, Category: 1})
	}
	for _, d := range tr {
		group = append(group, Message{Type: TypeAddDomain, Group: "g", Domain: d, List: ListBlacklist, Category: 2})
	}
	group = append(group, Message{Type: TypeSyncComplete, Group: "g"})
	for _, d := range rw {
		mal = append(mal, Message{Type: TypeAddMalicious, Domain: d, List: ListMalicious, Category: 4, Confidence: 95})
	}
	return group, mal
}

func loadBench(b *testing.B) {
	bench.once.Do(func() {
		group, mal := benchMessages(b)
		s := NewStore(StoreConfig{})
		s.ApplyBatch("bench", group)
		s.ApplyBatch("bench", mal)
		// Fold the malicious delta so both tables are plain bases.
		s.mu.Lock()
		s.foldMalicious()
		s.publishLocked()
		s.mu.Unlock()
		runtime.KeepAlive(s)
		bench.store = s
		g, _ := s.Snapshot().Group("g")
		bench.n = g.Whitelist + g.Blacklist

		before := heapInUse()
		p := &goMapPolicy{lists: map[string]entry{}, mal: map[string]entry{}}
		for _, m := range group[1 : len(group)-1] {
			p.lists[string([]byte(m.Domain))] = entry{List: m.List, Category: m.Category}
		}
		p.bytes = int(heapInUse() - before)
		for _, m := range mal {
			p.mal[m.Domain] = entry{List: m.List, Category: m.Category, Confidence: m.Confidence}
		}
		bench.gomap = p

		names := make([]string, 0, len(group))
		for _, m := range group[1 : len(group)-1] {
			names = append(names, m.Domain)
		}
		// The names lie back to back in one buffer, as in a ring of
		// received packets read in order.
		r := rand.New(rand.NewSource(1))
		var buf []byte
		var ends []int
		for i := 0; i < 1<<16; i++ {
			d := names[r.Intn(len(names))]
			switch i % 3 {
			case 0:
				buf = append(buf, d...)
			case 1:
				buf = append(append(append(buf, "www."...), d...), '.')
			default:
				buf = append(append(append(buf, 'x'), d[1:]...), ".example"...)
			}
			ends = append(ends, len(buf))
		}
		start := 0
		for _, e := range ends {
			bench.queries = append(bench.queries, buf[start:e:e])
			start = e
		}
		// The "traffic" mix: 98% of queries for 50,000 popular names not on
		// the lists (Zipf s=1.1: a few names get most queries, as real DNS
		// traffic does), 2% for listed names (uniform).
		popular := make([]string, 50000)
		for i := range popular {
			popular[i] = fmt.Sprintf("%s%d.%s", []string{"www.site", "api.svc", "cdn.img", "mail.corp"}[i%4], i,
				[]string{"com", "net", "org", "io", "de"}[i%5])
		}
		zipf := rand.NewZipf(r, 1.1, 1, uint64(len(popular)-1))
		buf, ends, start = nil, nil, 0
		for i := 0; i < 1<<16; i++ {
			if i%50 == 0 {
				buf = append(append(buf, "www."...), names[r.Intn(len(names))]...)
			} else {
				buf = append(buf, popular[zipf.Uint64()]...)
			}
			ends = append(ends, len(buf))
		}
		for _, e := range ends {
			bench.zipf = append(bench.zipf, buf[start:e:e])
			start = e
		}
	})
}

// hsBench returns a store whose group and malicious bases are compiled.
func hsBench(b *testing.B) *Store {
	bench.hsOnce.Do(func() {
		src := bench.store.Snapshot()
		s := NewStore(StoreConfig{Hyperscan: true, BurstEngine: "hyperscan"})
		s.mu.Lock()
		g := s.group("g")
		sg, _ := src.Group("g")
		g.base = sg.tables.base
		s.malBase = src.malicious.base
		s.publishLocked()
		s.mu.Unlock()
		start := time.Now()
		s.StartCompiler(discard)
		deadline := time.Now().Add(10 * time.Minute)
		for {
			snap := s.Snapshot()
			gp, _ := snap.Group("g")
			if gp.hs != nil && snap.malHS != nil {
				b.Logf("hyperscan: compiled %d + %d literals in %s; database %d + %d bytes", len(gp.hs.ids), len(snap.malHS.ids),
					time.Since(start).Round(time.Millisecond), gp.hs.size, snap.malHS.size)
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("hyperscan compile did not finish")
			}
			time.Sleep(50 * time.Millisecond)
		}
		bench.hsStore = s
	})
	return bench.hsStore
}

func BenchmarkLookup(b *testing.B) {
	loadBench(b)
	qs := bench.queries
	mask := len(qs) - 1
	snap := bench.store.Snapshot()
	g, _ := snap.Group("g")
	tableBytes := g.tables.base.bytes() + g.tables.delta.bytes()
	b.Run("hash-tier/Decide", func(b *testing.B) {
		mt := newMatcher(bench.store)
		b.ReportAllocs()
		b.ReportMetric(float64(tableBytes)/float64(bench.n), "table-B/domain")
		defer reportCPU(b)()
		for i := 0; i < b.N; i++ {
			mt.Decide("g", qs[i&mask])
		}
	})
	b.Run("hash-tier/Decide-one-pass-direct", func(b *testing.B) {
		g, _ := snap.Group("g")
		b.ReportAllocs()
		defer reportCPU(b)()
		for i := 0; i < b.N; i++ {
			snap.decideSlow(g, qs[i&mask])
		}
	})
	b.Run("hash-tier/Decide-two-pass", func(b *testing.B) {
		g, _ := snap.Group("g")
		var buf [maxProbes]probe
		b.ReportAllocs()
		defer reportCPU(b)()
		for i := 0; i < b.N; i++ {
			ps, q, d, ok := snap.collect(g, qs[i&mask], buf[:0], false)
			if ok {
				snap.resolve(g, q, ps, d)
			}
		}
	})
	burst := func(b *testing.B, s *Store) {
		mt := newMatcher(s)
		defer mt.Close()
		const n = 64
		groups := make([]string, n)
		for i := range groups {
			groups[i] = "g"
		}
		out := make([]Decision, n)
		b.ReportAllocs()
		b.ResetTimer()
		defer reportCPU(b)()
		for i := 0; i < b.N; i += n {
			j := (i & mask) &^ (n - 1)
			mt.DecideBurst(groups, qs[j:j+n], out)
		}
	}
	b.Run("hash-tier/DecideBurst64", func(b *testing.B) { burst(b, bench.store) })
	b.Run("hyperscan/DecideBurst64", func(b *testing.B) {
		if os.Getenv("RESPOLICY_BENCH_NO_HS") != "" {
			b.Skip("RESPOLICY_BENCH_NO_HS set")
		}
		s := hsBench(b)
		b.ResetTimer()
		burst(b, s)
	})
	b.Run("go-map-walk", func(b *testing.B) {
		p := bench.gomap
		buf := make([]byte, 0, 256)
		b.ReportAllocs()
		b.ReportMetric(float64(p.bytes)/float64(bench.n), "map-B/domain")
		defer reportCPU(b)()
		for i := 0; i < b.N; i++ {
			p.decide(buf, qs[i&mask])
		}
	})
	b.Run("hot-name/hash-tier/Decide", func(b *testing.B) {
		// One name over and over: the compute cost without cache misses.
		mt := newMatcher(bench.store)
		q := []byte("www.site123.com")
		defer reportCPU(b)()
		for i := 0; i < b.N; i++ {
			mt.Decide("g", q)
		}
	})
	b.Run("hot-name/go-map-walk", func(b *testing.B) {
		p := bench.gomap
		buf := make([]byte, 0, 256)
		q := []byte("www.site123.com")
		defer reportCPU(b)()
		for i := 0; i < b.N; i++ {
			p.decide(buf, q)
		}
	})
	zq := bench.zipf
	b.Run("traffic/hash-tier/Decide", func(b *testing.B) {
		mt := newMatcher(bench.store)
		defer reportHits(b, mt)
		defer reportCPU(b)()
		for i := 0; i < b.N; i++ {
			mt.Decide("g", zq[i&mask])
		}
	})
	b.Run("traffic/hash-tier/DecideBurst64", func(b *testing.B) {
		mt := newMatcher(bench.store)
		groups := make([]string, 64)
		for i := range groups {
			groups[i] = "g"
		}
		out := make([]Decision, 64)
		defer reportHits(b, mt)
		defer reportCPU(b)()
		for i := 0; i < b.N; i += 64 {
			j := (i & mask) &^ 63
			mt.DecideBurst(groups, zq[j:j+64], out)
		}
	})
	b.Run("traffic/go-map-walk", func(b *testing.B) {
		p := bench.gomap
		buf := make([]byte, 0, 256)
		defer reportCPU(b)()
		for i := 0; i < b.N; i++ {
			p.decide(buf, zq[i&mask])
		}
	})
}

// BenchmarkSyncComplete measures SYNC_COMPLETE to active for the 334k-domain
// group: the pending table is filled untimed, then the SYNC_COMPLETE (table
// build + snapshot publish) is timed.
func BenchmarkSyncComplete(b *testing.B) {
	group, _ := benchMessages(b)
	s := NewStore(StoreConfig{})
	b.ReportMetric(float64(len(group)-2), "domains")
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for _, err := range s.ApplyBatch("bench", group[:len(group)-1]) {
			if err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := s.Apply("bench", group[len(group)-1]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(s.LastSwap().Microseconds())/1000, "last-swap-ms")
}

// The Go map baseline decides exactly as the hash tier on the bench data.
func TestGoMapBaselineAgrees(t *testing.T) {
	s := NewStore(StoreConfig{})
	r := rand.New(rand.NewSource(9))
	names := randomPolicy(t, s, r, "g", 3000)
	snap := s.Snapshot()
	g, _ := snap.Group("g")
	p := &goMapPolicy{lists: map[string]entry{}, mal: map[string]entry{}}
	g.tables.each(func(n string, e entry) { p.lists[n] = e })
	snap.malicious.each(func(n string, e entry) { p.mal[n] = e })
	buf := make([]byte, 0, 256)
	for i := 0; i < 20000; i++ {
		q := []byte(names[r.Intn(len(names))])
		if i%2 == 0 {
			q = append([]byte("l1."), q...)
		}
		d := snap.Decide("g", q)
		a, tbl, c := p.decide(buf, q)
		if a != d.Action || tbl != d.Table || c != d.Category {
			t.Fatalf("%s: map %s %s %d, hash %+v", q, a, tbl, c, d)
		}
	}
}

// resolve probes the suffixes of q and returns the decision: the second
// pass of the two-pass walk that BenchmarkLookup compares with the others.
func (s *Snapshot) resolve(g *GroupPolicy, q []byte, ps []probe, d Decision) Decision {
	var gp *pair
	if g != nil {
		gp = &g.tables
	}
	mp := &s.malicious
	var white, black, mal hit
	for _, p := range ps {
		suffix := q[p.start:]
		if gp != nil {
			if t, j := gp.lookup(p.h, suffix, int(p.k)); t != nil {
				// Longer suffixes come later: the last hit is the most specific.
				if t.slots[j].list() == ListWhitelist {
					white = hit{t, j}
				} else {
					black = hit{t, j}
				}
			}
		}
		if t, j := mp.lookup(p.h, suffix, int(p.k)); t != nil {
			mal = hit{t, j}
		}
	}
	return s.pick(d, white, black, mal)
}
