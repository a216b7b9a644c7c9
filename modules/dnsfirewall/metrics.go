package dnsfirewall

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/internal/metrics"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

var (
	descQueries   = prometheus.NewDesc("switchboard_dns_queries_total", "DNS messages received by the firewall.", nil, nil)
	descOutcomes  = prometheus.NewDesc("switchboard_dns_outcomes_total", "What became of the messages received: answers by kind, drops by reason.", []string{"outcome"}, nil)
	descFormErr   = prometheus.NewDesc("switchboard_dns_formerr_total", "Queries answered FORMERR, by reason.", []string{"reason"}, nil)
	descReadErrs  = prometheus.NewDesc("switchboard_dns_read_errors_total", "Failed socket reads and accepts.", nil, nil)
	descDecisions = prometheus.NewDesc("switchboard_dns_decisions_total", "Policy decisions, by action.", []string{"action"}, nil)
	descCDRs      = prometheus.NewDesc("switchboard_dns_cdrs_total", "CDRs posted to the cdr engine.", nil, nil)
	descWaiting   = prometheus.NewDesc("switchboard_dns_waiting", "Forwarded queries waiting for an upstream's answer.", nil, nil)
	descUpUp      = prometheus.NewDesc("switchboard_dns_upstream_up", "1 when the upstream is in service.", []string{"upstream"}, nil)
	descUpSent    = prometheus.NewDesc("switchboard_dns_upstream_queries_total", "Queries sent to the upstream.", []string{"upstream"}, nil)
	descUpAns     = prometheus.NewDesc("switchboard_dns_upstream_answers_total", "Answers from the upstream.", []string{"upstream"}, nil)
	descUpTO      = prometheus.NewDesc("switchboard_dns_upstream_timeouts_total", "Queries the upstream did not answer in time.", []string{"upstream"}, nil)
	descUpErr     = prometheus.NewDesc("switchboard_dns_upstream_errors_total", "Failed sends and TCP exchanges with the upstream.", []string{"upstream"}, nil)
	descUpLat     = prometheus.NewDesc("switchboard_dns_upstream_latency_seconds", "Moving average of the upstream's answer time.", []string{"upstream"}, nil)

	descs = metrics.Descs{descQueries, descOutcomes, descFormErr, descReadErrs, descDecisions, descCDRs, descWaiting,
		descUpUp, descUpSent, descUpAns, descUpTO, descUpErr, descUpLat}
)

var _ prometheus.Collector = (*Module)(nil)

// Describe implements prometheus.Collector.
func (m *Module) Describe(ch chan<- *prometheus.Desc) { descs.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Module) Collect(ch chan<- prometheus.Metric) {
	fw := m.Firewall()
	if fw == nil {
		return
	}
	st := fw.Status()
	out := metrics.Sink(ch)
	out.CounterUint(descQueries, st.Queries)
	for k := kind(0); k < numKinds; k++ {
		out.CounterUint(descOutcomes, st.Kinds[k], kindNames[k])
	}
	for r, n := range st.FormErrs {
		out.CounterUint(descFormErr, n, r)
	}
	out.CounterUint(descReadErrs, st.ReadErrors)
	for a := decision.Action(0); a < decision.NumActions; a++ {
		out.CounterUint(descDecisions, st.Decisions.Decided[a], a.String())
	}
	out.CounterUint(descCDRs, st.Decisions.CDRs)
	out.Gauge(descWaiting, float64(st.Waiting))
	for _, u := range st.Upstreams {
		up := 0.0
		if u.Up {
			up = 1
		}
		out.Gauge(descUpUp, up, u.Addr)
		out.CounterUint(descUpSent, u.Sent, u.Addr)
		out.CounterUint(descUpAns, u.Answered, u.Addr)
		out.CounterUint(descUpTO, u.Timeouts, u.Addr)
		out.CounterUint(descUpErr, u.Errors, u.Addr)
		out.Gauge(descUpLat, u.Latency.Seconds(), u.Addr)
	}
}
