package reskafka

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
)

// TestProduceBatch: one ProduceBatch call per 100 messages (keys, values,
// opaques); every callback carries its opaque and the real status, counters
// add up, kcat reads every message with its key.
func TestProduceBatch(t *testing.T) {
	b := testBroker(t)
	th := startHost(t, fmt.Sprintf("[main]\nbrokers = %s\nlinger_ms = 1\n", b.Bootstrap))
	p, err := th.m.Producer("main")
	if err != nil {
		t.Fatal(err)
	}
	topic := uniqueTopic(t)
	const n = 1000
	var mu sync.Mutex
	seen := map[int]int{}
	cb := func(d Delivery) {
		mu.Lock()
		defer mu.Unlock()
		if d.Err != nil || d.Status != Persisted || d.Topic != topic || d.Offset < 0 {
			t.Errorf("delivery %+v", d)
		}
		seen[d.Opaque.(int)]++
	}
	msgs := make([]OutMessage, 0, 100)
	for i := 0; i < n; i += 100 {
		msgs = msgs[:0]
		for j := i; j < i+100; j++ {
			msgs = append(msgs, OutMessage{Key: []byte(fmt.Sprintf("k%d", j)), Value: []byte(fmt.Sprintf("v%d", j)), Opaque: j})
		}
		if got, err := p.ProduceBatch(topic, msgs, cb); err != nil || got != len(msgs) {
			t.Fatalf("ProduceBatch: %d, %v", got, err)
		}
	}
	if left := p.Flush(30 * time.Second); left != 0 {
		t.Fatalf("%d undelivered", left)
	}
	mu.Lock()
	if len(seen) != n {
		t.Errorf("%d distinct opaques, want %d", len(seen), n)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("opaque %d called back %d times", k, c)
		}
	}
	mu.Unlock()
	st, _ := th.m.Status("main")
	if st.Produced != n || st.Delivered != n || st.Failed != 0 || st.Dropped != 0 {
		t.Errorf("status %+v", st)
	}
	got := kafkatest.KcatConsume(t, b, topic, n, 60*time.Second)
	for _, m := range got {
		if string(m.Key) != "k"+string(m.Value)[1:] {
			t.Errorf("key %q value %q", m.Key, m.Value)
		}
	}
}
