package reskafka

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
)

// The statistics documents in testdata/ are real: librdkafka's (as linked)
// producer and consumer against a 3-node Apache Kafka cluster with 2 topics
// of 6 partitions (replication factor 3), captured by
// TestCaptureStatsTestdata. Regenerate them with
//
//	SWITCHBOARD_CAPTURE_STATS=1 go test -run TestCaptureStatsTestdata ./modules/reskafka/
const (
	statsProducerFile = "testdata/stats_producer_3brokers.json"
	statsConsumerFile = "testdata/stats_consumer_3brokers.json"
)

// TestCaptureStatsTestdata writes the statistics documents of testdata/ (see
// statsProducerFile); it runs only when asked to.
func TestCaptureStatsTestdata(t *testing.T) {
	if os.Getenv("SWITCHBOARD_CAPTURE_STATS") != "1" {
		t.Skip("regenerates testdata/stats_*.json: set SWITCHBOARD_CAPTURE_STATS=1 (starts a 3-node cluster)")
	}
	cl := kafkatest.Cluster(t)
	topics := []string{"cdr", "policy_updates"}
	for _, tp := range topics {
		kafkatest.CreateTopic(t, cl.Bootstrap(), tp, 6, 3)
	}
	prod, err := kafka.NewProducer(&kafka.ConfigMap{"bootstrap.servers": cl.Bootstrap(), "client.id": "switchboard",
		"statistics.interval.ms": 1000, "acks": "all", "enable.idempotence": true, "linger.ms": 5})
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	prodStats := make(chan string, 16)
	go func() {
		for ev := range prod.Events() {
			if st, ok := ev.(*kafka.Stats); ok {
				select {
				case prodStats <- st.String():
				default:
				}
			}
		}
	}()
	produce := func(n int) {
		for i := range n {
			for _, tp := range topics {
				topic := tp
				err := prod.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
					Key: fmt.Appendf(nil, "k%d", i), Value: make([]byte, 100)}, nil)
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		prod.Flush(30000)
	}
	produce(3000)

	cons, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": cl.Bootstrap(), "client.id": "switchboard",
		"group.id": "stats-capture", "auto.offset.reset": "earliest", "statistics.interval.ms": 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	if err := cons.SubscribeTopics(topics, nil); err != nil {
		t.Fatal(err)
	}
	// Consume part of the messages, then pause so that a lag builds up.
	got := 0
	for deadline := time.Now().Add(60 * time.Second); got < 3000 && time.Now().Before(deadline); {
		if m, ok := cons.Poll(100).(*kafka.Message); ok && m.TopicPartition.Error == nil {
			got++
		}
	}
	asg, err := cons.Assignment()
	if err != nil || len(asg) != 12 {
		t.Fatalf("assignment %v: %v", asg, err)
	}
	if err := cons.Pause(asg); err != nil {
		t.Fatal(err)
	}
	produce(500)

	// Keep the producer busy while its document is taken, so that queues
	// and round-trip times are not all zero (and forget the documents of
	// before).
	for len(prodStats) > 0 {
		<-prodStats
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			topic := topics[i%2]
			_ = prod.Produce(&kafka.Message{TopicPartition: kafka.TopicPartition{Topic: &topic, Partition: kafka.PartitionAny},
				Key: fmt.Appendf(nil, "k%d", i), Value: make([]byte, 100)}, nil)
			if i%100 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	prodDoc := waitStats(t, prodStats, func(sn *statsSnapshot) bool {
		if len(sn.Brokers) != 3 || len(sn.Parts) != 12 {
			return false
		}
		for _, b := range sn.Brokers {
			if b.State != "UP" || b.RTT.Cnt == 0 {
				return false
			}
		}
		queued := 0
		for _, p := range sn.Parts {
			if p.TxMsgs == 0 {
				return false
			}
			queued += int(p.MsgqCnt + p.XmitMsgqCnt)
		}
		return queued > 0
	})
	close(stop)
	<-done
	consDoc := ""
	for deadline := time.Now().Add(30 * time.Second); consDoc == "" && time.Now().Before(deadline); {
		if st, ok := cons.Poll(100).(*kafka.Stats); ok {
			var sn statsSnapshot
			var s jsonScan
			var in interner
			s.reset([]byte(st.String()))
			sn.parse(&s, &in)
			lag, known := 0, 0
			for _, p := range sn.Parts {
				if p.ConsumerLag > 0 {
					lag++
				}
				if p.ConsumerLag >= 0 {
					known++
				}
			}
			if len(sn.Brokers) == 3 && len(sn.Parts) == 12 && known >= 6 && lag > 0 {
				consDoc = st.String()
			}
		}
	}
	if consDoc == "" {
		t.Fatal("no consumer statistics with 3 brokers, 12 partitions, 6 lags known and one above 0")
	}
	for file, doc := range map[string]string{statsProducerFile: prodDoc, statsConsumerFile: consDoc} {
		var pretty any
		if err := json.Unmarshal([]byte(doc), &pretty); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		// As librdkafka writes it (one line), to measure what it costs.
		if err := os.WriteFile(file, []byte(doc+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes", file, len(doc))
	}
}

// waitStats reads statistics documents from stats until ok accepts one.
func waitStats(t *testing.T, stats <-chan string, ok func(*statsSnapshot) bool) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		var doc string
		select {
		case doc = <-stats:
		case <-timeout:
			t.Fatal("no producer statistics document as wanted")
		}
		var sn statsSnapshot
		var s jsonScan
		var in interner
		s.reset([]byte(doc))
		sn.parse(&s, &in)
		if !s.bad && ok(&sn) {
			return doc
		}
	}
}
