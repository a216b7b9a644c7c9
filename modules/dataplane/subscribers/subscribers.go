// Package subscribers maps subscriber addresses to a subscriber id and a
// policy group: IPv4 and IPv6 prefixes from subscribers.conf, longest prefix
// wins, a default for addresses no prefix covers.
//
// A Table is immutable once built, so any number of packet workers can read
// it without locks; a reload builds a new Table and swaps it in atomically
// (see Holder), and workers pick up the new one on their next lookup.
//
// Lookups are a binary search over the prefixes flattened into disjoint
// address ranges, so the cost is O(log n) whatever the nesting, and nothing
// is allocated.
package subscribers

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/switchboard-dp/switchboard/conf"
)

// Subscriber is what an address maps to. Values are shared and must not be
// modified.
type Subscriber struct {
	// ID is the subscriber id put into CDRs.
	ID string
	// Group is the policy group name handed to res_policy.
	Group string
}

// Table is an immutable prefix table.
type Table struct {
	v4, v6 ranges
	def    *Subscriber
	n      int
	subs   int
	groups []string
}

// ranges are disjoint address ranges, sorted: starts[i] is the first address
// of a range covered by vals[i] (nil: not covered), ending where the next
// range starts.
type ranges struct {
	starts []u128
	vals   []*Subscriber
}

type u128 struct{ hi, lo uint64 }

func (a u128) cmp(b u128) int {
	if c := cmp.Compare(a.hi, b.hi); c != 0 {
		return c
	}
	return cmp.Compare(a.lo, b.lo)
}

func (a u128) inc() (u128, bool) {
	lo := a.lo + 1
	hi := a.hi
	if lo == 0 {
		hi++
		if hi == 0 {
			return u128{}, false // wrapped: a was the last address
		}
	}
	return u128{hi, lo}, true
}

func key(a netip.Addr) u128 {
	if a.Is4() {
		b := a.As4()
		return u128{0, uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])}
	}
	b := a.As16()
	var hi, lo uint64
	for i := 0; i < 8; i++ {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return u128{hi, lo}
}

// last returns the last address of p as a key.
func last(p netip.Prefix) u128 {
	k := key(p.Addr())
	bits := p.Addr().BitLen()
	host := bits - p.Bits() // host bits
	switch {
	case host == 0:
	case host >= 64:
		k.lo = ^uint64(0)
		k.hi |= (uint64(1) << (host - 64)) - 1
		if host == 128 {
			k.hi = ^uint64(0)
		}
	default:
		k.lo |= (uint64(1) << host) - 1
	}
	return k
}

// Lookup returns the subscriber for addr: the longest matching prefix, or the
// default. IPv4-mapped IPv6 addresses are looked up as IPv4. It does not
// allocate.
func (t *Table) Lookup(addr netip.Addr) *Subscriber {
	addr = addr.Unmap()
	r := &t.v6
	if addr.Is4() {
		r = &t.v4
	}
	k := key(addr)
	// Last range starting at or before k.
	lo, hi := 0, len(r.starts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.starts[m].cmp(k) <= 0 {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return t.def
	}
	if s := r.vals[lo-1]; s != nil {
		return s
	}
	return t.def
}

// Default returns the subscriber used for addresses no prefix covers.
func (t *Table) Default() *Subscriber { return t.def }

// Prefixes returns the number of prefixes in the table.
func (t *Table) Prefixes() int { return t.n }

// Subscribers returns the number of subscribers (sections) in the table.
func (t *Table) Subscribers() int { return t.subs }

// Groups returns the distinct policy groups named by the table (default
// first).
func (t *Table) Groups() []string { return slices.Clone(t.groups) }

// Entry is one prefix for Build.
type Entry struct {
	Prefix     netip.Prefix
	Subscriber *Subscriber
}

// Build builds a table from entries. Prefixes are masked to their length; a
// prefix given twice is an error.
func Build(def *Subscriber, entries []Entry) (*Table, error) {
	if def == nil {
		def = &Subscriber{}
	}
	t := &Table{def: def, n: len(entries)}
	var v4, v6 []Entry
	seen := map[netip.Prefix]*Subscriber{}
	subs := map[*Subscriber]bool{}
	groups := []string{def.Group}
	gseen := map[string]bool{def.Group: true}
	for _, e := range entries {
		p := e.Prefix.Masked()
		if !p.IsValid() {
			return nil, fmt.Errorf("invalid prefix %v", e.Prefix)
		}
		if p.Addr().Is4In6() {
			// ::ffff:a.b.c.d/n is the IPv4 prefix a.b.c.d/(n-96).
			if p.Bits() < 96 {
				return nil, fmt.Errorf("prefix %v covers more than the IPv4-mapped range", e.Prefix)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked()
		}
		if other, dup := seen[p]; dup {
			return nil, fmt.Errorf("prefix %v given twice (subscribers %q and %q)", p, other.ID, e.Subscriber.ID)
		}
		seen[p] = e.Subscriber
		e.Prefix = p
		if p.Addr().Is4() {
			v4 = append(v4, e)
		} else {
			v6 = append(v6, e)
		}
		subs[e.Subscriber] = true
		if !gseen[e.Subscriber.Group] {
			gseen[e.Subscriber.Group] = true
			groups = append(groups, e.Subscriber.Group)
		}
	}
	t.subs = len(subs)
	t.groups = groups
	t.v4 = flatten(v4)
	t.v6 = flatten(v6)
	return t, nil
}

// flatten turns nested/disjoint CIDR prefixes into sorted disjoint ranges
// labelled with the longest covering prefix's subscriber.
func flatten(es []Entry) ranges {
	slices.SortFunc(es, func(a, b Entry) int {
		if c := key(a.Prefix.Addr()).cmp(key(b.Prefix.Addr())); c != 0 {
			return c
		}
		return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()) // outer first
	})
	var r ranges
	emit := func(at u128, v *Subscriber) {
		n := len(r.starts)
		if n > 0 && r.starts[n-1] == at {
			r.vals[n-1] = v
			// Merge with the previous range if it now has the same value.
			if n > 1 && r.vals[n-2] == v {
				r.starts, r.vals = r.starts[:n-1], r.vals[:n-1]
			}
			return
		}
		if n > 0 && r.vals[n-1] == v {
			return
		}
		if n == 0 && v == nil {
			return
		}
		r.starts = append(r.starts, at)
		r.vals = append(r.vals, v)
	}
	type open struct {
		end u128
		sub *Subscriber
	}
	var stack []open
	// closeUntil pops the open prefixes that end before k.
	closeUntil := func(k u128, all bool) {
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if !all && top.end.cmp(k) >= 0 {
				return
			}
			stack = stack[:len(stack)-1]
			next, ok := top.end.inc()
			if !ok {
				continue // ends at the last address: nothing after it
			}
			var v *Subscriber
			if len(stack) > 0 {
				v = stack[len(stack)-1].sub
			}
			emit(next, v)
		}
	}
	for _, e := range es {
		start := key(e.Prefix.Addr())
		closeUntil(start, false)
		stack = append(stack, open{end: last(e.Prefix), sub: e.Subscriber})
		emit(start, e.Subscriber)
	}
	closeUntil(u128{}, true)
	return r
}

// Config is the [general] section of subscribers.conf.
type Config struct {
	DefaultGroup      string `conf:"default_group" default:"default"`
	DefaultSubscriber string `conf:"default_subscriber" default:"unknown"`
}

// section is one subscriber section.
type section struct {
	ID       string   `conf:"id"`
	Group    string   `conf:"group"`
	Prefixes []string `conf:"prefix" required:"true"`
}

// FromFile builds a table from a parsed subscribers.conf:
//
//	[general]
//	default_group = default        ; group of addresses no prefix covers
//	default_subscriber = unknown   ; their subscriber id
//
//	[subscriber-42]                ; section name = subscriber id (or id = ...)
//	group = family                 ; policy group (default: default_group)
//	prefix = 192.168.1.42/32       ; repeat for more prefixes, IPv4 or IPv6
//	prefix = 2001:db8:42::/48
//
// Templates work as everywhere ([family](!) with group = family, then
// [subscriber-42](family)). Every problem is reported with file:line.
func FromFile(f *conf.File) (*Table, error) {
	var cfg Config
	if err := conf.Decode(f.Section("general"), &cfg); err != nil {
		return nil, err
	}
	def := &Subscriber{ID: cfg.DefaultSubscriber, Group: cfg.DefaultGroup}
	var entries []Entry
	var errs conf.Errors
	for _, s := range f.Sections {
		if s.Name == "general" {
			continue
		}
		var sec section
		if err := conf.Decode(s, &sec); err != nil {
			var ce conf.Errors
			if errors.As(err, &ce) {
				errs = append(errs, ce...)
				continue
			}
			return nil, err
		}
		sub := &Subscriber{ID: sec.ID, Group: sec.Group}
		if sub.ID == "" {
			sub.ID = s.Name
		}
		if sub.Group == "" {
			sub.Group = cfg.DefaultGroup
		}
		for _, k := range s.Keys {
			if !strings.EqualFold(k.Name, "prefix") { // Decode matches keys case-insensitively too
				continue
			}
			p, err := parsePrefix(k.Value)
			if err != nil {
				errs.Add(s, k, "%v", err)
				continue
			}
			entries = append(entries, Entry{Prefix: p, Subscriber: sub})
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	// Duplicates: report with the location of the second occurrence.
	seen := map[netip.Prefix]string{}
	for _, s := range f.Sections {
		for _, k := range s.Keys {
			if !strings.EqualFold(k.Name, "prefix") {
				continue
			}
			p, err := parsePrefix(k.Value)
			if err != nil {
				continue
			}
			if prev, dup := seen[p]; dup {
				errs.Add(s, k, "prefix %v already given for [%s]", p, prev)
				continue
			}
			seen[p] = s.Name
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return Build(def, entries)
}

// parsePrefix accepts a CIDR prefix or a bare address (a host prefix). The
// prefix is masked (10.1.2.3/16 means 10.1.0.0/16).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad prefix %q: %v", s, err)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad prefix %q: %v", s, err)
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Load reads and builds a subscribers.conf file.
func Load(path string) (*Table, error) {
	f, err := conf.Load(path)
	if err != nil {
		return nil, err
	}
	return FromFile(f)
}

// Holder holds the current table for lock-free readers.
type Holder struct{ p atomic.Pointer[Table] }

// NewHolder returns a holder with t (or an empty table with the default
// group "default") as the current table.
func NewHolder(t *Table) *Holder {
	h := &Holder{}
	if t == nil {
		t, _ = Build(&Subscriber{ID: "unknown", Group: "default"}, nil)
	}
	h.p.Store(t)
	return h
}

// Load returns the current table.
func (h *Holder) Load() *Table { return h.p.Load() }

// Swap installs t and returns the previous table.
func (h *Holder) Swap(t *Table) *Table { return h.p.Swap(t) }
