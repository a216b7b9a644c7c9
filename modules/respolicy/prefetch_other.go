//go:build !amd64

package respolicy

// prefetch does nothing on this architecture.
func prefetch(uintptr) {}
