package respolicy

import (
	"unsafe"

	"github.com/flier/gohs/hyperscan"

	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// Matcher decides query names for one worker goroutine. It owns that
// worker's Hyperscan scratch and burst buffers, so it must not be shared
// between goroutines; make one per worker with Module.NewMatcher and Close
// it when the worker ends.
type Matcher struct {
	src   interface{ Snapshot() *Snapshot }
	store *Store // src, when it is a store (saves an interface call)

	lastSnap  *Snapshot
	lastName  string
	lastGroup *GroupPolicy

	// cache holds recent decisions of the current snapshot (see cache.go).
	cache decCache

	scratch    *hyperscan.Scratch
	scratchVer uint64

	// burst state
	buf    []byte
	endIdx []int32 // byte offset just past a name's delimiter -> name index
	best   []burstBest
	onHit  hyperscan.MatchHandler
	curDB  *hsDB
	bs     burstScratch
	names  []burstName
	probes []probe

	// Collisions counts burst picks that failed verification (tag
	// collisions) and were decided again exactly.
	Collisions uint64

	// HSNames counts the names this matcher decided through Hyperscan (the
	// rest of DecideBurst's names took the hash walk).
	HSNames uint64

	// pattern scan state (see withPatterns)
	patSet  *patternSet
	patScan patternScan
	onPat   hyperscan.MatchHandler
}

// burstBest is the most specific Hyperscan match of one name in one scan.
type burstBest struct {
	white, black, mal int32 // pattern id + 1, 0 = none
}

// newMatcher returns a matcher reading snapshots from src.
func newMatcher(src interface{ Snapshot() *Snapshot }) *Matcher {
	mt := &Matcher{src: src}
	mt.store, _ = src.(*Store)
	mt.onHit = mt.handle
	mt.onPat = func(id uint, _, _ uint64, _ uint, _ interface{}) error {
		mt.patScan.record(mt.patSet, id)
		return nil
	}
	return mt
}

// withPatterns merges the pattern rules that apply to group g into d, the
// literal decision for q (one Hyperscan scan with the matcher's scratch;
// nothing when no rule applies).
func (mt *Matcher) withPatterns(s *Snapshot, g *GroupPolicy, q []byte, d Decision) Decision {
	set := s.patternSetFor(g)
	if set == nil || !mt.ensureScratch(set.db) {
		return d
	}
	mt.patSet = set
	d = s.applyPatterns(set, q, d, mt.scratch, mt.onPat, &mt.patScan)
	mt.patSet = nil
	return d
}

// counted counts a decision made by a pattern rule on the rule's hits and
// returns d.
func counted(d Decision) Decision {
	if d.rule != nil {
		d.rule.hits.Add(1)
	}
	return d
}

// Decide returns the decision for qname (any case, trailing dot or not) in
// the named group against the current snapshot. An unknown group is decided
// with the default group's tables (see Config) or, with none, only the
// malicious table, and Decision.Group 0. It does not allocate.
func (mt *Matcher) Decide(group string, qname []byte) Decision {
	var s *Snapshot
	if mt.store != nil {
		s = mt.store.snap.Load()
	} else {
		s = mt.src.Snapshot()
	}
	// Workers usually decide many names of one group in a row: keep the
	// group resolved while the snapshot and the name stay the same.
	if s != mt.lastSnap || group != mt.lastName {
		g := s.groups[group]
		if g == nil {
			g = s.defGroup
		}
		mt.lastSnap, mt.lastName, mt.lastGroup = s, group, g
	}
	g := mt.lastGroup
	mt.cache.begin(s)
	var k decCacheKey
	if !k.set(g, qname) {
		return counted(mt.withPatterns(s, g, qname, s.decide(g, qname)))
	}
	if d, ok := mt.cache.get(g, &k); ok {
		return counted(d)
	}
	d := mt.withPatterns(s, g, qname, s.decide(g, qname))
	mt.cache.put(g, &k, d)
	return counted(d)
}

// CacheStats returns how many lookups of Decide and DecideBurst (hash
// engine) the matcher's decision cache answered and how many it missed
// (names it does not hold are not counted).
func (mt *Matcher) CacheStats() (hits, misses uint64) {
	return mt.cache.hits, mt.cache.misses
}

// Close frees the matcher's Hyperscan scratch.
func (mt *Matcher) Close() {
	mt.lastSnap, mt.lastGroup = nil, nil
	mt.cache.reset()
	if mt.scratch != nil {
		_ = mt.scratch.Free()
		mt.scratch = nil
	}
}

// ensureScratch makes the matcher's scratch fit db. The old scratch is freed
// here, in the matcher's own goroutine, never while a scan uses it.
func (mt *Matcher) ensureScratch(db *hsDB) bool {
	if mt.scratch != nil && mt.scratchVer >= db.serial {
		return true
	}
	s, v, err := cloneProto()
	if err != nil {
		return false
	}
	if mt.scratch != nil {
		_ = mt.scratch.Free()
	}
	mt.scratch, mt.scratchVer = s, v
	return true
}

// handle records one Hyperscan match: to is the offset just past the
// delimiter of the name that matched.
func (mt *Matcher) handle(id uint, _, to uint64, _ uint, _ interface{}) error {
	ni := mt.endIdx[to]
	if ni < 0 {
		return nil
	}
	db := mt.curDB
	b := &mt.best[ni]
	slot := &db.src.slots[db.ids[id]]
	switch slot.list() {
	case ListWhitelist:
		if b.white == 0 || db.lens[b.white-1] < db.lens[id] {
			b.white = int32(id) + 1
		}
	case ListBlacklist:
		if b.black == 0 || db.lens[b.black-1] < db.lens[id] {
			b.black = int32(id) + 1
		}
	case ListMalicious:
		if b.mal == 0 || db.lens[b.mal-1] < db.lens[id] {
			b.mal = int32(id) + 1
		}
	}
	return nil
}

// fill lays names out in the burst buffer as ".name\n" (lower case, trailing
// dot dropped) and returns false for a name Hyperscan cannot take (empty,
// too long, or holding the delimiter); those names go through the hash
// walk.
func (mt *Matcher) fill(qnames [][]byte, idx []int, ok []bool) {
	mt.buf = mt.buf[:0]
	for _, i := range idx {
		var q []byte
		q, ok[i] = lookupName(qnames[i])
		if !ok[i] {
			continue
		}
		start := len(mt.buf)
		mt.buf = append(mt.buf, '.')
		for _, c := range q {
			if c == hsDelim {
				ok[i] = false
				break
			}
			mt.buf = append(mt.buf, lower[c])
		}
		if !ok[i] {
			mt.buf = mt.buf[:start]
			continue
		}
		mt.buf = append(mt.buf, hsDelim)
		for len(mt.endIdx) <= len(mt.buf) {
			mt.endIdx = append(mt.endIdx, -1)
		}
		mt.endIdx[len(mt.buf)] = int32(i)
	}
}

// clearEnds resets the end-offset index after a burst.
func (mt *Matcher) clearEnds() {
	for i := range mt.endIdx[:min(len(mt.endIdx), len(mt.buf)+1)] {
		mt.endIdx[i] = -1
	}
}

// scan runs db over the current buffer.
func (mt *Matcher) scan(db *hsDB) bool {
	if db == nil || len(mt.buf) == 0 || !db.acquire() {
		return false
	}
	defer db.release()
	if !mt.ensureScratch(db) {
		return false
	}
	mt.curDB = db
	err := db.db.Scan(mt.buf, mt.scratch, mt.onHit, nil)
	mt.curDB = nil
	return err == nil
}

// DecideBurst decides a burst of query names: out[i] is the decision for
// qnames[i] in groups[i]. All the burst is decided against one snapshot.
// With burst_engine = hyperscan, names whose group base and malicious base
// have a compiled database are matched with one Hyperscan scan per group
// present in the burst plus one for the malicious table; a name that
// touches a delta (an ADD or REMOVE since the base was built), or whose
// databases are not compiled yet, takes the hash walk. With burst_engine = hash
// (the default, which the benchmark proved faster) it is a loop over the
// hash walk. Decisions are identical either way.
func (mt *Matcher) DecideBurst(groups []string, qnames [][]byte, out []Decision) {
	s := mt.src.Snapshot()
	if !s.burstHS {
		mt.decideBurstHash(s, groups, qnames, out)
		return
	}
	mt.decideBurstHS(s, groups, qnames, out)
}

// burstName is one name of a hash-tier burst between the passes.
type burstName struct {
	g      *GroupPolicy
	q      []byte // trimmed (no trailing dot)
	orig   []byte
	d      Decision
	lo, hi int32
	state  uint8 // 0 = d is final, 1 = resolve probes[lo:hi], 2 = decideSlow, 3 = verify pick
	put    bool  // store the decision in the cache under key
	cached bool  // d came from the cache (patterns included)
	pick   hit
	start  int32 // where the picked suffix starts in q
	key    decCacheKey
}

// decideBurstHash is the hash walk over a whole burst in four passes, so
// that the cache misses of all its names overlap instead of queueing one
// after the other: (1) hash every suffix of every name and prefetch the
// filter block (or slot) each probe reads first; (2) check the filters and
// prefetch the slots of the probes that may hit; (3) probe by tag (no name
// comparison), pick each name's decision and prefetch the picked entry's
// name; (4) verify the picked names and fill the decisions. A pick that fails verification (a
// 40-bit tag collision: practically never, or crafted) is decided again by
// the exact walk.
func (mt *Matcher) decideBurstHash(s *Snapshot, groups []string, qnames [][]byte, out []Decision) {
	n := len(qnames)
	if cap(mt.names) < n {
		mt.names = make([]burstName, n)
	}
	names := mt.names[:n]
	if need := n * maxProbes; cap(mt.probes) < need {
		mt.probes = make([]probe, 0, need)
	}
	used := 0
	var g *GroupPolicy
	mt.cache.begin(s)
	for i, q := range qnames {
		if i == 0 || groups[i] != groups[i-1] { // bursts usually repeat groups
			if g = s.groups[groups[i]]; g == nil {
				g = s.defGroup
			}
		}
		bn := &names[i]
		bn.put = bn.key.set(g, q)
		bn.cached = false
		if bn.put {
			if d, ok := mt.cache.get(g, &bn.key); ok {
				bn.put, bn.d, bn.state, bn.cached = false, d, 0, true
				continue
			}
		}
		ps, qq, d, ok := s.collect(g, q, mt.probes[used:used:used+maxProbes], true)
		bn.g, bn.q, bn.orig, bn.d, bn.lo, bn.hi = g, qq, q, d, int32(used), int32(used+len(ps))
		switch {
		case ok:
			bn.state = 1
			used += len(ps)
		case len(ps) == maxProbes:
			bn.state = 2
		default:
			bn.state = 0
		}
	}
	all := mt.probes[:used]
	for i := range names {
		if bn := &names[i]; bn.state == 1 {
			s.filterProbes(bn.g, all[bn.lo:bn.hi])
		}
	}
	for i := range names {
		bn := &names[i]
		if bn.state != 1 {
			continue
		}
		bn.pick, bn.d, bn.start = s.resolveFast(bn.g, bn.q, all[bn.lo:bn.hi], bn.d)
		if t := bn.pick.t; t != nil {
			bn.state = 3
			prefetch(uintptr(unsafe.Pointer(unsafe.StringData(t.arena))) + uintptr(t.slots[bn.pick.i].off))
		} else {
			bn.state = 0
		}
	}
	for i := range names {
		bn := &names[i]
		switch bn.state {
		case 0:
			out[i] = bn.d
		case 2:
			out[i] = s.decideSlow(bn.g, bn.orig)
		case 3:
			t, j := bn.pick.t, bn.pick.i
			if t.verify(j, bn.q[bn.start:]) {
				d := bn.d
				sl := &t.slots[j]
				d.Category, d.Entry = sl.cat, t.arena[sl.off:sl.off+uint32(sl.ln())]
				if d.Action == decision.Sinkhole {
					d.Confidence = sl.conf()
				}
				out[i] = d
			} else {
				mt.Collisions++
				out[i] = s.decide(bn.g, bn.orig)
			}
		}
		if !bn.cached {
			out[i] = mt.withPatterns(s, bn.g, bn.orig, out[i])
		}
		counted(out[i])
		if bn.put {
			mt.cache.put(bn.g, &bn.key, out[i])
		}
		bn.g, bn.q, bn.orig, bn.pick = nil, nil, nil, hit{} // do not pin the snapshot or the caller's buffers
	}
}

// burstScratch holds the per-burst slices of a matcher.
type burstScratch struct {
	gs    []*GroupPolicy
	useHS []bool
	ok    []bool
	idx   []int
	done  []*GroupPolicy
}

func (mt *Matcher) decideBurstHS(s *Snapshot, groups []string, qnames [][]byte, out []Decision) {
	n := len(qnames)
	b := &mt.bs
	if cap(b.gs) < n {
		b.gs, b.useHS, b.ok, mt.best = make([]*GroupPolicy, n), make([]bool, n), make([]bool, n), make([]burstBest, n)
	}
	b.gs, b.useHS, b.ok, mt.best = b.gs[:n], b.useHS[:n], b.ok[:n], mt.best[:n]
	mal := &s.malicious
	malBaseEmpty := mal.base.n == 0
	malOK := malBaseEmpty || s.malHS != nil
	for i := range qnames {
		g := s.groups[groups[i]]
		if g == nil {
			g = s.defGroup
		}
		b.gs[i] = g
		mt.best[i] = burstBest{}
		// Bases go through Hyperscan; a name that touches a delta (changes
		// since the base was built) takes the hash walk instead.
		b.useHS[i] = malOK && (g == nil || g.tables.base.n == 0 || g.hs != nil) && !touchesDelta(s, g, qnames[i])
	}
	// One scan per group with a database.
	b.done = b.done[:0]
	for i := range qnames {
		g := b.gs[i]
		if !b.useHS[i] || g == nil || g.hs == nil || containsGroup(b.done, g) {
			continue
		}
		b.done = append(b.done, g)
		b.idx = b.idx[:0]
		for j := i; j < n; j++ {
			if b.gs[j] == g && b.useHS[j] {
				b.idx = append(b.idx, j)
			}
		}
		mt.fill(qnames, b.idx, b.ok)
		scanned := mt.scan(g.hs)
		mt.clearEnds()
		for _, j := range b.idx {
			b.useHS[j] = scanned && b.ok[j]
		}
	}
	if !malBaseEmpty {
		b.idx = b.idx[:0]
		for i := range qnames {
			if b.useHS[i] {
				b.idx = append(b.idx, i)
			}
		}
		if len(b.idx) > 0 {
			mt.fill(qnames, b.idx, b.ok)
			scanned := mt.scan(s.malHS)
			mt.clearEnds()
			for _, j := range b.idx {
				b.useHS[j] = scanned && b.ok[j]
			}
		}
	}
	for i, q := range qnames {
		g := b.gs[i]
		if !b.useHS[i] {
			out[i] = counted(mt.withPatterns(s, g, q, s.decide(g, q)))
			continue
		}
		var d Decision
		if g != nil {
			d.Group = g.ID
		}
		mt.HSNames++
		bb := mt.best[i]
		var db *hsDB
		var id int32
		switch {
		case bb.mal != 0 && (bb.white == 0 || !s.whitelistWins):
			db, id, d.Action, d.Table = s.malHS, bb.mal-1, decision.Sinkhole, TableMalicious
		case bb.white != 0:
			db, id, d.Action, d.Table = g.hs, bb.white-1, decision.Allow, TableWhitelist
		case bb.black != 0:
			db, id, d.Action, d.Table = g.hs, bb.black-1, decision.Block, TableBlacklist
		}
		if db != nil {
			j := int(db.ids[id])
			sl := &db.src.slots[j]
			d.Category, d.Entry = sl.cat, db.src.name(j)
			if d.Action == decision.Sinkhole {
				d.Confidence = sl.conf()
			}
		}
		out[i] = counted(mt.withPatterns(s, g, q, d))
	}
}

func containsGroup(gs []*GroupPolicy, g *GroupPolicy) bool {
	for _, x := range gs {
		if x == g {
			return true
		}
	}
	return false
}

// touchesDelta reports whether some label suffix of q is in the group's or
// the malicious table's delta (an added entry or a removal).
func touchesDelta(s *Snapshot, g *GroupPolicy, q []byte) bool {
	gd, md := emptyTable, s.malicious.delta
	if g != nil {
		gd = g.tables.delta
	}
	if gd.n == 0 && md.n == 0 {
		return false
	}
	q, valid := lookupName(q)
	if !valid {
		return false
	}
	n := len(q)
	maxL := max(gd.maxLabels, md.maxLabels)
	h := uint64(fnvOffset)
	k := 0
	for i := n - 1; ; i-- {
		if i < 0 || q[i] == '.' {
			start := i + 1
			k++
			if start < n {
				fh := finish(h, n-start)
				if gd.has(k) && gd.find(fh, q[start:]) >= 0 {
					return true
				}
				if md.has(k) && md.find(fh, q[start:]) >= 0 {
					return true
				}
			}
			if i < 0 || k >= maxL {
				return false
			}
		}
		h = (h ^ uint64(lower[q[i]])) * fnvPrime
	}
}
