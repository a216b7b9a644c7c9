package reskafka

import (
	"context"
	"fmt"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// EnsureTopic creates topic on the connection's cluster with the given
// number of partitions and replication factor (-1 for either: the broker's
// default). A topic that already exists is success, whatever its layout.
// It uses a short-lived admin client with the connection's settings (its
// own connection to the cluster, closed when the request is done; neither
// the producer nor a consumer is created). Without a deadline on ctx, it
// waits at most 30 s.
func (m *Module) EnsureTopic(ctx context.Context, connName, topic string, partitions, replicationFactor int) error {
	if m.stopped.Load() {
		return fmt.Errorf("res_kafka: %w", ErrClosed)
	}
	c, err := m.conn(connName)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	// The Go admin client cannot forward logs to a channel: silence it
	// (its failures come back as errors of the request).
	cm := c.cfg().baseConfig(*c.bootstrap.Load(), nil)
	cm["log_level"] = 0
	delete(cm, "debug")
	if st := c.cfg().StatisticsIntervalMs; st > 0 {
		cm["statistics.interval.ms"] = 0
	}
	admin, err := kafka.NewAdminClient(&cm)
	if err != nil {
		m.ensureFailed.Add(1)
		return fmt.Errorf("connection %s: admin client: %s", connName, c.mask(err.Error()))
	}
	m.clientNames.Store(admin.String(), c)
	defer func() {
		admin.Close()
		m.clientNames.Delete(admin.String())
	}()
	if partitions == 0 {
		partitions = -1
	}
	if replicationFactor == 0 {
		replicationFactor = -1
	}
	res, err := admin.CreateTopics(ctx, []kafka.TopicSpecification{{
		Topic: topic, NumPartitions: partitions, ReplicationFactor: replicationFactor,
	}})
	if err != nil {
		m.ensureFailed.Add(1)
		return fmt.Errorf("connection %s: creating topic %s: %s", connName, topic, c.mask(err.Error()))
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError && r.Error.Code() != kafka.ErrTopicAlreadyExists {
			m.ensureFailed.Add(1)
			return fmt.Errorf("connection %s: creating topic %s: %s", connName, topic, c.mask(r.Error.Error()))
		}
	}
	m.ensureOK.Add(1)
	return nil
}

// EnsureTopicAsync is EnsureTopic in the background: its outcome is logged
// and counted (switchboard_kafka_topic_ensure_total).
func (m *Module) EnsureTopicAsync(connName, topic string, partitions, replicationFactor int) {
	go func() {
		ctx, cancel := context.WithTimeout(m.ctx, 60*time.Second)
		defer cancel()
		if err := m.EnsureTopic(ctx, connName, topic, partitions, replicationFactor); err != nil {
			m.logger.Error("kafka topic not ensured", "connection", connName, "topic", topic, "err", err)
			return
		}
		m.logger.Info("kafka topic ensured", "connection", connName, "topic", topic,
			"partitions", partitions, "replication_factor", replicationFactor)
	}()
}
