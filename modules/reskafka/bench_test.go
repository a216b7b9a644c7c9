package reskafka

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProduce produces b.N 100-byte messages with acks=1 through the
// res_kafka path (Producer.Produce with a nil callback, as cdr_kafka does
// for most messages) and waits until all are delivered. It reports msgs/s
// and the process CPU time (Go and librdkafka threads) per message.
// BENCH_TOPIC names the topic (default: a new one); BENCH_LINGER_MS,
// BENCH_CALLBACK=1 and BENCH_BATCH=n (ProduceBatch of n messages instead of
// Produce) vary the setup.
func BenchmarkProduce(b *testing.B) {
	br := testBroker(b)
	linger := os.Getenv("BENCH_LINGER_MS")
	if linger == "" {
		linger = "5"
	}
	th := startHost(b, fmt.Sprintf(`
[general]
[bench]
brokers = %s
acks = 1
linger_ms = %s
queue_full_timeout_ms = 60000
`, br.Bootstrap, linger))
	topic := os.Getenv("BENCH_TOPIC")
	if topic == "" {
		topic = fmt.Sprintf("bench-produce-%d", time.Now().UnixNano())
	}
	p, err := th.m.Producer("bench")
	if err != nil {
		b.Fatal(err)
	}
	// Warm up: metadata, connection, topic auto-creation.
	if err := p.Produce(topic, nil, make([]byte, 100), nil, nil); err != nil {
		b.Fatal(err)
	}
	if left := p.Flush(30 * time.Second); left != 0 {
		b.Fatalf("warm-up undelivered: %d", left)
	}
	var cb func(Delivery)
	if os.Getenv("BENCH_CALLBACK") == "1" {
		cb = func(Delivery) {}
	}
	value := make([]byte, 100)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	st0, _ := th.m.Status("bench")
	b.SetBytes(100)
	b.ReportAllocs()
	cpu0 := cpuTime()
	start := time.Now()
	batch, _ := strconv.Atoi(os.Getenv("BENCH_BATCH"))
	var msgs []OutMessage
	for range batch {
		msgs = append(msgs, OutMessage{Value: value})
	}
	b.ResetTimer()
	if batch > 0 {
		for i := 0; i < b.N; i += batch {
			k := min(batch, b.N-i)
			if n, err := p.ProduceBatch(topic, msgs[:k], cb); err != nil || n != k {
				b.Fatal(n, err)
			}
		}
	} else {
		for i := 0; i < b.N; i++ {
			if err := p.Produce(topic, nil, value, nil, cb); err != nil {
				b.Fatal(err)
			}
		}
	}
	if left := p.Flush(120 * time.Second); left != 0 {
		b.Fatalf("%d undelivered", left)
	}
	b.StopTimer()
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	st, _ := th.m.Status("bench")
	if got := st.Delivered - st0.Delivered; got != int64(b.N) || st.Failed != 0 {
		b.Fatalf("delivered %d of %d, failed %d", got, b.N, st.Failed)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
}

// BenchmarkKgoProduce is the Go peer of BenchmarkProduce: franz-go's kgo
// producer, as a Go user would pick it instead of res_kafka, with the same
// broker, 100-byte messages without a key, acks = 1 (kgo's idempotent
// writes need acks = all, so they are off, as res_kafka's are), linger and
// wait for every acknowledgement. One kgo.Record per message (a record may
// not be reused before its promise ran).
func BenchmarkKgoProduce(b *testing.B) {
	br := testBroker(b)
	linger := 5 * time.Millisecond
	if s := os.Getenv("BENCH_LINGER_MS"); s != "" {
		ms, _ := strconv.Atoi(s)
		linger = time.Duration(ms) * time.Millisecond
	}
	topic := os.Getenv("BENCH_TOPIC")
	if topic == "" {
		topic = fmt.Sprintf("bench-kgo-%d", time.Now().UnixNano())
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Bootstrap), kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite(),
		kgo.ProducerLinger(linger), kgo.MaxBufferedRecords(1<<20), kgo.AllowAutoTopicCreation())
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: make([]byte, 100)}).FirstErr(); err != nil {
		b.Fatal(err) // warm-up: metadata, connection, topic auto-creation
	}
	value := make([]byte, 100)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	var failed atomic.Int64
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
		}
	}
	b.SetBytes(100)
	b.ReportAllocs()
	cpu0 := cpuTime()
	start := time.Now()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cl.Produce(ctx, &kgo.Record{Topic: topic, Value: value}, promise)
	}
	if err := cl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	el := time.Since(start)
	cpu := cpuTime() - cpu0
	if n := failed.Load(); n != 0 {
		b.Fatalf("%d of %d not delivered", n, b.N)
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
}
