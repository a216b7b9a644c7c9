// Package spool is a crash-safe, on-disk queue of key/value records for CDR
// backends: a backend keeps there the records its destination could not
// take (a full queue, a failed delivery, a destination that cannot be
// written, a shutdown) and replays them, oldest first, once it can. It knows
// nothing of the destination; cdr_kafka (modules/cdrkafka) uses it for
// Kafka, and any backend that must not lose records can use it the same way.
//
// # Layout
//
// A spool is a directory of segment files spool-<20-digit seq>.log, written
// in order; the newest is the active one (appended to), older ones are
// sealed and replayed oldest first. A segment is removed once every record
// in it has been read back and settled (see Spool.Settle). Each segment may
// have a spool-<seq>.ack file beside it (see Replay progress). Open removes
// *.tmp files (an interrupted rewrite) and leaves other files and
// subdirectories alone (cdr_kafka keeps its journal in one).
//
// Segment format: the 8-byte magic "SBCDRSP1", then frames:
//
//	u32 LE payload length | u32 LE CRC-32C of payload | payload
//	payload = u16 LE key length | key | value
//
// # Crash safety
//
// When Append returns nil the records are in the file: the write(2) holding
// their frames returned, so a process crash (kill -9) loses nothing
// appended. fsync: the active segment is fsynced FsyncInterval (100 ms by
// default) after its first unsynced write (an idle spool never wakes), and
// at once after FsyncRecords
// (1000) unsynced records, at seal and at Close: an OS crash or power loss
// can lose at most the records appended in the last FsyncInterval or the
// last FsyncRecords records, whichever is fewer.
//
// # Corruption
//
// Open reads every segment through. A frame with an impossible length, a
// short read or a CRC mismatch starts a corrupt region; the reader
// resynchronises on the next offset where a complete frame with a matching
// CRC starts. Intact records before and after are kept; the corrupt regions
// are returned (to log) and counted in Status, and the segment is rewritten
// without them. A segment that becomes unreadable after Open loses the rest
// of its records: Next reports how many.
//
// # Replay progress
//
// Each record read back by Next and settled as delivered (Spool.Settle) or
// acknowledged (Spool.Ack) has its index appended to spool-<seq>.ack (u32
// index | u32 ^index, buffered, written out with the fsync tick and at
// Close). Open skips acknowledged records, so a crash during replay
// duplicates at most the records acknowledged in the last FsyncInterval.
// Records read back but not yet settled when the spool closes stay in their
// segment and are found again by the next Open.
//
// # Journal
//
// A spool opened with Options.Journal is a write-ahead journal: a backend
// appends every batch to it before handing the batch to its destination,
// and acknowledges each record (Spool.AckJournal) once its outcome is final
// (delivered, or dropped and counted) or once it is safe in the backend's
// main spool. Journal records are not replayed while the process runs, and
// a segment is removed once it is sealed and every record in it is
// acknowledged. At the next start the backend opens the journal (Open
// returns how many records are still unacknowledged: what a kill -9 or a
// crash left), reads them with Next, appends them to its main spool, calls
// Sync on it and then Settle(pos, true) on the journal for each, so they
// are replayed before new records; a crash during that move may replay some
// of them twice, never lose them. cdr_kafka keeps its journal in
// <spool_dir>/journal with the main spool's fsync policy.
//
// # Use from a backend
//
// The records in a spool are part of the backend's account in cdr.Stats
// (the "spool" term of "cdr show status"); a backend counts them so that
// posted + loaded = delivered + failed + dropped + spool_lost + queued
// holds throughout:
//
//   - At start, Open returns the intact, unacknowledged records an earlier
//     run left: AddLoaded for them, once the backend is registered.
//   - Append: AddSpooled for the records when it returns nil. When it fails
//     (ErrFull, an I/O error) the records are not in the spool: account for
//     them otherwise (AddDropped with cdr.DropSpoolError).
//   - Next: AddReplayed for every record it returns, before handing it to
//     the destination; from then on the record is accounted as any other
//     record handed over (AddEnqueued and later AddDelivered or AddFailed,
//     AddDropped, or AddSpooled again when it is appended back). Then
//     Settle(pos, true) once it is delivered, Settle(pos, false) otherwise
//     (it was appended again, or dropped and counted).
//   - Next's lost count: AddSpoolLost (records that could not be read back).
//   - A record read back but neither delivered nor settled when the backend
//     stops stays in its segment, unacknowledged, and the next Open finds it
//     again: AddSpooled for it.
//   - Ack(pos): a record appended (AddSpooled) and then delivered by other
//     means, e.g. cdr_kafka's records spooled at shutdown while still in the
//     producer and delivered after all: AddReplayed and AddDelivered.
//
// A journal's records are not counted in cdr.Stats while it runs (they are
// accounted as handed over); those moved to the main spool at start are
// loaded records (AddLoaded).
//
// A Spool is safe for concurrent use: a backend typically appends from its
// posting goroutines and delivery callbacks, and reads back from one replay
// goroutine.
package spool
