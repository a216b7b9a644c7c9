package pktengine

import (
	"sort"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// Counters are packet counters (of a source, or totals).
type Counters struct {
	Packets, Bytes, Queries, Responses uint64
	// Reasons counts ignored and malformed packets by dnsdecode.Reason.
	Reasons [dnsdecode.NumReasons]uint64
	// ReadErrors counts failed reads.
	ReadErrors uint64
	// Dropped counts queries dropped because the engine stopped before
	// their worker took them.
	Dropped uint64
	// KernelDropped and IfDropped are libpcap's drop counters (live only).
	KernelDropped, IfDropped uint64
	// Oversize counts packets longer than their capture file's snap length
	// (read and decoded); TooLarge those longer than pcapfile.MaxPacket
	// (skipped unread).
	Oversize, TooLarge uint64
	// OtherLink counts packets of link types the engine does not decode
	// (pcapng interfaces), by link type.
	OtherLink map[layers.LinkType]uint64
}

// Malformed sums the malformed reasons.
func (c *Counters) Malformed() uint64 {
	var n uint64
	for r, v := range c.Reasons {
		if dnsdecode.Reason(r).IsMalformed() {
			n += v
		}
	}
	return n
}

// Ignored sums the ignored reasons.
func (c *Counters) Ignored() uint64 {
	var n uint64
	for r, v := range c.Reasons {
		if r != 0 && !dnsdecode.Reason(r).IsMalformed() {
			n += v
		}
	}
	return n
}

func (c *Counters) add(rc *readerCounters) {
	c.Packets += rc.packets.Load()
	c.Bytes += rc.bytes.Load()
	c.Queries += rc.queries.Load()
	c.Responses += rc.responses.Load()
	for i := range c.Reasons {
		c.Reasons[i] += rc.reasons[i].Load()
	}
	c.ReadErrors += rc.readErrors.Load()
	c.Dropped += rc.dropped.Load()
	c.KernelDropped += rc.kernelDropped.Load()
	c.IfDropped += rc.ifDropped.Load()
	c.Oversize += rc.oversize.Load()
	c.TooLarge += rc.tooLarge.Load()
	rc.linkMu.Lock()
	if len(rc.otherLink) > 0 {
		m := make(map[layers.LinkType]uint64, len(c.OtherLink)+len(rc.otherLink))
		for lt, n := range c.OtherLink {
			m[lt] = n
		}
		for lt, n := range rc.otherLink {
			m[lt] += n
		}
		c.OtherLink = m
	}
	rc.linkMu.Unlock()
}

// SourceStatus describes a running or finished source.
type SourceStatus struct {
	ID      int
	Name    string
	State   string // running, finished, stopped, failed
	Speed   float64
	Started time.Time
	Ended   time.Time // zero while running
	Err     string
	Counters
	// PPS is the source's average packets per second since it started.
	PPS float64
}

// WorkerStatus describes one worker.
type WorkerStatus struct {
	ID int
	// Queued is the number of queries handed to the worker and not yet
	// decided.
	Queued int64
	// Batches is the number of batches the worker has processed.
	Batches uint64
	// Decided counts decisions, indexed by decision.Action.
	Decided [decision.NumActions]uint64
	// CDRs is the number of CDRs posted.
	CDRs uint64
	// CDRSkipped counts decisions that produced no CDR (action not in
	// cdr_actions, or no CDR engine), indexed by decision.Action.
	CDRSkipped [decision.NumActions]uint64
	// Dropped counts queries dropped at shutdown.
	Dropped uint64
}

// Status is a snapshot of the engine.
type Status struct {
	Sources  []SourceStatus // running first, then the last finished ones
	Workers  []WorkerStatus
	Totals   Counters
	Decided  [decision.NumActions]uint64
	CDRs     uint64
	Skipped  [decision.NumActions]uint64
	Dropped  uint64 // queries dropped by workers at shutdown
	PPS      float64
	CDRSet   decision.ActionSet
	Uptime   time.Duration
	Prefixes int
}

func (e *Engine) sourceStatus(rs *runningSource) SourceStatus {
	st := SourceStatus{ID: rs.id, Name: rs.name, Speed: rs.speed, Started: rs.started, State: "running"}
	st.Counters.add(&rs.rc)
	end := time.Now()
	if t := rs.ended.Load(); t != nil {
		st.Ended, end = *t, *t
		st.State = "finished"
		if rs.stopped.Load() {
			st.State = "stopped"
		}
		if m := rs.err.Load(); m != nil {
			st.State, st.Err = "failed", *m
		}
	}
	if d := end.Sub(rs.started).Seconds(); d > 0 {
		st.PPS = float64(st.Packets) / d
	}
	return st
}

// Status returns a snapshot of counters and state.
func (e *Engine) Status() Status {
	var s Status
	e.mu.Lock()
	running := make([]*runningSource, 0, len(e.sources))
	for _, rs := range e.sources {
		running = append(running, rs)
	}
	sort.Slice(running, func(i, j int) bool { return running[i].id < running[j].id })
	for _, rs := range running {
		s.Sources = append(s.Sources, e.sourceStatus(rs))
		s.Totals.add(&rs.rc)
	}
	s.Sources = append(s.Sources, e.finished...)
	s.Totals.add(&e.retired)
	e.mu.Unlock()
	for _, w := range e.workers {
		c := w.path.Counters()
		ws := WorkerStatus{ID: w.id, Queued: w.queued.Load(), Batches: w.wc.batches.Load(), CDRs: c.CDRs, Dropped: w.wc.dropped.Load(),
			Decided: c.Decided, CDRSkipped: c.CDRSkipped}
		for a := range ws.Decided {
			s.Decided[a] += ws.Decided[a]
			s.Skipped[a] += ws.CDRSkipped[a]
		}
		s.CDRs += ws.CDRs
		s.Dropped += ws.Dropped
		s.Workers = append(s.Workers, ws)
	}
	s.PPS = e.rate.Sample(s.Totals.Packets)
	s.CDRSet = e.CDRActions()
	s.Uptime = time.Since(e.rate.Start)
	s.Prefixes = e.Subscribers().Load().Prefixes()
	return s
}
