package reskafka

import (
	"github.com/switchboard-dp/switchboard/modules/reskafka/embedded"
)

// embeddedBroker is the in-process broker behind brokers = embedded.
type embeddedBroker interface {
	Addr() string
	SetRetention(bytes int64)
	Retention() (budget, kept, trimmed int64)
	Close()
}

// startEmbedded starts the in-process Kafka-protocol broker (kfake, see
// package embedded) on 127.0.0.1:port (0: any free port), keeping at most
// retention bytes of records. It keeps nothing on disk. A variable so tests
// can substitute it.
var startEmbedded = func(port int, retention int64) (embeddedBroker, error) {
	b, err := embedded.Start(port, retention)
	if err != nil {
		return nil, err
	}
	return b, nil
}
