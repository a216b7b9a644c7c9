package respolicy

import (
	"fmt"
	"math/rand"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// patBench is the shared data of the pattern benchmarks: the real tracking
// and phishing lists, rules derived from their labels, and 64Ki query names
// (a third carrying an "ad<n>." label rules often match, a third
// "www.<listed>", a third misses).
var patBench struct {
	once    sync.Once
	domains []string
	rules   []Message // 10,000 rules; the first 1,000 are the 1k set
	queries [][]byte
	stores  map[int]*Store // by rule count, built once per process
}

func loadPatBench(b *testing.B) {
	patBench.once.Do(func() {
		seen := map[string]bool{}
		var d []string
		for _, x := range append(loadList(b, blockLists+"tracking-nl.txt"), loadList(b, blockLists+"phishing-nl.txt")...) {
			if !seen[x] {
				seen[x] = true
				d = append(d, x)
			}
		}
		patBench.domains = d
		r := rand.New(rand.NewSource(3))
		patBench.rules = genRules(r, d, 10000)
		for i := 0; i < 1<<16; i++ {
			name := d[r.Intn(len(d))]
			switch i % 3 {
			case 0:
				name = "ad" + strconv.Itoa(r.Intn(50)) + "." + name
			case 1:
				name = "www." + name
			default:
				name = "x" + name[1:] + ".example"
			}
			patBench.queries = append(patBench.queries, []byte(name))
		}
	})
}

// patStore is a store with one group: the tracking list as its blacklist
// and its first n rules (built once per process: 10,000 rules compile for
// seconds).
func patStore(b *testing.B, n int) *Store {
	if s := patBench.stores[n]; s != nil {
		return s
	}
	s := NewStore(StoreConfig{})
	msgs := []Message{{Type: TypeBeginSync, Group: "g"}}
	for _, d := range patBench.domains[:144000] {
		msgs = append(msgs, Message{Type: TypeAddDomain, Group: "g", Domain: d, List: ListBlacklist, Category: 2})
	}
	for _, m := range patBench.rules[:n] {
		m.Group = "g"
		msgs = append(msgs, m)
	}
	msgs = append(msgs, Message{Type: TypeSyncComplete, Group: "g"})
	for i, err := range s.ApplyBatch("bench", msgs) {
		if err != nil {
			b.Fatalf("message %d: %v", i, err)
		}
	}
	if patBench.stores == nil {
		patBench.stores = map[int]*Store{}
	}
	patBench.stores[n] = s
	return s
}

// BenchmarkPatterns: Matcher.Decide of a group with 0, 1,000 and 10,000
// pattern rules (Hyperscan, one scan per name) beside Go's regexp on the
// same rules and names, as one alternation and as a loop over compiled
// expressions (stopping at the first match). ns/op is per name.
func BenchmarkPatterns(b *testing.B) {
	loadPatBench(b)
	q := patBench.queries
	for _, n := range []int{0, 1000, 10000} {
		b.Run(fmt.Sprintf("hyperscan/%d", n), func(b *testing.B) {
			s := patStore(b, n)
			mt := newMatcher(s)
			defer mt.Close()
			matched := 0
			b.ResetTimer()
			done := reportCPU(b)
			for i := 0; i < b.N; i++ {
				if mt.Decide("g", q[i&(len(q)-1)]).Pattern != "" {
					matched++
				}
			}
			done()
			b.ReportMetric(100*float64(matched)/float64(b.N), "rule-decided-%")
			reportHits(b, mt)
		})
	}
	for _, n := range []int{1000, 10000} {
		var res []*regexp.Regexp
		var alt []string
		for _, m := range patBench.rules[:n] {
			pr, err := newPatternRule(m.Pattern, m.Syntax, m.List, m.Category, 0)
			if err != nil {
				b.Fatal(err)
			}
			res = append(res, regexp.MustCompile("(?i)"+pr.expr))
			alt = append(alt, "(?:"+pr.expr+")")
		}
		re := regexp.MustCompile("(?i)" + strings.Join(alt, "|"))
		b.Run(fmt.Sprintf("go-regexp-alternation/%d", n), func(b *testing.B) {
			done := reportCPU(b)
			for i := 0; i < b.N; i++ {
				re.Match(q[i&(len(q)-1)])
			}
			done()
		})
		b.Run(fmt.Sprintf("go-regexp-loop/%d", n), func(b *testing.B) {
			done := reportCPU(b)
			for i := 0; i < b.N; i++ {
				name := q[i&(len(q)-1)]
				for _, re := range res {
					if re.Match(name) {
						break
					}
				}
			}
			done()
		})
	}
}

// BenchmarkPatternSync: SYNC_COMPLETE of a group whose sync holds 10,000
// rules (and the tracking list): compile and swap, per op. parse-ms is
// the time the sync's ADD_PATTERN messages took to apply (each parsed by
// Hyperscan).
func BenchmarkPatternSync(b *testing.B) {
	loadPatBench(b)
	s := NewStore(StoreConfig{})
	defer s.Close()
	msgs := []Message{{Type: TypeBeginSync, Group: "g"}}
	for _, d := range patBench.domains[:144000] {
		msgs = append(msgs, Message{Type: TypeAddDomain, Group: "g", Domain: d, List: ListBlacklist})
	}
	var parse time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s.ApplyBatch("bench", msgs)
		t0 := time.Now()
		for _, m := range patBench.rules {
			m.Group = "g"
			if err := s.Apply("bench", m); err != nil {
				b.Fatal(err)
			}
		}
		parse += time.Since(t0)
		b.StartTimer()
		if err := s.Apply("bench", Message{Type: TypeSyncComplete, Group: "g"}); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(parse.Milliseconds())/float64(b.N), "parse-ms")
	b.ReportMetric(float64(len(patBench.rules)), "rules")
}

// rss returns the process's resident memory in bytes (/proc/self/statm).
func rss(tb testing.TB) uint64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		tb.Fatal(err)
	}
	f := strings.Fields(string(data))
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		tb.Fatal(err)
	}
	return pages * uint64(os.Getpagesize())
}

// settledRSS collects garbage (twice, so that cleanups freeing pattern
// databases have run), returns freed memory to the OS and reads RSS.
func settledRSS(tb testing.TB) uint64 {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	return rss(tb)
}

// BenchmarkResyncMemory: ten full re-syncs of one 500,000-domain group
// with 1,000 pattern rules, with default settings, messages made per
// chunk as a feed delivers them. It reports resident memory after the
// first sync and after the tenth (after a GC), their ratio, and the
// resident memory per domain (RSS after the first sync less RSS before
// it). One op is the ten syncs.
func BenchmarkResyncMemory(b *testing.B) {
	loadPatBench(b)
	const domains = 500000
	base := patBench.domains
	resync := func(s *Store) {
		s.Apply("bench", Message{Type: TypeBeginSync, Group: "g"})
		chunk := make([]Message, 0, 10000)
		for i := 0; i < domains; i++ {
			d := base[i%len(base)]
			if i >= len(base) {
				d = "n" + strconv.Itoa(i/len(base)) + "." + d
			}
			chunk = append(chunk, Message{Type: TypeAddDomain, Group: "g", Domain: d, List: ListBlacklist})
			if len(chunk) == cap(chunk) {
				s.ApplyBatch("bench", chunk)
				chunk = chunk[:0]
			}
		}
		s.ApplyBatch("bench", chunk)
		for _, m := range patBench.rules[:1000] {
			m.Group = "g"
			s.Apply("bench", m)
		}
		s.Apply("bench", Message{Type: TypeSyncComplete, Group: "g"})
	}
	var first, last, before uint64
	for i := 0; i < b.N; i++ {
		before = settledRSS(b)
		s := NewStore(StoreConfig{})
		resync(s)
		first = settledRSS(b)
		for j := 1; j < 10; j++ {
			resync(s)
		}
		last = settledRSS(b)
		if g, _ := s.Snapshot().Group("g"); g.Blacklist != domains || g.Patterns != 1000 {
			b.Fatalf("group holds %d domains and %d rules", g.Blacklist, g.Patterns)
		}
		s.Close()
	}
	b.ReportMetric(float64(first)/1e6, "rss-first-MB")
	b.ReportMetric(float64(last)/1e6, "rss-tenth-MB")
	b.ReportMetric(float64(last)/float64(first), "tenth/first")
	b.ReportMetric(float64(first-before)/domains, "rss-B/domain")
}
