package testwait

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// fakeTB records what Fatalf reports and ends its goroutine as t.Fatalf does.
type fakeTB struct {
	testing.TB
	msg string
}

func (f *fakeTB) Helper() {}

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls wait with a fakeTB on its own goroutine and returns the failure
// message ("" when wait returned).
func run(wait func(t testing.TB)) string {
	f := &fakeTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait(f)
	}()
	<-done
	return f.msg
}

func TestUntilHolds(t *testing.T) {
	calls := 0
	msg := run(func(tb testing.TB) {
		Until(tb, 5*time.Second, "the third call", func() bool { calls++; return calls == 3 })
	})
	if msg != "" || calls != 3 {
		t.Fatalf("calls %d, failure %q", calls, msg)
	}
}

func TestUntilTimesOut(t *testing.T) {
	start := time.Now()
	calls := 0
	msg := run(func(tb testing.TB) {
		Until(tb, 30*time.Millisecond, "never", func() bool { calls++; return false })
	})
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Errorf("gave up after %v, before the timeout", el)
	}
	if want := "timed out after 30ms waiting for never"; msg != want {
		t.Errorf("failure %q, want %q", msg, want)
	}
	if calls < 2 {
		t.Errorf("cond called %d times", calls)
	}
}

func TestUntilStateTimesOut(t *testing.T) {
	n := 0
	msg := run(func(tb testing.TB) {
		UntilState(tb, 20*time.Millisecond, "ready", func() (bool, string) { n++; return false, fmt.Sprintf("poll %d", n) })
	})
	want := fmt.Sprintf("timed out after 20ms waiting for ready; last state:\npoll %d", n)
	if msg != want {
		t.Errorf("failure %q, want %q", msg, want)
	}
}

func TestUntilStateHolds(t *testing.T) {
	msg := run(func(tb testing.TB) {
		UntilState(tb, time.Second, "ready", func() (bool, string) { return true, "up" })
	})
	if msg != "" {
		t.Fatalf("failure %q", msg)
	}
}
