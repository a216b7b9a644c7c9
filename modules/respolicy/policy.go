package respolicy

import (
	"time"

	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// Decision is the policy's answer for one query name.
type Decision struct {
	// Action is decision.Allow, decision.Block or decision.Sinkhole.
	Action decision.Action
	// Group is the numeric id of the group whose tables were consulted (0
	// when the group is unknown and no default group applies).
	Group uint32
	// Category is the category bitmask of the deciding entry (0 if none).
	Category uint32
	// Table is "whitelist", "blacklist", "malicious" or "" (no entry matched).
	Table string
	// Entry is the deciding entry (the most specific of its table). It
	// points into the snapshot: keep it only as long as you need it. Empty
	// when a pattern rule decided.
	Entry string
	// Pattern is the deciding pattern rule as written (wildcards in lower
	// case), or "" when a literal entry or nothing decided.
	Pattern string
	// Confidence is the malicious entry's confidence (0-100), else 0.
	Confidence uint8

	rule *patternRule // the deciding pattern rule (its hit counter)
}

// Table names as Decision.Table spells them.
const (
	TableWhitelist = "whitelist"
	TableBlacklist = "blacklist"
	TableMalicious = "malicious"
)

// pair is a base table and a small delta in front of it: the delta holds the
// entries added or removed (tombstones) since the base was built, so that a
// single ADD_DOMAIN or ADD_MALICIOUS publishes a new snapshot without
// rebuilding the base.
type pair struct {
	base, delta *table
}

// lookup probes the pair for one suffix with k labels. It returns the table
// and slot of the live entry, or nil.
func (p *pair) lookup(h uint64, name []byte, k int) (*table, int) {
	if d := p.delta; d.n > 0 && d.has(k) {
		if i := d.find(h, name); i >= 0 {
			if d.slots[i].list() == listTombstone {
				return nil, -1
			}
			return d, i
		}
	}
	if b := p.base; b.has(k) && b.maybe(h) {
		if i := b.find(h, name); i >= 0 {
			return b, i
		}
	}
	return nil, -1
}

// maxLabels returns the largest label count of any entry of the pair.
func (p *pair) maxLabels() int { return max(p.base.maxLabels, p.delta.maxLabels) }

// count returns the number of live entries on list l.
func (p *pair) count(l List) int {
	n := p.base.perList[l] + p.delta.perList[l]
	if p.delta.n > 0 {
		// Delta entries that replace or remove a base entry do not add one.
		p.delta.each(func(name string, e entry) {
			if be, ok := p.base.get(name); ok {
				if be.List == l {
					n--
				}
			}
		})
	}
	return n
}

// each calls fn for every live entry of the pair.
func (p *pair) each(fn func(name string, e entry)) {
	p.base.each(func(name string, e entry) {
		if _, over := p.delta.get(name); !over {
			fn(name, e)
		}
	})
	p.delta.each(func(name string, e entry) {
		if e.List != listTombstone {
			fn(name, e)
		}
	})
}

// GroupPolicy is one group's active policy inside a snapshot.
type GroupPolicy struct {
	// Name is the group's name (group_id in messages).
	Name string
	// ID is the numeric id used in CDRs.
	ID uint32
	// Whitelist and Blacklist are the list sizes.
	Whitelist, Blacklist int
	// SyncedAt is when the last SYNC_COMPLETE (or file load) made the
	// group's base active; zero when it never completed one.
	SyncedAt time.Time
	// Syncs counts the completed syncs of the group.
	Syncs uint64
	// LastChange is when the group's active policy last changed.
	LastChange time.Time

	// Patterns is the number of the group's own pattern rules.
	Patterns int

	tables   pair
	hs       *hsDB       // compiled base (nil until compiled, or when disabled)
	patterns *patternSet // own + global pattern rules (nil: the group has none of its own)
}

// Engine reports which engine serves the group's base in DecideBurst:
// "hyperscan" or "hash".
func (g *GroupPolicy) Engine() string {
	if g.hs != nil {
		return "hyperscan"
	}
	return "hash"
}

// Snapshot is an immutable view of the whole policy. Readers get one with
// Module.Snapshot and may keep it as long as they like.
type Snapshot struct {
	// Generation increases with every published snapshot.
	Generation uint64
	// Published is when the snapshot became active.
	Published time.Time

	groups    map[string]*GroupPolicy
	defGroup  *GroupPolicy // used for unknown groups; may be nil
	malicious pair
	malHS     *hsDB
	// globalPatterns decides groups without pattern rules of their own
	// (nil: no global rules).
	globalPatterns *patternSet
	whitelistWins  bool
	burstHS        bool
}

// Group returns the named group's policy.
func (s *Snapshot) Group(name string) (*GroupPolicy, bool) {
	g, ok := s.groups[name]
	return g, ok
}

// Groups returns every group's policy (unordered).
func (s *Snapshot) Groups() []*GroupPolicy {
	out := make([]*GroupPolicy, 0, len(s.groups))
	for _, g := range s.groups {
		out = append(out, g)
	}
	return out
}

// MaliciousSize returns the number of entries of the malicious table.
func (s *Snapshot) MaliciousSize() int { return s.malicious.count(ListMalicious) }

// WhitelistWins reports whether a whitelist entry beats a malicious one.
func (s *Snapshot) WhitelistWins() bool { return s.whitelistWins }

// hit is the most specific match in one table during a walk.
type hit struct {
	t *table
	i int
}

// Decide returns the decision for a query name in a group; see the package
// documentation for the rules. It does not allocate unless pattern rules
// apply to the group (it then scans with a scratch of its own: the data
// plane decides through a Matcher).
func (s *Snapshot) Decide(group string, qname []byte) Decision {
	g := s.groups[group]
	if g == nil {
		g = s.defGroup
	}
	return s.decidePatterns(g, qname, s.decide(g, qname))
}

// probe is one label-boundary suffix of a query name: its hash, where it
// starts and its label count.
type probe struct {
	h      uint64
	start  int32
	k      int16
	gm, mm bool // the group's / malicious base may hold it (burst pass 2)
}

// maxProbes bounds the suffixes a burst keeps per name; names with more
// (rare: tables rarely hold entries that deep) take the one-pass walk.
const maxProbes = 24

// decide is Decide with the group resolved (g may be nil): one pass from
// the last label to the first, hashing every label-boundary suffix and
// probing the group's and the malicious table as it goes.
func (s *Snapshot) decide(g *GroupPolicy, q []byte) Decision {
	return s.decideSlow(g, q)
}

// collect trims q and appends its suffix probes to ps (shortest first),
// touching their first slots. ok is false when there is nothing to probe
// (d is then the answer) or when ps would overflow (len(ps) == cap(ps)).
//
// With pf, the slots are prefetched instead of loaded (the burst path).
func (s *Snapshot) collect(g *GroupPolicy, q []byte, ps []probe, pf bool) (_ []probe, _ []byte, d Decision, ok bool) {
	var gb *table
	maxL := s.malicious.maxLabels()
	if g != nil {
		d.Group = g.ID
		gb = g.tables.base
		maxL = max(maxL, g.tables.maxLabels())
	}
	q, valid := lookupName(q)
	if !valid || maxL == 0 {
		return ps, q, d, false
	}
	n := len(q)
	mb := s.malicious.base
	var acc uint32
	h := uint64(fnvOffset)
	k := 0
	for i := n - 1; ; i-- {
		if i < 0 || q[i] == '.' {
			start := i + 1
			k++
			if start < n { // an empty label ("a..b") never matches
				if len(ps) == cap(ps) {
					return ps, q, d, false
				}
				fh := finish(h, n-start)
				ps = append(ps, probe{h: fh, start: int32(start), k: int16(k)})
				if gb != nil && gb.has(k) {
					if pf {
						prefetch(gb.firstLine(fh))
					} else {
						acc += uint32(gb.slots[fh>>gb.shift].meta>>16) & 0xFF
					}
				}
				if mb.has(k) {
					if pf {
						prefetch(mb.firstLine(fh))
					} else {
						acc += uint32(mb.slots[fh>>mb.shift].meta>>16) & 0xFF
					}
				}
			}
			if i < 0 || k >= maxL {
				break
			}
		}
		h = (h ^ uint64(lower[q[i]])) * fnvPrime
	}
	// acc < 2*maxProbes*256, so this is always 0; it keeps the touching
	// loads from being optimised away.
	d.Confidence = uint8(acc >> 16)
	return ps, q, d, true
}

// lookupFast is lookup with the base probed by candidate (tag and length,
// no name comparison); the delta, small and hot, is probed exactly.
func (p *pair) lookupFast(h uint64, name []byte, k int, maybeBase bool) (*table, int) {
	if d := p.delta; d.n > 0 && d.has(k) {
		if i := d.find(h, name); i >= 0 {
			if d.slots[i].list() == listTombstone {
				return nil, -1
			}
			return d, i
		}
	}
	if b := p.base; maybeBase {
		if i := b.candidate(h, len(name)); i >= 0 {
			return b, i
		}
	}
	return nil, -1
}

// filterProbes is the burst's second pass: it checks the filters of the
// probes' base tables (their lines prefetched by collect) and prefetches the
// slots of the probes that may hit.
func (s *Snapshot) filterProbes(g *GroupPolicy, ps []probe) {
	mb := s.malicious.base
	var gb *table
	if g != nil {
		gb = g.tables.base
	}
	for i := range ps {
		p := &ps[i]
		k := int(p.k)
		p.gm = gb != nil && gb.has(k) && gb.maybe(p.h)
		if p.gm {
			prefetch(gb.slotLine(p.h))
		}
		p.mm = mb.has(k) && mb.maybe(p.h)
		if p.mm {
			prefetch(mb.slotLine(p.h))
		}
	}
}

// resolveFast probes the suffixes ps of q (from collect) with lookupFast
// (bases by candidate, deltas exactly). It returns the hit the precedence
// picks (t nil: none), the decision without its entry fields, and where the
// picked suffix starts. The caller verifies the pick before trusting it:
// candidates never miss a real entry, so a verified pick is the right one,
// and a pick that fails verification is decided again exactly.
func (s *Snapshot) resolveFast(g *GroupPolicy, q []byte, ps []probe, d Decision) (hit, Decision, int32) {
	var gp *pair
	if g != nil {
		gp = &g.tables
	}
	mp := &s.malicious
	var white, black, mal hit
	var ws, bs, ms int32
	for _, p := range ps {
		suffix := q[p.start:]
		if gp != nil {
			if t, j := gp.lookupFast(p.h, suffix, int(p.k), p.gm); t != nil {
				if t.slots[j].list() == ListWhitelist {
					white, ws = hit{t, j}, p.start
				} else {
					black, bs = hit{t, j}, p.start
				}
			}
		}
		if t, j := mp.lookupFast(p.h, suffix, int(p.k), p.mm); t != nil {
			mal, ms = hit{t, j}, p.start
		}
	}
	switch {
	case mal.t != nil && (white.t == nil || !s.whitelistWins):
		d.Action, d.Table = decision.Sinkhole, TableMalicious
		return mal, d, ms
	case white.t != nil:
		d.Action, d.Table = decision.Allow, TableWhitelist
		return white, d, ws
	case black.t != nil:
		d.Action, d.Table = decision.Block, TableBlacklist
		return black, d, bs
	}
	return hit{}, d, 0
}

// decideSlow is the one-pass walk (see decide).
func (s *Snapshot) decideSlow(g *GroupPolicy, q []byte) Decision {
	var d Decision
	var gp *pair
	if g != nil {
		d.Group = g.ID
		gp = &g.tables
	}
	q, valid := lookupName(q)
	if !valid {
		return d
	}
	n := len(q)
	mp := &s.malicious
	maxL := mp.maxLabels()
	if gp != nil {
		maxL = max(maxL, gp.maxLabels())
	}
	if maxL == 0 {
		return d
	}
	var white, black, mal hit
	h := uint64(fnvOffset)
	k := 0
	for i := n - 1; ; i-- {
		if i < 0 || q[i] == '.' {
			start := i + 1
			k++
			if start < n { // an empty label ("a..b") never matches
				fh := finish(h, n-start)
				suffix := q[start:]
				if gp != nil {
					if t, j := gp.lookup(fh, suffix, k); t != nil {
						if t.slots[j].list() == ListWhitelist {
							white = hit{t, j}
						} else {
							black = hit{t, j}
						}
					}
				}
				if t, j := mp.lookup(fh, suffix, k); t != nil {
					mal = hit{t, j}
				}
			}
			if i < 0 || k >= maxL {
				break
			}
		}
		h = (h ^ uint64(lower[q[i]])) * fnvPrime
	}
	return s.pick(d, white, black, mal)
}

// pick applies the precedence to the most specific hit of each table.
func (s *Snapshot) pick(d Decision, white, black, mal hit) Decision {
	var pick hit
	switch {
	case mal.t != nil && (white.t == nil || !s.whitelistWins):
		pick, d.Action, d.Table = mal, decision.Sinkhole, TableMalicious
	case white.t != nil:
		pick, d.Action, d.Table = white, decision.Allow, TableWhitelist
	case black.t != nil:
		pick, d.Action, d.Table = black, decision.Block, TableBlacklist
	default:
		return d
	}
	sl := &pick.t.slots[pick.i]
	d.Category = sl.cat
	d.Entry = pick.t.arena[sl.off : sl.off+uint32(sl.ln())]
	if d.Action == decision.Sinkhole {
		d.Confidence = sl.conf()
	}
	return d
}

// lookupName strips one trailing dot from q and reports whether the rest is
// a name a lookup can match (1 to MaxNameLen bytes).
func lookupName(q []byte) ([]byte, bool) {
	if n := len(q); n > 0 && q[n-1] == '.' {
		q = q[:n-1]
	}
	return q, len(q) > 0 && len(q) <= MaxNameLen
}
