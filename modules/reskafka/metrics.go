package reskafka

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/internal/metrics"
)

var (
	descProduced  = prometheus.NewDesc("switchboard_kafka_produced_total", "Messages accepted by Produce.", []string{"connection"}, nil)
	descDelivered = prometheus.NewDesc("switchboard_kafka_delivered_total", "Messages acknowledged by the broker.", []string{"connection"}, nil)
	descFailed    = prometheus.NewDesc("switchboard_kafka_delivery_failed_total", "Accepted messages whose delivery failed.", []string{"connection"}, nil)
	descDropped   = prometheus.NewDesc("switchboard_kafka_dropped_total", "Messages refused by Produce.", []string{"connection", "reason"}, nil)
	descQueued    = prometheus.NewDesc("switchboard_kafka_queue_messages", "Messages queued or in flight.", []string{"connection"}, nil)
	descErrors    = prometheus.NewDesc("switchboard_kafka_client_errors_total", "Error events of librdkafka clients.", []string{"connection"}, nil)
	descUp        = prometheus.NewDesc("switchboard_kafka_connection_up", "1 when the connection's last known state is up.", []string{"connection", "state"}, nil)
	descReceived  = prometheus.NewDesc("switchboard_kafka_consumed_total", "Messages received by a subscription.", []string{"connection", "group", "subscription"}, nil)
	descHandled   = prometheus.NewDesc("switchboard_kafka_handled_total", "Messages a subscription's handler processed.", []string{"connection", "group", "subscription"}, nil)
	descHErrors   = prometheus.NewDesc("switchboard_kafka_handler_errors_total", "Handler errors.", []string{"connection", "group", "subscription"}, nil)
	descDiscarded = prometheus.NewDesc("switchboard_kafka_rebalance_discarded_total", "Queued messages dropped at revocation (fetched again by the new owner).", []string{"connection", "group", "subscription"}, nil)
	descLag       = prometheus.NewDesc("switchboard_kafka_consumer_lag_messages", "Consumer lag per partition, when known.", []string{"connection", "group", "topic", "partition"}, nil)
	descEnsure    = prometheus.NewDesc("switchboard_kafka_topic_ensure_total", "EnsureTopic outcomes.", []string{"result"}, nil)
	descCBPanics  = prometheus.NewDesc("switchboard_kafka_callback_panics_total", "Delivery callbacks that panicked.", nil, nil)

	// Fatal errors and rebuilds (fatal.go).
	descFatal      = prometheus.NewDesc("switchboard_kafka_fatal_errors_total", "Fatal errors of the connection's librdkafka producers.", []string{"connection"}, nil)
	descRebuilds   = prometheus.NewDesc("switchboard_kafka_producer_rebuilds_total", "librdkafka producers replaced behind the connection's Producer handle: reason fatal (after a fatal error) or reload (kafka.conf changed).", []string{"connection", "reason"}, nil)
	descHandedBack = prometheus.NewDesc("switchboard_kafka_delivery_failed_rebuilt_total", "Accepted messages handed back failed with ErrProducerRebuilt because their producer failed fatally (part of switchboard_kafka_delivery_failed_total).", []string{"connection"}, nil)

	// librdkafka statistics (stats.go): the latest document of each client,
	// "producer" or "consumer:<subscription>".
	descBrokerUp       = prometheus.NewDesc("switchboard_kafka_broker_up", "1 when the client's connection to the broker is UP; state is librdkafka's broker state.", []string{"connection", "client", "broker", "state"}, nil)
	descBrokerRTT      = prometheus.NewDesc("switchboard_kafka_broker_rtt_seconds", "Round-trip time to the broker over the last statistics interval, by quantile (absent when no request completed).", []string{"connection", "client", "broker", "quantile"}, nil)
	descBrokerRTTAvg   = prometheus.NewDesc("switchboard_kafka_broker_rtt_avg_seconds", "Mean round-trip time to the broker over the last statistics interval (absent when no request completed).", []string{"connection", "client", "broker"}, nil)
	descBrokerOutbuf   = prometheus.NewDesc("switchboard_kafka_broker_outbuf_requests", "Requests waiting to be sent to the broker.", []string{"connection", "client", "broker"}, nil)
	descBrokerWaitresp = prometheus.NewDesc("switchboard_kafka_broker_waitresp_requests", "Requests sent to the broker and waiting for their response.", []string{"connection", "client", "broker"}, nil)
	descBrokerTxErrs   = prometheus.NewDesc("switchboard_kafka_broker_tx_errors_total", "Transmission errors towards the broker (since the client was created).", []string{"connection", "client", "broker"}, nil)
	descBrokerRxErrs   = prometheus.NewDesc("switchboard_kafka_broker_rx_errors_total", "Receive errors from the broker (since the client was created).", []string{"connection", "client", "broker"}, nil)
	descPartQueue      = prometheus.NewDesc("switchboard_kafka_partition_queue_messages", "Messages queued in the client for the partition: queue msgq (the partition's queue) or xmit_msgq (the leader's transmit queue).", []string{"connection", "client", "topic", "partition", "queue"}, nil)
	descPartLag        = prometheus.NewDesc("switchboard_kafka_partition_consumer_lag_messages", "Consumer lag of the partition as the consuming client's statistics give it.", []string{"connection", "client", "topic", "partition"}, nil)
	descStatsInvalid   = prometheus.NewDesc("switchboard_kafka_statistics_invalid_total", "librdkafka statistics documents that could not be decoded.", []string{"connection"}, nil)

	descs = metrics.Descs{descProduced, descDelivered, descFailed, descDropped, descQueued, descErrors,
		descUp, descReceived, descHandled, descHErrors, descDiscarded, descLag, descEnsure, descCBPanics,
		descFatal, descRebuilds, descHandedBack,
		descBrokerUp, descBrokerRTT, descBrokerRTTAvg, descBrokerOutbuf, descBrokerWaitresp, descBrokerTxErrs, descBrokerRxErrs,
		descPartQueue, descPartLag, descStatsInvalid}
)

var _ prometheus.Collector = (*Module)(nil)

// Describe implements prometheus.Collector.
func (m *Module) Describe(ch chan<- *prometheus.Desc) { descs.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Module) Collect(ch chan<- prometheus.Metric) {
	out := metrics.Sink(ch)
	for _, name := range m.Connections() {
		c, err := m.conn(name)
		if err != nil {
			continue
		}
		out.CounterInt(descProduced, c.produced.Load(), name)
		out.CounterInt(descDelivered, c.delivered.Load(), name)
		out.CounterInt(descFailed, c.failed.Load(), name)
		for i := range c.dropped {
			out.CounterInt(descDropped, c.dropped[i].Load(), name, dropReasons[i])
		}
		out.Gauge(descQueued, float64(c.queued()), name)
		out.CounterInt(descErrors, c.errorsN.Load(), name)
		state, _ := c.getState()
		out.GaugeBool(descUp, state == stateUp, name, state)
		out.CounterInt(descFatal, c.fatalErrors.Load(), name)
		out.CounterInt(descRebuilds, c.rebuildsFatal.Load(), name, "fatal")
		out.CounterInt(descRebuilds, c.reloadSwaps.Load(), name, "reload")
		out.CounterInt(descHandedBack, c.rebuiltFailed.Load(), name)
		out.CounterInt(descStatsInvalid, c.statsInvalid.Load(), name)
		c.mu.Lock()
		p := c.producer
		c.mu.Unlock()
		if p != nil {
			collectStats(out, name, statsClientProducer, &p.stats)
		}
	}
	for _, s := range m.allSubscriptions() {
		collectStats(out, s.c.name, statsClientConsumer(s.name), &s.stats)
		st := s.Status()
		out.CounterInt(descReceived, st.Received, st.Connection, st.Group, st.Name)
		out.CounterInt(descHandled, st.Handled, st.Connection, st.Group, st.Name)
		out.CounterInt(descHErrors, st.HandlerErrors, st.Connection, st.Group, st.Name)
		out.CounterInt(descDiscarded, st.Discarded, st.Connection, st.Group, st.Name)
		for _, p := range st.Partitions {
			if p.Lag >= 0 {
				out.Gauge(descLag, float64(p.Lag), st.Connection, st.Group, p.Topic, strconv.Itoa(int(p.Partition)))
			}
		}
	}
	out.CounterInt(descEnsure, m.ensureOK.Load(), "ok")
	out.CounterInt(descEnsure, m.ensureFailed.Load(), "failed")
	out.CounterInt(descCBPanics, m.callbackPanics.Load())
}
