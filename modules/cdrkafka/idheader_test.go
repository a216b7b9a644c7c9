package cdrkafka

import (
	"regexp"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
)

// Every CDR reaches Kafka with its id twice: the JSON's "id" field and the
// id header, equal; the ids are unique.
func TestKafkaIDHeader(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := kafkatest.UniqueTopic(t, "cdrid")
	r := startRig(t, kafkaConf(b.Bootstrap, ""), "[general]\nconnection = cdr\nbatch_max = 16\ntopic = "+topic+"\n", "")
	defer r.stop()
	const n = 100
	r.eng.PostSynthetic(t.Context(), n, 0, 1, 8)
	msgs := kafkatest.KcatConsume(t, b, topic, n, time.Minute)
	idRE := regexp.MustCompile(`"id":"([0-9a-f]{16}-\d+)"`)
	seen := map[string]bool{}
	for _, m := range msgs {
		id := idRE.FindSubmatch(m.Value)
		if id == nil || m.Headers["cdr_id"] != string(id[1]) {
			t.Fatalf("header %v, value %s", m.Headers, m.Value)
		}
		if seen[string(id[1])] {
			t.Fatalf("id %s twice", id[1])
		}
		seen[string(id[1])] = true
	}
}

// A record read back from the spool (chunk.add) gets its header from the
// id inside its JSON; a value without one gets no header.
func TestIDHeaderFromSpooledValue(t *testing.T) {
	k := newBackend(defaults(), nopProducer{}, nil, nil)
	c := &chunk{k: k}
	c.add([]byte("k"), []byte(`{"ts":1,"category":"0x00000001","id":"00000000000000ab-7","seq":3}`))
	c.add([]byte("k"), []byte(`{"ts":2,"category":"0x00000001"}`))
	out := c.outMessages(nil, false)
	if len(out[0].Headers) != 1 || out[0].Headers[0].Key != "cdr_id" || string(out[0].Headers[0].Value) != "00000000000000ab-7" {
		t.Fatalf("spooled record: headers %v", out[0].Headers)
	}
	if out[1].Headers != nil {
		t.Fatalf("record without an id: headers %v", out[1].Headers)
	}
}
