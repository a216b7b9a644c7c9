package reskafka

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// TestSlowHandlerDelaysNothingElse: one subscription's handler is very slow;
// delivery reports of the producer and messages of another subscription keep
// flowing, and the slow subscription pauses instead of buffering without
// bound.
func TestSlowHandlerDelaysNothingElse(t *testing.T) {
	b := testBroker(t)
	th := startHost(t, fmt.Sprintf(`
[main]
brokers = %s
group_id = slow-%d
auto_offset_reset = earliest
linger_ms = 1
handler_queue = 8
`, b.Bootstrap, time.Now().UnixNano()))
	slowTopic, fastTopic := uniqueTopic(t)+"-slow", uniqueTopic(t)+"-fast"
	for _, tp := range []string{slowTopic, fastTopic} {
		if err := th.m.EnsureTopic(context.Background(), "main", tp, 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	var slowHandled, fastHandled atomic.Int64
	slow, err := th.m.Subscribe("main", []string{slowTopic}, func(ctx context.Context, _ *Message) error {
		select { // blocked until the test lets go (or the subscription closes)
		case <-release:
		case <-ctx.Done():
		}
		slowHandled.Add(1)
		return nil
	}, SubscribeOptions{Name: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	fast, err := th.m.Subscribe("main", []string{fastTopic}, func(context.Context, *Message) error {
		fastHandled.Add(1)
		return nil
	}, SubscribeOptions{Name: "fast", GroupID: fmt.Sprintf("fast-%d", time.Now().UnixNano())})
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	p, err := th.m.Producer("main")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500; i++ {
		if err := p.Produce(slowTopic, nil, []byte("s"), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, 30*time.Second, "slow subscription paused", func() bool { return slow.Status().Paused })
	start := time.Now()
	var delivered atomic.Int64
	for i := 0; i < 500; i++ {
		if err := p.Produce(fastTopic, nil, []byte("f"), nil, func(d Delivery) {
			if d.Err == nil {
				delivered.Add(1)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, 10*time.Second, "delivery reports while a handler is stuck", func() bool { return delivered.Load() == 500 })
	drTime := time.Since(start)
	testwait.Until(t, 20*time.Second, "the other subscription consuming", func() bool { return fastHandled.Load() == 500 })
	t.Logf("500 delivery reports in %s, other subscription consumed 500 in %s; slow queue %d/%d, paused %v",
		drTime, time.Since(start), slow.Status().Queued, 8, slow.Status().Paused)
	if q := slow.Status().Queued; q > 8 {
		t.Errorf("slow queue %d over its bound", q)
	}
	close(release)
	testwait.Until(t, 30*time.Second, "slow subscription catching up", func() bool { return slowHandled.Load() == 500 })
	if err := slow.Close(); err != nil {
		t.Fatal(err)
	}
}
