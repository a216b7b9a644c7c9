package respolicy

import (
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/flier/gohs/hyperscan"

	"github.com/switchboard-dp/switchboard/internal/cheap"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// Syntax is how a pattern rule is written.
type Syntax uint8

// Pattern syntaxes. SyntaxRegex is the default.
const (
	// SyntaxRegex is a Hyperscan regular expression matched anywhere in the
	// query name (lower case, no trailing dot) unless anchored.
	SyntaxRegex Syntax = iota
	// SyntaxWildcard is a whole-name form: a label "*" stands for one or
	// more labels, a "*" inside a label for any run of characters within
	// that label; everything else is literal.
	SyntaxWildcard
)

// String returns the wire name of the syntax ("regex" or "wildcard").
func (s Syntax) String() string {
	if s == SyntaxWildcard {
		return "wildcard"
	}
	return "regex"
}

// MaxPatternLen is the longest pattern a message may carry, in bytes.
const MaxPatternLen = 1024

// patternRule is one pattern rule of a group or of the global set.
type patternRule struct {
	text       string // as written (wildcards lower-cased)
	syntax     Syntax
	expr       string // the Hyperscan expression
	list       List
	category   uint32
	confidence uint8
	hits       *atomic.Uint64 // decisions this rule made; kept across re-syncs of the same rule
}

// key identifies a rule within its set: the same text in another syntax is
// another rule.
func (r *patternRule) key() string { return patternKey(r.syntax, r.text) }

func patternKey(s Syntax, text string) string { return s.String() + ":" + text }

// PatternInfo describes one pattern rule for the CLI.
type PatternInfo struct {
	Pattern    string
	Syntax     Syntax
	List       List
	Category   uint32
	Confidence uint8
	Global     bool // from the global set (no group_id)
	Hits       uint64
}

// wildcardExpr translates a wildcard pattern into a Hyperscan expression
// anchored at both ends.
func wildcardExpr(w string) (string, error) {
	if w == "" {
		return "", errors.New("empty wildcard")
	}
	var b strings.Builder
	b.WriteByte('^')
	for i, label := range strings.Split(w, ".") {
		if i > 0 {
			b.WriteString(`\.`)
		}
		switch {
		case label == "":
			return "", fmt.Errorf("wildcard %q: empty label", truncate(w))
		case label == "*":
			b.WriteString(`[^.]+(?:\.[^.]+)*`)
		default:
			for j := 0; j < len(label); j++ {
				c := label[j]
				switch {
				case c == '*':
					b.WriteString(`[^.]*`)
				case c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_':
					b.WriteByte(c)
				default:
					return "", fmt.Errorf("wildcard %q: byte %q not allowed (letters, digits, '-', '_', '.', '*')", truncate(w), c)
				}
			}
		}
	}
	b.WriteByte('$')
	return b.String(), nil
}

// patternFlags are the Hyperscan flags of every pattern: names are matched
// case-insensitively and each rule reports at most once per scan.
const patternFlags = hyperscan.Caseless | hyperscan.SingleMatch

// newPatternRule checks one pattern and makes its rule. Hyperscan parses the
// expression (hs_expression_info); an expression it refuses, one that can
// match an empty name, or one longer than MaxPatternLen is refused with the
// reason.
func newPatternRule(text string, syn Syntax, l List, cat uint32, conf uint8) (*patternRule, error) {
	if len(text) > MaxPatternLen {
		return nil, fmt.Errorf("pattern of %d bytes (at most %d)", len(text), MaxPatternLen)
	}
	expr := text
	if syn == SyntaxWildcard {
		text = strings.ToLower(strings.TrimSuffix(text, "."))
		var err error
		if expr, err = wildcardExpr(text); err != nil {
			return nil, err
		}
	}
	if expr == "" {
		return nil, errors.New("empty pattern")
	}
	info, err := hyperscan.NewPattern(expr, patternFlags).Info()
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %v", truncate(text), err)
	}
	if info.MinWidth == 0 {
		return nil, fmt.Errorf("pattern %q matches the empty name", truncate(text))
	}
	return &patternRule{text: text, syntax: syn, expr: expr, list: l, category: cat, confidence: conf,
		hits: new(atomic.Uint64)}, nil
}

// patternSet is a compiled set of rules: a group's own rules followed by the
// global ones (or the global ones alone). Its database lives as long as the
// set: snapshots hold sets, so a reader of any snapshot, however old, scans
// a live database, and the garbage collector frees a database (a cleanup on
// the set) once no snapshot or matcher can reach its set. Pattern id i is rules[i]; within a
// list, the lowest id that matches decides, so a group's own rule beats a
// global one, and otherwise the rule whose pattern sorts first (syntax,
// then pattern, in byte order) decides.
type patternSet struct {
	db    *hsDB
	rules []*patternRule
}

// sortedRules returns the rules of m sorted by key.
func sortedRules(m map[string]*patternRule) []*patternRule {
	out := make([]*patternRule, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key() < out[j].key() })
	return out
}

// compilePatterns compiles own followed by global into one block database
// (nil when both are empty). A rule the compiler refuses although it parsed
// (a resource limit, for example) is dropped and returned in refused with
// the reason, and the rest is compiled again.
func compilePatterns(own, global []*patternRule) (*patternSet, []refusedRule, error) {
	rules := append(append(make([]*patternRule, 0, len(own)+len(global)), own...), global...)
	var refused []refusedRule
	for len(rules) > 0 {
		start := time.Now()
		pats := make([]*hyperscan.Pattern, len(rules))
		for i, r := range rules {
			pats[i] = hyperscan.NewPattern(r.expr, patternFlags)
			pats[i].Id = i
		}
		bdb, err := hyperscan.NewBlockDatabase(pats...)
		cheap.Trim() // the compiler's scratch memory, freed, goes back to the OS
		var cerr *hyperscan.CompileError
		if errors.As(err, &cerr) && cerr.Expression >= 0 && cerr.Expression < len(rules) {
			i := cerr.Expression
			refused = append(refused, refusedRule{rules[i], cerr.Message})
			rules = append(rules[:i:i], rules[i+1:]...)
			continue
		}
		if err != nil {
			hsStats.failed.Add(1)
			return nil, refused, fmt.Errorf("compile %d patterns: %w", len(rules), err)
		}
		serial, err := growProto(bdb)
		if err != nil {
			_ = bdb.Close()
			return nil, refused, err
		}
		size, _ := bdb.Size()
		hsStats.compiled.Add(1)
		set := &patternSet{db: &hsDB{db: bdb, serial: serial, size: size, compile: time.Since(start)}, rules: rules}
		runtime.AddCleanup(set, func(db hyperscan.BlockDatabase) {
			_ = db.Close()
			hsStats.freed.Add(1)
		}, bdb)
		return set, refused, nil
	}
	return nil, refused, nil
}

// refusedRule is a rule the compiler refused, and why.
type refusedRule struct {
	r      *patternRule
	reason string
}

// patternScan is a matcher's state for one pattern scan: the lowest id that
// matched per list (id + 1; 0 = none).
type patternScan struct {
	white, black, mal int32
}

// patternSetFor returns the pattern set that applies to group g (nil: none).
func (s *Snapshot) patternSetFor(g *GroupPolicy) *patternSet {
	if g != nil && g.patterns != nil {
		return g.patterns
	}
	return s.globalPatterns
}

// applyPatterns merges the pattern rules that match q into d, the literal
// tables' decision: the list that wins is the one of highest precedence
// among the literal decision's list and the lists of matching rules; a
// literal entry beats a rule of its own list. sc is a scratch that fits the
// set's database; onMatch is the scan's match handler, writing to ps.
func (s *Snapshot) applyPatterns(set *patternSet, q []byte, d Decision, sc *hyperscan.Scratch,
	onMatch hyperscan.MatchHandler, ps *patternScan) Decision {
	q, valid := lookupName(q)
	if !valid {
		return d
	}
	*ps = patternScan{}
	err := set.db.db.Scan(q, sc, onMatch, nil)
	runtime.KeepAlive(set) // the database is freed by the set's cleanup
	if err != nil {
		hsStats.scanFailed.Add(1)
		return d
	}
	lit := d.Table
	var pick int32
	// Precedence order: the first of these that matched decides.
	order := [3]struct {
		table string
		id    int32
	}{{TableMalicious, ps.mal}, {TableWhitelist, ps.white}, {TableBlacklist, ps.black}}
	if s.whitelistWins {
		order[0], order[1] = order[1], order[0]
	}
	for _, o := range order {
		if lit == o.table {
			return d // a literal entry of the winning list
		}
		if o.id != 0 {
			pick = o.id
			break
		}
	}
	if pick == 0 {
		return d
	}
	r := set.rules[pick-1]
	d.Category, d.Entry, d.Pattern, d.Confidence, d.rule = r.category, "", r.text, 0, r
	switch r.list {
	case ListMalicious:
		d.Action, d.Table, d.Confidence = decision.Sinkhole, TableMalicious, r.confidence
	case ListWhitelist:
		d.Action, d.Table = decision.Allow, TableWhitelist
	default:
		d.Action, d.Table = decision.Block, TableBlacklist
	}
	return d
}

// record notes that rule id matched (a match handler's body).
func (ps *patternScan) record(set *patternSet, id uint) {
	if int(id) >= len(set.rules) {
		return
	}
	v := int32(id) + 1
	p := &ps.black
	switch set.rules[id].list {
	case ListWhitelist:
		p = &ps.white
	case ListMalicious:
		p = &ps.mal
	}
	if *p == 0 || v < *p {
		*p = v
	}
}

// decidePatterns is Snapshot.Decide's pattern step, for callers without a
// Matcher: it scans with a scratch of its own (cloned and freed per call,
// so slower than a Matcher's).
func (s *Snapshot) decidePatterns(g *GroupPolicy, q []byte, d Decision) Decision {
	set := s.patternSetFor(g)
	if set == nil {
		return d
	}
	sc, _, err := cloneProto()
	if err != nil {
		return d
	}
	defer func() { _ = sc.Free() }()
	var ps patternScan
	d = s.applyPatterns(set, q, d, sc, func(id uint, _, _ uint64, _ uint, _ interface{}) error {
		ps.record(set, id)
		return nil
	}, &ps)
	return d
}
