package spool

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

const (
	magic         = "SBCDRSP1"
	frameHeader   = 8
	maxFramePayld = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrFull is returned by Append when the records would take the spool
// beyond Options.MaxBytes.
var ErrFull = errors.New("spool size limit reached")

// Options configure a spool.
type Options struct {
	// Dir is the spool's directory, created if missing. Two spools must not
	// share one.
	Dir string
	// MaxBytes caps the total size of the segment files: an Append that
	// would go beyond it returns ErrFull. 0: no cap.
	MaxBytes int64
	// FsyncInterval is how long after the first unsynced write or pending
	// acknowledgement the active segment is fsynced and the
	// acknowledgements are written. Default 100 ms.
	FsyncInterval time.Duration
	// FsyncRecords fsyncs the active segment at once when this many
	// records were appended since the last fsync. Default 1000.
	FsyncRecords int
	// SegmentBytes seals the active segment once it is this large (the
	// next Append starts a new one). Default 64 MiB.
	SegmentBytes int64
	// Journal makes this spool a write-ahead journal: appended records are
	// outstanding until AckJournal, and are not counted as records to
	// replay (see the package doc).
	Journal bool
}

// segment is one spool file.
type segment struct {
	seq   uint64
	path  string
	size  int64
	count int // records written (or found at open)

	// replay state (under Spool.mu)
	acked    map[uint32]bool // found in the .ack file at open
	readOff  int64
	readIdx  uint32
	readDone bool
	rf       *os.File
	rd       *bufio.Reader

	outstanding atomic.Int64 // read back (journal: appended), awaiting settlement
	ackBuf      []byte       // acks not yet written (under Spool.mu)
}

func (s *segment) ackPath() string { return strings.TrimSuffix(s.path, ".log") + ".ack" }

// Pos is where one record is in a spool: its segment and its index there.
// Append and Next return positions; the zero Pos is no position.
type Pos struct {
	seg   *segment
	index uint32
}

// IsZero reports whether p is the zero Pos (no record).
func (p Pos) IsZero() bool { return p.seg == nil }

// Plus returns the position of the record i places after p: Append returns
// the position of its first record, and the others follow it.
func (p Pos) Plus(i int) Pos { return Pos{p.seg, p.index + uint32(i)} }

// Record is one record to append: the key (at most 65535 bytes) and the
// value. Append copies both.
type Record struct{ Key, Value []byte }

// Entry is one record read back by Next. Key and Value point into the
// buffer Next returned.
type Entry struct {
	Key, Value []byte
	Pos        Pos
}

// Corruption describes one corrupt region found by Open.
type Corruption struct {
	Path   string // segment file
	Offset int64  // first corrupt byte
	Bytes  int64  // corrupt bytes skipped
}

// Spool is an open spool directory. Its methods are safe for concurrent
// use.
type Spool struct {
	opts Options

	mu       sync.Mutex
	segs     []*segment // oldest first; the last may be active
	active   *segment
	f        *os.File // active segment, open for append
	nextSeq  uint64
	unsynced int
	wbuf     []byte
	closed   bool

	bytes   atomic.Int64 // total size of segment files
	records atomic.Int64 // records in the spool not yet read back

	corruptRegions atomic.Uint64
	corruptBytes   atomic.Uint64
	writeErrors    atomic.Uint64
	fsyncs         atomic.Uint64
	lastErr        atomic.Value // string

	stop chan struct{}
	done chan struct{}
	kick chan struct{} // something to fsync or acks to write (see markDirtyLocked)
	// dirty: the sync loop has been kicked and has not synced since
	// (under mu).
	dirty bool
}

// Open opens (creating) the spool directory opts.Dir and validates every
// segment in it (see the package doc). It returns the spool, the number of
// intact, unacknowledged records found (an earlier run's, to replay; for a
// journal, the records left unacknowledged) and the corrupt regions it
// skipped. The spool fsyncs and writes acknowledgements in the background
// until Close.
func Open(opts Options) (*Spool, int, []Corruption, error) {
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
	s := &Spool{opts: opts, nextSeq: 1, stop: make(chan struct{}), done: make(chan struct{}), kick: make(chan struct{}, 1)}
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
	var corrupt []Corruption
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
func (s *Spool) validate(seg *segment) (int, []Corruption, error) {
	data, err := os.ReadFile(seg.path)
	if err != nil {
		return 0, nil, fmt.Errorf("spool: %w", err)
	}
	acked := readAcks(seg.ackPath())
	var bad []Corruption
	var keep [][]byte // payload frames to keep (whole frames)
	rewrite := len(acked) > 0
	off := 0
	if len(data) < len(magic) || string(data[:len(magic)]) != magic {
		if len(data) > 0 {
			// Torn or foreign header: treat the whole header as corrupt, resync below.
			n := min(len(data), len(magic))
			bad = append(bad, Corruption{Path: seg.path, Offset: 0, Bytes: int64(n)})
			rewrite = true
		}
		off = min(len(data), len(magic))
	} else {
		off = len(magic)
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
		bad = append(bad, Corruption{Path: seg.path, Offset: int64(start), Bytes: int64(off - start)})
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
	out = append(out, magic...)
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

// Append writes recs to the active segment with one write(2). When it
// returns nil every record is in the file (safe from a process crash) and
// first is the position of recs[0]; recs[i] is at first.Plus(i). On an
// error the records are not in the spool: ErrFull (Options.MaxBytes), a
// record too large, a closed spool, or an I/O error (counted in Status; the
// segment is sealed, and whole frames the failed write did put in it may be
// found by a later Open). In a journal the records are outstanding until
// AckJournal.
func (s *Spool) Append(recs []Record) (first Pos, err error) {
	if len(recs) == 0 {
		return Pos{}, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Pos{}, errors.New("spool closed")
	}
	s.wbuf = s.wbuf[:0]
	for _, r := range recs {
		if len(r.Key) > 0xffff || 2+len(r.Key)+len(r.Value) > maxFramePayld {
			return Pos{}, fmt.Errorf("spool: record too large (%d bytes)", len(r.Key)+len(r.Value))
		}
		s.wbuf = appendFrame(s.wbuf, r.Key, r.Value)
	}
	if s.opts.MaxBytes > 0 && s.bytes.Load()+int64(len(s.wbuf)) > s.opts.MaxBytes {
		return Pos{}, ErrFull
	}
	if s.active == nil || s.active.size >= s.opts.SegmentBytes {
		if err := s.newActiveLocked(); err != nil {
			return Pos{}, s.fail(err)
		}
	}
	seg := s.active
	first = Pos{seg, uint32(seg.count)}
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
		return Pos{}, s.fail(err)
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
	} else {
		s.markDirtyLocked()
	}
	return first, nil
}

func (s *Spool) fail(err error) error {
	s.writeErrors.Add(1)
	s.lastErr.Store(err.Error())
	return fmt.Errorf("spool: %w", err)
}

func (s *Spool) newActiveLocked() error {
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
	if _, err := f.Write([]byte(magic)); err != nil {
		f.Close()
		os.Remove(seg.path)
		return err
	}
	syncDir(s.opts.Dir)
	s.nextSeq++
	seg.size = int64(len(magic))
	s.bytes.Add(seg.size)
	s.active, s.f = seg, f
	s.segs = append(s.segs, seg)
	return nil
}

// sealLocked closes the active segment for writing (it stays to be
// replayed).
func (s *Spool) sealLocked() {
	if s.f == nil {
		return
	}
	s.syncLocked()
	s.f.Close()
	s.f, s.active = nil, nil
}

func (s *Spool) syncLocked() {
	if s.f != nil && s.unsynced > 0 {
		if err := s.f.Sync(); err != nil {
			s.fail(err)
		}
		s.fsyncs.Add(1)
	}
	s.unsynced = 0
}

// markDirtyLocked tells the sync loop that there is something to fsync or
// acknowledgements to write (mu held).
func (s *Spool) markDirtyLocked() {
	if s.dirty {
		return
	}
	s.dirty = true
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// syncLoop fsyncs the active segment and writes pending acks FsyncInterval
// after the first write or acknowledgement since its last pass, and sleeps
// while there is nothing to do.
func (s *Spool) syncLoop() {
	defer close(s.done)
	t := time.NewTimer(s.opts.FsyncInterval)
	t.Stop()
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.kick:
		}
		t.Reset(s.opts.FsyncInterval)
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		s.syncLocked()
		s.flushAcksLocked()
		s.dirty = false
		s.mu.Unlock()
	}
}

// Empty reports whether the spool holds no record waiting to be read back.
func (s *Spool) Empty() bool { return s.records.Load() == 0 }

// Next reads up to max records back, oldest first, appending them to out
// and their bytes to buf (both grown as needed; the entries point into
// buf), and returns both and the number of records it found unreadable
// (lost: a segment that went bad after Open). When it reaches the active
// segment it seals it, so later records go to a new segment. Each record
// returned is outstanding, keeping its segment, until Settle.
func (s *Spool) Next(max int, out []Entry, buf []byte) ([]Entry, []byte, int) {
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
			if _, err := seg.rd.Discard(len(magic)); err != nil {
				lost += seg.count
				s.records.Add(-int64(seg.count))
				s.finishReadLocked(seg)
				continue
			}
			seg.readOff = int64(len(magic))
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
			out = append(out, Entry{Key: p[2 : 2+kl], Value: p[2+kl:], Pos: Pos{seg, seg.readIdx}})
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
func (s *Spool) badReadLocked(seg *segment, lost *int) {
	rest := seg.count - int(seg.readIdx)
	*lost += rest
	s.records.Add(-int64(rest))
	s.corruptRegions.Add(1)
	s.lastErr.Store(fmt.Sprintf("%s: unreadable at offset %d", seg.path, seg.readOff))
	seg.readIdx = uint32(seg.count)
	s.finishReadLocked(seg)
}

func (s *Spool) finishReadLocked(seg *segment) {
	seg.readDone = true
	if seg.rf != nil {
		seg.rf.Close()
		seg.rf, seg.rd = nil, nil
	}
	s.maybeRemoveLocked(seg)
}

// Settle reports the outcome of a record read back by Next at p: delivered
// (acknowledged in the .ack file, so no later Open finds it) or not (the
// caller appended it again, or dropped it and counted it). Either way it no
// longer keeps its segment: a segment read through with nothing outstanding
// is removed.
func (s *Spool) Settle(p Pos, delivered bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if delivered {
		p.seg.ack(p.index)
	}
	p.seg.outstanding.Add(-1)
	s.maybeRemoveLocked(p.seg)
}

// Ack acknowledges the record Append put at p without it being read back:
// it was delivered by other means, and no later Open finds it. It does not
// take the record out of this run's replay; a backend calls it once its
// reader stopped (cdr_kafka: a late delivery report of a record spooled at
// shutdown). After Close it writes the acknowledgement at once.
func (s *Spool) Ack(p Pos) {
	s.mu.Lock()
	p.seg.ack(p.index)
	if s.closed { // the sync loop has stopped: write now
		s.flushAcksLocked()
	} else {
		s.markDirtyLocked()
	}
	s.mu.Unlock()
}

func (s *Spool) maybeRemoveLocked(seg *segment) {
	if !seg.readDone || seg.outstanding.Load() > 0 || seg == s.active {
		return
	}
	s.removeLocked(seg)
}

// ack buffers the acknowledgement of record index (the index and its
// complement, so that a torn write is recognised); Spool.mu must be held.
func (seg *segment) ack(index uint32) {
	seg.ackBuf = binary.LittleEndian.AppendUint32(seg.ackBuf, index)
	seg.ackBuf = binary.LittleEndian.AppendUint32(seg.ackBuf, ^index)
}

// removeLocked deletes segment seg (records and acks) and forgets it.
func (s *Spool) removeLocked(seg *segment) {
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

// AckJournal acknowledges the journal record Append put at p: delivered,
// moved to the main spool, or dropped and counted. A sealed segment whose
// records are all acknowledged is removed. Only for a spool opened with
// Options.Journal.
func (s *Spool) AckJournal(p Pos) {
	s.mu.Lock()
	p.seg.ack(p.index)
	p.seg.outstanding.Add(-1)
	if s.closed { // the sync loop has stopped: write now
		s.flushAcksLocked()
	}
	s.maybeRemoveJournalLocked(p.seg)
	s.mu.Unlock()
}

// maybeRemoveJournalLocked removes a sealed journal segment with nothing
// outstanding.
func (s *Spool) maybeRemoveJournalLocked(seg *segment) {
	if seg == s.active || seg.outstanding.Load() > 0 || seg.readDone {
		return
	}
	seg.readDone = true // removed: never again
	s.removeLocked(seg)
}

// JournalOutstanding returns how many journal records await AckJournal
// (for a spool opened with Options.Journal; otherwise, how many records
// read back await Settle).
func (s *Spool) JournalOutstanding() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for _, seg := range s.segs {
		n += seg.outstanding.Load()
	}
	return n
}

// Sync fsyncs the active segment now (rather than at the next tick).
func (s *Spool) Sync() {
	s.mu.Lock()
	s.syncLocked()
	s.mu.Unlock()
}

func (s *Spool) flushAcksLocked() {
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

// Close writes pending acknowledgements, fsyncs and closes the spool.
// Records not yet read back, and records read back but not settled, stay
// for the next Open. Append fails after Close; Ack and AckJournal still
// write their acknowledgement.
func (s *Spool) Close() {
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
		// Read back but unsettled records are still in the file: the next
		// Open finds them (acknowledged ones are skipped).
	}
	s.mu.Unlock()
}

// SetPolicy changes the size cap (MaxBytes) and FsyncRecords of an open
// spool (a reload); the other options stay as opened.
func (s *Spool) SetPolicy(o Options) {
	s.mu.Lock()
	s.opts.MaxBytes = o.MaxBytes
	if o.FsyncRecords > 0 {
		s.opts.FsyncRecords = o.FsyncRecords
	}
	s.mu.Unlock()
}

// Status is a spool's state and counters, for a CLI and metrics.
type Status struct {
	Segments       int    // segment files
	Bytes          int64  // their total size
	Records        int64  // records not yet read back (a journal: of those Open found)
	CorruptRegions uint64 // corrupt regions skipped at Open, and segments gone bad after it
	CorruptBytes   uint64 // corrupt bytes skipped at Open
	WriteErrors    uint64 // failed file operations (writes, fsyncs, opens)
	Fsyncs         uint64
	LastError      string // the last write or read error ("" if none)
}

// Status returns the spool's state and counters.
func (s *Spool) Status() Status {
	s.mu.Lock()
	n := len(s.segs)
	s.mu.Unlock()
	return Status{Segments: n, Bytes: s.bytes.Load(), Records: s.records.Load(),
		CorruptRegions: s.corruptRegions.Load(), CorruptBytes: s.corruptBytes.Load(),
		WriteErrors: s.writeErrors.Load(), Fsyncs: s.fsyncs.Load(), LastError: s.lastErr.Load().(string)}
}
