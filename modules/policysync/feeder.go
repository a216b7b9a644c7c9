package policysync

import (
	"fmt"
	"sort"
	"sync"

	"github.com/switchboard-dp/switchboard/modules/respolicy"
)

// Applier is what the feeder applies messages to: res_policy's module (or a
// bare respolicy.Store in tests).
type Applier interface {
	Apply(source string, msg respolicy.Message) error
}

// rejectCounter is implemented by appliers that count messages rejected
// before they reach them (parse failures).
type rejectCounter interface {
	CountReject(source, reason string)
}

// TP is a topic partition.
type TP struct {
	Topic     string
	Partition int32
}

func (tp TP) String() string { return fmt.Sprintf("%s[%d]", tp.Topic, tp.Partition) }

// CommitPoint is an offset to commit: Offset is the offset of a SYNC_COMPLETE
// message; the consumer commits Offset+1 (just past it).
type CommitPoint struct {
	TP     TP
	Offset int64
}

// Feeder is policy_sync's state machine, fed one raw message at a time (from
// Kafka, or from tests) and independent of Kafka:
//
//   - it parses the message and applies it to res_policy (source "kafka");
//     rejections are counted there per reason, and skipped;
//   - it skips messages at or below the highest offset already applied on
//     their partition (a consumer restarted inside the same process
//     re-reads from the last commit; the store already holds their effect);
//   - it tells the consumer when to commit: only at a SYNC_COMPLETE, and only
//     on a partition to which no still-open sync has contributed a message,
//     so a committed offset always points just past a SYNC_COMPLETE and
//     never past the BEGIN_SYNC (or an ADD_DOMAIN) of a sync that has not
//     completed. A commit held back that way is made when the last open sync
//     of the partition completes.
type Feeder struct {
	apply  Applier
	source string

	mu       sync.Mutex
	applied  map[TP]int64                     // highest offset applied per partition
	open     map[string]map[TP]int64          // group -> partitions its open sync used -> first offset
	held     map[TP]int64                     // SYNC_COMPLETE offset waiting to be committed
	byType   map[respolicy.MessageType]uint64 // accepted messages by type
	rejected map[string]uint64                // by reason
	replayed uint64                           // skipped as already applied
	lastErr  map[string]string                // reason -> last error text
	onReject func(reason string, err error)
}

// NewFeeder returns a feeder applying to a; source labels res_policy's
// counters. onReject (optional) is called for every message that does not
// parse (for rate-limited logging; res_policy logs the ones it rejects
// itself).
func NewFeeder(a Applier, source string, onReject func(reason string, err error)) *Feeder {
	return &Feeder{apply: a, source: source, applied: map[TP]int64{}, open: map[string]map[TP]int64{},
		held: map[TP]int64{}, byType: map[respolicy.MessageType]uint64{}, rejected: map[string]uint64{}, lastErr: map[string]string{},
		onReject: onReject}
}

// SetOnReject replaces the parse-rejection callback.
func (f *Feeder) SetOnReject(fn func(reason string, err error)) {
	f.mu.Lock()
	f.onReject = fn
	f.mu.Unlock()
}

// Handle processes the message at offset of tp and returns the offsets to
// commit now (usually none; at most a few at a SYNC_COMPLETE).
func (f *Feeder) Handle(tp TP, offset int64, value []byte) []CommitPoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	if last, ok := f.applied[tp]; ok && offset <= last {
		f.replayed++
		return nil
	}
	f.applied[tp] = offset
	msg, err := respolicy.ParseMessage(value)
	if err != nil {
		if rc, ok := f.apply.(rejectCounter); ok {
			rc.CountReject(f.source, respolicy.RejectReason(err))
		}
		f.rejectLocked(err)
		if f.onReject != nil {
			f.onReject(respolicy.RejectReason(err), err)
		}
		return nil
	}
	if err := f.apply.Apply(f.source, msg); err != nil {
		f.rejectLocked(err)
		return nil
	}
	f.byType[msg.Type]++
	switch msg.Type {
	case respolicy.TypeBeginSync:
		f.open[msg.Group] = map[TP]int64{tp: offset}
	case respolicy.TypeAddDomain, respolicy.TypeRemoveDomain:
		if parts, ok := f.open[msg.Group]; ok {
			if _, seen := parts[tp]; !seen {
				parts[tp] = offset
			}
		}
	case respolicy.TypeSyncComplete:
		closed := f.open[msg.Group]
		delete(f.open, msg.Group)
		f.held[tp] = offset
		var out []CommitPoint
		// This partition and every partition the closed sync used may be
		// free now.
		cands := map[TP]struct{}{tp: {}}
		for p := range closed {
			cands[p] = struct{}{}
		}
		for p := range cands {
			off, ok := f.held[p]
			if !ok || f.blockedLocked(p) {
				continue
			}
			delete(f.held, p)
			out = append(out, CommitPoint{TP: p, Offset: off})
		}
		sort.Slice(out, func(i, j int) bool {
			if out[i].TP.Topic != out[j].TP.Topic {
				return out[i].TP.Topic < out[j].TP.Topic
			}
			return out[i].TP.Partition < out[j].TP.Partition
		})
		return out
	}
	return nil
}

// blockedLocked reports whether an open sync has used partition p.
func (f *Feeder) blockedLocked(p TP) bool {
	for _, parts := range f.open {
		if _, ok := parts[p]; ok {
			return true
		}
	}
	return false
}

func (f *Feeder) rejectLocked(err error) {
	reason := respolicy.RejectReason(err)
	if reason == "" {
		reason = "apply_failed"
	}
	f.rejected[reason]++
	f.lastErr[reason] = err.Error()
}

// FeederStats is a copy of the feeder's counters and state.
type FeederStats struct {
	ByType   map[respolicy.MessageType]uint64
	Rejected map[string]uint64
	LastErr  map[string]string
	Replayed uint64
	Applied  map[TP]int64    // highest offset applied per partition
	Open     map[string][]TP // open syncs and the partitions they used
	Held     map[TP]int64    // commits waiting for open syncs
}

// Stats returns the feeder's counters and state.
func (f *Feeder) Stats() FeederStats {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := FeederStats{ByType: map[respolicy.MessageType]uint64{}, Rejected: map[string]uint64{}, LastErr: map[string]string{},
		Replayed: f.replayed, Applied: map[TP]int64{}, Open: map[string][]TP{}, Held: map[TP]int64{}}
	for k, v := range f.byType {
		st.ByType[k] = v
	}
	for k, v := range f.rejected {
		st.Rejected[k] = v
	}
	for k, v := range f.lastErr {
		st.LastErr[k] = v
	}
	for k, v := range f.applied {
		st.Applied[k] = v
	}
	for g, parts := range f.open {
		for p := range parts {
			st.Open[g] = append(st.Open[g], p)
		}
	}
	for k, v := range f.held {
		st.Held[k] = v
	}
	return st
}
