package respolicy

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// StoreConfig is what the store needs from res_policy.conf.
type StoreConfig struct {
	// WhitelistWins makes a whitelist entry beat a malicious one (default:
	// malicious wins).
	WhitelistWins bool
	// DefaultGroup names the group whose tables decide queries of unknown
	// groups ("" = none: only the malicious table applies).
	DefaultGroup string
	// GroupIDs maps configured group names to their numeric ids. Other groups
	// get AutoGroupID(name).
	GroupIDs map[string]uint32
	// Hyperscan compiles each group's and the malicious table's base into a
	// Hyperscan literal database in the background after every sync.
	Hyperscan bool
	// HyperscanMaxEntries skips compiling bases larger than this (0 = no limit).
	HyperscanMaxEntries int
	// BurstEngine is "hash" or "hyperscan": what DecideBurst uses.
	BurstEngine string
	// MaxPatterns bounds the pattern rules of each group and of the global
	// set (0 = DefaultMaxPatterns); an ADD_PATTERN past it is rejected.
	MaxPatterns int
}

// DefaultMaxPatterns is StoreConfig.MaxPatterns's default.
const DefaultMaxPatterns = 100000

// AutoGroupID is the id of a group that res_policy.conf does not list: the
// high bit set, the rest a 31-bit FNV-1a hash of the name. Stable across
// restarts and instances; list the group in [groups] to choose its id.
func AutoGroupID(name string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(name))
	return 0x80000000 | h.Sum32()&0x7fffffff
}

// groupState is the writer's view of one group.
type groupState struct {
	name    string
	id      uint32
	base    *table
	delta   map[string]entry        // changes since base; listTombstone = removed
	deltaT  *table                  // delta as a table (nil = rebuild at publish)
	pending map[string]pendingEntry // open sync (nil = none)
	hs      *hsDB                   // compiled base, if any

	pats        map[string]*patternRule // active pattern rules by key
	pendingPats map[string]*patternRule // pattern rules of the open sync
	patSet      *patternSet             // pats + the global rules, compiled (nil: no own rules)
	patDirty    bool                    // patSet is to be compiled again

	pendingSince time.Time
	syncedAt     time.Time
	lastChange   time.Time
	syncs        uint64
	view         *GroupPolicy // published view (nil = rebuild at publish)
}

// SyncState describes a group's sync for the CLI.
type SyncState struct {
	Group        string
	ID           uint32
	Open         bool      // a BEGIN_SYNC is waiting for its SYNC_COMPLETE
	PendingSince time.Time // when the open sync began
	Pending      int       // entries in the pending table
	Syncs        uint64
	SyncedAt     time.Time
	Delta        int // entries changed since the last base build
	HSState      string
	Patterns     int // active pattern rules of the group's own
}

// Counters are the store's message counters, by source ("kafka", "file", ...).
type Counters struct {
	Messages map[string]map[MessageType]uint64 // source -> type -> n
	Rejected map[string]map[string]uint64      // source -> reason -> n
}

// Store holds the writer side of the policy: group states, pending syncs,
// the malicious table, and the published snapshot. Writers serialise on a
// mutex; readers only load the snapshot pointer.
type Store struct {
	snap atomic.Pointer[Snapshot]
	id   string

	mu        sync.Mutex
	cfg       StoreConfig
	groups    map[string]*groupState
	malBase   *table
	malDelta  map[string]entry
	malDT     *table
	malHS     *hsDB
	gen       uint64
	counters  Counters
	lastSwap  time.Duration // SYNC_COMPLETE to active, last one
	swapStart time.Time     // set by SYNC_COMPLETE, read by publish
	comp      *compiler
	onChange  func()
	logger    *slog.Logger

	globalPats  map[string]*patternRule // global pattern rules by key
	globalSet   *patternSet
	globalDirty bool
	patSource   string // source of the last message that changed a pattern set

	valMu  sync.Mutex
	values map[string]any
}

// Value returns the value stored under key, making it with mk the first
// time. It lets a feeder keep state (such as the offsets it applied) for as
// long as this store's tables live, across restarts of the feeder alone.
func (s *Store) Value(key string, mk func() any) any {
	s.valMu.Lock()
	defer s.valMu.Unlock()
	if s.values == nil {
		s.values = map[string]any{}
	}
	v, ok := s.values[key]
	if !ok {
		v = mk()
		s.values[key] = v
	}
	return v
}

// NewStore returns a store with an empty policy published.
func NewStore(cfg StoreConfig) *Store {
	s := &Store{groups: map[string]*groupState{}, malBase: emptyTable, malDelta: map[string]entry{},
		counters: Counters{Messages: map[string]map[MessageType]uint64{}, Rejected: map[string]map[string]uint64{}}}
	s.cfg = cfg
	s.globalPats = map[string]*patternRule{}
	s.logger = slog.Default()
	var b [4]byte
	_, _ = rand.Read(b[:])
	s.id = hex.EncodeToString(b[:])
	for name, id := range cfg.GroupIDs {
		s.groups[name] = &groupState{name: name, id: id, base: emptyTable, delta: map[string]entry{}}
	}
	s.publishLocked()
	return s
}

// SetLogger sets the logger of pattern compile failures (default
// slog.Default()).
func (s *Store) SetLogger(l *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l != nil {
		s.logger = l
	}
}

// ID returns a random identifier of this store, chosen when it was made. A
// consumer that rebuilds the store from a topic uses it to tell a fresh
// store (start from the earliest offset) from one it already fed.
func (s *Store) ID() string { return s.id }

// Snapshot returns the active snapshot. It never returns nil.
func (s *Store) Snapshot() *Snapshot { return s.snap.Load() }

// SetConfig changes the configuration (on reload): group ids, precedence,
// default group. Tables are kept.
func (s *Store) SetConfig(cfg StoreConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg = cfg
	if !cfg.Hyperscan && s.comp != nil {
		s.stopCompilerLocked()
	}
	for name, g := range s.groups {
		id, ok := cfg.GroupIDs[name]
		if !ok {
			id = AutoGroupID(name)
		}
		if g.id != id {
			g.id, g.view = id, nil
		}
	}
	for name, id := range cfg.GroupIDs {
		if s.groups[name] == nil {
			s.groups[name] = &groupState{name: name, id: id, base: emptyTable, delta: map[string]entry{}}
		}
	}
	s.publishLocked()
}

// group returns the state of a group, creating it.
func (s *Store) group(name string) *groupState {
	g := s.groups[name]
	if g == nil {
		id, ok := s.cfg.GroupIDs[name]
		if !ok {
			id = AutoGroupID(name)
		}
		g = &groupState{name: name, id: id, base: emptyTable, delta: map[string]entry{}}
		s.groups[name] = g
	}
	return g
}

// Apply applies one message and publishes the result if it changed the
// active policy. source labels the counters ("kafka", "file"). A rejected
// message returns a *RejectError and changes nothing.
func (s *Store) Apply(source string, m Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed, err := s.applyLocked(source, m)
	if changed {
		s.publishLocked()
	}
	return err
}

// ApplyBatch applies messages in order and publishes once at the end, so
// readers see all of the batch or none of it. It returns the errors of the
// rejected messages (indexed like msgs; nil entries for accepted ones).
func (s *Store) ApplyBatch(source string, msgs []Message) []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := make([]error, len(msgs))
	publish := false
	for i, m := range msgs {
		changed, err := s.applyLocked(source, m)
		errs[i] = err
		publish = publish || changed
	}
	if publish {
		s.publishLocked()
	}
	return errs
}

// CountReject counts a message rejected before it reached the store (for
// example one that did not parse).
func (s *Store) CountReject(source, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	count(s.counters.Rejected, source, reason)
}

// count adds one to m[source][key]. The store's callers hold s.mu.
func count[K comparable](m map[string]map[K]uint64, source string, key K) {
	c := m[source]
	if c == nil {
		c = map[K]uint64{}
		m[source] = c
	}
	c[key]++
}

// applyLocked applies one message; it reports whether the active policy
// changed.
func (s *Store) applyLocked(source string, m Message) (bool, error) {
	changed, err := s.applyOne(m)
	if err != nil {
		count(s.counters.Rejected, source, RejectReason(err))
		return false, err
	}
	count(s.counters.Messages, source, m.Type)
	if changed && (m.Type == TypeAddPattern || m.Type == TypeRemovePattern || m.Type == TypeSyncComplete) {
		s.patSource = source
	}
	return changed, nil
}

func (s *Store) applyOne(m Message) (bool, error) {
	now := time.Now()
	switch m.Type {
	case TypeBeginSync:
		g := s.group(m.Group)
		if g.pending != nil {
			return false, reject(ReasonBeginWhileOpen, "BEGIN_SYNC for %s while its sync begun %s is open",
				m.Group, g.pendingSince.Format(time.RFC3339))
		}
		g.pending, g.pendingSince = map[string]pendingEntry{}, now
		g.pendingPats = map[string]*patternRule{}
		return g.view == nil, nil // a new group becomes visible (empty)
	case TypeAddDomain:
		g := s.group(m.Group)
		e := entry{List: m.List, Category: m.Category}
		if g.pending != nil {
			g.pending[m.Domain] = newPending(m.Domain, e)
			return g.view == nil, nil
		}
		if cur, ok := s.liveGroupEntry(g, m.Domain); ok && cur == e {
			return g.view == nil, nil
		}
		s.setDelta(g, m.Domain, e)
		return true, nil
	case TypeRemoveDomain:
		g := s.groups[m.Group]
		if g == nil {
			return false, nil
		}
		if g.pending != nil {
			delete(g.pending, m.Domain)
		}
		if _, ok := s.liveGroupEntry(g, m.Domain); !ok {
			return false, nil
		}
		if _, inBase := g.base.get(m.Domain); inBase {
			s.setDelta(g, m.Domain, entry{List: listTombstone})
		} else {
			delete(g.delta, m.Domain)
			g.deltaT, g.view, g.lastChange = nil, nil, now
		}
		return true, nil
	case TypeSyncComplete:
		g := s.groups[m.Group]
		if g == nil || g.pending == nil {
			return false, reject(ReasonCompleteWithoutBegin, "SYNC_COMPLETE for %s without BEGIN_SYNC", m.Group)
		}
		s.swapStart = time.Now()
		s.setBase(g, buildTablePending(g.pending))
		g.delta = map[string]entry{}
		g.pending = nil
		for k, r := range g.pendingPats {
			if old := g.pats[k]; old != nil {
				r.hits = old.hits
			}
		}
		if len(g.pats) > 0 || len(g.pendingPats) > 0 {
			g.patDirty = true
		}
		g.pats, g.pendingPats = g.pendingPats, nil
		g.syncs++
		g.syncedAt = now
		return true, nil
	case TypeAddMalicious:
		e := entry{List: ListMalicious, Category: m.Category, Confidence: m.Confidence}
		if cur, ok := s.liveMalicious(m.Domain); ok && cur == e {
			return false, nil
		}
		s.malDelta[m.Domain] = e
		s.malDT = nil
		if len(s.malDelta) > foldThreshold(s.malBase.n) {
			s.foldMalicious()
		}
		return true, nil
	case TypeAddPattern:
		r, err := newPatternRule(m.Pattern, m.Syntax, m.List, m.Category, m.Confidence)
		if err != nil {
			return false, reject(ReasonInvalidPattern, "%v", err)
		}
		if m.Group == "" {
			if err := s.roomFor(s.globalPats, r); err != nil {
				return false, err
			}
			return s.putRule(s.globalPats, r, &s.globalDirty), nil
		}
		g := s.group(m.Group)
		if g.pending != nil {
			if err := s.roomFor(g.pendingPats, r); err != nil {
				return false, err
			}
			g.pendingPats[r.key()] = r
			return g.view == nil, nil
		}
		if g.pats == nil {
			g.pats = map[string]*patternRule{}
		}
		if err := s.roomFor(g.pats, r); err != nil {
			return false, err
		}
		return s.putRule(g.pats, r, &g.patDirty) || g.view == nil, nil
	case TypeRemovePattern:
		k := patternKey(m.Syntax, m.Pattern)
		if m.Syntax == SyntaxWildcard {
			k = patternKey(m.Syntax, strings.ToLower(strings.TrimSuffix(m.Pattern, ".")))
		}
		if m.Group == "" {
			return dropRule(s.globalPats, k, &s.globalDirty), nil
		}
		g := s.groups[m.Group]
		if g == nil {
			return false, nil
		}
		if g.pending != nil {
			delete(g.pendingPats, k)
		}
		return dropRule(g.pats, k, &g.patDirty), nil
	}
	return false, reject(ReasonUnknownType, "type %q", m.Type.String())
}

// roomFor refuses a new rule when rules already holds max_patterns.
func (s *Store) roomFor(rules map[string]*patternRule, r *patternRule) error {
	limit := s.cfg.MaxPatterns
	if limit <= 0 {
		limit = DefaultMaxPatterns
	}
	if _, replace := rules[r.key()]; !replace && len(rules) >= limit {
		return reject(ReasonInvalidPattern, "pattern %q: the set holds max_patterns = %d rules", truncate(r.text), limit)
	}
	return nil
}

// putRule adds or replaces r in rules; it reports whether the set changed
// (and then marks it dirty). A replaced rule's hit counter carries over.
func (s *Store) putRule(rules map[string]*patternRule, r *patternRule, dirty *bool) bool {
	k := r.key()
	if old := rules[k]; old != nil {
		if old.list == r.list && old.category == r.category && old.confidence == r.confidence {
			return false
		}
		r.hits = old.hits
	}
	rules[k] = r
	*dirty = true
	return true
}

// dropRule removes the rule with key k; it reports whether it was there.
func dropRule(rules map[string]*patternRule, k string, dirty *bool) bool {
	if _, ok := rules[k]; !ok {
		return false
	}
	delete(rules, k)
	*dirty = true
	return true
}

// compilePatternsLocked compiles the pattern sets that changed: the global
// set, and each group's own rules followed by the global ones. A rule the
// compiler refuses is dropped, logged and counted as rejected
// (ReasonInvalidPattern, under the source of the message that changed the
// set); the rest applies.
func (s *Store) compilePatternsLocked() {
	if s.globalDirty {
		s.globalDirty = false
		s.globalSet = s.recompile(nil, s.globalPats, s.globalSet, "global")
		for _, g := range s.groups {
			if len(g.pats) > 0 || g.patSet != nil {
				g.patDirty = true
			}
		}
	}
	for name, g := range s.groups {
		if !g.patDirty {
			continue
		}
		g.patDirty, g.view = false, nil
		if len(g.pats) == 0 {
			g.patSet = nil
			continue
		}
		g.patSet = s.recompile(g.pats, s.globalPats, g.patSet, "group "+name)
	}
}

// recompile compiles own followed by global (either may be nil) into a set
// that replaces old (whose database the garbage collector frees once no
// snapshot holds it). Refused rules are removed from own or global.
func (s *Store) recompile(own, global map[string]*patternRule, old *patternSet, what string) *patternSet {
	set, refused, err := compilePatterns(sortedRules(own), sortedRules(global))
	for _, rf := range refused {
		k := rf.r.key()
		if own[k] == rf.r {
			delete(own, k)
		} else if global[k] == rf.r {
			delete(global, k)
		}
		count(s.counters.Rejected, s.patSource, ReasonInvalidPattern)
		s.logger.Warn("pattern refused by the compiler", "set", what, "pattern", truncate(rf.r.text),
			"syntax", rf.r.syntax.String(), "reason", rf.reason)
	}
	if err != nil {
		s.logger.Error("pattern compile failed; the set keeps its previous rules", "set", what, "err", err)
		return old
	}
	return set
}

// foldThreshold is the delta size at which a delta is merged into a new
// base: about 2*sqrt(base), at least 1024, so a stream of single changes
// costs O(sqrt(n)) per change on average.
func foldThreshold(base int) int {
	return max(1024, 2*int(math.Sqrt(float64(base))))
}

func (s *Store) liveGroupEntry(g *groupState, d string) (entry, bool) {
	if e, ok := g.delta[d]; ok {
		return e, e.List != listTombstone
	}
	return g.base.get(d)
}

func (s *Store) liveMalicious(d string) (entry, bool) {
	if e, ok := s.malDelta[d]; ok {
		return e, true
	}
	return s.malBase.get(d)
}

// setDelta records a change of the active table outside a sync.
func (s *Store) setDelta(g *groupState, d string, e entry) {
	g.delta[d] = e
	g.deltaT, g.view, g.lastChange = nil, nil, time.Now()
	if len(g.delta) > foldThreshold(g.base.n) {
		s.setBase(g, mergeDelta(g.base, g.delta))
		g.delta = map[string]entry{}
	}
}

// setBase replaces a group's base table and queues its compile.
func (s *Store) setBase(g *groupState, t *table) {
	g.base = t
	g.deltaT, g.view, g.lastChange = nil, nil, time.Now()
	if g.hs != nil {
		g.hs.retire() // readers of older snapshots finish first
		g.hs = nil
	}
	s.queueCompile("group:"+g.name, t)
}

// foldMalicious merges the malicious delta into a new base.
func (s *Store) foldMalicious() {
	s.malBase = mergeDelta(s.malBase, s.malDelta)
	s.malDelta = map[string]entry{}
	s.malDT = nil
	if s.malHS != nil {
		s.malHS.retire()
		s.malHS = nil
	}
	s.queueCompile("malicious", s.malBase)
}

// mergeDelta returns base with delta applied.
func mergeDelta(base *table, delta map[string]entry) *table {
	items := make([]tableItem, 0, base.n+len(delta))
	base.each(func(name string, e entry) {
		if _, ok := delta[name]; !ok {
			items = append(items, tableItem{name: name, e: e})
		}
	})
	for name, e := range delta {
		if e.List != listTombstone {
			items = append(items, tableItem{name: name, e: e})
		}
	}
	return buildTable(items)
}

// publishLocked builds and stores a new snapshot from the writer state.
func (s *Store) publishLocked() {
	s.compilePatternsLocked()
	s.gen++
	now := time.Now()
	snap := &Snapshot{Generation: s.gen, Published: now, groups: make(map[string]*GroupPolicy, len(s.groups)),
		whitelistWins: s.cfg.WhitelistWins, burstHS: s.cfg.BurstEngine == "hyperscan"}
	for name, g := range s.groups {
		if g.view == nil {
			if g.deltaT == nil {
				g.deltaT = buildTableMap(g.delta)
			}
			v := &GroupPolicy{Name: name, ID: g.id, SyncedAt: g.syncedAt, Syncs: g.syncs,
				LastChange: g.lastChange, tables: pair{g.base, g.deltaT}, hs: g.hs,
				patterns: g.patSet, Patterns: len(g.pats)}
			v.Whitelist = v.tables.count(ListWhitelist)
			v.Blacklist = v.tables.count(ListBlacklist)
			g.view = v
		}
		snap.groups[name] = g.view
	}
	if s.malDT == nil {
		s.malDT = buildTableMap(s.malDelta)
	}
	snap.malicious = pair{s.malBase, s.malDT}
	snap.malHS = s.malHS
	snap.globalPatterns = s.globalSet
	snap.defGroup = snap.groups[s.cfg.DefaultGroup]
	s.snap.Store(snap)
	if !s.swapStart.IsZero() {
		s.lastSwap = time.Since(s.swapStart)
		s.swapStart = time.Time{}
	}
	if s.onChange != nil {
		s.onChange()
	}
}

// SyncStates returns every group's sync state, sorted by name.
func (s *Store) SyncStates() []SyncState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SyncState, 0, len(s.groups))
	for _, g := range s.groups {
		st := SyncState{Group: g.name, ID: g.id, Open: g.pending != nil, PendingSince: g.pendingSince,
			Pending: len(g.pending) + len(g.pendingPats), Syncs: g.syncs, SyncedAt: g.syncedAt, Delta: len(g.delta),
			Patterns: len(g.pats)}
		st.HSState = s.hsStateLocked("group:"+g.name, g.base, g.hs)
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Group < out[j].Group })
	return out
}

// MaliciousState returns the Hyperscan state of the malicious table and the
// size of its delta.
func (s *Store) MaliciousState() (hsState string, delta int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hsStateLocked("malicious", s.malBase, s.malHS), len(s.malDelta)
}

// Patterns returns the active pattern rules that apply to group (its own,
// then the global ones), sorted as they take precedence; group "" lists
// the global rules alone.
func (s *Store) Patterns(group string) []PatternInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []PatternInfo
	add := func(m map[string]*patternRule, global bool) {
		for _, r := range sortedRules(m) {
			out = append(out, PatternInfo{Pattern: r.text, Syntax: r.syntax, List: r.list, Category: r.category,
				Confidence: r.confidence, Global: global, Hits: r.hits.Load()})
		}
	}
	if g := s.groups[group]; g != nil {
		add(g.pats, false)
	}
	add(s.globalPats, true)
	return out
}

// Counters returns a copy of the message counters.
func (s *Store) Counters() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Counters{Messages: copyCounts(s.counters.Messages), Rejected: copyCounts(s.counters.Rejected)}
}

// copyCounts returns a deep copy of a source -> key -> n map.
func copyCounts[K comparable](m map[string]map[K]uint64) map[string]map[K]uint64 {
	out := make(map[string]map[K]uint64, len(m))
	for k, v := range m {
		c := make(map[K]uint64, len(v))
		for k2, v2 := range v {
			c[k2] = v2
		}
		out[k] = c
	}
	return out
}

// LastSwap returns how long the last SYNC_COMPLETE took from message to
// active snapshot (table build and publish).
func (s *Store) LastSwap() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSwap
}

// Generation returns the generation of the active snapshot.
func (s *Store) Generation() uint64 { return s.snap.Load().Generation }

// PendingGroups returns the groups with an open sync.
func (s *Store) PendingGroups() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, g := range s.groups {
		if g.pending != nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// String describes the store briefly (for logs).
func (s *Store) String() string {
	snap := s.Snapshot()
	return fmt.Sprintf("policy generation %d, %d groups, %d malicious", snap.Generation, len(snap.groups), snap.MaliciousSize())
}
