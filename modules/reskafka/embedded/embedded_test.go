package embedded

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TestLibrdkafkaProduceConsume proves a librdkafka client (confluent-kafka-go) can
// produce to and consume from the embedded broker, with topic auto-creation.
func TestLibrdkafkaProduceConsume(t *testing.T) {
	b, err := Start(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if !strings.HasPrefix(b.Addr(), "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want 127.0.0.1:PORT", b.Addr())
	}
	topic := fmt.Sprintf("embedded-test-%d", time.Now().UnixNano())

	p, err := kafka.NewProducer(&kafka.ConfigMap{
		"bootstrap.servers":  b.Addr(),
		"acks":               "all",
		"message.timeout.ms": 15000,
	})
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	defer p.Close()
	const n = 10
	dr := make(chan kafka.Event, n)
	for i := 0; i < n; i++ {
		err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Key:            []byte(fmt.Sprintf("k%d", i)),
			Value:          []byte(fmt.Sprintf("v%d", i)),
		}, dr)
		if err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
	}
	for i := 0; i < n; i++ {
		select {
		case e := <-dr:
			m := e.(*kafka.Message)
			if m.TopicPartition.Error != nil {
				t.Fatalf("delivery: %v", m.TopicPartition.Error)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("timed out waiting for delivery report %d", i)
		}
	}

	c, err := kafka.NewConsumer(&kafka.ConfigMap{
		"bootstrap.servers": b.Addr(),
		"group.id":          "embedded-test",
		"auto.offset.reset": "earliest",
	})
	if err != nil {
		t.Fatalf("new consumer: %v", err)
	}
	defer c.Close()
	if err := c.Subscribe(topic, nil); err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	got := map[string]string{}
	parts := map[int32]bool{}
	deadline := time.Now().Add(30 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		m, err := c.ReadMessage(500 * time.Millisecond)
		if err != nil {
			if ke, ok := err.(kafka.Error); ok && ke.IsTimeout() {
				continue
			}
			t.Fatalf("read: %v", err)
		}
		got[string(m.Key)] = string(m.Value)
		parts[m.TopicPartition.Partition] = true
	}
	if len(got) != n {
		t.Fatalf("consumed %d distinct messages, want %d: %v", len(got), n, got)
	}
	for i := 0; i < n; i++ {
		if v := got[fmt.Sprintf("k%d", i)]; v != fmt.Sprintf("v%d", i) {
			t.Errorf("key k%d: value %q", i, v)
		}
	}
	md, err := c.GetMetadata(&topic, false, 5000)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	if np := len(md.Topics[topic].Partitions); np != DefaultPartitions {
		t.Errorf("auto-created topic has %d partitions, want %d", np, DefaultPartitions)
	}
}

// TestFixedPortAndClose checks Start on a given port and that Close releases it.
func TestFixedPortAndClose(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	b, err := Start(port, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("127.0.0.1:%d", port); b.Addr() != want {
		t.Errorf("Addr() = %q, want %q", b.Addr(), want)
	}
	if _, err := Start(port, 0); err == nil {
		t.Error("second Start on a busy port succeeded")
	}
	b.Close()
	b.Close() // idempotent
	b2, err := Start(port, 0)
	if err != nil {
		t.Fatalf("restart on the released port: %v", err)
	}
	b2.Close()
	if _, err := Start(-1, 0); err == nil {
		t.Error("Start(-1, 0) succeeded")
	}
}
