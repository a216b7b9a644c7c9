// Package testwait lets a test wait for a condition with a deadline instead
// of sleeping for a fixed time.
//
// The condition is polled: first after 1 ms, then at intervals that double
// up to 50 ms, so a condition that holds soon is seen soon and a slow one is
// not polled in a busy loop. Both functions fail the test with t.Fatalf, so,
// like t.Fatal, they must be called from the goroutine running the test.
package testwait

import (
	"testing"
	"time"
)

// The poll intervals: the first, and the most it doubles up to.
const (
	firstInterval = time.Millisecond
	maxInterval   = 50 * time.Millisecond
)

// Until calls cond until it returns true. When timeout has passed and cond
// still returns false, it fails t with "timed out after <timeout> waiting
// for <what>".
func Until(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// UntilState is Until for a condition that also describes what it saw, such
// as a command's output. When it times out, the message ends with the state
// the last call returned.
func UntilState(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	var last string
	if !poll(timeout, func() (ok bool) { ok, last = cond(); return ok }) {
		t.Fatalf("timed out after %s waiting for %s; last state:\n%s", timeout, what, last)
	}
}

// poll calls cond until it returns true (poll returns true) or until a
// call made after timeout passed returns false (poll returns false).
func poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	wait := firstInterval
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
		wait = min(2*wait, maxInterval)
	}
}
