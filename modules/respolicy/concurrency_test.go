package respolicy

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// genBatch is generation g's policy: every entry's category is g; the group
// lists are blacklists in even generations and whitelists in odd ones; the
// malicious entry is updated to category g in the same batch.
func genBatch(g, n int) []Message {
	l := ListBlacklist
	if g%2 == 1 {
		l = ListWhitelist
	}
	msgs := []Message{{Type: TypeBeginSync, Group: "g"}}
	for i := 0; i < n; i++ {
		msgs = append(msgs, Message{Type: TypeAddDomain, Group: "g", Domain: fmt.Sprintf("e%d.gen.test", i), List: l, Category: uint32(g)})
	}
	msgs = append(msgs, Message{Type: TypeAddDomain, Group: "g", Domain: fmt.Sprintf("only%d.gen.test", g), List: l, Category: uint32(g)})
	msgs = append(msgs, Message{Type: TypeSyncComplete, Group: "g"})
	msgs = append(msgs, Message{Type: TypeAddMalicious, Domain: "m.gen.test", List: ListMalicious, Category: uint32(g), Confidence: 90})
	return msgs
}

// Readers looking up continuously while large syncs swap in (and Hyperscan
// databases are attached, retired and freed) see exactly one generation per
// lookup and per burst, and never go back in time.
func TestConcurrentSwaps(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 500
	}
	s := NewStore(StoreConfig{Hyperscan: true, BurstEngine: "hyperscan"})
	s.StartCompiler(discard)
	for _, err := range s.ApplyBatch("test", genBatch(0, n)) {
		if err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var lookups, hsNames atomic.Int64
	errs := make(chan error, 8)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			mt := newMatcher(s)
			defer mt.Close()
			last := uint32(0)
			groups := []string{"g", "g", "g", "g"}
			out := make([]Decision, 4)
			for i := 0; !stop.Load(); i++ {
				q := []byte(fmt.Sprintf("x.e%d.gen.test", (i*7+w)%n))
				d := mt.Decide("g", q)
				want := decision.Block
				if d.Category%2 == 1 {
					want = decision.Allow
				}
				if d.Action != want || d.Category < last || d.Entry != string(q[2:]) {
					errs <- fmt.Errorf("lookup %s: %+v after generation %d", q, d, last)
					return
				}
				last = d.Category
				qs := [][]byte{q, []byte("a.m.gen.test"), []byte(fmt.Sprintf("only%d.gen.test", d.Category)), []byte("E1.GEN.TEST.")}
				mt.DecideBurst(groups, qs, out)
				c := out[0].Category
				if c < last || out[1].Category != c || out[1].Action != decision.Sinkhole || out[3].Category != c {
					errs <- fmt.Errorf("burst mixes generations: %+v", out)
					return
				}
				if c == last && out[2].Entry != string(qs[2]) {
					errs <- fmt.Errorf("burst: only%d missing in its generation: %+v", c, out[2])
					return
				}
				if c != last && out[2].Table != "" {
					errs <- fmt.Errorf("burst: only%d present in generation %d: %+v", last, c, out[2])
					return
				}
				last = c
				lookups.Add(5)
			}
			hsNames.Add(int64(mt.HSNames))
		}(w)
	}
	gens := 40
	if testing.Short() {
		gens = 10
	}
	for g := 1; g <= gens; g++ {
		for _, err := range s.ApplyBatch("test", genBatch(g, n)) {
			if err != nil {
				t.Fatal(err)
			}
		}
		if g%10 == 0 { // let a compile finish now and then
			testwait.Until(t, 60*time.Second, "hyperscan attach", func() bool { gp, _ := s.Snapshot().Group("g"); return gp.hs != nil })
		}
		time.Sleep(time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.Close()
	t.Logf("%d lookups, %d names through hyperscan, %d databases compiled, %d freed", lookups.Load(), hsNames.Load(),
		hsStats.compiled.Load(), hsStats.freed.Load())
	if hsNames.Load() == 0 {
		t.Errorf("no burst went through hyperscan")
	}
	testwait.Until(t, 60*time.Second, "all databases freed", func() bool {
		// Compiles still running finish and are discarded.
		return hsStats.freed.Load() == hsStats.compiled.Load()
	})
}
