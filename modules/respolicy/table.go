package respolicy

import (
	"math/bits"
	"unsafe"
)

// List says which list of a group (or the malicious table) an entry is on.
type List uint8

// Lists. ListTombstone is internal: it marks, in a delta table, a domain
// removed from the base table.
const (
	ListNone List = iota
	ListWhitelist
	ListBlacklist
	ListMalicious
	listTombstone
)

// String returns the list's name as messages and the CLI spell it.
func (l List) String() string {
	switch l {
	case ListWhitelist:
		return "whitelist"
	case ListBlacklist:
		return "blacklist"
	case ListMalicious:
		return "malicious"
	case listTombstone:
		return "removed"
	}
	return ""
}

// entry is the value of a domain in a table.
type entry struct {
	List       List
	Category   uint32
	Confidence uint8
}

// slot is one cell of a table's open-addressing array: 16 bytes, four to a
// cache line. meta packs, from the top: a 40-bit tag (the low 40 bits of the
// name's hash; the slot index comes from the high bits), the name's length,
// its list and its confidence. A slot with length 0 is empty (no entry has an
// empty name).
type slot struct {
	meta uint64
	off  uint32 // offset of the name in the arena
	cat  uint32
}

const keyMask = ^uint64(0xFFFF) // tag and length

// slotKey is the tag-and-length part of meta for a name of n bytes with hash h.
func slotKey(h uint64, n int) uint64 { return h<<24 | uint64(n)<<16 }

func (s *slot) ln() int     { return int(uint8(s.meta >> 16)) }
func (s *slot) list() List  { return List(uint8(s.meta >> 8)) }
func (s *slot) conf() uint8 { return uint8(s.meta) }
func (s *slot) entry() entry {
	return entry{List: s.list(), Category: s.cat, Confidence: s.conf()}
}

// table is an immutable hash set of normalised domain names with their
// entries: linear probing over a power-of-two array of 16-byte slots, names
// stored back to back in one string (the arena). Built once, then only read,
// by any number of goroutines, without locks.
type table struct {
	slots     []slot
	shift     uint // 64 - log2(len(slots))
	arena     string
	n         int
	perList   [5]int
	labelMask uint64 // bit k set when some entry has k labels (k >= 63 -> bit 63)
	maxLabels int

	// filter is a blocked Bloom filter in front of the slots of large
	// tables (nil for small ones): blocks of 512 bits (one cache line), about
	// 12 bits per entry, 3 bits set per name, so most probes of names that
	// are not in the table cost one access to a 0.5 MB array that stays in
	// cache instead of one to the slots.
	filter []uint64
	fshift uint // 64 - log2(number of blocks)
}

// filterMin is the entry count from which a table gets a filter.
const filterMin = 16384

// maybe reports whether the name with hash h may be in the table (false:
// certainly not).
func (t *table) maybe(h uint64) bool {
	if t.filter == nil {
		return true
	}
	b := (h >> t.fshift) * 8
	f := t.filter[b : b+8 : b+8]
	return f[(h>>6)&7]&(1<<(h&63)) != 0 && f[(h>>15)&7]&(1<<((h>>9)&63)) != 0 &&
		f[(h>>24)&7]&(1<<((h>>18)&63)) != 0
}

// filterLine returns the address of the filter block of h (for prefetch).
func (t *table) filterLine(h uint64) uintptr {
	return uintptr(unsafe.Pointer(&t.filter[(h>>t.fshift)*8]))
}

// slotLine returns the address of the first slot h probes.
func (t *table) slotLine(h uint64) uintptr {
	return uintptr(unsafe.Pointer(&t.slots[h>>t.shift]))
}

// firstLine returns the address of the first line a lookup of h reads: its
// filter block, or its first slot when the table has no filter.
func (t *table) firstLine(h uint64) uintptr {
	if t.filter != nil {
		return t.filterLine(h)
	}
	return t.slotLine(h)
}

// addFilter sets the filter bits of h.
func (t *table) addFilter(h uint64) {
	b := (h >> t.fshift) * 8
	f := t.filter[b : b+8 : b+8]
	f[(h>>6)&7] |= 1 << (h & 63)
	f[(h>>15)&7] |= 1 << ((h >> 9) & 63)
	f[(h>>24)&7] |= 1 << ((h >> 18) & 63)
}

// emptyTable has no entries; lookups on it return at once.
var emptyTable = &table{}

// tableItem is one input of buildTable.
type tableItem struct {
	name string
	e    entry
	h    uint64 // hashName(name), when known (pre)
	k    int    // label count, when known
	pre  bool
}

// pendingEntry is an entry of an open sync, hashed when it was added so
// that SYNC_COMPLETE only has to place it.
type pendingEntry struct {
	e entry
	h uint64
	k int32
}

func newPending(name string, e entry) pendingEntry {
	return pendingEntry{e: e, h: hashName(name), k: int32(countLabels(name))}
}

// buildTablePending builds a table from an open sync's entries.
func buildTablePending(m map[string]pendingEntry) *table {
	items := make([]tableItem, 0, len(m))
	for name, p := range m {
		items = append(items, tableItem{name: name, e: p.e, h: p.h, k: int(p.k), pre: true})
	}
	return buildTable(items)
}

// buildTable builds a table from items with distinct normalised names. A load
// factor of at most 3/4 keeps probe sequences short (four 16-byte slots share
// a cache line, so a short linear probe costs one memory access).
func buildTable(items []tableItem) *table {
	if len(items) == 0 {
		return emptyTable
	}
	size := 8
	for size*3 < len(items)*4 {
		size <<= 1
	}
	t := &table{slots: make([]slot, size), shift: uint(64 - bits.TrailingZeros(uint(size))), n: len(items)}
	total := 0
	for i := range items {
		total += len(items[i].name)
	}
	arena := make([]byte, 0, total)
	mask := uint64(size - 1)
	if len(items) >= filterMin {
		blocks := 1
		for blocks*512 < len(items)*12 {
			blocks <<= 1
		}
		t.filter = make([]uint64, blocks*8)
		t.fshift = uint(64 - bits.TrailingZeros(uint(blocks)))
	}
	for i := range items {
		it := &items[i]
		h, k := it.h, it.k
		if !it.pre {
			h, k = hashName(it.name), countLabels(it.name)
		}
		if t.filter != nil {
			t.addFilter(h)
		}
		idx := h >> t.shift
		for t.slots[idx].meta != 0 {
			idx = (idx + 1) & mask
		}
		t.slots[idx] = slot{meta: slotKey(h, len(it.name)) | uint64(it.e.List)<<8 | uint64(it.e.Confidence),
			off: uint32(len(arena)), cat: it.e.Category}
		arena = append(arena, it.name...)
		t.perList[it.e.List]++
		if k > t.maxLabels {
			t.maxLabels = k
		}
		t.labelMask |= 1 << min(k, 63)
	}
	t.arena = unsafe.String(unsafe.SliceData(arena), len(arena))
	return t
}

// buildTableMap builds a table from a map of normalised names.
func buildTableMap(m map[string]entry) *table {
	items := make([]tableItem, 0, len(m))
	for name, e := range m {
		items = append(items, tableItem{name: name, e: e})
	}
	return buildTable(items)
}

// has reports whether some entry has k labels.
func (t *table) has(k int) bool { return t.labelMask&(1<<min(k, 63)) != 0 }

// find returns the slot index of the name whose suffix-walk hash is h, or
// -1. name may be in any case.
func (t *table) find(h uint64, name []byte) int {
	if t.n == 0 {
		return -1
	}
	mask := uint64(len(t.slots) - 1)
	key := slotKey(h, len(name))
	for idx := h >> t.shift; ; idx = (idx + 1) & mask {
		s := &t.slots[idx]
		if s.meta == 0 {
			return -1
		}
		if s.meta&keyMask == key && eqFold(t.arena[s.off:s.off+uint32(len(name))], name) {
			return int(idx)
		}
	}
}

// candidate is find without comparing the name: the slot whose 40-bit tag
// and length match, or -1. A candidate must be verified (verify) before a
// decision relies on it; a real entry is never missed.
func (t *table) candidate(h uint64, n int) int {
	if t.n == 0 {
		return -1
	}
	mask := uint64(len(t.slots) - 1)
	key := slotKey(h, n)
	for idx := h >> t.shift; ; idx = (idx + 1) & mask {
		m := t.slots[idx].meta
		if m == 0 {
			return -1
		}
		if m&keyMask == key {
			return int(idx)
		}
	}
}

// verify reports whether slot i holds name.
func (t *table) verify(i int, name []byte) bool {
	s := &t.slots[i]
	return s.ln() == len(name) && eqFold(t.arena[s.off:s.off+uint32(len(name))], name)
}

// get returns the entry of a normalised name.
func (t *table) get(name string) (entry, bool) {
	i := t.find(hashName(name), unsafe.Slice(unsafe.StringData(name), len(name)))
	if i < 0 {
		return entry{}, false
	}
	return t.slots[i].entry(), true
}

// name returns the name stored in slot i (a substring of the arena: no
// allocation).
func (t *table) name(i int) string {
	s := &t.slots[i]
	return t.arena[s.off : s.off+uint32(s.ln())]
}

// each calls fn for every entry, in slot order.
func (t *table) each(fn func(name string, e entry)) {
	for i := range t.slots {
		s := &t.slots[i]
		if s.meta != 0 {
			fn(t.arena[s.off:s.off+uint32(s.ln())], s.entry())
		}
	}
}

// bytes returns the memory the table holds.
func (t *table) bytes() int {
	return len(t.slots)*int(unsafe.Sizeof(slot{})) + len(t.arena) + 8*len(t.filter)
}

// eqFold compares a lower-case stored name with a query suffix of any case.
func eqFold(stored string, q []byte) bool {
	for i := 0; i < len(q); i++ {
		if stored[i] != lower[q[i]] {
			return false
		}
	}
	return true
}
