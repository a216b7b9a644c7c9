package cdrkafka

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
)

// The two benchmarks below run against the same broker, topic layout and
// res_kafka connection settings ([cdr]: acks 1, linger 5 ms, snappy, queue
// 100000) with messages of the same size, so their msgs/s compare the CDR
// pipeline (Post -> batch -> encode -> produce -> delivered) with the raw
// res_kafka produce path. See BENCH_NOTES.md.

func benchRig(b *testing.B, cdrConf string) (*hostRig, string) {
	br := kafkatest.Shared(b)
	topic := kafkatest.UniqueTopic(b, "cdrbench")
	kafkatest.CreateTopic(b, br.Bootstrap, topic, 3, 1)
	r := startRigTB(b, kafkaConf(br.Bootstrap, ""), fmt.Sprintf("[general]\nconnection = cdr\ntopic = %s\n%s", topic, cdrConf), "")
	return r, topic
}

// BenchmarkCDRPipeline posts b.N CDRs from one Poster and waits until all
// are delivered.
func BenchmarkCDRPipeline(b *testing.B) {
	r, _ := benchRig(b, "on_queue_full = block\nblock_ms = 60000\n")
	defer r.stop()
	p := r.eng.NewPoster()
	recs := make([]*cdr.Record, 1024)
	for i := range recs {
		recs[i] = subscriberRecord(i, i+1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		p.Post(recs[i&1023])
	}
	p.Flush()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		s := r.mod.reg.Snapshot()
		if s.Delivered+s.Failed+s.Dropped >= uint64(b.N) {
			if s.Failed+s.Dropped != 0 {
				b.Fatalf("lost: %+v", s)
			}
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("not delivered: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	p.Close()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(len(cdr.AppendJSON(nil, recs[0]))), "value-bytes")
}

// BenchmarkRawProduce produces b.N pre-encoded messages of the same size
// and keys straight through res_kafka and waits for their delivery.
func BenchmarkRawProduce(b *testing.B) {
	r, topic := benchRig(b, "")
	defer r.stop()
	p, err := r.mod.rk.Producer(r.mod.conn)
	if err != nil {
		b.Fatal(err)
	}
	type msg struct{ k, v []byte }
	msgs := make([]msg, 1024)
	for i := range msgs {
		rec := subscriberRecord(i, i+1)
		msgs[i] = msg{cdr.AppendKeyBinary(nil, rec.IP), cdr.AppendJSON(nil, rec)}
	}
	var delivered, failed atomic.Int64
	cb := func(d reskafka.Delivery) {
		if d.Err != nil {
			failed.Add(1)
		} else {
			delivered.Add(1)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		m := msgs[i&1023]
		for {
			err := p.ProduceOpaque(topic, m.k, m.v, nil, cb, nil)
			if err == nil {
				break
			}
			if !errors.Is(err, reskafka.ErrQueueFull) {
				b.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for delivered.Load()+failed.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("not delivered: %d of %d", delivered.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	if failed.Load() != 0 {
		b.Fatalf("%d failed", failed.Load())
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
	b.ReportMetric(float64(len(msgs[0].v)), "value-bytes")
}
