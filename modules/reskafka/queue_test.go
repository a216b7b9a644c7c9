package reskafka

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestQueueFullAndUnloadUndelivered: tiny queue, unreachable broker. Start
// must not block; Produce fails with ErrQueueFull after the bound; drops are
// counted and shown; unload reports the undelivered messages and their
// callbacks report failure.
func TestQueueFullAndUnloadUndelivered(t *testing.T) {
	port := closedPort(t)
	start := time.Now()
	th := startHost(t, fmt.Sprintf(`
[general]
shutdown_flush_timeout_ms = 300
[down]
brokers = 127.0.0.1:%d
queue_buffering_max_messages = 10
queue_full_timeout_ms = 50
reconnect_backoff_max_ms = 1000
`, port))
	if d := time.Since(start); d > time.Second {
		t.Errorf("start took %s with the broker down", d)
	}
	p, err := th.m.Producer("down")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var failures []Delivery
	cb := func(d Delivery) {
		mu.Lock()
		failures = append(failures, d)
		mu.Unlock()
	}
	for i := 0; i < 10; i++ {
		if err := p.Produce("t", nil, []byte("x"), nil, cb); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	t0 := time.Now()
	err = p.Produce("t", nil, []byte("x"), nil, cb)
	waited := time.Since(t0)
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("want ErrQueueFull, got %v", err)
	}
	if waited < 50*time.Millisecond || waited > 2*time.Second {
		t.Errorf("queue-full bound: waited %s, want about 50ms", waited)
	}
	for i := 0; i < 4; i++ {
		_ = p.Produce("t", nil, []byte("x"), nil, cb)
	}
	st, _ := th.m.Status("down")
	if st.Dropped != 5 || st.QueueFullDrops != 5 || st.Produced != 10 || st.Queued != 10 {
		t.Errorf("status %+v", st)
	}
	out := th.run("kafka show status")
	lines := strings.Split(out, "\n")
	if len(lines) < 3 || !strings.Contains(out, "Dropped") {
		t.Fatalf("status:\n%s", out)
	}
	f := strings.Fields(lines[2])
	// Name Brokers State Produced Delivered Failed Dropped Queued
	if len(f) < 8 || f[0] != "down" || f[len(f)-2] != "5" || f[len(f)-1] != "10" {
		t.Errorf("status row %q", lines[2])
	}
	if out := th.run("kafka show connection down"); !strings.Contains(out, "queue_full 5") {
		t.Errorf("show connection:\n%s", out)
	}
	testwait.Until(t, 10*time.Second, "connection down state", func() bool {
		st, _ := th.m.Status("down")
		return st.State == stateDown
	})
	th.h.Stop(core.StopGracefully)
	if n := th.m.Undelivered(); n != 10 {
		t.Errorf("undelivered at unload %d, want 10", n)
	}
	if !strings.Contains(th.logs.String(), "undelivered=10") {
		t.Errorf("log does not report the undelivered count:\n%s", th.logs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failures) != 10 {
		t.Fatalf("%d failure callbacks, want 10", len(failures))
	}
	for _, d := range failures {
		if d.Err == nil || d.Status != NotPersisted {
			t.Errorf("delivery %+v", d)
		}
	}
	if err := p.Produce("t", nil, []byte("x"), nil, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("produce after unload: %v", err)
	}
}
