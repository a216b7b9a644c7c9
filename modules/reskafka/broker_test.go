package reskafka

import (
	"testing"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
)

// testBroker returns the shared test broker: the real one from make test
// (KAFKA_BOOTSTRAP), or the embedded fallback.
func testBroker(t testing.TB) *kafkatest.Broker { return kafkatest.Shared(t) }
