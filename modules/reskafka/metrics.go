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

	descs = metrics.Descs{descProduced, descDelivered, descFailed, descDropped, descQueued, descErrors,
		descUp, descReceived, descHandled, descHErrors, descDiscarded, descLag, descEnsure, descCBPanics}
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
	}
	for _, s := range m.allSubscriptions() {
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
