package respolicy

import (
	"fmt"
	"math/rand"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// TestWildcard: "*" as a label is one or more labels, inside a label any
// run of characters of that label; the whole name must match.
func TestWildcard(t *testing.T) {
	s := NewStore(StoreConfig{})
	defer s.Close()
	apply(t, s,
		`{"type":"ADD_PATTERN","pattern":"*.doubleclick.net","syntax":"wildcard","action":"blacklist","category":2}`,
		`{"type":"ADD_PATTERN","pattern":"ads.*","syntax":"wildcard","action":"blacklist"}`,
		`{"type":"ADD_PATTERN","pattern":"Track*.Example.COM.","syntax":"wildcard","action":"blacklist"}`,
	)
	for name, want := range map[string]string{
		"a.doubleclick.net":       "*.doubleclick.net",
		"x.y.doubleclick.net.":    "*.doubleclick.net",
		"A.DoubleClick.NET":       "*.doubleclick.net",
		"doubleclick.net":         "",
		"adoubleclick.net":        "",
		"ads.example.org":         "ads.*",
		"ads.a.b.c":               "ads.*",
		"ads":                     "",
		"xads.example.org":        "",
		"track.example.com":       "track*.example.com",
		"tracking42.example.com":  "track*.example.com",
		"a.tracking.example.com":  "",
		"track.x.example.com":     "",
		"tracking.example.com.au": "",
	} {
		d := s.Snapshot().Decide("any", []byte(name))
		if d.Pattern != want {
			t.Errorf("%s: pattern %q, want %q (%+v)", name, d.Pattern, want, d)
		}
		if want != "" && (d.Action != decision.Block || d.Table != TableBlacklist || d.Entry != "") {
			t.Errorf("%s: %+v", name, d)
		}
	}
	for _, bad := range []string{"a..b", "a.b$c", "*..x", ""} {
		if _, err := wildcardExpr(bad); err == nil {
			t.Errorf("wildcard %q accepted", bad)
		}
	}
}

// TestPatternPrecedence: within a list a literal entry beats a pattern,
// across lists the usual precedence holds whatever decided each list, a
// group's own rule beats a global one of the same list, and otherwise the
// rule that sorts first decides.
func TestPatternPrecedence(t *testing.T) {
	for _, ww := range []bool{false, true} {
		s := NewStore(StoreConfig{WhitelistWins: ww})
		apply(t, s,
			`{"type":"BEGIN_SYNC","group_id":"g"}`,
			`{"type":"ADD_DOMAIN","group_id":"g","domain":"lit.example","action":"blacklist","category":1}`,
			`{"type":"ADD_DOMAIN","group_id":"g","domain":"ok.example","action":"whitelist","category":3}`,
			`{"type":"ADD_PATTERN","group_id":"g","pattern":"^ads?[0-9]*\\.","action":"blacklist","category":10}`,
			`{"type":"ADD_PATTERN","group_id":"g","pattern":"\\.example$","action":"blacklist","category":11}`,
			`{"type":"ADD_PATTERN","group_id":"g","pattern":"^safe\\.","action":"whitelist","category":12}`,
			`{"type":"SYNC_COMPLETE","group_id":"g"}`,
			`{"type":"ADD_PATTERN","pattern":"^ads\\.","action":"malicious","category":20,"confidence":90}`,
			`{"type":"ADD_PATTERN","pattern":"^a","action":"blacklist","category":21}`,
			`{"type":"ADD_MALICIOUS","domain":"evil.example","category":30,"confidence":70}`,
		)
		snap := s.Snapshot()
		cases := []struct {
			name, table, entry, pattern string
			cat                         uint32
		}{
			// literal blacklist entry beats the blacklist pattern \.example$
			{"www.lit.example", TableBlacklist, "lit.example", "", 1},
			// no literal: the group's rules, the first in order decides
			{"ad1.foo.example", TableBlacklist, "", `\.example$`, 11},
			// a group rule beats the global rule ^a of the same list
			{"a1.foo.org", TableBlacklist, "", "", 0},
			{"ad7.foo.org", TableBlacklist, "", `^ads?[0-9]*\.`, 10},
			// the global malicious pattern outranks the group's blacklist
			{"ads.foo.org", TableMalicious, "", `^ads\.`, 20},
			// whitelist literal vs malicious pattern: the precedence decides
			{"ads.ok.example", map[bool]string{false: TableMalicious, true: TableWhitelist}[ww],
				map[bool]string{false: "", true: "ok.example"}[ww], map[bool]string{false: `^ads\.`, true: ""}[ww],
				map[bool]uint32{false: 20, true: 3}[ww]},
			// whitelist pattern vs malicious literal
			{"safe.evil.example", map[bool]string{false: TableMalicious, true: TableWhitelist}[ww],
				map[bool]string{false: "evil.example", true: ""}[ww], map[bool]string{false: "", true: `^safe\.`}[ww],
				map[bool]uint32{false: 30, true: 12}[ww]},
			{"nothing.org", "", "", "", 0},
		}
		// "a1.foo.org": only the global ^a matches (^ads?[0-9]*\. needs "ad").
		cases[2].pattern, cases[2].cat = "^a", 21
		for _, c := range cases {
			d := snap.Decide("g", []byte(c.name))
			if d.Table != c.table || d.Entry != c.entry || d.Pattern != c.pattern || d.Category != c.cat {
				t.Errorf("whitelist wins %v, %s: got %s %q %q cat %d, want %s %q %q cat %d", ww, c.name,
					d.Table, d.Entry, d.Pattern, d.Category, c.table, c.entry, c.pattern, c.cat)
			}
		}
		if d := snap.Decide("g", []byte("ads.foo.org")); d.Action != decision.Sinkhole || d.Confidence != 90 {
			t.Errorf("global malicious pattern: %+v", d)
		}
		// An unknown group (no default group) gets the global rules only.
		if d := snap.Decide("other", []byte("ad7.foo.org")); d.Pattern != "^a" || d.Group != 0 {
			t.Errorf("unknown group: %+v", d)
		}
		s.Close()
	}
}

// TestPatternSync: rules of an open sync are invisible until SYNC_COMPLETE,
// which replaces the group's rules with them (literals and rules swap
// together); outside a sync ADD_PATTERN and REMOVE_PATTERN apply at once;
// a pattern Hyperscan refuses is rejected and counted, and the rest of the
// sync applies.
func TestPatternSync(t *testing.T) {
	s := NewStore(StoreConfig{MaxPatterns: 3})
	defer s.Close()
	apply(t, s,
		`{"type":"BEGIN_SYNC","group_id":"g"}`,
		`{"type":"ADD_PATTERN","group_id":"g","pattern":"^old","action":"blacklist"}`,
		`{"type":"SYNC_COMPLETE","group_id":"g"}`,
		`{"type":"BEGIN_SYNC","group_id":"g"}`,
		`{"type":"ADD_DOMAIN","group_id":"g","domain":"new.example","action":"blacklist"}`,
		`{"type":"ADD_PATTERN","group_id":"g","pattern":"^new","action":"blacklist"}`,
		`{"type":"ADD_PATTERN","group_id":"g","pattern":"^gone","action":"blacklist"}`,
		`{"type":"REMOVE_PATTERN","group_id":"g","pattern":"^gone"}`,
	)
	for _, bad := range []string{
		`{"type":"ADD_PATTERN","group_id":"g","pattern":"(unclosed","action":"blacklist"}`,
		`{"type":"ADD_PATTERN","group_id":"g","pattern":"(a)\\1","action":"blacklist"}`,
		`{"type":"ADD_PATTERN","group_id":"g","pattern":".*","action":"blacklist"}`,
		`{"type":"ADD_PATTERN","group_id":"g","pattern":"a b.com","syntax":"wildcard","action":"blacklist"}`,
	} {
		err := s.Apply("test", mustParse(t, bad))
		if RejectReason(err) != ReasonInvalidPattern {
			t.Errorf("%s: %v, want %s", bad, err, ReasonInvalidPattern)
		}
	}
	if d := s.Snapshot().Decide("g", []byte("old.x")); d.Pattern != "^old" {
		t.Errorf("during the sync the old rule must decide: %+v", d)
	}
	if d := s.Snapshot().Decide("g", []byte("new.example")); d.Table != "" {
		t.Errorf("the pending entry must be invisible: %+v", d)
	}
	apply(t, s, `{"type":"SYNC_COMPLETE","group_id":"g"}`)
	snap := s.Snapshot()
	if d := snap.Decide("g", []byte("old.x")); d.Table != "" {
		t.Errorf("the old rule must be gone: %+v", d)
	}
	if d := snap.Decide("g", []byte("newer.x")); d.Pattern != "^new" {
		t.Errorf("the new rule must decide: %+v", d)
	}
	if d := snap.Decide("g", []byte("gone.x")); d.Table != "" {
		t.Errorf("a rule removed in the sync applied: %+v", d)
	}
	if d := snap.Decide("g", []byte("a.new.example")); d.Entry != "new.example" {
		t.Errorf("the synced literal must decide: %+v", d)
	}
	if c := s.Counters().Rejected["test"][ReasonInvalidPattern]; c != 4 {
		t.Errorf("invalid_pattern counted %d times, want 4", c)
	}
	// Outside a sync: at once, and bounded by max_patterns.
	apply(t, s,
		`{"type":"ADD_PATTERN","group_id":"g","pattern":"^live","action":"whitelist"}`,
		`{"type":"ADD_PATTERN","group_id":"g","pattern":"^live2","action":"whitelist"}`)
	if d := s.Snapshot().Decide("g", []byte("live.new.example")); d.Pattern != "^live" || d.Action != decision.Allow {
		t.Errorf("ADD_PATTERN outside a sync: %+v", d)
	}
	if err := s.Apply("test", mustParse(t, `{"type":"ADD_PATTERN","group_id":"g","pattern":"^four","action":"blacklist"}`)); RejectReason(err) != ReasonInvalidPattern {
		t.Errorf("a fourth rule with max_patterns 3: %v", err)
	}
	apply(t, s, `{"type":"REMOVE_PATTERN","group_id":"g","pattern":"^live"}`)
	if d := s.Snapshot().Decide("g", []byte("live.new.example")); d.Pattern != "" {
		t.Errorf("REMOVE_PATTERN outside a sync: %+v", d)
	}
	if got := len(s.Patterns("g")); got != 2 {
		t.Errorf("%d rules listed, want 2", got)
	}
}

// refRule is the reference's form of a rule: Go's regexp.
type refRule struct {
	key  string
	re   *regexp.Regexp
	r    *patternRule
	list List
}

// refDecide is the documented precedence, written plainly: per list the
// most specific literal entry, else the first matching rule (own, then
// global, each sorted by key); the lists in precedence order.
func refDecide(lits map[string]entry, mal map[string]entry, rules []refRule, ww bool, q string) (table, entry, pattern string) {
	q = strings.ToLower(strings.TrimSuffix(q, "."))
	lit := map[List]string{}
	labels := strings.Split(q, ".")
	for i := len(labels) - 1; i >= 0; i-- { // shortest suffix first; later (longer) wins
		suf := strings.Join(labels[i:], ".")
		if e, ok := lits[suf]; ok {
			lit[e.List] = suf
		}
		if _, ok := mal[suf]; ok {
			lit[ListMalicious] = suf
		}
	}
	pat := map[List]string{}
	for _, r := range rules {
		if _, done := pat[r.list]; !done && r.re.MatchString(q) {
			pat[r.list] = r.r.text
		}
	}
	order := []List{ListMalicious, ListWhitelist, ListBlacklist}
	if ww {
		order[0], order[1] = order[1], order[0]
	}
	for _, l := range order {
		if e, ok := lit[l]; ok {
			return l.String(), e, ""
		}
		if p, ok := pat[l]; ok {
			return l.String(), "", p
		}
	}
	return "", "", ""
}

// genRules derives rules from the real block lists' labels, as a user's
// regex and wildcard lists look: label prefixes with digit runs, "track"
// style alternations, wildcards under a list's registrable domains.
func genRules(r *rand.Rand, domains []string, n int) []Message {
	lists := []string{"blacklist", "blacklist", "whitelist", "malicious"}
	seen := map[string]bool{}
	var out []Message
	for len(out) < n {
		d := domains[r.Intn(len(domains))]
		labels := strings.Split(d, ".")
		lab := labels[0]
		if len(lab) > 12 {
			lab = lab[:12]
		}
		if len(lab) < 3 || !regexp.MustCompile(`^[a-z0-9]+$`).MatchString(lab) {
			continue
		}
		var m Message
		switch r.Intn(4) {
		case 0:
			m = Message{Pattern: "^" + lab + "[0-9]*\\.", Syntax: SyntaxRegex}
		case 1:
			m = Message{Pattern: "(^|\\.)" + lab + "(s|ing)?[0-9]*\\.", Syntax: SyntaxRegex}
		case 2:
			m = Message{Pattern: "*." + strings.Join(labels[max(0, len(labels)-2):], "."), Syntax: SyntaxWildcard}
		default:
			m = Message{Pattern: lab + "*.*", Syntax: SyntaxWildcard}
		}
		if seen[m.Pattern] {
			continue
		}
		seen[m.Pattern] = true
		m.Type = TypeAddPattern
		m.List = map[string]List{"blacklist": ListBlacklist, "whitelist": ListWhitelist, "malicious": ListMalicious}[lists[r.Intn(len(lists))]]
		m.Category = uint32(r.Intn(8))
		out = append(out, m)
	}
	return out
}

// TestPatternsAgainstReference: Decide, DecideBurst and Snapshot.Decide
// agree with the reference on a policy of literals and rules built from the
// real block lists, for listed names, their subdomains and misses, in mixed
// case and with trailing dots.
func TestPatternsAgainstReference(t *testing.T) {
	domains := loadList(t, blockLists+"tracking-nl.txt")
	r := rand.New(rand.NewSource(7))
	for _, ww := range []bool{false, true} {
		s := NewStore(StoreConfig{WhitelistWins: ww})
		lits := map[string]entry{}
		mal := map[string]entry{}
		msgs := []Message{{Type: TypeBeginSync, Group: "g"}}
		for i := 0; i < 3000; i++ {
			d := domains[r.Intn(len(domains))]
			l := []List{ListWhitelist, ListBlacklist, ListBlacklist}[r.Intn(3)]
			msgs = append(msgs, Message{Type: TypeAddDomain, Group: "g", Domain: d, List: l})
			lits[d] = entry{List: l}
		}
		own := genRules(r, domains, 300)
		for i := range own {
			own[i].Group = "g"
		}
		msgs = append(msgs, own...)
		msgs = append(msgs, Message{Type: TypeSyncComplete, Group: "g"})
		for i := 0; i < 300; i++ {
			d := domains[r.Intn(len(domains))]
			msgs = append(msgs, Message{Type: TypeAddMalicious, Domain: d, Confidence: 50})
			mal[d] = entry{List: ListMalicious}
		}
		global := genRules(r, domains, 100)
		msgs = append(msgs, global...)
		for i, err := range s.ApplyBatch("test", msgs) {
			if err != nil && msgs[i].Type != TypeAddPattern {
				t.Fatalf("message %d: %v", i, err)
			}
		}
		var rules []refRule
		for _, set := range [][]Message{own, global} {
			var rs []refRule
			for _, m := range set {
				pr, err := newPatternRule(m.Pattern, m.Syntax, m.List, m.Category, 0)
				if err != nil {
					t.Fatalf("%s: %v", m.Pattern, err)
				}
				rs = append(rs, refRule{key: pr.key(), re: regexp.MustCompile("(?i)" + pr.expr), r: pr, list: m.List})
			}
			sort.Slice(rs, func(i, j int) bool { return rs[i].key < rs[j].key })
			rules = append(rules, rs...)
		}
		var names []string
		for i := 0; i < 4000; i++ {
			d := domains[r.Intn(len(domains))]
			switch r.Intn(5) {
			case 0:
				d = "www." + d
			case 1:
				d = fmt.Sprintf("ad%d.%s", r.Intn(100), d)
			case 2:
				d = strings.ToUpper(d) + "."
			case 3:
				d = fmt.Sprintf("x%d.example.org", r.Intn(1000))
			}
			names = append(names, d)
		}
		snap := s.Snapshot()
		mt := newMatcher(s)
		groups := make([]string, 64)
		for i := range groups {
			groups[i] = "g"
		}
		out := make([]Decision, 64)
		matched := 0
		for i := 0; i < len(names); i += 64 {
			burst := make([][]byte, 0, 64)
			for _, n := range names[i:min(i+64, len(names))] {
				burst = append(burst, []byte(n))
			}
			mt.DecideBurst(groups[:len(burst)], burst, out[:len(burst)])
			for j, q := range burst {
				tbl, ent, pat := refDecide(lits, mal, rules, ww, string(q))
				if pat != "" {
					matched++
				}
				for k, d := range []Decision{snap.Decide("g", q), mt.Decide("g", q), out[j]} {
					if d.Table != tbl || d.Entry != ent || d.Pattern != pat {
						t.Fatalf("whitelist wins %v, %s (path %d): got %s %q %q, want %s %q %q", ww, q, k,
							d.Table, d.Entry, d.Pattern, tbl, ent, pat)
					}
				}
			}
		}
		if matched < 200 {
			t.Errorf("only %d names decided by a rule: the test does not exercise the rules", matched)
		}
		mt.Close()
		s.Close()
	}
}

// TestPatternSwapAtomic: readers of one snapshot see the old literals and
// rules together or the new ones together while syncs swap them.
func TestPatternSwapAtomic(t *testing.T) {
	s := NewStore(StoreConfig{})
	defer s.Close()
	resync := func(gen int) {
		apply(t, s,
			`{"type":"BEGIN_SYNC","group_id":"g"}`,
			fmt.Sprintf(`{"type":"ADD_DOMAIN","group_id":"g","domain":"lit%d.example","action":"blacklist"}`, gen%2),
			fmt.Sprintf(`{"type":"ADD_PATTERN","group_id":"g","pattern":"^pat%d\\.","action":"blacklist"}`, gen%2),
			`{"type":"SYNC_COMPLETE","group_id":"g"}`)
	}
	resync(0)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var bad atomic.Int64
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mt := newMatcher(s)
			defer mt.Close()
			for !stop.Load() {
				snap := s.Snapshot()
				l0 := snap.Decide("g", []byte("lit0.example")).Table != ""
				p0 := snap.Decide("g", []byte("pat0.x")).Table != ""
				l1 := snap.Decide("g", []byte("lit1.example")).Table != ""
				p1 := snap.Decide("g", []byte("pat1.x")).Table != ""
				if l0 != p0 || l1 != p1 || l0 == l1 {
					bad.Add(1)
				}
				mt.Decide("g", []byte("pat1.x"))
			}
		}()
	}
	for i := 1; i <= 200; i++ {
		resync(i)
	}
	stop.Store(true)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d mixed views", bad.Load())
	}
}

// TestPatternHits: hit counts follow the decisions a matcher made by each
// rule (cached or not) and survive a re-sync of the same rule.
func TestPatternHits(t *testing.T) {
	s := NewStore(StoreConfig{})
	defer s.Close()
	rules := []string{
		`{"type":"BEGIN_SYNC","group_id":"g"}`,
		`{"type":"ADD_PATTERN","group_id":"g","pattern":"^ads\\.","action":"blacklist"}`,
		`{"type":"SYNC_COMPLETE","group_id":"g"}`,
	}
	apply(t, s, rules...)
	mt := newMatcher(s)
	defer mt.Close()
	for i := 0; i < 10; i++ {
		mt.Decide("g", []byte("ads.example.org"))
		mt.Decide("g", []byte("other.example.org"))
	}
	apply(t, s, rules...)
	out := make([]Decision, 3)
	mt.DecideBurst([]string{"g", "g", "g"}, [][]byte{[]byte("ads.a"), []byte("b"), []byte("ads.c")}, out)
	p := s.Patterns("g")
	if len(p) != 1 || p[0].Hits != 12 {
		t.Fatalf("patterns %+v, want one rule with 12 hits", p)
	}
}

// TestPatternMessages: the wire form of ADD_PATTERN and REMOVE_PATTERN.
func TestPatternMessages(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Message
		err  string
	}{
		{`{"type":"ADD_PATTERN","group_id":"g","pattern":"^ad[0-9]*\\.","action":"blacklist","category":4}`,
			Message{Type: TypeAddPattern, Group: "g", Pattern: `^ad[0-9]*\.`, List: ListBlacklist, Category: 4}, ""},
		{`{"type":"ADD_PATTERN","pattern":"*.tracker.net","syntax":"wildcard","action":"malicious","confidence":80}`,
			Message{Type: TypeAddPattern, Pattern: "*.tracker.net", Syntax: SyntaxWildcard, List: ListMalicious, Confidence: 80}, ""},
		{`{"type":"REMOVE_PATTERN","group_id":"g","pattern":"x"}`, Message{Type: TypeRemovePattern, Group: "g", Pattern: "x"}, ""},
		{`{"type":"ADD_PATTERN","pattern":"x"}`, Message{}, ReasonMissingField},
		{`{"type":"ADD_PATTERN","action":"blacklist"}`, Message{}, ReasonMissingField},
		{`{"type":"ADD_PATTERN","pattern":"x","action":"sinkhole"}`, Message{}, ReasonInvalidField},
		{`{"type":"ADD_PATTERN","pattern":"x","syntax":"glob","action":"blacklist"}`, Message{}, ReasonInvalidField},
		{`{"type":"ADD_PATTERN","pattern":"` + strings.Repeat("a", MaxPatternLen+1) + `","action":"blacklist"}`, Message{}, ReasonInvalidPattern},
	} {
		m, err := ParseMessage([]byte(c.in))
		if RejectReason(err) != c.err || (c.err == "" && m != c.want) {
			t.Errorf("%s: %+v, %v", c.in, m, err)
			continue
		}
		if c.err == "" {
			wire, _ := m.MarshalJSON()
			if back, err := ParseMessage(wire); err != nil || back != m {
				t.Errorf("round trip %s: %+v, %v", wire, back, err)
			}
		}
	}
}
