package respolicy

import (
	"encoding/binary"
	"math/bits"
	"unsafe"
)

// Per-matcher decision cache. A Matcher belongs to one worker goroutine, so
// the cache takes no locks. It is direct-mapped: a name's key (its resolved
// group and its lower-cased name without the trailing dot) picks one entry,
// which is overwritten on a miss.
//
// An entry is valid only for the snapshot it was computed from: the matcher
// numbers every snapshot it sees (epoch) and an entry carries the epoch it
// was stored in, so a swap invalidates every entry at once and a lookup,
// which loads the snapshot once, still sees exactly one generation.
//
// A cached Decision's Entry string points into the table arena of the
// snapshot it came from, so an entry of an old epoch keeps that arena (not
// the rest of the snapshot: entries hold no snapshot or group pointers)
// alive until it is overwritten or the matcher is closed. The cache is
// bounded (decCacheSize entries, about 560 KB per matcher), and so is what
// it pins.
const (
	decCacheBits = 12
	decCacheSize = 1 << decCacheBits
	// decCacheName is the longest name (without the trailing dot) the cache
	// holds; longer names bypass it.
	decCacheName = 64
)

type decCacheEntry struct {
	h     uint64 // key hash; 0 = empty
	epoch uint64 // matcher epoch of the snapshot the decision was made on
	g     uintptr
	n     uint32
	name  [decCacheName]byte // lower case, zero padded
	d     Decision
}

type decCache struct {
	snap    *Snapshot // the snapshot of the current epoch
	epoch   uint64
	entries *[decCacheSize]decCacheEntry
	// Hits and Misses count cache lookups.
	hits, misses uint64
}

// decCacheKey is a name's normalised form and hash, computed once per lookup.
type decCacheKey struct {
	h    uint64
	n    uint32
	name [decCacheName]byte
}

// begin makes s the cache's current snapshot, starting a new epoch when it
// changed.
func (c *decCache) begin(s *Snapshot) {
	if s != c.snap {
		c.snap = s
		c.epoch++
		if c.entries == nil {
			c.entries = new([decCacheSize]decCacheEntry)
		}
	}
}

// key normalises q (trailing dot dropped, lower case) and hashes it with the
// group. ok is false for names the cache does not hold (empty or longer than
// decCacheName).
func (k *decCacheKey) set(g *GroupPolicy, q []byte) bool {
	n := len(q)
	if n > 0 && q[n-1] == '.' {
		n--
	}
	if n == 0 || n > decCacheName {
		return false
	}
	k.name = [decCacheName]byte{}
	h := uint64(uintptr(unsafe.Pointer(g)))*0x9E3779B97F4A7C15 ^ uint64(n)
	full := n &^ 7
	for i := 0; i < full; i += 8 {
		w := lowerWord(binary.LittleEndian.Uint64(q[i:]))
		binary.LittleEndian.PutUint64(k.name[i:], w)
		hi, lo := bits.Mul64(h^w, 0xa0761d6478bd642f)
		h = hi ^ lo
	}
	if full < n {
		var w uint64
		for j := n - 1; j >= full; j-- {
			w = w<<8 | uint64(q[j])
		}
		w = lowerWord(w)
		binary.LittleEndian.PutUint64(k.name[full:], w)
		hi, lo := bits.Mul64(h^w, 0xa0761d6478bd642f)
		h = hi ^ lo
	}
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	h |= 1 // never 0 (the empty entry)
	k.h, k.n = h, uint32(n)
	return true
}

// lowerWord lower-cases the ASCII letters of 8 bytes at once (other bytes,
// including those >= 0x80, are unchanged), as the lower table does.
func lowerWord(w uint64) uint64 {
	const ones, high = 0x0101010101010101, 0x8080808080808080
	low7 := w &^ high
	geA := low7 + (0x80-'A')*ones   // high bit: byte&0x7f >= 'A'
	gtZ := low7 + (0x80-'Z'-1)*ones // high bit: byte&0x7f > 'Z'
	upper := geA &^ gtZ &^ w & high
	return w | upper>>2
}

// get returns the cached decision for k in group g, if any.
func (c *decCache) get(g *GroupPolicy, k *decCacheKey) (Decision, bool) {
	e := &c.entries[k.h&(decCacheSize-1)]
	if e.h == k.h && e.epoch == c.epoch && e.g == uintptr(unsafe.Pointer(g)) && e.n == k.n && e.name == k.name {
		c.hits++
		return e.d, true
	}
	c.misses++
	return Decision{}, false
}

// put stores d for k in group g.
func (c *decCache) put(g *GroupPolicy, k *decCacheKey, d Decision) {
	e := &c.entries[k.h&(decCacheSize-1)]
	e.h, e.epoch, e.g, e.n, e.name, e.d = k.h, c.epoch, uintptr(unsafe.Pointer(g)), k.n, k.name, d
}

// reset drops the cache (Close).
func (c *decCache) reset() {
	c.snap, c.entries = nil, nil
}
