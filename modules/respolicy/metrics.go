package respolicy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/internal/metrics"
)

var (
	descGeneration = prometheus.NewDesc("switchboard_policy_generation", "Generation of the active policy snapshot.", nil, nil)
	descEntries    = prometheus.NewDesc("switchboard_policy_entries", "Entries of a group's list.", []string{"group", "list"}, nil)
	descMalicious  = prometheus.NewDesc("switchboard_policy_malicious_entries", "Entries of the global malicious table.", nil, nil)
	descTableBytes = prometheus.NewDesc("switchboard_policy_table_bytes", "Memory of the hash tables (slots and names) of a group or the malicious table.", []string{"table"}, nil)
	descSyncs      = prometheus.NewDesc("switchboard_policy_syncs_total", "Completed syncs (SYNC_COMPLETE) of a group.", []string{"group"}, nil)
	descSyncOpen   = prometheus.NewDesc("switchboard_policy_sync_open", "1 while a group's sync is open (BEGIN_SYNC without SYNC_COMPLETE yet).", []string{"group"}, nil)
	descMessages   = prometheus.NewDesc("switchboard_policy_messages_total", "Policy messages applied, by source and type.", []string{"source", "type"}, nil)
	descRejected   = prometheus.NewDesc("switchboard_policy_rejected_total", "Policy messages skipped, by source and reason.", []string{"source", "reason"}, nil)
	descSwap       = prometheus.NewDesc("switchboard_policy_last_swap_seconds", "Time from the last SYNC_COMPLETE to its snapshot being active.", nil, nil)
	descPublished  = prometheus.NewDesc("switchboard_policy_published_timestamp_seconds", "When the active snapshot was published (Unix time): time() minus it is the policy's age.", nil, nil)
	descHSCompiled = prometheus.NewDesc("switchboard_policy_hyperscan_compiled_total", "Hyperscan databases compiled.", nil, nil)
	descHSFreed    = prometheus.NewDesc("switchboard_policy_hyperscan_freed_total", "Hyperscan databases freed after every reader left them.", nil, nil)
	descHSFailed   = prometheus.NewDesc("switchboard_policy_hyperscan_failed_total", "Hyperscan compiles that failed.", nil, nil)

	descs = metrics.Descs{descGeneration, descEntries, descMalicious, descTableBytes, descSyncs, descSyncOpen,
		descMessages, descRejected, descSwap, descPublished, descHSCompiled, descHSFailed, descHSFreed}
)

var _ prometheus.Collector = (*Module)(nil)

// Describe implements prometheus.Collector.
func (m *Module) Describe(ch chan<- *prometheus.Desc) { descs.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Module) Collect(ch chan<- prometheus.Metric) {
	s := m.getStore()
	if s == nil {
		return
	}
	out := metrics.Sink(ch)
	snap := s.Snapshot()
	out.Gauge(descGeneration, float64(snap.Generation))
	out.Gauge(descPublished, float64(snap.Published.UnixNano())/1e9)
	for _, g := range snap.groups {
		out.Gauge(descEntries, float64(g.Whitelist), g.Name, "whitelist")
		out.Gauge(descEntries, float64(g.Blacklist), g.Name, "blacklist")
		out.Gauge(descTableBytes, float64(g.tables.base.bytes()+g.tables.delta.bytes()), "group:"+g.Name)
	}
	out.Gauge(descMalicious, float64(snap.MaliciousSize()))
	out.Gauge(descTableBytes, float64(snap.malicious.base.bytes()+snap.malicious.delta.bytes()), "malicious")
	for _, st := range s.SyncStates() {
		out.CounterUint(descSyncs, st.Syncs, st.Group)
		out.GaugeBool(descSyncOpen, st.Open, st.Group)
	}
	c := s.Counters()
	for src, byType := range c.Messages {
		for t, n := range byType {
			out.CounterUint(descMessages, n, src, t.String())
		}
	}
	for src, byReason := range c.Rejected {
		for r, n := range byReason {
			out.CounterUint(descRejected, n, src, r)
		}
	}
	out.Gauge(descSwap, s.LastSwap().Seconds())
	out.CounterInt(descHSCompiled, hsStats.compiled.Load())
	out.CounterInt(descHSFreed, hsStats.freed.Load())
	out.CounterInt(descHSFailed, hsStats.failed.Load())
}
