package reskafka

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// A handler that never returns (it ignores its context) does not keep Stop
// past its deadline: the producer is still flushed and closed, and Stop
// returns within the budget.
func TestStopReturnsByDeadlineWithAHungHandler(t *testing.T) {
	b := testBroker(t)
	th := startHost(t, fmt.Sprintf("[main]\nbrokers = %s\ngroup_id = hung-%d\nauto_offset_reset = earliest\nlinger_ms = 1\n", b.Bootstrap, time.Now().UnixNano()))
	topic := uniqueTopic(t)
	if err := th.m.EnsureTopic(context.Background(), "main", topic, 1, 1); err != nil {
		t.Fatal(err)
	}
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release)
	if _, err := th.m.Subscribe("main", []string{topic}, func(context.Context, *Message) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release // deaf to its context
		return nil
	}, SubscribeOptions{Name: "hung"}); err != nil {
		t.Fatal(err)
	}
	p, err := th.m.Producer("main")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	delivered := make(chan error, 1)
	if err := p.Produce(topic, nil, []byte("x"), nil, func(d Delivery) { delivered <- d.Err }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-entered:
	case <-time.After(60 * time.Second):
		t.Fatal("the handler never got the message")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := th.m.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Stop took %s with a 3 s deadline", took)
	}
	if !strings.Contains(th.logs.String(), "kafka subscriptions still closing at the stop deadline") {
		t.Errorf("the hung handler was not reported")
	}
}
