package reskafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/switchboard-dp/switchboard/internal/kafkatest"
)

// TestStageKeepsOrderAndContent: Produce (with and without keys, headers,
// null values) and ProduceBatch (some messages with headers of their own)
// interleaved through a queue small enough to
// fill, so the stage fills, waits and resumes mid-batch; kcat reads one
// partition back and finds every message once, in order, byte for byte.
// Idempotence is on because without it librdkafka itself may reorder a
// partition when it retries a request while a later one is in flight.
func TestStageKeepsOrderAndContent(t *testing.T) {
	b := testBroker(t)
	th := startHost(t, fmt.Sprintf(`
[general]
[main]
brokers = %s
linger_ms = 1
acks = -1
enable_idempotence = yes
queue_buffering_max_messages = 300
queue_full_timeout_ms = 30000
`, b.Bootstrap))
	topic := uniqueTopic(t)
	if err := th.m.EnsureTopic(context.Background(), "main", topic, 1, 1); err != nil {
		t.Fatal(err)
	}
	p, err := th.m.Producer("main")
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	key := func(i int) []byte {
		if i%3 == 0 && i > 0 {
			return []byte("k" + strconv.Itoa(i))
		}
		return nil
	}
	value := func(i int) []byte {
		switch {
		case i == 0:
			return []byte{} // empty, not null, alone in its batch (no bytes at all)
		case i%11 == 5:
			return nil
		}
		return []byte(strconv.Itoa(i))
	}
	if err := p.Produce(topic, nil, value(0), nil, nil); err != nil {
		t.Fatal(err)
	}
	if left := p.Flush(30 * time.Second); left != 0 {
		t.Fatalf("first message undelivered")
	}
	for i := 1; i < n; {
		if i%1000 == 500 {
			var msgs []OutMessage
			for j := i; j < i+100; j++ {
				m := OutMessage{Key: key(j), Value: value(j)}
				if j%3 == 0 { // a header of its own
					m.Headers = []Header{{Key: "bseq", Value: []byte(strconv.Itoa(j))}}
				}
				msgs = append(msgs, m)
			}
			if got, err := p.ProduceBatch(topic, msgs, nil); err != nil || got != len(msgs) {
				t.Fatalf("ProduceBatch at %d: %d, %v", i, got, err)
			}
			i += len(msgs)
			continue
		}
		var hs []Header
		if i%7 == 0 {
			hs = []Header{{Key: "seq", Value: []byte(strconv.Itoa(i))}, {Key: "null", Value: nil}}
		}
		if err := p.Produce(topic, key(i), value(i), hs, nil); err != nil {
			t.Fatalf("Produce %d: %v", i, err)
		}
		i++
	}
	if left := p.Flush(60 * time.Second); left != 0 {
		t.Fatalf("%d undelivered", left)
	}
	st, _ := th.m.Status("main")
	if st.Produced != n || st.Delivered != n || st.Failed != 0 || st.Dropped != 0 || st.Queued != 0 {
		t.Errorf("status %+v", st)
	}
	got := kafkatest.KcatConsume(t, b, topic, n, 60*time.Second)
	if len(got) != n {
		t.Fatalf("kcat read %d messages, want %d", len(got), n)
	}
	for i, m := range got {
		if m.Offset != int64(i) {
			t.Fatalf("message %d at offset %d", i, m.Offset)
		}
		if string(m.Key) != string(key(i)) || (m.Key == nil) != (key(i) == nil) {
			t.Fatalf("message %d: key %q (null %v), want %q (null %v)", i, m.Key, m.Key == nil, key(i), key(i) == nil)
		}
		if string(m.Value) != string(value(i)) || (m.Value == nil) != (value(i) == nil) {
			t.Fatalf("message %d: value %q (null %v), want %q (null %v)", i, m.Value, m.Value == nil, value(i), value(i) == nil)
		}
		inBatch := i%1000 >= 500 && i%1000 < 600
		wantHdr := i > 0 && i%7 == 0 && !inBatch
		wantBatchHdr := inBatch && i%3 == 0
		switch {
		case wantHdr && m.Headers["seq"] != strconv.Itoa(i),
			wantBatchHdr && (len(m.Headers) != 1 || m.Headers["bseq"] != strconv.Itoa(i)),
			!wantHdr && !wantBatchHdr && m.Headers != nil:
			t.Fatalf("message %d: headers %v", i, m.Headers)
		}
	}
}

// TestProduceTooLarge: a message larger than message_max_bytes is refused
// by Produce itself, counted and never reaches librdkafka.
func TestProduceTooLarge(t *testing.T) {
	th := startHost(t, fmt.Sprintf(`
[general]
shutdown_flush_timeout_ms = 100
[down]
brokers = 127.0.0.1:%d
message_max_bytes = 1000
`, closedPort(t)))
	p, err := th.m.Producer("down")
	if err != nil {
		t.Fatal(err)
	}
	err = p.Produce("t", []byte("key"), make([]byte, 998), nil, nil)
	var kerr kafka.Error
	if !errors.As(err, &kerr) || kerr.Code() != kafka.ErrMsgSizeTooLarge {
		t.Fatalf("want MSG_SIZE_TOO_LARGE, got %v", err)
	}
	if got, err := p.ProduceBatch("t", []OutMessage{{Value: []byte("ok")}, {Value: make([]byte, 1001)}, {Value: []byte("lost")}}, nil); got != 1 || err == nil {
		t.Errorf("ProduceBatch: %d, %v", got, err)
	}
	st, _ := th.m.Status("down")
	if st.Produced != 1 || st.Dropped != 3 || st.Queued != 1 {
		t.Errorf("status %+v", st)
	}
}
