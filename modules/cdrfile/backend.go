package cdrfile

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/cdr/spool"
)

// fsync policies.
const (
	fsyncAlways = iota
	fsyncInterval
	fsyncNever
)

// settings is a Config resolved for the backend: paths made absolute, the
// pattern and columns parsed, sizes in bytes. A file keeps the settings it
// was opened with; a reload swaps b.set, which the next file takes.
type settings struct {
	cfg        *Config
	dir        string
	spoolDir   string
	pat        *pattern
	format     lineFormat
	header     []byte // csv_header: the header line; nil: none
	interval   time.Duration
	sizeLimit  int64 // bytes; 0: none
	fsync      int
	fsyncEvery time.Duration
	maxFiles   int
	maxAge     time.Duration
	batchMax   int
	flushAfter time.Duration
	drop       bool // on_error = drop
	retryMin   time.Duration
	retryMax   time.Duration
}

// resolve turns a validated Config into settings; relative directories are
// under dataDir.
func resolve(cfg *Config, dataDir string) (*settings, error) {
	pat, err := parsePattern(cfg.File)
	if err != nil {
		return nil, err
	}
	cols, err := parseColumns(cfg.Columns)
	if err != nil {
		return nil, err
	}
	abs := func(d string) string {
		if filepath.IsAbs(d) {
			return filepath.Clean(d)
		}
		return filepath.Join(dataDir, d)
	}
	s := &settings{cfg: cfg, dir: abs(cfg.Directory), spoolDir: abs(cfg.SpoolDir), pat: pat,
		interval: cfg.RotateInterval, sizeLimit: int64(cfg.RotateSizeMB) << 20,
		fsyncEvery: time.Duration(cfg.FsyncMs) * time.Millisecond,
		maxFiles:   cfg.MaxFiles, maxAge: cfg.MaxAge, batchMax: cfg.BatchMax,
		flushAfter: time.Duration(cfg.FlushMs) * time.Millisecond, drop: cfg.OnError == "drop",
		retryMin: time.Duration(cfg.RetryMinMs) * time.Millisecond, retryMax: time.Duration(cfg.RetryMaxMs) * time.Millisecond}
	if s.dir == s.spoolDir {
		return nil, fmt.Errorf("spool_dir %s is the CDR directory", s.spoolDir)
	}
	switch cfg.Fsync {
	case "always":
		s.fsync = fsyncAlways
	case "never":
		s.fsync = fsyncNever
	default:
		s.fsync = fsyncInterval
	}
	if cfg.Format == "csv" {
		s.format = lineFormat{csv: true, columns: cols, eol: "\n"}
		if cfg.CSVCRLF {
			s.format.eol = "\r\n"
		}
		if cfg.CSVHeader {
			s.header = s.format.header()
		}
	}
	return s, nil
}

// warnFunc logs a rate-limited warning under a key.
type warnFunc func(key, msg string, args ...any)

// errInfo is the last error and when it happened.
type errInfo struct {
	at  time.Time
	msg string
}

// Backend is the file CDR backend: it implements cdr.Backend. Writing is
// synchronous: a batch's hand-over (Flush) writes it to the open file with
// one write(2) under b.mu and counts its records delivered, or spools or
// drops them when the file cannot be written.
type Backend struct {
	logger *slog.Logger
	warn   warnFunc
	now    func() time.Time // the clock of file periods and retention; tests set their own

	set atomic.Pointer[settings]
	reg *cdr.Registration
	st  *cdr.Stats

	// mu orders everything that touches the files or the spool: writes,
	// rotation, the spooling decision and spool appends, so the records of
	// one Poster reach the files in the order they were posted.
	mu        sync.Mutex
	cur       *openFile
	finishing []*finishing
	// naming of the next file: the period of the last file opened and the
	// time and suffix of its name
	lastPeriod time.Time
	lastNameAt time.Time
	lastSeq    int
	spooling   bool       // new batches go to the spool, behind the records there
	lines      []byte     // the chunk being written, encoded
	ends       []int      // end offsets of its records' lines
	rec        cdr.Record // decoding scratch
	kvs        []spool.Record

	sp      *spool.Spool // on_error = spool
	kick    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	stopped bool

	// replayer only
	rp      recs
	rpPos   []spool.Pos
	rpAt    int
	rpEnts  []spool.Entry
	rpBuf   []byte
	backoff atomic.Int64 // current retry backoff, ns; 0: not retrying

	maintTick    time.Duration // maintenance period; tests shorten it
	retentionDue atomic.Bool

	curName atomic.Value // string: the open file's path, "" when none
	curSize atomic.Int64
	lastErr atomic.Pointer[errInfo]
	spoolOn atomic.Bool // b.spooling, for status readers

	bytesWritten    atomic.Uint64
	filesOpened     atomic.Uint64
	closed          [numCloseReasons]atomic.Uint64
	errs            [numOps]atomic.Uint64
	fsyncs          atomic.Uint64
	retries         atomic.Uint64 // failed replay attempts (each followed by a backoff)
	removed         atomic.Uint64 // files removed by retention
	retentionErrors atomic.Uint64
	recoveredFiles  atomic.Uint64 // *.open files of an earlier run completed at start
	tornBytes       atomic.Uint64 // bytes of torn records cut off those
	vanished        atomic.Uint64 // open files removed from outside
	pendingRenames  atomic.Int64  // len(finishing), for status readers
	unsyncedBytes   atomic.Int64  // written to the open file since its last fsync
}

// newBackend returns a backend with settings s. It is not registered and
// starts nothing.
func newBackend(s *settings, logger *slog.Logger, warn warnFunc) *Backend {
	b := &Backend{logger: logger, warn: warn, now: time.Now, kick: make(chan struct{}, 1),
		stop: make(chan struct{}), maintTick: 100 * time.Millisecond}
	if b.warn == nil {
		b.warn = func(string, string, ...any) {}
	}
	b.set.Store(s)
	b.curName.Store("")
	return b
}

// Name implements cdr.Backend.
func (b *Backend) Name() string { return "file" }

// Attach implements cdr.Backend.
func (b *Backend) Attach(r *cdr.Registration) { b.reg, b.st = r, r.Stats() }

// FlushAfter implements cdr.Backend.
func (b *Backend) FlushAfter() time.Duration { return b.set.Load().flushAfter }

// NewBatcher implements cdr.Backend.
func (b *Backend) NewBatcher() cdr.Batcher { return &batcher{b: b} }

// recs is a list of binary records (see appendRecord) in one buffer.
type recs struct {
	data []byte
	ends []int // record i is data[ends[i-1]:ends[i]]
}

func (r *recs) len() int { return len(r.ends) }

func (r *recs) at(i int) []byte {
	start := 0
	if i > 0 {
		start = r.ends[i-1]
	}
	return r.data[start:r.ends[i]]
}

func (r *recs) addRaw(v []byte) {
	r.data = append(r.data, v...)
	r.ends = append(r.ends, len(r.data))
}

func (r *recs) reset() { r.data, r.ends = r.data[:0], r.ends[:0] }

// batcher is one Poster's batch: records in binary form, in a buffer that
// is reused from batch to batch (no allocation per record once grown).
type batcher struct {
	b   *Backend
	rs  recs
	max int
}

// Add implements cdr.Batcher.
func (t *batcher) Add(r *cdr.Record) bool {
	if len(t.rs.ends) == 0 {
		t.max = t.b.set.Load().batchMax // a reload's batch_max applies from the next batch
	}
	t.rs.data = appendRecord(t.rs.data, r)
	t.rs.ends = append(t.rs.ends, len(t.rs.data))
	return len(t.rs.ends) >= t.max
}

// Len implements cdr.Batcher.
func (t *batcher) Len() int { return len(t.rs.ends) }

// Flush implements cdr.Batcher.
func (t *batcher) Flush() {
	t.b.handover(&t.rs)
	t.rs.reset()
}

// handover writes a batch to the files and accounts for every record of
// it: delivered when written; when writing fails, the rest is spooled
// (on_error = spool; behind it, new batches go to the spool too until the
// replayer has written everything there) or dropped (on_error = drop,
// reason write_error).
func (b *Backend) handover(rs *recs) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.spooling {
		b.spoolLocked(rs, 0)
		return
	}
	k, err := b.writeLocked(rs, 0)
	if err == nil {
		return
	}
	rest := rs.len() - k
	if rest == 0 {
		return // every record is in the file; the failure (an fsync) is counted
	}
	if b.sp == nil {
		b.st.AddDropped(cdr.DropWriteError, uint64(rest))
		b.warn("drop", "cdr_file: cannot write CDRs; dropped (on_error = drop)", "dropped", rest, "err", err.Error())
		return
	}
	b.setSpoolingLocked(true)
	b.warn("spool", "cdr_file: cannot write CDRs; spooled, to be written when the files can be written again", "spooled", rest, "err", err.Error())
	b.spoolLocked(rs, k)
}

func (b *Backend) setSpoolingLocked(on bool) {
	b.spooling = on
	b.spoolOn.Store(on)
	if on {
		b.kickReplay()
	}
}

// spoolLocked appends records rs[from:] to the spool and counts them
// spooled, or dropped (spool_error) when the spool cannot take them. The
// caller holds b.mu.
func (b *Backend) spoolLocked(rs *recs, from int) {
	n := rs.len() - from
	if n <= 0 {
		return
	}
	kvs := b.kvs[:0]
	for i := from; i < rs.len(); i++ {
		kvs = append(kvs, spool.Record{Value: rs.at(i)})
	}
	_, err := b.sp.Append(kvs)
	clear(kvs)
	b.kvs = kvs[:0]
	if err != nil {
		b.st.AddDropped(cdr.DropSpoolError, uint64(n))
		b.setErr(err)
		b.warn("spool-write", "cdr_file: cannot write the spool either; CDRs dropped", "dropped", n, "err", err.Error())
		return
	}
	b.st.AddSpooled(uint64(n))
	b.kickReplay()
}

func (b *Backend) kickReplay() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// fail counts a failed file operation, notes it as the last error, logs it
// (rate-limited) and returns it as an *opError.
func (b *Backend) fail(op int, path string, err error) error {
	e := &opError{op: op, path: path, err: err}
	b.errs[op].Add(1)
	b.setErr(e)
	b.warn("op-"+opNames[op], "cdr_file: "+opNames[op]+" failed", "path", path, "err", err.Error())
	return e
}

func (b *Backend) setErr(err error) {
	b.lastErr.Store(&errInfo{at: time.Now(), msg: err.Error()})
}

// openSpool opens the spool (on_error = spool). Records an earlier run left
// there are written before any new CDR: spooling starts on. It returns how
// many it found; start counts them.
func (b *Backend) openSpool(opts spool.Options) (int, error) {
	sp, loaded, bad, err := spool.Open(opts)
	if err != nil {
		return 0, err
	}
	b.sp = sp
	for _, c := range bad {
		b.logger.Error("cdr_file: corrupt spool region skipped", "file", c.Path, "offset", c.Offset, "bytes", c.Bytes)
	}
	if loaded > 0 {
		b.setSpoolingLocked(true)
		b.logger.Info("cdr_file: spooled CDRs found; writing them before new ones", "records", loaded, "dir", opts.Dir)
	}
	return loaded, nil
}

// start counts the records the spool held at start and starts the
// maintenance loop and, with a spool, the replayer. The backend is
// registered.
func (b *Backend) start(loaded int) {
	if loaded > 0 {
		b.st.AddLoaded(uint64(loaded))
	}
	b.retentionDue.Store(true)
	b.wg.Add(1)
	go b.maintainLoop()
	if b.sp != nil {
		b.wg.Add(1)
		go b.replayLoop()
	}
}

// maintainLoop rotates the open file when its interval ends while no
// record comes, fsyncs it every fsync_ms (fsync = interval), checks every
// second that the open file is still there and retries the renames that
// failed, and runs retention after each rotation and every minute.
func (b *Backend) maintainLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.maintTick)
	defer t.Stop()
	var lastSync, lastCheck, lastRetention time.Time
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		// File periods follow b.now; the fsync, check and retention
		// cadences follow the real clock.
		now, real := b.now(), time.Now()
		b.mu.Lock()
		if f := b.cur; f != nil {
			if !f.end.IsZero() && !now.Before(f.end) {
				b.closeLocked(closeInterval)
			} else if f.unsynced && f.s.fsync == fsyncInterval && real.Sub(lastSync) >= f.s.fsyncEvery {
				b.syncFile(f)
				lastSync = real
			}
		}
		if real.Sub(lastCheck) >= time.Second {
			b.checkVanishedLocked()
			b.finishPendingLocked()
			lastCheck = real
		}
		b.mu.Unlock()
		if b.retentionDue.Swap(false) || real.Sub(lastRetention) >= time.Minute {
			b.retention()
			lastRetention = real
		}
	}
}

// replayLoop writes the spooled records to the files, oldest first, while
// the spool holds any. When a write fails it waits (retry_min_ms, doubled
// after each failure up to retry_max_ms) before trying again; each failed
// attempt is counted.
func (b *Backend) replayLoop() {
	defer b.wg.Done()
	poll := time.NewTicker(time.Second) // a safety net; kicks do the work
	defer poll.Stop()
	var wait time.Duration
	for {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-b.stop:
				t.Stop()
				return
			case <-t.C:
			}
		} else {
			select {
			case <-b.stop:
				return
			case <-b.kick:
			case <-poll.C:
			}
		}
		for {
			select {
			case <-b.stop:
				return
			default:
			}
			progressed, err := b.replayOnce()
			if err != nil {
				s := b.set.Load()
				b.retries.Add(1)
				wait = min(max(2*wait, s.retryMin), s.retryMax)
				b.backoff.Store(int64(wait))
				break
			}
			if wait > 0 {
				b.logger.Info("cdr_file: writing works again; spooled CDRs are being written", "after_retries", b.retries.Load())
			}
			wait = 0
			b.backoff.Store(0)
			if !progressed {
				break
			}
		}
	}
}

// replayChunk is how many spooled records one replay step reads.
const replayChunk = 1024

// replayOnce writes up to one chunk of spooled records. Records read back
// but not written (the write failed) stay pending, in order, and are
// written first at the next attempt. It reports whether it did anything,
// and the write error. When the spool is empty it ends spooling: new
// batches are written directly again.
func (b *Backend) replayOnce() (bool, error) {
	if b.rp.len() == 0 {
		if b.sp.Empty() {
			b.mu.Lock()
			if b.sp.Empty() && b.spooling {
				b.setSpoolingLocked(false)
			}
			b.mu.Unlock()
			return false, nil
		}
		if !b.readChunk() {
			return true, nil
		}
	}
	b.mu.Lock()
	k, err := b.writeLocked(&b.rp, b.rpAt)
	b.mu.Unlock()
	for i := b.rpAt; i < b.rpAt+k; i++ {
		b.sp.Settle(b.rpPos[i], true)
	}
	b.rpAt += k
	if b.rpAt == b.rp.len() {
		b.rp.reset()
		b.rpPos, b.rpAt = b.rpPos[:0], 0
	}
	return k > 0, err
}

// readChunk reads the next spooled records into b.rp and counts them
// replayed; records that cannot be read back or decoded are counted lost.
// It reports whether b.rp holds any.
func (b *Backend) readChunk() bool {
	ents, buf, lost := b.sp.Next(replayChunk, b.rpEnts[:0], b.rpBuf[:0])
	b.rpBuf = buf
	if lost > 0 {
		b.st.AddSpoolLost(uint64(lost))
		b.logger.Error("cdr_file: spooled CDRs unreadable; lost", "records", lost, "err", b.sp.Status().LastError)
	}
	bad := 0
	var r cdr.Record // b.rec belongs to writers, under b.mu
	for _, e := range ents {
		if decodeRecord(&r, e.Value) != nil {
			bad++
			b.sp.Settle(e.Pos, false)
			continue
		}
		b.rp.addRaw(e.Value)
		b.rpPos = append(b.rpPos, e.Pos)
	}
	clear(ents)
	b.rpEnts = ents[:0]
	if bad > 0 {
		b.st.AddSpoolLost(uint64(bad))
		b.logger.Error("cdr_file: spooled CDRs malformed; lost", "records", bad)
	}
	if b.rp.len() > 0 {
		b.st.AddReplayed(uint64(b.rp.len()))
	}
	return b.rp.len() > 0
}

// shutdown runs at Stop, after the engine handed over every batch: it
// stops the loops, completes the open file (fsync, close, rename) and the
// pending renames, and closes the spool. Records the replayer read back but
// did not write stay in the spool for the next start (counted spooled
// again).
func (b *Backend) shutdown() {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	b.stopped = true
	b.mu.Unlock()
	close(b.stop)
	b.wg.Wait()
	b.mu.Lock()
	b.closeLocked(closeStop)
	b.finishPendingLocked()
	left := len(b.finishing)
	b.mu.Unlock()
	b.retention()
	if left > 0 {
		b.logger.Warn("cdr_file: files still named *"+openSuffix+" at stop (rename failed); completed at the next start", "files", left)
	}
	if n := b.rp.len() - b.rpAt; n > 0 {
		b.st.AddSpooled(uint64(n)) // still unacknowledged in their segment
		b.rp.reset()
	}
	if b.sp != nil {
		b.sp.Close()
	}
}

// WriteStatus implements cdr.StatusWriter: lines under the counters of
// "cdr show status".
func (b *Backend) WriteStatus(w func(label, value string)) {
	s := b.set.Load()
	w("directory", s.dir)
	format := "json"
	if s.format.csv {
		format = fmt.Sprintf("csv (%s; header %s)", s.cfg.Columns, yesNo(s.header != nil))
	}
	w("format", format)
	w("file pattern", s.cfg.File)
	rot := "interval " + s.cfg.RotateInterval.String()
	if s.interval == 0 {
		rot = "interval none"
	}
	if s.sizeLimit > 0 {
		rot += fmt.Sprintf(", size %d MB", s.cfg.RotateSizeMB)
	}
	w("rotation", rot)
	if name := b.curName.Load().(string); name != "" {
		w("current file", fmt.Sprintf("%s (%d bytes)", name, b.curSize.Load()))
	} else {
		w("current file", "none (opened at the next record)")
	}
	w("bytes written", fmt.Sprint(b.bytesWritten.Load()))
	w("files", fmt.Sprintf("%d opened; closed: %d interval, %d size, %d reload, %d stop, %d vanished",
		b.filesOpened.Load(), b.closed[closeInterval].Load(), b.closed[closeSize].Load(), b.closed[closeReload].Load(),
		b.closed[closeStop].Load(), b.closed[closeVanished].Load()))
	w("fsync", fmt.Sprintf("%s (fsync_ms %d), %d fsyncs", s.cfg.Fsync, s.cfg.FsyncMs, b.fsyncs.Load()))
	var total uint64
	errs := ""
	for i := range b.errs {
		if n := b.errs[i].Load(); n > 0 {
			total += n
			errs += fmt.Sprintf(" %s=%d", opNames[i], n)
		}
	}
	if errs != "" {
		errs = " (" + errs[1:] + ")"
	}
	w("write errors", fmt.Sprintf("%d%s", total, errs))
	if e := b.lastErr.Load(); e != nil {
		w("last error", e.at.UTC().Format(time.RFC3339)+" "+e.msg)
	}
	w("on_error", s.cfg.OnError)
	if b.sp != nil {
		st := b.sp.Status()
		state := "direct (writing to the files)"
		if b.spoolOn.Load() {
			state = "spooling (new CDRs queue behind the spool until it is written)"
		}
		w("spool state", state)
		w("spool", fmt.Sprintf("%s: %d records unread, %d segments, %d bytes, %d write errors", s.spoolDir, st.Records, st.Segments, st.Bytes, st.WriteErrors))
		retry := "none"
		if d := time.Duration(b.backoff.Load()); d > 0 {
			retry = "next in " + d.String()
		}
		w("replay retries", fmt.Sprintf("%d (backoff %s)", b.retries.Load(), retry))
	}
	if s.maxFiles > 0 || s.maxAge > 0 {
		w("retention", fmt.Sprintf("max_files %d, max_age %s: %d removed, %d errors", s.maxFiles, s.maxAge, b.removed.Load(), b.retentionErrors.Load()))
	}
	if n := b.recoveredFiles.Load(); n > 0 {
		w("recovered at start", fmt.Sprintf("%d files left open by an earlier run, %d torn bytes cut", n, b.tornBytes.Load()))
	}
	if pend := b.pendingRenames.Load(); pend > 0 {
		w("awaiting rename", fmt.Sprint(pend))
	}
}

func yesNo(v bool) string {
	if v {
		return "yes"
	}
	return "no"
}
