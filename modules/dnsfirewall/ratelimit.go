package dnsfirewall

import (
	"hash/maphash"
	"net/netip"
	"sync"
)

// limiter is a per-client token bucket (rate queries/s, burst tokens) in a
// fixed table: an address hashes to one slot, and a different address in
// the slot takes it over with a full bucket. Memory is the table's size
// whatever the number of clients.
type limiter struct {
	rate, burst float64
	seed        maphash.Seed
	slots       []bucket
}

type bucket struct {
	mu     sync.Mutex
	addr   netip.Addr
	tokens float64
	last   int64 // unix ns
}

const limiterSlots = 1 << 16

func newLimiter(rate, burst int) *limiter {
	if rate <= 0 {
		return nil
	}
	if burst < rate {
		burst = rate
	}
	return &limiter{rate: float64(rate), burst: float64(burst), seed: maphash.MakeSeed(), slots: make([]bucket, limiterSlots)}
}

// allow takes a token of addr's bucket at now (unix ns).
func (l *limiter) allow(addr netip.Addr, now int64) bool {
	b16 := addr.As16()
	h := maphash.Bytes(l.seed, b16[:])
	b := &l.slots[h&(limiterSlots-1)]
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.addr != addr {
		b.addr, b.tokens, b.last = addr, l.burst, now
	} else if d := now - b.last; d > 0 {
		b.tokens = min(l.burst, b.tokens+float64(d)*l.rate/1e9)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
