package respolicy

import (
	"math/bits"
	"sort"
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

// slot is one cell of a table's open-addressing array: 16 bytes. A slot with
// ln == 0 is empty (no entry has an empty name).
type slot struct {
	tag  uint32 // low 32 bits of the name's hash
	off  uint32 // offset of the name in the arena
	cat  uint32
	ln   uint8 // length of the name
	list List
	conf uint8
	_    uint8
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
}

// emptyTable has no entries; lookups on it return at once.
var emptyTable = &table{}

// tableItem is one input of buildTable.
type tableItem struct {
	name string
	e    entry
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
	for i := range items {
		it := &items[i]
		h := hashName(it.name)
		idx := h >> t.shift
		for t.slots[idx].ln != 0 {
			idx = (idx + 1) & mask
		}
		t.slots[idx] = slot{tag: uint32(h), off: uint32(len(arena)), cat: it.e.Category,
			ln: uint8(len(it.name)), list: it.e.List, conf: it.e.Confidence}
		arena = append(arena, it.name...)
		t.perList[it.e.List]++
		k := countLabels(it.name)
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
		items = append(items, tableItem{name, e})
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
	tag := uint32(h)
	for idx := h >> t.shift; ; idx = (idx + 1) & mask {
		s := &t.slots[idx]
		if s.ln == 0 {
			return -1
		}
		if s.tag == tag && int(s.ln) == len(name) && eqFold(t.arena[s.off:s.off+uint32(s.ln)], name) {
			return int(idx)
		}
	}
}

// get returns the entry of a normalised name.
func (t *table) get(name string) (entry, bool) {
	i := t.find(hashName(name), unsafe.Slice(unsafe.StringData(name), len(name)))
	if i < 0 {
		return entry{}, false
	}
	s := &t.slots[i]
	return entry{List: s.list, Category: s.cat, Confidence: s.conf}, true
}

// name returns the name stored in slot i (a substring of the arena: no
// allocation).
func (t *table) name(i int) string {
	s := &t.slots[i]
	return t.arena[s.off : s.off+uint32(s.ln)]
}

// each calls fn for every entry, in slot order.
func (t *table) each(fn func(name string, e entry)) {
	for i := range t.slots {
		s := &t.slots[i]
		if s.ln != 0 {
			fn(t.arena[s.off:s.off+uint32(s.ln)], entry{List: s.list, Category: s.cat, Confidence: s.conf})
		}
	}
}

// sortedItems returns the entries sorted by name (for the CLI).
func (t *table) sortedItems() []tableItem {
	out := make([]tableItem, 0, t.n)
	t.each(func(name string, e entry) { out = append(out, tableItem{name, e}) })
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// bytes returns the memory the table holds.
func (t *table) bytes() int {
	return len(t.slots)*int(unsafe.Sizeof(slot{})) + len(t.arena)
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
