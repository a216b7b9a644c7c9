package reskafka

import (
	"fmt"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
)

// With the default partitioner (murmur2_random), a key lands in the
// partition the Java client picks for it: the same 300 keys, produced once
// by res_kafka and once by Kafka's own console producer into two topics of
// 7 partitions each, sit in the same partitions.
func TestDefaultPartitionerMatchesJava(t *testing.T) {
	b := kafkatest.Shared(t)
	if !b.Real {
		t.Skip("needs the real broker of make test (Kafka's console producer runs against it)")
	}
	const parts = 7
	ours, java := uniqueTopic(t)+"-ours", uniqueTopic(t)+"-java"
	kafkatest.CreateTopic(t, b.Bootstrap, ours, parts, 1)
	kafkatest.CreateTopic(t, b.Bootstrap, java, parts, 1)
	th := startHost(t, fmt.Sprintf("[main]\nbrokers = %s\nlinger_ms = 1\n", b.Bootstrap))
	p, err := th.m.Producer("main")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	const n = 300
	var lines []string
	done := make(chan error, n)
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("subscriber-%d", i*7919)
		lines = append(lines, key+"\tv")
		if err := p.Produce(ours, []byte(key), []byte("v"), nil, func(d Delivery) { done <- d.Err }); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(time.Minute):
			t.Fatal("deliveries missing")
		}
	}
	kafkatest.JavaProduce(t, b, java, lines)
	where := func(topic string) map[string]int32 {
		m := map[string]int32{}
		for _, msg := range kafkatest.KcatConsume(t, b, topic, n, time.Minute) {
			m[string(msg.Key)] = msg.Partition
		}
		return m
	}
	got, want := where(ours), where(java)
	if len(got) != n || len(want) != n {
		t.Fatalf("read back %d and %d keys, want %d each", len(got), len(want), n)
	}
	used := map[int32]bool{}
	for k, jp := range want {
		used[jp] = true
		if got[k] != jp {
			t.Errorf("key %q: res_kafka partition %d, Java client partition %d", k, got[k], jp)
		}
	}
	if len(used) < parts {
		t.Errorf("the keys used only %d of %d partitions", len(used), parts)
	}
}
