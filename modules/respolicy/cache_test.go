package respolicy

import (
	"strings"
	"testing"

	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// lowerWord agrees with the lower table for every byte in every position.
func TestLowerWord(t *testing.T) {
	for b := 0; b < 256; b++ {
		for pos := 0; pos < 8; pos++ {
			for _, fill := range []byte{0, 'A', 'z', 0xff, '@', '['} {
				var w, want uint64
				for i := 0; i < 8; i++ {
					c := fill
					if i == pos {
						c = byte(b)
					}
					w |= uint64(c) << (8 * i)
					want |= uint64(lower[c]) << (8 * i)
				}
				if got := lowerWord(w); got != want {
					t.Fatalf("lowerWord(%#x) = %#x, want %#x", w, got, want)
				}
			}
		}
	}
}

// The decision cache answers repeated names (any case, trailing dot or not)
// exactly as the snapshot does, and a swap invalidates it at once.
func TestDecisionCache(t *testing.T) {
	s := NewStore(StoreConfig{})
	for _, err := range s.ApplyBatch("test", genBatch(0, 10)) {
		if err != nil {
			t.Fatal(err)
		}
	}
	mt := newMatcher(s)
	defer mt.Close()
	long := []byte("a." + strings.Repeat("x", 70) + ".e1.gen.test")
	names := [][]byte{[]byte("www.e1.gen.test"), []byte("WWW.E1.GEN.TEST."), []byte("a.b.other.test"), []byte("m.gen.test"), long, []byte("."), nil}
	check := func(round int) {
		snap := s.Snapshot()
		out := make([]Decision, len(names))
		groups := make([]string, len(names))
		for i := range groups {
			groups[i] = "g"
		}
		for pass := 0; pass < 2; pass++ {
			for _, q := range names {
				if got, want := mt.Decide("g", q), snap.Decide("g", q); got != want {
					t.Fatalf("round %d: Decide(%q) = %+v, want %+v", round, q, got, want)
				}
				if got, want := mt.Decide("nope", q), snap.Decide("nope", q); got != want {
					t.Fatalf("round %d: Decide(nope, %q) = %+v, want %+v", round, q, got, want)
				}
			}
			mt.DecideBurst(groups, names, out)
			for i, q := range names {
				if want := snap.Decide("g", q); out[i] != want {
					t.Fatalf("round %d: DecideBurst(%q) = %+v, want %+v", round, q, out[i], want)
				}
			}
		}
	}
	check(0)
	if h, _ := mt.CacheStats(); h == 0 {
		t.Fatal("no cache hits")
	}
	// Generation 1 turns the blacklist into a whitelist with category 1.
	for _, err := range s.ApplyBatch("test", genBatch(1, 10)) {
		if err != nil {
			t.Fatal(err)
		}
	}
	check(1)
	if d := mt.Decide("g", []byte("www.e1.gen.test")); d.Action != decision.Allow || d.Category != 1 {
		t.Fatalf("stale decision after swap: %+v", d)
	}
}
