package cdrkafka

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The spool keeps CDRs that could not be handed to Kafka (producer queue
// full, failed delivery, undelivered at shutdown) until they are delivered.
//
// Layout: a directory of segment files spool-<20-digit seq>.log, written in
// order; the newest is the active one (appended to), older ones are sealed
// and replayed oldest first. A segment is removed once every record in it
// has been delivered (or re-spooled after a failure).
//
// Segment format: the 8-byte magic "SBCDRSP1", then frames:
//
//	u32 LE payload length | u32 LE CRC-32C of payload | payload
//	payload = u16 LE key length | key | value (the JSON document)
//
// Crash safety: a record is counted as spooled only after the write(2)
// holding its frame returned, so a process crash (kill -9) loses nothing
// spooled. fsync: the active segment is fsynced every FsyncInterval (100 ms
// by default) when it has unsynced writes, and at once after FsyncRecords
// (1000) unsynced records, at seal and at close: an OS crash or power loss
// can lose at most the records spooled in the last FsyncInterval or the
// last FsyncRecords records, whichever is fewer.
//
// Corruption: at open every segment is read through. A frame with an
// impossible length, a short read or a CRC mismatch starts a corrupt region;
// the reader resynchronises on the next offset where a complete frame with a
// matching CRC starts. Intact records before and after are kept; the corrupt
// bytes are reported (log, counters) and the segment is rewritten without
// them.
//
// Replay progress: each delivered replayed record's index is appended to
// spool-<seq>.ack (u32 index | u32 ^index, buffered, written out with the
// fsync tick). A restart skips acknowledged records, so a crash during
// replay duplicates at most the records acknowledged in the last tick.
//
// Journal (journal = yes): a second spool instance in <spool_dir>/journal
// holds every batch written ahead of producing it (Journal option). Its
// records are not replayed while the process runs: each is acknowledged
// (.ack, as above) once its delivery report arrives or once it was moved to
// the main spool (failed delivery, full queue, shutdown), and a segment is
// removed when it is sealed and every record in it is acknowledged. At the
// next start whatever is left unacknowledged (a kill -9, a crash) is moved
// into the main spool and replayed.

const (
	spoolMagic    = "SBCDRSP1"
	frameHeader   = 8
	maxFramePayld = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errSpoolFull is returned by append when the size cap would be exceeded.
var errSpoolFull = errors.New("spool size limit reached")

// spoolOptions configure a spool.
type spoolOptions struct {
	Dir           string
	MaxBytes      int64 // 0: no limit
	FsyncInterval time.Duration
	FsyncRecords  int
	SegmentBytes  int64 // active segment is sealed beyond this size
	// Journal makes this spool a write-ahead journal: appended records are
	// outstanding until ackJournal, and are not counted as records to
	// replay.
	Journal bool
}

// segment is one spool file.
type segment struct {
	seq   uint64
	path  string
	size  int64
	count int // records written (or found at open)

	// replay state (under spool.mu)
	acked    map[uint32]bool // found in the .ack file at open
	readOff  int64
	readIdx  uint32
	readDone bool
	rf       *os.File
	rd       *bufio.Reader

	outstanding atomic.Int64 // replayed, awaiting their delivery report
	ackBuf      []byte       // acks not yet written (under spool.mu)
}

func (s *segment) ackPath() string { return strings.TrimSuffix(s.path, ".log") + ".ack" }

// spoolRec is one record read back for replay.
type spoolRec struct {
	seg   *segment
	index uint32
	key   []byte
	value []byte
}

// corruption describes one corrupt region found at open.
type corruption struct {
	Path   string
	Offset int64
	Bytes  int64
}

type spool struct {
	opts spoolOptions

	mu       sync.Mutex
	segs     []*segment // oldest first; the last may be active
	active   *segment
	f        *os.File // active segment, open for append
	nextSeq  uint64
	unsynced int
	wbuf     []byte
	closed   bool

	bytes   atomic.Int64 // total size of segment files
	records atomic.Int64 // records in the spool not yet replayed

	corruptRegions atomic.Uint64
	corruptBytes   atomic.Uint64
	writeErrors    atomic.Uint64
	fsyncs         atomic.Uint64
	lastErr        atomic.Value // string

	stop chan struct{}
	done chan struct{}
}

// openSpool opens (creating) the spool directory, validates every segment
// and returns the number of intact, unacknowledged records found and the
// corrupt regions skipped.
func openSpool(opts spoolOptions) (*spool, int, []corruption, error) {
	if opts.FsyncInterval <= 0 {
		opts.FsyncInterval = 100 * time.Millisecond
	}
	if opts.FsyncRecords <= 0 {
		opts.FsyncRecords = 1000
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = 64 << 20
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, 0, nil, fmt.Errorf("spool: %w", err)
	}
	s := &spool{opts: opts, nextSeq: 1, stop: make(chan struct{}), done: make(chan struct{})}
	s.lastErr.Store("")
	ents, err := os.ReadDir(opts.Dir)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("spool: %w", err)
	}
	var found []*segment
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			os.Remove(filepath.Join(opts.Dir, name)) // an interrupted rewrite
			continue
		}
		if !strings.HasPrefix(name, "spool-") || !strings.HasSuffix(name, ".log") {
			continue
		}
		seq, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(name, "spool-"), ".log"), 10, 64)
		if err != nil {
			continue
		}
		found = append(found, &segment{seq: seq, path: filepath.Join(opts.Dir, name)})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].seq < found[j].seq })
	var corrupt []corruption
	total := 0
	for _, seg := range found {
		if seg.seq >= s.nextSeq {
			s.nextSeq = seg.seq + 1
		}
		n, bad, err := s.validate(seg)
		if err != nil {
			return nil, 0, nil, err
		}
		corrupt = append(corrupt, bad...)
		if n == 0 {
			os.Remove(seg.path)
			os.Remove(seg.ackPath())
			continue
		}
		total += n
		s.segs = append(s.segs, seg)
		s.bytes.Add(seg.size)
	}
	s.records.Store(int64(total))
	go s.syncLoop()
	return s, total, corrupt, nil
}

// readAcks reads a segment's .ack file.
func readAcks(path string) map[uint32]bool {
	data, err := os.ReadFile(path)
	if err != nil || len(data) < 8 {
		return nil
	}
	acked := make(map[uint32]bool, len(data)/8)
	for i := 0; i+8 <= len(data); i += 8 {
		idx := binary.LittleEndian.Uint32(data[i:])
		if binary.LittleEndian.Uint32(data[i+4:]) == ^idx {
			acked[idx] = true
		}
	}
	return acked
}

// validate reads a segment through, drops acknowledged records and corrupt
// regions (rewriting the file when there were any) and returns the number
// of records kept.
func (s *spool) validate(seg *segment) (int, []corruption, error) {
	data, err := os.ReadFile(seg.path)
	if err != nil {
		return 0, nil, fmt.Errorf("spool: %w", err)
	}
	acked := readAcks(seg.ackPath())
	var bad []corruption
	var keep [][]byte // payload frames to keep (whole frames)
	rewrite := len(acked) > 0
	off := 0
	if len(data) < len(spoolMagic) || string(data[:len(spoolMagic)]) != spoolMagic {
		if len(data) > 0 {
			// Torn or foreign header: treat the whole header as corrupt, resync below.
			n := min(len(data), len(spoolMagic))
			bad = append(bad, corruption{Path: seg.path, Offset: 0, Bytes: int64(n)})
			rewrite = true
		}
		off = min(len(data), len(spoolMagic))
	} else {
		off = len(spoolMagic)
	}
	idx := uint32(0)
	for off < len(data) {
		if n, ok := frameAt(data, off); ok {
			if !acked[idx] {
				keep = append(keep, data[off:off+n])
			}
			idx++
			off += n
			continue
		}
		// Corrupt: find the next offset where a valid frame starts.
		start := off
		off++
		for off < len(data) {
			if _, ok := frameAt(data, off); ok {
				break
			}
			off++
		}
		bad = append(bad, corruption{Path: seg.path, Offset: int64(start), Bytes: int64(off - start)})
		rewrite = true
	}
	for _, c := range bad {
		s.corruptRegions.Add(1)
		s.corruptBytes.Add(uint64(c.Bytes))
	}
	if !rewrite {
		seg.size = int64(len(data))
		seg.count = len(keep)
		return seg.count, bad, nil
	}
	if len(keep) == 0 {
		return 0, bad, nil
	}
	out := make([]byte, 0, len(data))
	out = append(out, spoolMagic...)
	for _, fr := range keep {
		out = append(out, fr...)
	}
	tmp := seg.path + ".tmp"
	if err := writeFileSync(tmp, out); err != nil {
		return 0, nil, fmt.Errorf("spool: rewrite %s: %w", seg.path, err)
	}
	if err := os.Rename(tmp, seg.path); err != nil {
		return 0, nil, fmt.Errorf("spool: rewrite %s: %w", seg.path, err)
	}
	os.Remove(seg.ackPath())
	syncDir(filepath.Dir(seg.path))
	seg.size = int64(len(out))
	seg.count = len(keep)
	return seg.count, bad, nil
}

// frameAt reports whether a complete, intact frame starts at off, and its
// length.
func frameAt(data []byte, off int) (int, bool) {
	if len(data)-off < frameHeader {
		return 0, false
	}
	n := int(binary.LittleEndian.Uint32(data[off:]))
	if n < 2 || n > maxFramePayld || len(data)-off-frameHeader < n {
		return 0, false
	}
	p := data[off+frameHeader : off+frameHeader+n]
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(data[off+4:]) {
		return 0, false
	}
	if int(binary.LittleEndian.Uint16(p)) > n-2 {
		return 0, false
	}
	return frameHeader + n, true
}

func writeFileSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// appendFrame encodes one record frame onto dst.
func appendFrame(dst, key, value []byte) []byte {
	n := 2 + len(key) + len(value)
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(key)))
	dst = append(dst, key...)
	dst = append(dst, value...)
	binary.LittleEndian.PutUint32(dst[start+4:], crc32.Checksum(dst[start+frameHeader:], castagnoli))
	return dst
}

// kv is one record to spool.
type kv struct{ key, value []byte }

// append writes records to the active segment with one write(2). When it
// returns nil every record is in the file (safe from a process crash); seg
// and first tell where the first record went (the others follow it).
func (s *spool) append(recs []kv) (seg *segment, first uint32, err error) {
	if len(recs) == 0 {
		return nil, 0, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, 0, errors.New("spool closed")
	}
	s.wbuf = s.wbuf[:0]
	for _, r := range recs {
		if len(r.key) > 0xffff || 2+len(r.key)+len(r.value) > maxFramePayld {
			return nil, 0, fmt.Errorf("spool: record too large (%d bytes)", len(r.key)+len(r.value))
		}
		s.wbuf = appendFrame(s.wbuf, r.key, r.value)
	}
	if s.opts.MaxBytes > 0 && s.bytes.Load()+int64(len(s.wbuf)) > s.opts.MaxBytes {
		return nil, 0, errSpoolFull
	}
	if s.active == nil || s.active.size >= s.opts.SegmentBytes {
		if err := s.newActiveLocked(); err != nil {
			return nil, 0, s.fail(err)
		}
	}
	seg, first = s.active, uint32(s.active.count)
	if s.opts.Journal {
		// Outstanding before the write: a failed write seals the segment,
		// which must not be removed while any of these can be acknowledged.
		seg.outstanding.Add(int64(len(recs)))
	}
	n, err := s.f.Write(s.wbuf)
	if err != nil {
		// A partial frame may be in the file: seal the segment so the next
		// append starts a clean one; the validator skips the torn frame at
		// the next open.
		s.active.size += int64(n)
		s.bytes.Add(int64(n))
		if s.opts.Journal {
			seg.outstanding.Add(-int64(len(recs)))
		}
		s.sealLocked()
		if s.opts.Journal {
			s.maybeRemoveJournalLocked(seg)
		}
		return nil, 0, s.fail(err)
	}
	s.active.size += int64(n)
	s.active.count += len(recs)
	s.bytes.Add(int64(n))
	if !s.opts.Journal {
		s.records.Add(int64(len(recs)))
	}
	s.unsynced += len(recs)
	if s.unsynced >= s.opts.FsyncRecords {
		s.syncLocked()
	}
	return seg, first, nil
}

func (s *spool) fail(err error) error {
	s.writeErrors.Add(1)
	s.lastErr.Store(err.Error())
	return fmt.Errorf("spool: %w", err)
}

func (s *spool) newActiveLocked() error {
	old := s.active
	s.sealLocked()
	if s.opts.Journal && old != nil {
		s.maybeRemoveJournalLocked(old)
	}
	seg := &segment{seq: s.nextSeq, path: filepath.Join(s.opts.Dir, fmt.Sprintf("spool-%020d.log", s.nextSeq))}
	f, err := os.OpenFile(seg.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write([]byte(spoolMagic)); err != nil {
		f.Close()
		os.Remove(seg.path)
		return err
	}
	syncDir(s.opts.Dir)
	s.nextSeq++
	seg.size = int64(len(spoolMagic))
	s.bytes.Add(seg.size)
	s.active, s.f = seg, f
	s.segs = append(s.segs, seg)
	return nil
}

// sealLocked closes the active segment for writing (it stays to be
// replayed).
func (s *spool) sealLocked() {
	if s.f == nil {
		return
	}
	s.syncLocked()
	s.f.Close()
	s.f, s.active = nil, nil
}

func (s *spool) syncLocked() {
	if s.f != nil && s.unsynced > 0 {
		if err := s.f.Sync(); err != nil {
			s.fail(err)
		}
		s.fsyncs.Add(1)
	}
	s.unsynced = 0
}

// syncLoop fsyncs the active segment and writes pending acks every
// FsyncInterval.
func (s *spool) syncLoop() {
	defer close(s.done)
	t := time.NewTicker(s.opts.FsyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			s.syncLocked()
			s.flushAcksLocked()
			s.mu.Unlock()
		}
	}
}

// empty reports whether the spool holds no record waiting for replay.
func (s *spool) empty() bool { return s.records.Load() == 0 }

// next reads up to max records for replay, oldest first. When it reaches
// the active segment it seals it, so new records go to a new segment.
// Records found unreadable are reported through lost.
func (s *spool) next(max int, out []spoolRec, buf []byte) ([]spoolRec, []byte, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lost := 0
	for _, seg := range s.segs {
		if len(out) >= max {
			break
		}
		if seg.readDone {
			continue
		}
		if seg == s.active {
			s.sealLocked()
		}
		if seg.rf == nil {
			if seg.acked == nil {
				seg.acked = map[uint32]bool{}
			}
			f, err := os.Open(seg.path)
			if err != nil {
				s.fail(err)
				lost += seg.count
				s.records.Add(-int64(seg.count))
				seg.readDone = true
				continue
			}
			seg.rf, seg.rd = f, bufio.NewReaderSize(f, 256<<10)
			if _, err := seg.rd.Discard(len(spoolMagic)); err != nil {
				lost += seg.count
				s.records.Add(-int64(seg.count))
				s.finishReadLocked(seg)
				continue
			}
			seg.readOff = int64(len(spoolMagic))
		}
		for len(out) < max {
			if int(seg.readIdx) >= seg.count {
				s.finishReadLocked(seg)
				break
			}
			var hdr [frameHeader]byte
			if _, err := io.ReadFull(seg.rd, hdr[:]); err != nil {
				s.badReadLocked(seg, &lost)
				break
			}
			n := int(binary.LittleEndian.Uint32(hdr[:]))
			if n < 2 || n > maxFramePayld {
				s.badReadLocked(seg, &lost)
				break
			}
			start := len(buf)
			buf = append(buf, make([]byte, n)...)
			p := buf[start:]
			if _, err := io.ReadFull(seg.rd, p); err != nil || crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) {
				buf = buf[:start]
				s.badReadLocked(seg, &lost)
				break
			}
			kl := int(binary.LittleEndian.Uint16(p))
			if kl > n-2 {
				buf = buf[:start]
				s.badReadLocked(seg, &lost)
				break
			}
			seg.readOff += int64(frameHeader + n)
			out = append(out, spoolRec{seg: seg, index: seg.readIdx, key: p[2 : 2+kl], value: p[2+kl:]})
			seg.readIdx++
			seg.outstanding.Add(1)
			s.records.Add(-1)
			if int(seg.readIdx) >= seg.count {
				s.finishReadLocked(seg)
				break
			}
		}
	}
	return out, buf, lost
}

// badReadLocked handles a segment that became unreadable after open: the
// rest of its records are lost (counted).
func (s *spool) badReadLocked(seg *segment, lost *int) {
	rest := seg.count - int(seg.readIdx)
	*lost += rest
	s.records.Add(-int64(rest))
	s.corruptRegions.Add(1)
	s.lastErr.Store(fmt.Sprintf("%s: unreadable at offset %d", seg.path, seg.readOff))
	seg.readIdx = uint32(seg.count)
	s.finishReadLocked(seg)
}

func (s *spool) finishReadLocked(seg *segment) {
	seg.readDone = true
	if seg.rf != nil {
		seg.rf.Close()
		seg.rf, seg.rd = nil, nil
	}
	s.maybeRemoveLocked(seg)
}

// settle reports the outcome of a replayed record: delivered (acknowledged in
// the .ack file) or not (the caller re-spooled it). Either way it no longer
// keeps its segment alive.
func (s *spool) settle(seg *segment, index uint32, delivered bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if delivered {
		seg.ack(index)
	}
	seg.outstanding.Add(-1)
	s.maybeRemoveLocked(seg)
}

// ackSpooled records that a record spooled at shutdown was delivered after
// all (late delivery report): it is acknowledged so it is not replayed.
func (s *spool) ackSpooled(seg *segment, index uint32) {
	s.mu.Lock()
	seg.ack(index)
	if s.closed { // the sync loop has stopped: write now
		s.flushAcksLocked()
	}
	s.mu.Unlock()
}

func (s *spool) maybeRemoveLocked(seg *segment) {
	if !seg.readDone || seg.outstanding.Load() > 0 || seg == s.active {
		return
	}
	s.removeLocked(seg)
}

// ack buffers the acknowledgement of record index (the index and its
// complement, so that a torn write is recognised); spool.mu must be held.
func (seg *segment) ack(index uint32) {
	seg.ackBuf = binary.LittleEndian.AppendUint32(seg.ackBuf, index)
	seg.ackBuf = binary.LittleEndian.AppendUint32(seg.ackBuf, ^index)
}

// removeLocked deletes segment seg (records and acks) and forgets it.
func (s *spool) removeLocked(seg *segment) {
	os.Remove(seg.path)
	os.Remove(seg.ackPath())
	seg.ackBuf = nil
	s.bytes.Add(-seg.size)
	for i, o := range s.segs {
		if o == seg {
			s.segs = append(s.segs[:i], s.segs[i+1:]...)
			break
		}
	}
}

// ackJournal acknowledges journal record index of seg: delivered, or moved
// to the main spool, or dropped and counted. A sealed segment whose records
// are all acknowledged is removed.
func (s *spool) ackJournal(seg *segment, index uint32) {
	s.mu.Lock()
	seg.ack(index)
	seg.outstanding.Add(-1)
	if s.closed { // the sync loop has stopped: write now
		s.flushAcksLocked()
	}
	s.maybeRemoveJournalLocked(seg)
	s.mu.Unlock()
}

// maybeRemoveJournalLocked removes a sealed journal segment with nothing
// outstanding.
func (s *spool) maybeRemoveJournalLocked(seg *segment) {
	if seg == s.active || seg.outstanding.Load() > 0 || seg.readDone {
		return
	}
	seg.readDone = true // removed: never again
	s.removeLocked(seg)
}

// journalOutstanding returns how many journal records await their ack.
func (s *spool) journalOutstanding() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, seg := range s.segs {
		n += seg.outstanding.Load()
	}
	return n
}

// sync fsyncs the active segment now.
func (s *spool) sync() {
	s.mu.Lock()
	s.syncLocked()
	s.mu.Unlock()
}

func (s *spool) flushAcksLocked() {
	for _, seg := range s.segs {
		if len(seg.ackBuf) == 0 {
			continue
		}
		f, err := os.OpenFile(seg.ackPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			s.fail(err)
			continue
		}
		if _, err := f.Write(seg.ackBuf); err != nil {
			s.fail(err)
		}
		f.Close()
		seg.ackBuf = seg.ackBuf[:0]
	}
}

// close writes pending acks, fsyncs and closes the spool. Records not yet
// replayed stay for the next start.
func (s *spool) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	s.mu.Lock()
	s.flushAcksLocked()
	s.sealLocked()
	for _, seg := range s.segs {
		if seg.rf != nil {
			seg.rf.Close()
			seg.rf, seg.rd = nil, nil
		}
		// Replayed but undelivered records are still in the file: the next
		// start replays them (acknowledged ones are skipped).
	}
	s.mu.Unlock()
}

// setPolicy changes the size cap and fsync policy (reload).
func (s *spool) setPolicy(o spoolOptions) {
	s.mu.Lock()
	s.opts.MaxBytes = o.MaxBytes
	if o.FsyncRecords > 0 {
		s.opts.FsyncRecords = o.FsyncRecords
	}
	s.mu.Unlock()
}

// spoolStatus is what the CLI and metrics show.
type spoolStatus struct {
	Segments       int
	Bytes          int64
	Records        int64
	CorruptRegions uint64
	CorruptBytes   uint64
	WriteErrors    uint64
	Fsyncs         uint64
	LastError      string
}

func (s *spool) status() spoolStatus {
	s.mu.Lock()
	n := len(s.segs)
	s.mu.Unlock()
	return spoolStatus{Segments: n, Bytes: s.bytes.Load(), Records: s.records.Load(),
		CorruptRegions: s.corruptRegions.Load(), CorruptBytes: s.corruptBytes.Load(),
		WriteErrors: s.writeErrors.Load(), Fsyncs: s.fsyncs.Load(), LastError: s.lastErr.Load().(string)}
}
