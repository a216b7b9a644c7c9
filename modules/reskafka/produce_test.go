package reskafka

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

func TestRoundTripKeysHeaders(t *testing.T) {
	b := testBroker(t)
	th := startHost(t, fmt.Sprintf(`
[general]
[main]
brokers = %s
group_id = rt-%d
auto_offset_reset = earliest
linger_ms = 1
`, b.Bootstrap, time.Now().UnixNano()))
	topic := uniqueTopic(t)
	if err := th.m.EnsureTopic(context.Background(), "main", topic, 3, 1); err != nil {
		t.Fatal(err)
	}
	if err := th.m.EnsureTopic(context.Background(), "main", topic, 3, 1); err != nil {
		t.Fatalf("second EnsureTopic: %v", err)
	}
	p, err := th.m.Producer("main")
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var mu sync.Mutex
	got := map[string]*Message{}
	sub, err := th.m.Subscribe("main", []string{topic}, func(_ context.Context, msg *Message) error {
		mu.Lock()
		got[string(msg.Key)] = msg
		mu.Unlock()
		return nil
	}, SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var dmu sync.Mutex
	delivered := 0
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("k%d", i)
		err := p.Produce(topic, []byte(key), []byte("value-"+key),
			[]Header{{Key: "seq", Value: []byte(fmt.Sprint(i))}, {Key: "empty", Value: nil}},
			func(d Delivery) {
				if d.Err != nil || d.Status != Persisted || d.Offset < 0 || d.Topic != topic {
					t.Errorf("delivery: %+v", d)
				}
				dmu.Lock()
				delivered++
				dmu.Unlock()
			})
		if err != nil {
			t.Fatal(err)
		}
	}
	if left := p.Flush(10 * time.Second); left != 0 {
		t.Fatalf("%d undelivered", left)
	}
	dmu.Lock()
	if delivered != n {
		t.Errorf("%d delivery callbacks, want %d", delivered, n)
	}
	dmu.Unlock()
	testwait.Until(t, 30*time.Second, "all messages consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n
	})
	mu.Lock()
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("k%d", i)
		m := got[key]
		if string(m.Value) != "value-"+key {
			t.Errorf("%s: value %q", key, m.Value)
		}
		if len(m.Headers) != 2 || m.Headers[0].Key != "seq" || string(m.Headers[0].Value) != fmt.Sprint(i) || m.Headers[1].Key != "empty" {
			t.Errorf("%s: headers %+v", key, m.Headers)
		}
	}
	mu.Unlock()
	out := th.run("kafka show status")
	if !strings.Contains(out, "Connections:") || !strings.Contains(out, "main") {
		t.Errorf("status:\n%s", out)
	}
	t.Logf("status:\n%s", out)
	out = th.run("kafka show consumers")
	t.Logf("consumers:\n%s", out)
	out = th.run("kafka show consumer main/" + sub.group)
	t.Logf("consumer:\n%s", out)
	out = th.run("kafka test send connection main topic " + topic + " message hello world key kk")
	if !strings.Contains(out, "Message delivered to "+topic+" [") {
		t.Errorf("test send: %s", out)
	}
	out = th.run("kafka test send connection nope topic x message y")
	if strings.TrimSpace(out) != "ERROR: no connection named nope" {
		t.Errorf("unknown connection: %q", out)
	}
	out = th.run("kafka show connection main")
	t.Logf("connection:\n%s", out)
}
