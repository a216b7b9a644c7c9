package reskafka

import (
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TestRdkafkaHeaderMatchesLinked: internal/rdkafka/rdkafka.h, the header
// rdk.go compiles against, must be the header of the librdkafka
// confluent-kafka-go links (struct layouts). The linked version is
// rd_kafka_version() of that library (kafka.LibraryVersion), the header's
// its RD_KAFKA_VERSION.
func TestRdkafkaHeaderMatchesLinked(t *testing.T) {
	linked, _ := kafka.LibraryVersion()
	text, err := os.ReadFile("internal/rdkafka/rdkafka.h")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^#define RD_KAFKA_VERSION\s+(0x[0-9a-fA-F]+)\s*$`).FindSubmatch(text)
	if m == nil {
		t.Fatal("no RD_KAFKA_VERSION in internal/rdkafka/rdkafka.h")
	}
	header, err := strconv.ParseInt(string(m[1]), 0, 64)
	if err != nil {
		t.Fatal(err)
	}
	if linked>>8 != int(header)>>8 {
		t.Fatalf("linked librdkafka %#x, header %#x: copy the matching rdkafka.h into internal/rdkafka", linked, header)
	}
}
