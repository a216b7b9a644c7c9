// Package dataplane is the decision path every DNS front of switchboard
// shares: a query's source address gives a subscriber and a policy group
// (package subscribers), res_policy decides the name for that group, and
// the decision becomes one CDR. pkt_engine feeds it from captures and live
// taps; dns_firewall feeds it from its own sockets and acts on the result.
//
// A Path is one worker's share of it: it owns that worker's Decider (its
// res_policy matcher) and its CDR Poster, and takes no shared lock, so a
// front runs one Path per worker. The paths of one front share a Shared:
// the subscriber table and the set of actions that produce CDRs, both
// swapped atomically while the paths run.
package dataplane

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/dataplane/subscribers"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// Query is one DNS query to decide.
type Query struct {
	// TS is when it was seen, in epoch milliseconds (the CDR's ts).
	TS int64
	// IP is the source address: the subscriber's.
	IP netip.Addr
	// Name is the query name in the form res_policy decides (see
	// respolicy.Matcher): dotted, without the trailing dot.
	Name []byte
	// QType is the query type.
	QType uint16
	// Subscriber is IP's subscriber when the caller has looked it up
	// already (in the table Shared holds); nil: Decide looks it up.
	Subscriber *subscribers.Subscriber
}

// Decision is the part of a policy decision a CDR carries: res_policy's
// action, group id and category, passed on as they are.
type Decision struct {
	Action   decision.Action
	Group    uint32
	Category uint32
}

// Result is a query's decision and the subscriber its address maps to.
type Result struct {
	Decision
	// Subscriber is the subscriber of the query's address; the table's
	// default when no prefix covers it.
	Subscriber *subscribers.Subscriber
}

// Decider decides query names for one worker (it owns that worker's matcher
// state, such as a Hyperscan scratch): res_policy's Matcher behind
// NewPolicyDecider, or a fake in tests.
type Decider interface {
	// DecideBurst decides qnames[i] for groups[i] into out[i].
	DecideBurst(groups []string, qnames [][]byte, out []Decision)
	// Close releases the decider's resources.
	Close()
}

// Poster posts CDRs for one worker: cdr.Poster, or a fake in tests.
type Poster interface {
	Post(r *cdr.Record)
	Close()
}

// Shared is what the paths of one front share. Its zero value is not
// usable; use NewShared.
type Shared struct {
	subs       *subscribers.Holder
	cdrActions atomic.Uint32
}

// NewShared returns the shared state of a front: the subscriber table in
// subs (nil: every address is subscriber "unknown" in group "default") and
// the actions that produce CDRs (the empty set: none).
func NewShared(subs *subscribers.Holder, cdrActions decision.ActionSet) *Shared {
	if subs == nil {
		subs = subscribers.NewHolder(nil)
	}
	s := &Shared{subs: subs}
	s.cdrActions.Store(uint32(cdrActions))
	return s
}

// Subscribers returns the holder of the subscriber table (Swap to reload).
func (s *Shared) Subscribers() *subscribers.Holder { return s.subs }

// SetCDRActions changes which actions produce CDRs; paths see it at their
// next Decide.
func (s *Shared) SetCDRActions(set decision.ActionSet) { s.cdrActions.Store(uint32(set)) }

// CDRActions returns the actions that produce CDRs.
func (s *Shared) CDRActions() decision.ActionSet { return decision.ActionSet(s.cdrActions.Load()) }

// Counters are a Path's totals.
type Counters struct {
	// Decided counts decisions by action.
	Decided [decision.NumActions]uint64
	// CDRs counts the CDRs posted.
	CDRs uint64
	// CDRSkipped counts decisions that produced no CDR (their action is not
	// in the CDR actions, or the path has no Poster), by action.
	CDRSkipped [decision.NumActions]uint64
}

// Add adds o to c.
func (c *Counters) Add(o Counters) {
	for a := range c.Decided {
		c.Decided[a] += o.Decided[a]
		c.CDRSkipped[a] += o.CDRSkipped[a]
	}
	c.CDRs += o.CDRs
}

// Path is one worker's decision path. Decide must not be called from two
// goroutines at once; Counters may be read from any.
type Path struct {
	sh   *Shared
	dec  Decider
	post Poster

	decided    [decision.NumActions]atomic.Uint64
	cdrs       atomic.Uint64
	cdrSkipped [decision.NumActions]atomic.Uint64

	// burst scratch
	groups []string
	names  [][]byte
	out    []Decision
	rec    cdr.Record
}

// NewPath returns a path that decides with dec and posts CDRs to post (nil:
// no CDRs, every decision counts as skipped). The path owns both: Close
// closes them.
func NewPath(sh *Shared, dec Decider, post Poster) *Path {
	return &Path{sh: sh, dec: dec, post: post}
}

// Decide decides qs into out (len(out) >= len(qs)) and posts one CDR per
// decision whose action produces CDRs. An out-of-range action from the
// Decider is decided, counted and posted as allow. Nothing is allocated
// once the scratch has grown to the largest burst.
func (p *Path) Decide(qs []Query, out []Result) {
	n := len(qs)
	if cap(p.groups) < n {
		p.groups = make([]string, n)
		p.names = make([][]byte, n)
		p.out = make([]Decision, n)
	}
	groups, names, dec := p.groups[:n], p.names[:n], p.out[:n]
	tab := p.sh.subs.Load()
	for i := range qs {
		s := qs[i].Subscriber
		if s == nil {
			s = tab.Lookup(qs[i].IP)
		}
		out[i].Subscriber = s
		groups[i] = s.Group
		names[i] = qs[i].Name
	}
	p.dec.DecideBurst(groups, names, dec)
	set := p.sh.CDRActions()
	var decided, skipped [decision.NumActions]uint64
	var cdrs uint64
	for i := range qs {
		d := dec[i]
		if !d.Action.Valid() {
			d.Action = decision.Allow
		}
		out[i].Decision = d
		decided[d.Action]++
		if p.post == nil || !set.Has(d.Action) {
			skipped[d.Action]++
			continue
		}
		q := &qs[i]
		p.rec = cdr.Record{
			TS:           q.TS,
			IP:           q.IP,
			SubscriberID: out[i].Subscriber.ID,
			Domain:       q.Name,
			QType:        q.QType,
			Action:       d.Action,
			Group:        d.Group,
			Category:     d.Category,
		}
		p.post.Post(&p.rec)
		cdrs++
	}
	for a := range decided {
		if decided[a] != 0 {
			p.decided[a].Add(decided[a])
		}
		if skipped[a] != 0 {
			p.cdrSkipped[a].Add(skipped[a])
		}
	}
	if cdrs != 0 {
		p.cdrs.Add(cdrs)
	}
	for i := range names {
		names[i] = nil // the scratch keeps no caller bytes alive
	}
}

// Counters returns the path's totals.
func (p *Path) Counters() Counters {
	var c Counters
	for a := range c.Decided {
		c.Decided[a] = p.decided[a].Load()
		c.CDRSkipped[a] = p.cdrSkipped[a].Load()
	}
	c.CDRs = p.cdrs.Load()
	return c
}

// Close closes the path's Decider and Poster (which hands its batches to
// the CDR backends).
func (p *Path) Close() {
	p.dec.Close()
	if p.post != nil {
		p.post.Close()
	}
}

// policyDecider adapts a res_policy Matcher to Decider.
type policyDecider struct {
	mt  *respolicy.Matcher
	out []respolicy.Decision
}

// NewPolicyDecider wraps a res_policy matcher (one per worker).
func NewPolicyDecider(mt *respolicy.Matcher) Decider { return &policyDecider{mt: mt} }

func (p *policyDecider) DecideBurst(groups []string, qnames [][]byte, out []Decision) {
	n := len(qnames)
	if cap(p.out) < n {
		p.out = make([]respolicy.Decision, n)
	}
	o := p.out[:n]
	p.mt.DecideBurst(groups, qnames, o)
	for i := range o {
		out[i] = Decision{Action: o[i].Action, Group: o[i].Group, Category: o[i].Category}
	}
}

func (p *policyDecider) Close() { p.mt.Close() }

// ParseCDRActions reads a cdr_actions setting: actions (allow, block,
// sinkhole, any case) comma-separated or repeated, or "none". It returns the
// set and a message for each value that is not an action.
func ParseCDRActions(vals []string) (decision.ActionSet, []string) {
	var set decision.ActionSet
	var bad []string
	for _, a := range conf.SplitList(vals) {
		if strings.EqualFold(a, "none") {
			continue
		}
		act, err := decision.Parse(strings.ToLower(a))
		if err != nil {
			bad = append(bad, err.Error())
			continue
		}
		set |= decision.SetOf(act)
	}
	return set, bad
}

// RateMeter turns a counter into a rate per second over the last interval
// of at least a second between samples.
type RateMeter struct {
	// Start is when counting began (the first interval starts there).
	Start time.Time

	mu    sync.Mutex
	lastT time.Time
	lastN uint64
	rate  float64
}

// Sample returns the rate, given the counter's value n now.
func (m *RateMeter) Sample(n uint64) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	if m.lastT.IsZero() {
		m.lastT, m.lastN = m.Start, 0
	}
	if d := now.Sub(m.lastT); d >= time.Second {
		m.rate = float64(n-m.lastN) / d.Seconds()
		m.lastT, m.lastN = now, n
	}
	return m.rate
}

// LoadSubscribers reads the subscriber table at path and says where it came
// from (for the log). A missing file gives the default-only table.
func LoadSubscribers(path string) (*subscribers.Table, string, error) {
	t, err := subscribers.Load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		t, _ = subscribers.Build(&subscribers.Subscriber{ID: "unknown", Group: "default"}, nil)
		return t, fmt.Sprintf("%s not found: every address is subscriber \"unknown\" in group \"default\"", path), nil
	case err != nil:
		return nil, "", err
	}
	return t, fmt.Sprintf("%s: %d prefixes, %d subscribers, groups %s", path, t.Prefixes(), t.Subscribers(), strings.Join(t.Groups(), ",")), nil
}
