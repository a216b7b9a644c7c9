package pktengine

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/internal/metrics"
	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

var (
	descPackets   = prometheus.NewDesc("switchboard_pkt_packets_total", "Packets read from all sources.", nil, nil)
	descBytes     = prometheus.NewDesc("switchboard_pkt_bytes_total", "Bytes (wire length) of the packets read.", nil, nil)
	descQueries   = prometheus.NewDesc("switchboard_pkt_queries_total", "DNS queries decoded (QR=0, opcode QUERY).", nil, nil)
	descResponses = prometheus.NewDesc("switchboard_pkt_responses_total", "DNS responses decoded (counted only).", nil, nil)
	descErrors    = prometheus.NewDesc("switchboard_pkt_decode_errors_total", "Malformed DNS packets, by reason.", []string{"reason"}, nil)
	descIgnored   = prometheus.NewDesc("switchboard_pkt_ignored_total", "Packets that are not DNS on a DNS port, by reason.", []string{"reason"}, nil)
	descDecisions = prometheus.NewDesc("switchboard_pkt_decisions_total", "Policy decisions, by action.", []string{"action"}, nil)
	descCDRs      = prometheus.NewDesc("switchboard_pkt_cdrs_total", "CDRs posted to the cdr engine.", nil, nil)
	descSkipped   = prometheus.NewDesc("switchboard_pkt_cdrs_skipped_total", "Decisions that produced no CDR (action not in cdr_actions), by action.", []string{"action"}, nil)
	descDropped   = prometheus.NewDesc("switchboard_pkt_dropped_total", "Packets or queries lost, by where: kernel, interface (libpcap counters), shutdown.", []string{"where"}, nil)
	descReadErrs  = prometheus.NewDesc("switchboard_pkt_read_errors_total", "Failed packet reads.", nil, nil)
	descOversize  = prometheus.NewDesc("switchboard_pkt_oversize_total", "Packets longer than their capture file's snap length (read and decoded).", nil, nil)
	descTooLarge  = prometheus.NewDesc("switchboard_pkt_too_large_total", "Packets longer than 256 KiB in a capture file, skipped unread.", nil, nil)
	descOtherLink = prometheus.NewDesc("switchboard_pkt_link_type_not_decoded_total", "Packets of link types the engine does not decode, by link type (name and number).", []string{"link_type"}, nil)
	descQueue     = prometheus.NewDesc("switchboard_pkt_worker_queue_depth", "Queries handed to a worker and not yet decided.", []string{"worker"}, nil)
	descSources   = prometheus.NewDesc("switchboard_pkt_sources_running", "Packet sources being read.", nil, nil)

	descs = metrics.Descs{descPackets, descBytes, descQueries, descResponses, descErrors, descIgnored,
		descDecisions, descCDRs, descSkipped, descDropped, descReadErrs, descOversize, descTooLarge, descOtherLink,
		descQueue, descSources}
)

var _ prometheus.Collector = (*Module)(nil)

// Describe implements prometheus.Collector.
func (m *Module) Describe(ch chan<- *prometheus.Desc) { descs.Describe(ch) }

// Collect implements prometheus.Collector.
func (m *Module) Collect(ch chan<- prometheus.Metric) {
	e := m.Engine()
	if e == nil {
		return
	}
	st := e.Status()
	out := metrics.Sink(ch)
	t := st.Totals
	out.CounterUint(descPackets, t.Packets)
	out.CounterUint(descBytes, t.Bytes)
	out.CounterUint(descQueries, t.Queries)
	out.CounterUint(descResponses, t.Responses)
	for r, v := range t.Reasons {
		rr := dnsdecode.Reason(r)
		switch {
		case r == 0:
		case rr.IsMalformed():
			out.CounterUint(descErrors, v, rr.String())
		default:
			out.CounterUint(descIgnored, v, rr.String())
		}
	}
	for a := decision.Action(0); a < decision.NumActions; a++ {
		out.CounterUint(descDecisions, st.Decided[a], a.String())
		out.CounterUint(descSkipped, st.Skipped[a], a.String())
	}
	out.CounterUint(descCDRs, st.CDRs)
	out.CounterUint(descDropped, t.KernelDropped, "kernel")
	out.CounterUint(descDropped, t.IfDropped, "interface")
	out.CounterUint(descDropped, t.Dropped+st.Dropped, "shutdown")
	out.CounterUint(descReadErrs, t.ReadErrors)
	out.CounterUint(descOversize, t.Oversize)
	out.CounterUint(descTooLarge, t.TooLarge)
	for lt, n := range t.OtherLink {
		out.CounterUint(descOtherLink, n, dnsdecode.LinkTypeName(lt))
	}
	for _, w := range st.Workers {
		out.Gauge(descQueue, float64(w.Queued), strconv.Itoa(w.ID))
	}
	running := 0
	for _, src := range st.Sources {
		if src.State == "running" {
			running++
		}
	}
	out.Gauge(descSources, float64(running))
}
