package kafkatest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// produceOne produces one message with confluent-kafka-go and waits for its delivery.
func produceOne(t *testing.T, cfg *kafka.ConfigMap, topic string, key, value string) {
	t.Helper()
	p, err := kafka.NewProducer(cfg)
	if err != nil {
		t.Fatalf("new producer: %v", err)
	}
	defer p.Close()
	dr := make(chan kafka.Event, 1)
	err = p.Produce(&kafka.Message{
		TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
		Key:            []byte(key),
		Value:          []byte(value),
		Headers:        []kafka.Header{{Key: "origin", Value: []byte("smoke")}},
	}, dr)
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	select {
	case e := <-dr:
		if m := e.(*kafka.Message); m.TopicPartition.Error != nil {
			t.Fatalf("delivery to %s: %v", topic, m.TopicPartition.Error)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery report within 30s")
	}
}

func checkMsg(t *testing.T, via string, msgs []KcatMessage, key, value string) {
	t.Helper()
	for _, m := range msgs {
		if string(m.Key) == key && string(m.Value) == value {
			if m.Headers["origin"] != "smoke" {
				t.Errorf("%s: headers %v, want origin=smoke", via, m.Headers)
			}
			return
		}
	}
	t.Errorf("%s: message %q=%q not among %d read", via, key, value, len(msgs))
}

// TestSmoke proves the fixture: confluent-kafka-go produces, kcat consumes over
// PLAINTEXT and SASL_SSL, and a wrong SCRAM password fails with an authentication error.
func TestSmoke(t *testing.T) {
	b := Shared(t)
	kind := "embedded broker (kfake)"
	if b.Real {
		kind = "Apache Kafka " + b.Version
	}
	fmt.Printf("kafkatest smoke: %s, bootstrap %s, SASL_SSL %q\n", kind, b.Bootstrap, b.SASLBootstrap)
	t.Logf("broker: %s", b)

	topic := UniqueTopic(t, "smoke")
	CreateTopic(t, b.Bootstrap, topic, 1, 1)
	value := "hello from confluent-kafka-go " + time.Now().Format(time.RFC3339Nano)
	produceOne(t, b.ConfigMap(), topic, "k1", value)

	t.Run("kcat-plaintext", func(t *testing.T) {
		msgs := KcatConsume(t, b, topic, 1, 30*time.Second)
		checkMsg(t, "kcat PLAINTEXT", msgs, "k1", value)
		if msgs[0].Partition != 0 || msgs[0].Offset != 0 {
			t.Errorf("first message at partition %d offset %d, want 0/0", msgs[0].Partition, msgs[0].Offset)
		}
	})

	t.Run("kcat-sasl-ssl", func(t *testing.T) {
		if !b.Real {
			t.Skip("the embedded broker has no SASL_SSL listener")
		}
		msgs := KcatConsumeSASL(t, b, topic, 1, 30*time.Second)
		checkMsg(t, "kcat SASL_SSL", msgs, "k1", value)
	})

	t.Run("sasl-produce-and-kcat-produce", func(t *testing.T) {
		if !b.Real {
			t.Skip("the embedded broker has no SASL_SSL listener")
		}
		produceOne(t, b.SASLConfigMap(), topic, "k2", "over sasl")
		KcatProduceSASL(t, b, topic, []string{"kcat-sasl-1"}, "k3")
		KcatProduce(t, b, topic, []string{"kcat-plain-1", "kcat-plain-2"}, "")
		msgs := KcatConsume(t, b, topic, 5, 30*time.Second)
		if len(msgs) != 5 {
			t.Fatalf("read %d messages, want 5", len(msgs))
		}
		if string(msgs[1].Key) != "k2" || string(msgs[2].Key) != "k3" || msgs[3].Key != nil {
			t.Errorf("keys %q %q %v, want k2 k3 <nil>", msgs[1].Key, msgs[2].Key, msgs[3].Key)
		}
	})

	t.Run("wrong-password", func(t *testing.T) {
		if !b.Real {
			t.Skip("the embedded broker has no SASL_SSL listener")
		}
		cfg := b.SASLConfigMap()
		_ = cfg.SetKey("sasl.password", b.SASLPassword+"-wrong")
		_ = cfg.SetKey("message.timeout.ms", 10000)
		p, err := kafka.NewProducer(cfg)
		if err != nil {
			t.Fatalf("new producer: %v", err)
		}
		defer p.Close()
		dr := make(chan kafka.Event, 1)
		if err := p.Produce(&kafka.Message{
			TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
			Value:          []byte("must not arrive"),
		}, dr); err != nil {
			t.Fatalf("produce: %v", err)
		}
		var authErr error
		deadline := time.After(30 * time.Second)
		for authErr == nil {
			select {
			case e := <-p.Events():
				if ke, ok := e.(kafka.Error); ok && ke.Code() == kafka.ErrAuthentication {
					authErr = ke
				}
			case e := <-dr:
				m := e.(*kafka.Message)
				if m.TopicPartition.Error == nil {
					t.Fatal("message delivered with a wrong password")
				}
				t.Logf("delivery failed as expected: %v", m.TopicPartition.Error)
			case <-deadline:
				t.Fatal("no authentication error within 30s")
			}
		}
		t.Logf("wrong password rejected: %v", authErr)
		if !strings.Contains(authErr.Error(), "Authentication failed") {
			t.Errorf("error %q does not say authentication failed", authErr)
		}
	})
}

// TestParseKcat covers the binary-safe kcat output parser.
func TestParseKcat(t *testing.T) {
	out := "0 5 2 3 a=1,b=2\nk\nv\x00z\n1 6 -1 0 \n\n"
	msgs, err := parseKcat([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 2 {
		t.Fatalf("got %d messages", len(msgs))
	}
	if string(msgs[0].Key) != "k\n" || string(msgs[0].Value) != "v\x00z" || msgs[0].Offset != 5 || msgs[0].Headers["b"] != "2" {
		t.Errorf("msg0 = %+v", msgs[0])
	}
	if msgs[1].Key != nil || msgs[1].Value == nil || len(msgs[1].Value) != 0 || msgs[1].Partition != 1 {
		t.Errorf("msg1 = %+v", msgs[1])
	}
	if _, err := parseKcat([]byte("0 1 5 1 \nab")); err == nil {
		t.Error("truncated output parsed without error")
	}
}

// TestUniqueTopic checks names are unique and legal.
func TestUniqueTopic(t *testing.T) {
	a, b := UniqueTopic(t, "x/y z"), UniqueTopic(t, "x/y z")
	if a == b {
		t.Fatalf("not unique: %s", a)
	}
	if unsafeTopicChars.MatchString(a) {
		t.Errorf("illegal characters in %q", a)
	}
}
