package reskafka_test

import (
	"context"
	"errors"
	"log"
	"time"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
)

// A module that lists reskafka.Name in its Requires gets res_kafka in Start
// and produces through a named connection. Produce never blocks on the
// network; the delivery callback runs on res_kafka's poll goroutine and must
// stay cheap.
func ExampleProducer_Produce() {
	start := func(ctx *core.Context) error {
		kafka, err := core.Dep[*reskafka.Module](ctx, reskafka.Name)
		if err != nil {
			return err
		}
		p, err := kafka.Producer("default")
		if err != nil {
			return err // "no connection named default"
		}
		err = p.Produce("events", []byte("key-1"), []byte(`{"hello":"world"}`),
			[]reskafka.Header{{Key: "source", Value: []byte("example")}},
			func(d reskafka.Delivery) {
				if d.Err != nil {
					// d.Status says whether a retry may duplicate the message.
					log.Printf("not delivered (%s): %v", d.Status, d.Err)
				}
			})
		if errors.Is(err, reskafka.ErrQueueFull) {
			// The local queue stayed full for queue_full_timeout_ms: the
			// message was dropped (and counted). Spool it, or give up.
		}
		// At shutdown: wait for what is in flight.
		if left := p.Flush(5 * time.Second); left > 0 {
			log.Printf("%d messages not delivered", left)
		}
		return nil
	}
	_ = start
}

// A batching caller hands one callback and an opaque value per message.
func ExampleProducer_ProduceOpaque() {
	var p *reskafka.Producer // from Module.Producer
	type batch struct{ id int }
	onDelivery := func(d reskafka.Delivery) {
		b := d.Opaque.(*batch)
		_ = b // account the outcome to its batch
	}
	if p != nil {
		_ = p.ProduceOpaque("cdr", nil, []byte("record"), nil, onDelivery, &batch{id: 7})
	}
}

// Subscribe runs the handler on a goroutine of the subscription's own; a slow
// handler pauses its partitions instead of stalling anything else. With
// ManualCommit the handler commits what it has made durable.
func ExampleModule_Subscribe() {
	var kafka *reskafka.Module // from core.Dep
	if kafka == nil {
		return
	}
	var sub *reskafka.Subscription
	sub, err := kafka.Subscribe("default", []string{"policy_updates"},
		func(ctx context.Context, msg *reskafka.Message) error {
			// ... apply msg.Value ...
			return sub.Commit(msg) // synchronous commit of msg.Offset+1
		},
		reskafka.SubscribeOptions{GroupID: "policy-sync", ManualCommit: true,
			AutoOffsetReset: "earliest", Assignor: "cooperative-sticky"})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close() // leaves the group at once
}

// EnsureTopic creates a topic unless it exists; EnsureTopicAsync does it in
// the background, logging and counting the outcome.
func ExampleModule_EnsureTopic() {
	var kafka *reskafka.Module
	if kafka == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kafka.EnsureTopic(ctx, "default", "dp_cdr", 6, 1); err != nil {
		log.Print(err)
	}
	kafka.EnsureTopicAsync("default", "policy_updates", 1, 1)
}
