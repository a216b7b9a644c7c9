package respolicy

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"unsafe"

	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

func mustParse(t testing.TB, line string) Message {
	t.Helper()
	m, err := ParseMessage([]byte(line))
	if err != nil {
		t.Fatalf("parse %s: %v", line, err)
	}
	return m
}

func apply(t testing.TB, s *Store, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if err := s.Apply("test", mustParse(t, l)); err != nil {
			t.Fatalf("apply %s: %v", l, err)
		}
	}
}

func expect(t testing.TB, s *Store, group, name string, act decision.Action, table, entry string) Decision {
	t.Helper()
	d := s.Snapshot().Decide(group, []byte(name))
	if d.Action != act || d.Table != table || d.Entry != entry {
		t.Errorf("%s %q: got %s/%s/%q, want %s/%s/%q", group, name, d.Action, d.Table, d.Entry, act, table, entry)
	}
	return d
}

// The seed "Module 20" demo: pending tables are invisible until
// SYNC_COMPLETE; REMOVE inside the sync drops the pending entry.
func TestSeedDemo(t *testing.T) {
	s := NewStore(StoreConfig{GroupIDs: map[string]uint32{"enterprise_a": 1001}})
	apply(t, s,
		`{"type":"BEGIN_SYNC","group_id":"enterprise_a"}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"google.com","action":"whitelist","category":1}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"facebook.com","action":"blacklist","category":2}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"youtube.com","action":"blacklist","category":2}`,
		`{"type":"REMOVE_DOMAIN","group_id":"enterprise_a","domain":"youtube.com"}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"twitter.com","action":"blacklist","category":4}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"github.com","action":"whitelist","category":8}`,
	)
	expect(t, s, "enterprise_a", "google.com", decision.Allow, "", "")
	expect(t, s, "enterprise_a", "facebook.com", decision.Allow, "", "")
	apply(t, s, `{"type":"SYNC_COMPLETE","group_id":"enterprise_a"}`)
	d := expect(t, s, "enterprise_a", "google.com", decision.Allow, TableWhitelist, "google.com")
	if MatchWord(d) != "WHITELIST" || d.Category != 1 || d.Group != 1001 {
		t.Errorf("google.com: %+v", d)
	}
	d = expect(t, s, "enterprise_a", "www.facebook.com", decision.Block, TableBlacklist, "facebook.com")
	if MatchWord(d) != "BLACKLIST" || d.Category != 2 {
		t.Errorf("facebook: %+v", d)
	}
	d = expect(t, s, "enterprise_a", "youtube.com", decision.Allow, "", "")
	if MatchWord(d) != "NOT FOUND" {
		t.Errorf("youtube: %+v", d)
	}
	expect(t, s, "enterprise_a", "api.twitter.com", decision.Block, TableBlacklist, "twitter.com")
	g, _ := s.Snapshot().Group("enterprise_a")
	if g.Whitelist != 2 || g.Blacklist != 2 || g.Syncs != 1 {
		t.Errorf("group sizes %+v", g)
	}
}

func TestLabelBoundaryCaseTrailingDot(t *testing.T) {
	s := NewStore(StoreConfig{})
	apply(t, s,
		`{"type":"BEGIN_SYNC","group_id":"g"}`,
		`{"type":"ADD_DOMAIN","group_id":"g","domain":"Evil.COM.","action":"blacklist","category":1}`,
		`{"type":"ADD_DOMAIN","group_id":"g","domain":"good.evil.com","action":"blacklist","category":2}`,
		`{"type":"ADD_DOMAIN","group_id":"g","domain":"*.wild.org","action":"blacklist","category":3}`,
		`{"type":"SYNC_COMPLETE","group_id":"g"}`,
	)
	expect(t, s, "g", "evil.com", decision.Block, TableBlacklist, "evil.com")
	expect(t, s, "g", "EVIL.com.", decision.Block, TableBlacklist, "evil.com")
	expect(t, s, "g", "a.b.evil.com", decision.Block, TableBlacklist, "evil.com")
	expect(t, s, "g", "notevil.com", decision.Allow, "", "")
	expect(t, s, "g", "evil.com.au", decision.Allow, "", "")
	expect(t, s, "g", "com", decision.Allow, "", "")
	expect(t, s, "g", "", decision.Allow, "", "")
	expect(t, s, "g", ".", decision.Allow, "", "")
	expect(t, s, "g", "a..evil.com", decision.Block, TableBlacklist, "evil.com")
	// Most specific within the table wins.
	d := expect(t, s, "g", "X.Good.Evil.Com", decision.Block, TableBlacklist, "good.evil.com")
	if d.Category != 2 {
		t.Errorf("category %d", d.Category)
	}
	expect(t, s, "g", "wild.org", decision.Block, TableBlacklist, "wild.org")
	expect(t, s, "g", "a.wild.org", decision.Block, TableBlacklist, "wild.org")
	expect(t, s, "g", strings.Repeat("a.", 130)+"evil.com", decision.Allow, "", "") // longer than 253
	// Deep entries: more suffixes than decide keeps on the stack.
	deep := strings.Repeat("d.", 30) + "deep.org"
	apply(t, s, fmt.Sprintf(`{"type":"ADD_DOMAIN","group_id":"g","domain":%q,"action":"whitelist","category":7}`, deep))
	expect(t, s, "g", "x.y."+deep, decision.Allow, TableWhitelist, deep)
	expect(t, s, "g", "x.y.d."+deep[4:], decision.Allow, "", "")
	expect(t, s, "g", "x.y."+strings.Repeat("d.", 40)+"evil.com", decision.Block, TableBlacklist, "evil.com")
}

func TestPrecedence(t *testing.T) {
	for _, wl := range []bool{false, true} {
		s := NewStore(StoreConfig{WhitelistWins: wl})
		apply(t, s,
			`{"type":"BEGIN_SYNC","group_id":"g"}`,
			`{"type":"ADD_DOMAIN","group_id":"g","domain":"corp.com","action":"whitelist","category":1}`,
			`{"type":"ADD_DOMAIN","group_id":"g","domain":"ads.corp.com","action":"blacklist","category":2}`,
			`{"type":"ADD_DOMAIN","group_id":"g","domain":"bad.net","action":"blacklist","category":2}`,
			`{"type":"SYNC_COMPLETE","group_id":"g"}`,
			`{"type":"ADD_MALICIOUS","domain":"c2.corp.com","category":4,"confidence":98}`,
			`{"type":"ADD_MALICIOUS","domain":"bad.net","category":4,"confidence":50}`,
		)
		// Whitelist beats blacklist whatever the specificity.
		expect(t, s, "g", "x.ads.corp.com", decision.Allow, TableWhitelist, "corp.com")
		// Malicious beats blacklist.
		d := expect(t, s, "g", "bad.net", decision.Sinkhole, TableMalicious, "bad.net")
		if d.Confidence != 50 || d.Category != 4 {
			t.Errorf("bad.net %+v", d)
		}
		if wl {
			expect(t, s, "g", "c2.corp.com", decision.Allow, TableWhitelist, "corp.com")
		} else {
			expect(t, s, "g", "c2.corp.com", decision.Sinkhole, TableMalicious, "c2.corp.com")
		}
		// Unknown group: only the malicious table, group 0.
		d = expect(t, s, "nosuch", "c2.corp.com", decision.Sinkhole, TableMalicious, "c2.corp.com")
		if d.Group != 0 {
			t.Errorf("unknown group id %d", d.Group)
		}
		expect(t, s, "nosuch", "ads.corp.com", decision.Allow, "", "")
	}
}

func TestDefaultGroup(t *testing.T) {
	s := NewStore(StoreConfig{DefaultGroup: "default", GroupIDs: map[string]uint32{"default": 7}})
	apply(t, s,
		`{"type":"BEGIN_SYNC","group_id":"default"}`,
		`{"type":"ADD_DOMAIN","group_id":"default","domain":"porn.example","action":"blacklist","category":16}`,
		`{"type":"SYNC_COMPLETE","group_id":"default"}`)
	d := expect(t, s, "whoever", "www.porn.example", decision.Block, TableBlacklist, "porn.example")
	if d.Group != 7 {
		t.Errorf("group %d", d.Group)
	}
}

func TestRejections(t *testing.T) {
	s := NewStore(StoreConfig{})
	gen := s.Generation()
	for _, c := range []struct{ line, reason string }{
		{`{"type":"SYNC_COMPLETE","group_id":"g"}`, ReasonCompleteWithoutBegin},
		{`{"type":"BEGIN_SYNC","group_id":"g"}`, ""},
		{`{"type":"BEGIN_SYNC","group_id":"g"}`, ReasonBeginWhileOpen},
		{`{"type":"SYNC_COMPLETE","group_id":"g"}`, ""},
		{`{"type":"SYNC_COMPLETE","group_id":"g"}`, ReasonCompleteWithoutBegin},
	} {
		err := s.Apply("test", mustParse(t, c.line))
		if RejectReason(err) != c.reason {
			t.Errorf("%s: got %v, want %q", c.line, err, c.reason)
		}
	}
	for _, c := range []struct{ line, reason string }{
		{`not json`, ReasonMalformedJSON},
		{`{"type":"BEGIN_SYNC",`, ReasonMalformedJSON},
		{`[1,2]`, ReasonMalformedJSON},
		{`{"type":"NOPE"}`, ReasonUnknownType},
		{`{"group_id":"g"}`, ReasonMissingField},
		{`{"type":"BEGIN_SYNC"}`, ReasonMissingField},
		{`{"type":"ADD_DOMAIN","group_id":"g","action":"whitelist"}`, ReasonMissingField},
		{`{"type":"ADD_DOMAIN","group_id":"g","domain":"a.com"}`, ReasonMissingField},
		{`{"type":"ADD_DOMAIN","group_id":"g","domain":"a.com","action":"grey"}`, ReasonInvalidField},
		{`{"type":"ADD_DOMAIN","group_id":"g","domain":"a..com","action":"whitelist"}`, ReasonInvalidField},
		{`{"type":"ADD_DOMAIN","group_id":"g","domain":"a.com","action":"whitelist","category":-1}`, ReasonInvalidField},
		{`{"type":"ADD_MALICIOUS","domain":"a.com","confidence":101}`, ReasonInvalidField},
		{`{"type":"ADD_MALICIOUS","domain":"a.com","confidence":"high"}`, ReasonInvalidField},
		{`{"type":"REMOVE_DOMAIN","group_id":"","domain":"a.com"}`, ReasonInvalidField},
		{`{"type":"ADD_MALICIOUS"}`, ReasonMissingField},
	} {
		_, err := ParseMessage([]byte(c.line))
		if RejectReason(err) != c.reason {
			t.Errorf("%s: got %v, want %q", c.line, err, c.reason)
		}
	}
	c := s.Counters()
	if c.Rejected["test"][ReasonCompleteWithoutBegin] != 2 || c.Rejected["test"][ReasonBeginWhileOpen] != 1 {
		t.Errorf("counters %+v", c.Rejected)
	}
	if c.Messages["test"][TypeBeginSync] != 1 || c.Messages["test"][TypeSyncComplete] != 1 {
		t.Errorf("messages %+v", c.Messages)
	}
	if s.Generation() == gen {
		t.Errorf("generation did not move")
	}
}

// ADD and REMOVE outside a sync apply to the active policy at once, through
// the delta, and a long stream of them folds into new bases.
func TestActiveChangesAndFold(t *testing.T) {
	s := NewStore(StoreConfig{})
	apply(t, s,
		`{"type":"BEGIN_SYNC","group_id":"g"}`,
		`{"type":"ADD_DOMAIN","group_id":"g","domain":"base.com","action":"blacklist","category":1}`,
		`{"type":"SYNC_COMPLETE","group_id":"g"}`,
		`{"type":"ADD_DOMAIN","group_id":"g","domain":"new.com","action":"whitelist","category":2}`,
	)
	expect(t, s, "g", "x.new.com", decision.Allow, TableWhitelist, "new.com")
	apply(t, s, `{"type":"REMOVE_DOMAIN","group_id":"g","domain":"base.com"}`)
	expect(t, s, "g", "base.com", decision.Allow, "", "")
	apply(t, s, `{"type":"ADD_DOMAIN","group_id":"g","domain":"base.com","action":"blacklist","category":5}`)
	d := expect(t, s, "g", "base.com", decision.Block, TableBlacklist, "base.com")
	if d.Category != 5 {
		t.Errorf("category %d", d.Category)
	}
	// A REMOVE during an open sync removes from active and pending.
	apply(t, s,
		`{"type":"BEGIN_SYNC","group_id":"g"}`,
		`{"type":"ADD_DOMAIN","group_id":"g","domain":"keep.com","action":"blacklist"}`,
		`{"type":"ADD_DOMAIN","group_id":"g","domain":"new.com","action":"whitelist"}`,
		`{"type":"REMOVE_DOMAIN","group_id":"g","domain":"new.com"}`)
	expect(t, s, "g", "new.com", decision.Allow, "", "")
	apply(t, s, `{"type":"SYNC_COMPLETE","group_id":"g"}`)
	expect(t, s, "g", "new.com", decision.Allow, "", "")
	expect(t, s, "g", "keep.com", decision.Block, TableBlacklist, "keep.com")
	expect(t, s, "g", "base.com", decision.Allow, "", "") // not in the new sync

	// Many single changes: the malicious delta folds, lookups stay right.
	want := map[string]bool{}
	r := rand.New(rand.NewSource(2))
	for i := 0; i < 5000; i++ {
		d := fmt.Sprintf("m%d.bad", r.Intn(3000))
		apply(t, s, fmt.Sprintf(`{"type":"ADD_MALICIOUS","domain":%q,"category":%d,"confidence":90}`, d, i))
		want[d] = true
		if i%7 == 0 {
			d := fmt.Sprintf("g%d.grp", i)
			apply(t, s, fmt.Sprintf(`{"type":"ADD_DOMAIN","group_id":"g","domain":%q,"action":"blacklist"}`, d))
			if i%2 == 0 {
				apply(t, s, fmt.Sprintf(`{"type":"REMOVE_DOMAIN","group_id":"g","domain":%q}`, d))
			}
		}
	}
	snap := s.Snapshot()
	if snap.MaliciousSize() != len(want) {
		t.Errorf("malicious size %d, want %d", snap.MaliciousSize(), len(want))
	}
	for d := range want {
		if snap.Decide("g", []byte("x."+d)).Action != decision.Sinkhole {
			t.Fatalf("%s not sinkholed", d)
		}
	}
	for i := 0; i < 5000; i += 7 {
		d := fmt.Sprintf("g%d.grp", i)
		got := snap.Decide("g", []byte(d)).Action
		if (i%2 == 0) != (got == decision.Allow) {
			t.Fatalf("%s: %s", d, got)
		}
	}
	g, _ := snap.Group("g")
	if g.Blacklist != 1+(5000/7+1)/2 {
		t.Errorf("blacklist %d", g.Blacklist)
	}
}

// buildGroupTables fills a group with random names and returns them.
func randomPolicy(t testing.TB, s *Store, r *rand.Rand, group string, n int) []string {
	t.Helper()
	var names []string
	msgs := []Message{{Type: TypeBeginSync, Group: group}}
	for i := 0; i < n; i++ {
		labels := 1 + r.Intn(3)
		parts := make([]string, labels)
		for j := range parts {
			parts[j] = fmt.Sprintf("l%d", r.Intn(40))
		}
		d := strings.Join(parts, ".") + ".t" + fmt.Sprint(r.Intn(3))
		names = append(names, d)
		l := ListBlacklist
		if r.Intn(4) == 0 {
			l = ListWhitelist
		}
		msgs = append(msgs, Message{Type: TypeAddDomain, Group: group, Domain: d, List: l, Category: uint32(i)})
		if r.Intn(10) == 0 {
			msgs = append(msgs, Message{Type: TypeAddMalicious, Domain: d, List: ListMalicious, Category: uint32(i), Confidence: 80})
		}
	}
	msgs = append(msgs, Message{Type: TypeSyncComplete, Group: group})
	for _, err := range s.ApplyBatch("test", msgs) {
		if err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// get returns the live entry of a normalised name (the reference check
// below looks names up one by one).
func (p *pair) get(name string) (entry, bool) {
	if e, ok := p.delta.get(name); ok {
		if e.List == listTombstone {
			return entry{}, false
		}
		return e, true
	}
	return p.base.get(name)
}

// A reference decision from plain maps, for cross-checks.
func TestHashAgainstReference(t *testing.T) {
	s := NewStore(StoreConfig{})
	r := rand.New(rand.NewSource(3))
	names := randomPolicy(t, s, r, "g", 3000)
	snap := s.Snapshot()
	g, _ := snap.Group("g")
	ref := func(q string) Decision {
		q = strings.TrimSuffix(strings.ToLower(q), ".")
		var white, black, mal string
		labels := strings.Split(q, ".")
		for i := len(labels) - 1; i >= 0; i-- {
			suf := strings.Join(labels[i:], ".")
			if e, ok := g.tables.get(suf); ok {
				if e.List == ListWhitelist {
					white = suf
				} else {
					black = suf
				}
			}
			if _, ok := snap.malicious.get(suf); ok {
				mal = suf
			}
		}
		var d Decision
		d.Group = g.ID
		switch {
		case mal != "":
			e, _ := snap.malicious.get(mal)
			d.Action, d.Table, d.Entry, d.Category, d.Confidence = decision.Sinkhole, TableMalicious, mal, e.Category, e.Confidence
		case white != "":
			e, _ := g.tables.get(white)
			d.Action, d.Table, d.Entry, d.Category = decision.Allow, TableWhitelist, white, e.Category
		case black != "":
			e, _ := g.tables.get(black)
			d.Action, d.Table, d.Entry, d.Category = decision.Block, TableBlacklist, black, e.Category
		}
		return d
	}
	for i := 0; i < 20000; i++ {
		q := names[r.Intn(len(names))]
		switch r.Intn(4) {
		case 0:
			q = "x" + fmt.Sprint(r.Intn(9)) + "." + q
		case 1:
			q = strings.ToUpper(q) + "."
		case 2:
			q = fmt.Sprintf("l%d.", r.Intn(40)) + q[strings.IndexByte(q, '.')+1:]
		}
		if got, want := snap.Decide("g", []byte(q)), ref(q); got != want {
			t.Fatalf("%q: got %+v, want %+v", q, got, want)
		}
	}
}

// The two-pass burst decides exactly as Decide, deep and odd names included.
func TestBurstHashAgreesWithDecide(t *testing.T) {
	s := NewStore(StoreConfig{DefaultGroup: "g"})
	r := rand.New(rand.NewSource(11))
	names := randomPolicy(t, s, r, "g", 2000)
	deep := strings.Repeat("d.", 30) + "deep.org"
	apply(t, s, fmt.Sprintf(`{"type":"ADD_DOMAIN","group_id":"g","domain":%q,"action":"whitelist","category":7}`, deep))
	extra := []string{"", ".", "..", "a.b..", deep + "..", "x." + deep + ".", strings.Repeat("d.", 40) + "l1.t1", "L1.T1."}
	mt := newMatcher(s)
	groups := make([]string, 50)
	qs := make([][]byte, 50)
	out := make([]Decision, 50)
	for round := 0; round < 200; round++ {
		for i := range qs {
			if r.Intn(5) == 0 {
				qs[i] = []byte(extra[r.Intn(len(extra))])
			} else {
				qs[i] = []byte("w." + names[r.Intn(len(names))])
			}
			groups[i] = []string{"g", "other"}[r.Intn(2)]
		}
		mt.DecideBurst(groups, qs, out)
		snap := s.Snapshot()
		for i := range qs {
			if want := snap.Decide(groups[i], qs[i]); out[i] != want {
				t.Fatalf("%q: burst %+v, decide %+v", qs[i], out[i], want)
			}
			if want := snap.decideSlow(snap.groups["g"], qs[i]); groups[i] == "g" && out[i] != want {
				t.Fatalf("%q: burst %+v, one-pass %+v", qs[i], out[i], want)
			}
		}
	}
}

// A burst pick whose tag matches but whose name differs (a tag collision,
// simulated by rewriting a stored name) is decided again exactly.
func TestBurstTagCollision(t *testing.T) {
	s := NewStore(StoreConfig{})
	apply(t, s, `{"type":"BEGIN_SYNC","group_id":"g"}`,
		`{"type":"ADD_DOMAIN","group_id":"g","domain":"evil.com","action":"whitelist","category":1}`,
		`{"type":"ADD_DOMAIN","group_id":"g","domain":"com","action":"blacklist","category":2}`,
		`{"type":"SYNC_COMPLETE","group_id":"g"}`)
	snap := s.Snapshot()
	g, _ := snap.Group("g")
	tb := g.tables.base
	i := tb.find(hashName("evil.com"), []byte("evil.com"))
	arena := unsafe.Slice(unsafe.StringData(tb.arena), len(tb.arena))
	copy(arena[tb.slots[i].off:], "evil.org") // same length, same tag, different name
	mt := newMatcher(s)
	out := make([]Decision, 1)
	mt.DecideBurst([]string{"g"}, [][]byte{[]byte("a.evil.com.")}, out)
	if want := snap.Decide("g", []byte("a.evil.com.")); out[0] != want || want.Table != TableBlacklist || mt.Collisions != 1 {
		t.Fatalf("burst %+v, decide %+v, collisions %d", out[0], want, mt.Collisions)
	}
}

// Large tables have a Bloom filter in front: Decide, the burst and a plain
// map agree on them, hits and misses alike.
func TestFilteredTable(t *testing.T) {
	s := NewStore(StoreConfig{})
	msgs := []Message{{Type: TypeBeginSync, Group: "g"}}
	want := map[string]bool{}
	for i := 0; i < 40000; i++ {
		d := fmt.Sprintf("n%d.big%d.test", i, i%7)
		want[d] = true
		msgs = append(msgs, Message{Type: TypeAddDomain, Group: "g", Domain: d, List: ListBlacklist, Category: uint32(i)})
	}
	msgs = append(msgs, Message{Type: TypeSyncComplete, Group: "g"})
	s.ApplyBatch("test", msgs)
	g, _ := s.Snapshot().Group("g")
	if g.tables.base.filter == nil {
		t.Fatal("no filter on a 40000-entry table")
	}
	mt := newMatcher(s)
	r := rand.New(rand.NewSource(12))
	qs := make([][]byte, 64)
	groups := make([]string, 64)
	out := make([]Decision, 64)
	for i := range groups {
		groups[i] = "g"
	}
	for round := 0; round < 300; round++ {
		for i := range qs {
			qs[i] = []byte(fmt.Sprintf("w.n%d.big%d.test", r.Intn(80000), r.Intn(7)))
		}
		mt.DecideBurst(groups, qs, out)
		for i, q := range qs {
			d := s.Snapshot().Decide("g", q)
			if out[i] != d || want[string(q[2:])] != (d.Action == decision.Block) {
				t.Fatalf("%s: burst %+v decide %+v want %v", q, out[i], d, want[string(q[2:])])
			}
		}
	}
}
