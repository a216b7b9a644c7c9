package reskafka

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// TestReady: a connection nobody uses does not count; one whose producer
// cannot reach its broker makes the module not ready, naming it; one whose
// producer delivered is up.
func TestReady(t *testing.T) {
	b := testBroker(t)
	th := startHost(t, fmt.Sprintf(`
[general]
shutdown_flush_timeout_ms = 100
[unused]
brokers = 127.0.0.1:%d
[down]
brokers = 127.0.0.1:%d
[main]
brokers = %s
`, closedPort(t), closedPort(t), b.Bootstrap))
	if ok, why := th.m.Ready(); !ok {
		t.Fatalf("no connection in use, yet not ready: %s", why)
	}
	pm, err := th.m.Producer("main")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Release()
	done := make(chan error, 1)
	if err := pm.Produce(uniqueTopic(t), nil, []byte("x"), nil, func(d Delivery) { done <- d.Err }); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery report")
	}
	testwait.Until(t, 10*time.Second, "main up", func() bool { ok, _ := th.m.Ready(); return ok })
	pd, err := th.m.Producer("down")
	if err != nil {
		t.Fatal(err)
	}
	defer pd.Release()
	ok, why := th.m.Ready()
	if ok || !strings.Contains(why, "connection down is") || strings.Contains(why, "main") || strings.Contains(why, "unused") {
		t.Errorf("with connection down in use: ready %v, %q", ok, why)
	}
}
