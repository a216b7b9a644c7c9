package reskafka

import (
	"github.com/switchboard-dp/switchboard/modules/reskafka/embedded"
)

// embeddedBroker is the in-process broker behind brokers = embedded.
type embeddedBroker interface {
	Addr() string
	Close()
}

// startEmbedded starts the in-process Kafka-protocol broker (kfake, see
// package embedded) on 127.0.0.1:port (0: any free port). It keeps nothing
// on disk. A variable so tests can substitute it.
var startEmbedded = func(port int) (embeddedBroker, error) {
	b, err := embedded.Start(port)
	if err != nil {
		return nil, err
	}
	return b, nil
}
