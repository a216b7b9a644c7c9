package respolicy

import (
	"math/rand"
	"sync"
	"testing"
)

// benchData is the phishing + tracking lists in one group, plus a query mix.
var benchData struct {
	once    sync.Once
	domains map[string]entry
	snap    *Snapshot
	gomap   map[string]entry
	queries [][]byte
	hs      *hsDB
}

func loadBench(b *testing.B) {
	benchData.once.Do(func() {
		ph := loadList(b, "/work/shared/data/blocklists/phishing-nl.txt")
		tr := loadList(b, "/work/shared/data/blocklists/tracking-nl.txt")
		m := map[string]entry{}
		for _, d := range ph {
			m[d] = entry{List: ListBlacklist, Category: 1}
		}
		for _, d := range tr {
			m[d] = entry{List: ListBlacklist, Category: 2}
		}
		benchData.domains = m
		gm := make(map[string]entry, len(m))
		for k, v := range m {
			gm[k] = v
		}
		benchData.gomap = gm
		tb := buildTableMap(m)
		benchData.snap = &Snapshot{groups: map[string]*GroupPolicy{"g": {tables: pair{tb, emptyTable}}}, malicious: pair{emptyTable, emptyTable}}
		all := make([]string, 0, len(m))
		for d := range m {
			all = append(all, d)
		}
		r := rand.New(rand.NewSource(1))
		for i := 0; i < 1<<16; i++ {
			d := all[r.Intn(len(all))]
			switch i % 3 {
			case 0:
				benchData.queries = append(benchData.queries, []byte(d))
			case 1:
				benchData.queries = append(benchData.queries, []byte("www."+d+"."))
			default:
				benchData.queries = append(benchData.queries, []byte("x"+d[1:]+".example"))
			}
		}
	})
	if benchData.snap == nil {
		b.Skip("no block lists")
	}
}

// goMapDecide is the plain Go map suffix walk: lower-case into a buffer, then
// look every label suffix up, most specific first.
func goMapDecide(m map[string]entry, buf []byte, q []byte) (entry, bool) {
	if n := len(q); n > 0 && q[n-1] == '.' {
		q = q[:n-1]
	}
	buf = buf[:0]
	for _, c := range q {
		buf = append(buf, lower[c])
	}
	for i := 0; i < len(buf); i++ {
		if i == 0 || buf[i-1] == '.' {
			if e, ok := m[string(buf[i:])]; ok {
				return e, true
			}
		}
	}
	return entry{}, false
}

func BenchmarkLookup(b *testing.B) {
	loadBench(b)
	qs := benchData.queries
	b.Run("hash-tier", func(b *testing.B) {
		s := benchData.snap
		b.ReportAllocs()
		hits := 0
		for i := 0; i < b.N; i++ {
			if s.Decide("g", qs[i&(len(qs)-1)]).Action != ActionAllow {
				hits++
			}
		}
	})
	b.Run("go-map-walk", func(b *testing.B) {
		m := benchData.gomap
		buf := make([]byte, 0, 256)
		b.ReportAllocs()
		hits := 0
		for i := 0; i < b.N; i++ {
			if _, ok := goMapDecide(m, buf, qs[i&(len(qs)-1)]); ok {
				hits++
			}
		}
	})
}
