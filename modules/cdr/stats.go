package cdr

import (
	"sync"
	"sync/atomic"
	"time"
)

// DropReason says why records were dropped.
type DropReason uint8

// Drop reasons. Every drop is counted under one of them.
const (
	DropQueueFull    DropReason = iota // producer queue full (drop mode, after the retry)
	DropBlockTimeout                   // producer queue still full after the block bound (block mode)
	DropSpoolError                     // spool mode, but the spool could not be written (disk full, I/O error, size cap)
	DropProduceError                   // the producer refused the record for another reason (too large, ...)
	DropShutdown                       // still undelivered at shutdown and not spooled
	DropUnregistered                   // handed over after the backend unregistered
	DropWriteError                     // the destination could not be written and the backend drops rather than spools (cdr_file on_error = drop)
	NumDropReasons
)

var dropReasonNames = [NumDropReasons]string{"queue_full", "block_timeout", "spool_error", "produce_error", "shutdown", "unregistered", "write_error"}

func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropReasonNames[r]
	}
	return "unknown"
}

// Stats holds one backend's counters. The engine counts what it sees
// (posted, flushed); the backend counts the rest through the Add methods.
//
// Every counter is cumulative. The state counts of a Snapshot are derived:
//
//	batched  = posted - flushed
//	inflight = flushed + replayed - delivered - failed - dropped - spooled
//	spool    = loaded + spooled - replayed - spool_lost
//
// so that, in every snapshot,
//
//	posted + loaded = delivered + failed + dropped + spool_lost + queued
//	queued          = batched + inflight + spool
//
// Snapshots are consistent: every Add takes a shared lock for the length of
// one atomic add, and a snapshot takes it exclusively while it reads, so no
// record is seen in two states or in none. (posted is read last under the
// lock and needs no lock: records only leave "batched" under it.)
type Stats struct {
	mu sync.RWMutex

	flushed   atomic.Uint64 // batched -> handed over to the backend
	replayed  atomic.Uint64 // spool -> producer
	loaded    atomic.Uint64 // found in the spool at start
	delivered atomic.Uint64
	failed    atomic.Uint64 // delivery failed, record lost (not spooled)
	dropped   [NumDropReasons]atomic.Uint64
	spooled   atomic.Uint64 // written to the spool (at hand-over, after a failed delivery, at shutdown)
	spoolLost atomic.Uint64 // records that were in the spool and could not be read back
	enqueued  atomic.Uint64 // accepted by the producer (informational; includes replays)

	waitMax   atomic.Int64 // longest Post -> hand-over wait seen, ns
	waitLate  atomic.Uint64
	lateAfter atomic.Int64 // waits longer than this are counted late, ns
}

func (s *Stats) add(c *atomic.Uint64, n uint64) {
	s.mu.RLock()
	c.Add(n)
	s.mu.RUnlock()
}

// AddEnqueued counts n records accepted by the producer.
func (s *Stats) AddEnqueued(n uint64) { s.enqueued.Add(n) }

// AddDelivered counts n records whose delivery succeeded.
func (s *Stats) AddDelivered(n uint64) { s.add(&s.delivered, n) }

// AddFailed counts n records whose delivery failed for good (not spooled).
func (s *Stats) AddFailed(n uint64) { s.add(&s.failed, n) }

// AddDropped counts n records dropped for reason.
func (s *Stats) AddDropped(reason DropReason, n uint64) {
	if reason >= NumDropReasons {
		reason = DropProduceError
	}
	s.add(&s.dropped[reason], n)
}

// AddSpooled counts n records written to the spool, whether at hand-over,
// after a failed delivery or at shutdown.
func (s *Stats) AddSpooled(n uint64) { s.add(&s.spooled, n) }

// AddReplayed counts n records read back from the spool and handed to the
// destination (counted before the destination sees them).
func (s *Stats) AddReplayed(n uint64) { s.add(&s.replayed, n) }

// AddLoaded counts n intact records found in the spool at start (left by an
// earlier run).
func (s *Stats) AddLoaded(n uint64) { s.add(&s.loaded, n) }

// AddSpoolLost counts n spooled records that could not be read back.
func (s *Stats) AddSpoolLost(n uint64) { s.add(&s.spoolLost, n) }

func (s *Stats) addFlushed(n uint64) { s.add(&s.flushed, n) }

// observeWait records a Post -> hand-over wait.
func (s *Stats) observeWait(d int64) {
	for {
		m := s.waitMax.Load()
		if d <= m || s.waitMax.CompareAndSwap(m, d) {
			break
		}
	}
	if la := s.lateAfter.Load(); la > 0 && d > la {
		s.waitLate.Add(1)
	}
}

// Snapshot is a consistent copy of one backend's counters.
type Snapshot struct {
	// Backend is the backend's name; State is "active", "suspended" or
	// "unregistered".
	Backend, State string
	// Cumulative counters.
	Posted, Flushed, Enqueued, Delivered, Failed, Dropped, Spooled, Replayed, Loaded, SpoolLost uint64
	// DroppedBy splits Dropped by reason.
	DroppedBy [NumDropReasons]uint64
	// State counts: records in batches, handed over but not yet reported
	// (in the producer), and in the spool. Queued is their sum.
	Batched, Inflight, SpoolPending, Queued uint64
	// OldestBatched is the age of the oldest record in a batch (0 if none).
	OldestBatched time.Duration
	// WaitMax is the longest time a record waited in a batch before being
	// handed over; WaitLate counts hand-overs whose oldest record waited
	// longer than the flush age plus a margin.
	WaitMax  time.Duration
	WaitLate uint64
}

// Balanced reports whether the snapshot satisfies
// posted + loaded = delivered + failed + dropped + spool_lost + queued.
func (s *Snapshot) Balanced() bool {
	return s.Posted+s.Loaded == s.Delivered+s.Failed+s.Dropped+s.SpoolLost+s.Queued
}

// fill reads the counters; the caller holds s.mu exclusively and adds
// posted afterwards via finish.
func (s *Stats) fill(out *Snapshot) {
	out.Flushed = s.flushed.Load()
	out.Replayed = s.replayed.Load()
	out.Loaded = s.loaded.Load()
	out.Delivered = s.delivered.Load()
	out.Failed = s.failed.Load()
	out.Dropped = 0
	for i := range s.dropped {
		out.DroppedBy[i] = s.dropped[i].Load()
		out.Dropped += out.DroppedBy[i]
	}
	out.Spooled = s.spooled.Load()
	out.SpoolLost = s.spoolLost.Load()
	out.Enqueued = s.enqueued.Load()
	out.WaitMax = time.Duration(s.waitMax.Load())
	out.WaitLate = s.waitLate.Load()
}

func (out *Snapshot) finish() {
	out.Batched = out.Posted - out.Flushed
	out.Inflight = out.Flushed + out.Replayed - out.Delivered - out.Failed - out.Dropped - out.Spooled
	out.SpoolPending = out.Loaded + out.Spooled - out.Replayed - out.SpoolLost
	out.Queued = out.Batched + out.Inflight + out.SpoolPending
}
