package policysync

import (
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/internal/metrics"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
)

var (
	descCommits      = prometheus.NewDesc("switchboard_policy_sync_commits_total", "Offsets committed (each just past a SYNC_COMPLETE).", nil, nil)
	descCommitErrors = prometheus.NewDesc("switchboard_policy_sync_commit_errors_total", "Offset commits that failed.", nil, nil)
	descReplayed     = prometheus.NewDesc("switchboard_policy_sync_replayed_total", "Messages skipped because the store already applied them (consumer restarted from the last commit).", nil, nil)
	descConsumed     = prometheus.NewDesc("switchboard_policy_sync_messages_total", "Feed messages applied, by type.", []string{"type"}, nil)
	descRejected     = prometheus.NewDesc("switchboard_policy_sync_rejected_total", "Feed messages skipped, by reason.", []string{"reason"}, nil)
	descOpen         = prometheus.NewDesc("switchboard_policy_sync_open_syncs", "Syncs begun and not yet completed.", nil, nil)
	descApplied      = prometheus.NewDesc("switchboard_policy_sync_applied_offset", "Highest offset applied, per partition.", []string{"topic", "partition"}, nil)

	descs = metrics.Descs{descCommits, descCommitErrors, descReplayed, descConsumed, descRejected, descOpen, descApplied}
)

// Describe implements prometheus.Collector.
func (m *Module) Describe(ch chan<- *prometheus.Desc) { descs.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Module) Collect(ch chan<- prometheus.Metric) {
	f := m.Feeder()
	if f == nil {
		return
	}
	st := f.Stats()
	out := metrics.Sink(ch)
	out.CounterInt(descCommits, m.commits.Load())
	out.CounterInt(descCommitErrors, m.commitErrors.Load())
	out.CounterUint(descReplayed, st.Replayed)
	for t, n := range st.ByType {
		out.CounterUint(descConsumed, n, t.String())
	}
	// Every reason from the start (at 0), so a dashboard or an alert on
	// a reason has a series before the first reject.
	for _, r := range respolicy.RejectReasons {
		out.CounterUint(descRejected, st.Rejected[r], r)
	}
	for r, n := range st.Rejected {
		if !slices.Contains(respolicy.RejectReasons, r) {
			out.CounterUint(descRejected, n, r)
		}
	}
	out.Gauge(descOpen, float64(len(st.Open)))
	for tp, off := range st.Applied {
		out.Gauge(descApplied, float64(off), tp.Topic, itoa(tp.Partition))
	}
}

func itoa(p int32) string { return strconv.Itoa(int(p)) }
