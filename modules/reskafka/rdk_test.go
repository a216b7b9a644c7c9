package reskafka

import "testing"

// TestRdkafkaHeaderMatchesLinked: internal/rdkafka/rdkafka.h must be the
// header of the librdkafka confluent-kafka-go links (struct layouts).
func TestRdkafkaHeaderMatchesLinked(t *testing.T) {
	linked, header := rdVersion()
	if linked>>8 != header>>8 {
		t.Fatalf("linked librdkafka %#x, header %#x: copy the matching rdkafka.h into internal/rdkafka", linked, header)
	}
}
