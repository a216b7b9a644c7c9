package reskafka

import (
	"os"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// testBrokerInfo says where the test broker is (kafkatest.Broker's shape).
type testBrokerInfo struct {
	Bootstrap, SASLBootstrap, SASLUsername, SASLPassword, CALocation string
	Real                                                             bool
}

var (
	fakeOnce sync.Once
	fake     *kfake.Cluster
)

// testBroker returns the real broker named by KAFKA_BOOTSTRAP, or an
// in-process kfake broker.
func testBroker(t *testing.T) *testBrokerInfo {
	t.Helper()
	if b := os.Getenv("KAFKA_BOOTSTRAP"); b != "" {
		return &testBrokerInfo{Bootstrap: b, SASLBootstrap: os.Getenv("KAFKA_SASL_BOOTSTRAP"),
			SASLUsername: os.Getenv("KAFKA_SASL_USERNAME"), SASLPassword: os.Getenv("KAFKA_SASL_PASSWORD"),
			CALocation: os.Getenv("KAFKA_CA_LOCATION"), Real: true}
	}
	fakeOnce.Do(func() {
		var err error
		fake, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(3))
		if err != nil {
			t.Fatal(err)
		}
	})
	return &testBrokerInfo{Bootstrap: fake.ListenAddrs()[0]}
}
