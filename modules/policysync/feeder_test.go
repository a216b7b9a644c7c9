package policysync

import (
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/modules/respolicy"
)

// rec is one message of a simulated topic.
type rec struct {
	tp    TP
	off   int64
	value string
}

// topicOf lays out values on partitions, assigning offsets in order.
func topicOf(parts []int32, values []string) []rec {
	next := map[int32]int64{}
	out := make([]rec, len(values))
	for i, v := range values {
		p := parts[i%len(parts)]
		if len(parts) == len(values) {
			p = parts[i]
		}
		out[i] = rec{TP{"policy_updates", p}, next[p], v}
		next[p]++
	}
	return out
}

// dump renders a store's active policy canonically, via the CLI-facing
// accessors and lookups of every name the feed mentions.
func dump(s *respolicy.Store, names []string) string {
	snap := s.Snapshot()
	var b strings.Builder
	gs := snap.Groups()
	sort.Slice(gs, func(i, j int) bool { return gs[i].Name < gs[j].Name })
	for _, g := range gs {
		fmt.Fprintf(&b, "group %s id %d w %d b %d syncs %d\n", g.Name, g.ID, g.Whitelist, g.Blacklist, g.Syncs)
		for _, n := range names {
			d := snap.Decide(g.Name, []byte(n))
			fmt.Fprintf(&b, "  %s %s %s %s %d %d\n", n, d.Action, d.Table, d.Entry, d.Category, d.Confidence)
		}
	}
	fmt.Fprintf(&b, "malicious %d\n", snap.MaliciousSize())
	return b.String()
}

func feedAll(t *testing.T, f *Feeder, recs []rec) []CommitPoint {
	t.Helper()
	var commits []CommitPoint
	for _, r := range recs {
		commits = append(commits, f.Handle(r.tp, r.off, []byte(r.value))...)
	}
	return commits
}

func seedFeed() []string {
	return []string{
		`{"type":"BEGIN_SYNC","group_id":"enterprise_a"}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"google.com","action":"whitelist","category":1}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"facebook.com","action":"blacklist","category":2}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"youtube.com","action":"blacklist","category":2}`,
		`{"type":"REMOVE_DOMAIN","group_id":"enterprise_a","domain":"youtube.com"}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"tiktok.com","action":"blacklist","category":2}`,
		`{"type":"SYNC_COMPLETE","group_id":"enterprise_a"}`,
	}
}

func TestFeederSeedDemoAndCommits(t *testing.T) {
	s := respolicy.NewStore(respolicy.StoreConfig{GroupIDs: map[string]uint32{"enterprise_a": 1001}})
	f := NewFeeder(s, "kafka", nil)
	recs := topicOf([]int32{0}, seedFeed())
	var commits []CommitPoint
	for i, r := range recs[:len(recs)-1] {
		if c := f.Handle(r.tp, r.off, []byte(r.value)); len(c) != 0 {
			t.Fatalf("commit at message %d: %v", i, c)
		}
	}
	if d := s.Snapshot().Decide("enterprise_a", []byte("google.com")); respolicy.MatchWord(d) != "NOT FOUND" {
		t.Fatalf("pending visible: %+v", d)
	}
	last := recs[len(recs)-1]
	commits = f.Handle(last.tp, last.off, []byte(last.value))
	if len(commits) != 1 || commits[0].Offset != last.off {
		t.Fatalf("commits %v", commits)
	}
	snap := s.Snapshot()
	for q, want := range map[string]string{"google.com": "WHITELIST", "m.facebook.com": "BLACKLIST", "youtube.com": "NOT FOUND"} {
		if got := respolicy.MatchWord(snap.Decide("enterprise_a", []byte(q))); got != want {
			t.Errorf("%s: %s, want %s", q, got, want)
		}
	}
	// Re-delivery of the same offsets (consumer restarted from an older
	// position) is skipped.
	feedAll(t, f, recs)
	if st := f.Stats(); st.Replayed != uint64(len(recs)) || len(st.Rejected) != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestFeederRejectCounters(t *testing.T) {
	s := respolicy.NewStore(respolicy.StoreConfig{})
	f := NewFeeder(s, "kafka", nil)
	bad := map[string]string{
		`{not json`:                               respolicy.ReasonMalformedJSON,
		`{"type":"FLUSH"}`:                        respolicy.ReasonUnknownType,
		`{"type":"ADD_DOMAIN","group_id":"g"}`:    respolicy.ReasonMissingField,
		`{"type":"SYNC_COMPLETE","group_id":"z"}`: respolicy.ReasonCompleteWithoutBegin,
	}
	vals := []string{`{"type":"BEGIN_SYNC","group_id":"g"}`, `{"type":"BEGIN_SYNC","group_id":"g"}`}
	for v := range bad {
		vals = append(vals, v)
	}
	vals = append(vals, `{"type":"ADD_DOMAIN","group_id":"g","domain":"ok.com","action":"blacklist"}`, `{"type":"SYNC_COMPLETE","group_id":"g"}`)
	gen := s.Generation()
	feedAll(t, f, topicOf([]int32{0}, vals))
	st := f.Stats()
	want := map[string]uint64{respolicy.ReasonBeginWhileOpen: 1}
	for _, r := range bad {
		want[r]++
	}
	for r, n := range want {
		if st.Rejected[r] != n {
			t.Errorf("feeder rejected %s = %d, want %d", r, st.Rejected[r], n)
		}
		if got := s.Counters().Rejected["kafka"][r]; got != n {
			t.Errorf("store rejected %s = %d, want %d", r, got, n)
		}
	}
	if respolicy.MatchWord(s.Snapshot().Decide("g", []byte("ok.com"))) != "BLACKLIST" || s.Generation() == gen {
		t.Errorf("good messages not applied")
	}
}

// Accepted messages are counted by type; the metrics label them with the
// wire names.
func TestFeederTypeCounters(t *testing.T) {
	s := respolicy.NewStore(respolicy.StoreConfig{})
	f := NewFeeder(s, "kafka", nil)
	feedAll(t, f, topicOf([]int32{0, 1}, append(seedFeed(), `{"type":"FLUSH"}`,
		`{"type":"ADD_MALICIOUS","domain":"c2.evil.net","category":4,"confidence":98}`)))
	st := f.Stats()
	want := map[respolicy.MessageType]uint64{respolicy.TypeBeginSync: 1, respolicy.TypeAddDomain: 4,
		respolicy.TypeRemoveDomain: 1, respolicy.TypeSyncComplete: 1, respolicy.TypeAddMalicious: 1}
	if fmt.Sprint(st.ByType) != fmt.Sprint(want) || st.Rejected[respolicy.ReasonUnknownType] != 1 {
		t.Fatalf("by type %v, rejected %v", st.ByType, st.Rejected)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(&Module{feeder: f})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "switchboard_policy_sync_messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	wantLabels := map[string]float64{"BEGIN_SYNC": 1, "ADD_DOMAIN": 4, "REMOVE_DOMAIN": 1, "SYNC_COMPLETE": 1, "ADD_MALICIOUS": 1}
	if fmt.Sprint(got) != fmt.Sprint(wantLabels) {
		t.Fatalf("switchboard_policy_sync_messages_total by type: %v, want %v", got, wantLabels)
	}
}

// Commits never pass a partition an open sync has used, and always point
// just past a SYNC_COMPLETE.
func TestFeederMultiPartitionCommits(t *testing.T) {
	s := respolicy.NewStore(respolicy.StoreConfig{})
	f := NewFeeder(s, "kafka", nil)
	h := func(p int32, off int64, v string) []CommitPoint {
		return f.Handle(TP{"t", p}, off, []byte(v))
	}
	h(0, 0, `{"type":"BEGIN_SYNC","group_id":"a"}`)
	h(1, 0, `{"type":"BEGIN_SYNC","group_id":"b"}`)
	h(1, 1, `{"type":"ADD_DOMAIN","group_id":"a","domain":"a.com","action":"blacklist"}`) // a uses p1 too
	if c := h(1, 2, `{"type":"SYNC_COMPLETE","group_id":"b"}`); len(c) != 0 {
		t.Fatalf("p1 committed past a's ADD while a is open: %v", c)
	}
	c := h(0, 1, `{"type":"SYNC_COMPLETE","group_id":"a"}`)
	want := []CommitPoint{{TP{"t", 0}, 1}, {TP{"t", 1}, 2}}
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Fatalf("commits %v, want %v", c, want)
	}
}

// Crash replay: a consumer stopped between BEGIN_SYNC and SYNC_COMPLETE
// committed nothing past the last SYNC_COMPLETE; a fresh store fed from the
// earliest offset (a restart) ends equal to a clean run, and a consumer
// restarted in-process from the commit ends equal too.
func TestCrashReplay(t *testing.T) {
	r := rand.New(rand.NewSource(4))
	var vals []string
	var names []string
	for round := 0; round < 6; round++ {
		g := fmt.Sprintf("grp%d", round%3)
		vals = append(vals, fmt.Sprintf(`{"type":"BEGIN_SYNC","group_id":%q}`, g))
		for i := 0; i < 50; i++ {
			d := fmt.Sprintf("d%d.example", r.Intn(80))
			names = append(names, d, "www."+d)
			act := "blacklist"
			if r.Intn(3) == 0 {
				act = "whitelist"
			}
			vals = append(vals, fmt.Sprintf(`{"type":"ADD_DOMAIN","group_id":%q,"domain":%q,"action":%q,"category":%d}`, g, d, act, round))
			if r.Intn(8) == 0 {
				vals = append(vals, fmt.Sprintf(`{"type":"REMOVE_DOMAIN","group_id":%q,"domain":%q}`, g, d))
			}
			if r.Intn(10) == 0 {
				vals = append(vals, fmt.Sprintf(`{"type":"ADD_MALICIOUS","domain":%q,"category":4,"confidence":%d}`, d, r.Intn(101)))
			}
		}
		vals = append(vals, fmt.Sprintf(`{"type":"SYNC_COMPLETE","group_id":%q}`, g))
		vals = append(vals, fmt.Sprintf(`{"type":"ADD_DOMAIN","group_id":%q,"domain":"late%d.example","action":"blacklist"}`, g, round))
		names = append(names, fmt.Sprintf("late%d.example", round))
	}
	recs := topicOf([]int32{0}, vals)
	cfg := respolicy.StoreConfig{GroupIDs: map[string]uint32{"grp0": 1}}

	clean := respolicy.NewStore(cfg)
	feedAll(t, NewFeeder(clean, "kafka", nil), recs)
	want := dump(clean, names)

	for cut := 1; cut < len(recs); cut += 7 {
		// First run, killed after message cut-1.
		s1 := respolicy.NewStore(cfg)
		f1 := NewFeeder(s1, "kafka", nil)
		commits := feedAll(t, f1, recs[:cut])
		committed := int64(0)
		for _, c := range commits {
			if !strings.Contains(recs[c.Offset].value, "SYNC_COMPLETE") {
				t.Fatalf("commit at %d is not a SYNC_COMPLETE", c.Offset)
			}
			committed = c.Offset + 1
		}
		// Nothing between the commit and the cut is a completed sync's end
		// while an earlier BEGIN is open: the commit is past no open BEGIN.
		for g, parts := range f1.Stats().Open {
			for _, p := range parts {
				_ = p
				// the open sync's BEGIN must be at or after the commit
				found := false
				for i := committed; i < int64(cut); i++ {
					if strings.Contains(recs[i].value, `"BEGIN_SYNC","group_id":"`+g+`"`) {
						found = true
					}
				}
				if !found {
					t.Fatalf("cut %d: open sync %s began before the commit %d", cut, g, committed)
				}
			}
		}
		// In-process consumer restart: re-read from the commit.
		feedAll(t, f1, recs[committed:])
		if got := dump(s1, names); got != want {
			t.Fatalf("cut %d: resumed policy differs\n got %s\nwant %s", cut, got, want)
		}
		// Process restart: new store, new group, earliest.
		s2 := respolicy.NewStore(cfg)
		feedAll(t, NewFeeder(s2, "kafka", nil), recs)
		if got := dump(s2, names); got != want {
			t.Fatalf("cut %d: rebuilt policy differs", cut)
		}
	}
}
