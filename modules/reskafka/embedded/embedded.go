// Package embedded runs an in-process Kafka-protocol broker for demos, development
// and fallback tests.
//
// The broker is franz-go's kfake: one broker on 127.0.0.1, topic auto-creation on,
// DefaultPartitions partitions per auto-created topic. It keeps nothing on disk: every
// topic, message and committed offset is lost when it stops. It keeps at most a
// retention budget of record bytes in memory, dropping the oldest records as a real
// broker's retention.bytes does (see retention). It is a convenience for
// `brokers = embedded` in the samples and for tests run without a real broker; it is
// not Apache Kafka and must never be used in production.
package embedded

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
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
	ret     *retention
	once    sync.Once
}

// DefaultRetentionBytes is the budget of record bytes the broker keeps unless told
// otherwise. At the make run demo's 2,000 CDRs/s of about 190 bytes of JSON (the
// engine benchmark's average) that is the last 11 minutes or so.
const DefaultRetentionBytes = 256 << 20

// Start starts an embedded broker listening on 127.0.0.1:port; port 0 picks any free
// port. Kafka clients (librdkafka, kcat, franz-go) reach it at Addr(). It keeps at most
// retentionBytes of record bytes (0: DefaultRetentionBytes), the newest.
func Start(port int, retentionBytes int64) (*Broker, error) {
	if port < 0 || port > 65535 {
		return nil, fmt.Errorf("embedded broker: invalid port %d", port)
	}
	if retentionBytes <= 0 {
		retentionBytes = DefaultRetentionBytes
	}
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(DefaultPartitions),
		// Trimmed records are freed a whole segment at a time: keep
		// segments small beside the budget.
		kfake.BrokerConfigs(map[string]string{"log.segment.bytes": strconv.FormatInt(segmentBytes(retentionBytes), 10)}),
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
	ret, err := newRetention(addrs[0], retentionBytes)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("embedded broker: retention client: %w", err)
	}
	c.ControlKey(int16(kmsg.Produce), ret.observe)
	return &Broker{cluster: c, addr: addrs[0], ret: ret}, nil
}

// segmentBytes is the segment size for a retention budget: a 32nd of it,
// 1 MB at least.
func segmentBytes(budget int64) int64 { return max(budget/32, 1<<20) }

// SetRetention changes the budget of record bytes (0: DefaultRetentionBytes).
func (b *Broker) SetRetention(bytes int64) {
	if bytes <= 0 {
		bytes = DefaultRetentionBytes
	}
	b.ret.budget.Store(bytes)
}

// Retention returns the budget of record bytes, the bytes the broker keeps now
// (as produced, before its own overhead) and how many records it dropped to stay
// within the budget.
func (b *Broker) Retention() (budget, kept, trimmed int64) { return b.ret.stats() }

// Addr returns the broker's bootstrap address, host:port on 127.0.0.1.
func (b *Broker) Addr() string { return b.addr }

// Close stops the broker and discards everything it held. It is safe to call more
// than once.
func (b *Broker) Close() {
	b.once.Do(func() {
		b.ret.close()
		b.cluster.Close()
	})
}
