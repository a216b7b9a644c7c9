package respolicy

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// DecideBurst through Hyperscan decides exactly as the hash walk, including
// awkward names, deltas and unknown groups.
func TestHyperscanAgreesWithHash(t *testing.T) {
	s := NewStore(StoreConfig{Hyperscan: true, BurstEngine: "hyperscan", DefaultGroup: "g2"})
	s.StartCompiler(discard)
	defer s.Close()
	r := rand.New(rand.NewSource(5))
	names := randomPolicy(t, s, r, "g", 3000)
	names = append(names, randomPolicy(t, s, r, "g2", 500)...)
	var mal []Message
	for i := 0; i < 1500; i++ {
		mal = append(mal, Message{Type: TypeAddMalicious, Domain: names[r.Intn(len(names))], List: ListMalicious, Category: uint32(i), Confidence: uint8(i % 101)})
	}
	s.ApplyBatch("test", mal)
	testwait.Until(t, 60*time.Second, "databases", func() bool {
		snap := s.Snapshot()
		g, _ := snap.Group("g")
		g2, _ := snap.Group("g2")
		return g.hs != nil && g2.hs != nil && snap.malHS != nil
	})
	// Some changes after the build: deltas.
	apply(t, s, fmt.Sprintf(`{"type":"REMOVE_DOMAIN","group_id":"g","domain":%q}`, names[0]),
		fmt.Sprintf(`{"type":"ADD_DOMAIN","group_id":"g","domain":"delta.%s","action":"whitelist"}`, names[1]),
		`{"type":"ADD_MALICIOUS","domain":"l1.t1","category":9}`)
	mt := newMatcher(s)
	defer mt.Close()
	const burst = 64
	groups := make([]string, burst)
	qs := make([][]byte, burst)
	out := make([]Decision, burst)
	for round := 0; round < 400; round++ {
		for i := range qs {
			q := names[r.Intn(len(names))]
			switch r.Intn(8) {
			case 0:
				q = "x" + fmt.Sprint(r.Intn(9)) + "." + q
			case 1:
				q = strings.ToUpper(q) + "."
			case 2:
				q = fmt.Sprintf("l%d.", r.Intn(40)) + q[strings.IndexByte(q, '.')+1:]
			case 3:
				q = []string{"", ".", "a\nb.t1", strings.Repeat("l1.", 90) + "t1", "..t1", "t1", "nope.example"}[r.Intn(7)]
			}
			qs[i] = []byte(q)
			groups[i] = []string{"g", "g2", "unknown"}[r.Intn(3)]
		}
		mt.DecideBurst(groups, qs, out)
		snap := s.Snapshot()
		for i := range qs {
			if want := snap.Decide(groups[i], qs[i]); out[i] != want {
				t.Fatalf("%s %q: hyperscan %+v, hash %+v", groups[i], qs[i], out[i], want)
			}
		}
	}
	if mt.HSNames < 10000 {
		t.Errorf("only %d names went through hyperscan", mt.HSNames)
	}
}
