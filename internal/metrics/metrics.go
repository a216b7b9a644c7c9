// Package metrics holds the helpers the modules' prometheus.Collector
// implementations share: a fixed list of descriptions that describes itself,
// and a sink that turns values into constant metrics on a Collect channel.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Descs is the fixed set of metric descriptions of a collector.
type Descs []*prometheus.Desc

// Describe sends every description of ds to ch, in order; a collector's
// Describe method can be just this call.
func (ds Descs) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range ds {
		ch <- d
	}
}

// Sink is the channel a collector's Collect method receives. Its methods
// send one constant metric of description d, with the label values in the
// order d declares them; like prometheus.MustNewConstMetric they panic when
// the labels do not match d.
type Sink chan<- prometheus.Metric

// Gauge sends a gauge of value v.
func (s Sink) Gauge(d *prometheus.Desc, v float64, labels ...string) {
	s <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// GaugeBool sends a gauge that is 1 when v is true and 0 otherwise.
func (s Sink) GaugeBool(d *prometheus.Desc, v bool, labels ...string) {
	f := 0.0
	if v {
		f = 1
	}
	s.Gauge(d, f, labels...)
}

// Counter sends a counter of value v.
func (s Sink) Counter(d *prometheus.Desc, v float64, labels ...string) {
	s <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// CounterInt sends a counter of the signed count v.
func (s Sink) CounterInt(d *prometheus.Desc, v int64, labels ...string) {
	s.Counter(d, float64(v), labels...)
}

// CounterUint sends a counter of the unsigned count v.
func (s Sink) CounterUint(d *prometheus.Desc, v uint64, labels ...string) {
	s.Counter(d, float64(v), labels...)
}
