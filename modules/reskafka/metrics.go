package reskafka

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
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
)

var _ prometheus.Collector = (*Module)(nil)

// Describe implements prometheus.Collector.
func (m *Module) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descProduced, descDelivered, descFailed, descDropped, descQueued, descErrors,
		descUp, descReceived, descHandled, descHErrors, descDiscarded, descLag, descEnsure, descCBPanics} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *Module) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, name := range m.Connections() {
		c, err := m.conn(name)
		if err != nil {
			continue
		}
		counter(descProduced, c.produced.Load(), name)
		counter(descDelivered, c.delivered.Load(), name)
		counter(descFailed, c.failed.Load(), name)
		for i := range c.dropped {
			counter(descDropped, c.dropped[i].Load(), name, dropReasons[i])
		}
		gauge(descQueued, float64(c.queued()), name)
		counter(descErrors, c.errorsN.Load(), name)
		state, _ := c.getState()
		up := 0.0
		if state == stateUp {
			up = 1
		}
		gauge(descUp, up, name, state)
	}
	for _, s := range m.allSubscriptions() {
		st := s.Status()
		counter(descReceived, st.Received, st.Connection, st.Group, st.Name)
		counter(descHandled, st.Handled, st.Connection, st.Group, st.Name)
		counter(descHErrors, st.HandlerErrors, st.Connection, st.Group, st.Name)
		counter(descDiscarded, st.Discarded, st.Connection, st.Group, st.Name)
		for _, p := range st.Partitions {
			if p.Lag >= 0 {
				gauge(descLag, float64(p.Lag), st.Connection, st.Group, p.Topic, strconv.Itoa(int(p.Partition)))
			}
		}
	}
	counter(descEnsure, m.ensureOK.Load(), "ok")
	counter(descEnsure, m.ensureFailed.Load(), "failed")
	counter(descCBPanics, m.callbackPanics.Load())
}
