package respolicy

// prefetch asks the CPU to bring the cache line at addr closer (PREFETCHT0).
// Unlike a load it does not hold up the instructions after it, so a burst
// can have the misses of all its names in flight at once.
//
//go:noescape
func prefetch(addr uintptr)
