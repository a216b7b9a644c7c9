// Package embedded runs an in-process Kafka-protocol broker for demos, development
// and fallback tests.
//
// The broker is franz-go's kfake: one broker on 127.0.0.1, topic auto-creation on,
// DefaultPartitions partitions per auto-created topic. It keeps nothing on disk: every
// topic, message and committed offset is lost when it stops. It is a convenience for
// `brokers = embedded` in the samples and for tests run without a real broker; it is
// not Apache Kafka and must never be used in production.
package embedded

import (
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
)

// DefaultPartitions is the partition count of topics the embedded broker auto-creates
// (and of CreateTopics requests asking for -1 partitions). It matches num.partitions of
// the real test broker started by scripts/kafka.sh.
const DefaultPartitions = 3

// Broker is a running in-process Kafka-protocol broker. It is in-memory only and meant
// for demos and development, not production.
type Broker struct {
	cluster *kfake.Cluster
	addr    string
	once    sync.Once
}

// Start starts an embedded broker listening on 127.0.0.1:port; port 0 picks any free
// port. Kafka clients (librdkafka, kcat, franz-go) reach it at Addr().
func Start(port int) (*Broker, error) {
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded broker: invalid port %d", port)
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(DefaultPartitions),
	}
	if port > 0 {
		opts = append(opts, kfake.Ports(port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: start on 127.0.0.1:%d: %w", port, err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) == 0 {
		c.Close()
		return nil, fmt.Errorf("embedded broker: started but reports no listen address")
	}
	return &Broker{cluster: c, addr: addrs[0]}, nil
}

// Addr returns the broker's bootstrap address, host:port on 127.0.0.1.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker and discards everything it held. It is safe to call more
// than once.
func (b *Broker) Close() {
	b.once.Do(b.cluster.Close)
}
