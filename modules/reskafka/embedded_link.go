package reskafka

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// embeddedBroker is the in-process broker behind brokers = embedded.
type embeddedBroker interface {
	Addr() string
	Close()
}

type kfakeBroker struct{ c *kfake.Cluster }

func (b kfakeBroker) Addr() string { return b.c.ListenAddrs()[0] }
func (b kfakeBroker) Close()       { b.c.Close() }

// startEmbedded starts the in-process Kafka-protocol broker (kfake) on
// 127.0.0.1:port (0: any free port). It keeps nothing on disk.
var startEmbedded = func(port int) (embeddedBroker, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(1)}
	if port > 0 {
		opts = append(opts, kfake.Ports(port))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("kfake: %w", err)
	}
	return kfakeBroker{c}, nil
}
