// Package cdr is the CDR engine (the "cdr" module): any module posts
// Charging Data Records, and every registered backend gets its copy of each,
// batched per posting goroutine, as Asterisk's CDR core feeds cdr_csv,
// cdr_custom and the other cdr_* modules.
//
// # Posting
//
// A producing goroutine (a packet worker) owns a Poster and calls
// Poster.Post for each record; an occasional caller uses Engine.Post. Post
// copies what it needs before it returns. A module reaches the engine by
// listing cdr.Name in its Requires and calling core.Dep[*cdr.Engine].
//
// # Writing a backend
//
// A backend implements Backend and registers with Engine.Register, usually
// in its module's Start (and unregisters in Stop). The contract:
//
//   - Attach: Register calls it once with the backend's Registration before
//     the backend is visible to any Poster. Keep r.Stats() there: from then
//     on records may arrive.
//
//   - NewBatcher: one Batcher per Poster. The engine calls Add for every
//     posted record (copy or encode it; keep nothing it points to) and
//     Flush when the batch is full (Add returned true) or its oldest record
//     is FlushAfter old. One Batcher is never used by two goroutines at
//     once, and a Batcher is reused after Flush.
//
//   - Flush hands the batch to the backend's destination and accounts for
//     EVERY record of it in Stats, exactly once, as one of: AddEnqueued
//     (accepted, outcome to come) and later AddDelivered or AddFailed;
//     AddDelivered at once for a synchronous destination (a file);
//     AddDropped with a DropReason; or AddSpooled (kept in a spool to be
//     replayed, see below). The engine counted the records as flushed before
//     calling Flush; a record Flush does not account stays "in flight" for
//     ever, and "cdr show status" reports the invariant as VIOLATED:
//
//     posted + loaded = delivered + failed + dropped + spool_lost + queued
//
//   - Flush may block for the backend's back-pressure bound (a full queue),
//     no longer: the posting goroutine waits meanwhile.
//
//   - Registration.Suspend / Resume bracket a reload that swaps the
//     destination; Unregister hands over every batch still held for the
//     backend and returns once no Flush runs or will start.
//
//   - Optional: StatusWriter adds lines to "cdr show status".
//
// A backend that must not lose records when its destination is down keeps
// them in package spool (modules/cdr/spool), whose doc details the
// accounting: AddLoaded for the records spool.Open finds at start,
// AddSpooled when a record is appended there (or, read back but not
// settled at shutdown, stays there), AddReplayed when one is read back and
// handed to the destination (from then on accounted as any record handed
// over: AddEnqueued and AddDelivered or AddFailed, AddDropped, or
// AddSpooled again), AddSpoolLost for records that could not be read back.
//
// Example_backend below is a complete backend.
package cdr
