package cdrfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/switchboard-dp/switchboard/modules/cdr"
)

// openSuffix is the suffix of the file being written: readers pick up only
// names without it, which are complete.
const openSuffix = ".open"

// File permissions of the directory and the files.
const (
	dirMode  = 0o750
	fileMode = 0o640
)

// Operations whose failures are counted, by op.
const (
	opMkdir = iota
	opCreate
	opWrite
	opFsync
	opTruncate
	opRename
	opRecover
	numOps
)

var opNames = [numOps]string{"mkdir", "create", "write", "fsync", "truncate", "rename", "recover"}

// Why a file was closed.
const (
	closeInterval = iota
	closeSize
	closeReload
	closeStop
	closeVanished
	numCloseReasons
)

var closeNames = [numCloseReasons]string{"interval", "size", "reload", "stop", "vanished"}

// opError is a failed file operation.
type opError struct {
	op   int
	path string
	err  error
}

func (e *opError) Error() string { return opNames[e.op] + " " + e.path + ": " + e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

// openFile is the file being written, name+openSuffix in dir.
type openFile struct {
	f    *os.File
	s    *settings // the settings it was opened with: its format, limits and fsync policy
	dir  string
	name string // the name it gets once complete
	path string // dir/name+openSuffix

	size     int64     // bytes in the file, ending at a record boundary
	records  int64     // records in the file
	end      time.Time // when it is rotated by interval; zero: never
	cut      bool      // bytes beyond size may be in the file (a failed write whose truncation failed): truncate before writing
	unsynced bool      // written since the last fsync
}

// finishing is a closed file still named *.open: its rename failed, or it
// was left by an earlier run. The maintenance loop retries it.
type finishing struct {
	path  string // dir/x.open
	final string // dir/x; "" for a file of an earlier run (chosen when renamed)
	size  int64  // truncate to this before the rename; -1: find the last record boundary (earlier run)
	cut   bool   // size must be applied
}

// ensureFileLocked makes b.cur a file that records can be written to now:
// it rotates the open file when its interval ended and opens a new one
// when none is open. The caller holds b.mu.
func (b *Backend) ensureFileLocked() error {
	now := b.now()
	if f := b.cur; f != nil && !f.end.IsZero() && !now.Before(f.end) {
		b.closeLocked(closeInterval)
	}
	if f := b.cur; f != nil {
		if f.cut {
			if err := f.f.Truncate(f.size); err != nil {
				return b.fail(opTruncate, f.path, err)
			}
			f.cut = false
		}
		return nil
	}
	return b.openLocked(now)
}

// openLocked opens a new file in the current settings' directory. Its time
// fields are the start of its period (the rotate_interval boundary at or
// before now; without an interval, now); when that name is taken (a size
// rotation within the period, a restart), the time is now, and when that is
// taken too, "_001", "_002", ... is added before the extension.
func (b *Backend) openLocked(now time.Time) error {
	s := b.set.Load()
	if err := os.MkdirAll(s.dir, dirMode); err != nil {
		return b.fail(opMkdir, s.dir, err)
	}
	var start, end time.Time
	sec := periodStart(now, time.Second)
	if s.interval > 0 {
		start = periodStart(now, s.interval)
		end = start.Add(s.interval)
	} else {
		start = sec
	}
	name, nameAt, seq, err := b.freeNameLocked(s, start, sec)
	if err != nil {
		return b.fail(opCreate, s.dir, err)
	}
	path := filepath.Join(s.dir, name+openSuffix)
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, fileMode)
	if err != nil {
		return b.fail(opCreate, path, err)
	}
	b.lastPeriod, b.lastNameAt, b.lastSeq = start, nameAt, seq
	f := &openFile{f: fh, s: s, dir: s.dir, name: name, path: path, end: end}
	if s.header != nil {
		if _, err := fh.Write(s.header); err != nil {
			fh.Close()
			os.Remove(path)
			return b.fail(opWrite, path, err)
		}
		f.size = int64(len(s.header))
		f.unsynced = true
		b.bytesWritten.Add(uint64(len(s.header)))
	}
	if s.fsync == fsyncAlways {
		// The new name must survive a crash too, before any record in the
		// file counts as delivered.
		if err := b.syncFile(f); err != nil {
			fh.Close()
			os.Remove(path)
			return err
		}
		if err := syncDir(s.dir); err != nil {
			b.fail(opFsync, s.dir, err)
		}
	}
	b.cur = f
	b.filesOpened.Add(1)
	b.curName.Store(path)
	b.curSize.Store(f.size)
	return nil
}

// periodStart returns the start of the period of length d that holds t:
// the last multiple of d since the Unix epoch at or before t.
func periodStart(t time.Time, d time.Duration) time.Time {
	ns := t.UnixNano()
	off := ns % int64(d)
	if off < 0 {
		off += int64(d)
	}
	return time.Unix(0, ns-off).UTC()
}

// freeNameLocked returns the name of a new file, and the time and suffix
// number it used: the period's start when this is the first file of the
// period, else (or when that name is taken) now, with _001, _002, ... when
// taken. Within one second the suffix only grows, so names keep sorting in
// the order the files started even when retention removed an earlier one.
// A name is taken by a file or a file being written. openLocked notes the
// choice once the file is created.
func (b *Backend) freeNameLocked(s *settings, start, now time.Time) (string, time.Time, int, error) {
	taken := func(name string) bool {
		for _, p := range []string{name, name + openSuffix} {
			if _, err := os.Lstat(filepath.Join(s.dir, p)); !errors.Is(err, fs.ErrNotExist) {
				return true
			}
		}
		return false
	}
	if !start.Equal(b.lastPeriod) {
		if name := s.pat.expand(start, 0); !taken(name) {
			return name, start, 0, nil
		}
	}
	n := 0
	if now.Equal(b.lastNameAt) {
		n = b.lastSeq + 1
	}
	for limit := n + 100000; n < limit; n++ {
		if name := s.pat.expand(now, n); !taken(name) {
			return name, now, n, nil
		}
	}
	return "", time.Time{}, 0, errors.New("no free file name for the pattern")
}

// writeLocked writes records rs[from:] to the files as lines, in order,
// rotating by interval and size as needed, and counts the records it wrote
// delivered (with fsync = always once they are synced). It returns how many
// it wrote; when that is fewer than the rest, err says why, and the records
// after them are in no file. The caller holds b.mu. The records must decode
// (the batcher's always do; the replayer checks the spool's).
func (b *Backend) writeLocked(rs *recs, from int) (int, error) {
	i := from
	n := rs.len()
	for i < n {
		if err := b.ensureFileLocked(); err != nil {
			return i - from, err
		}
		f := b.cur
		limit := f.s.sizeLimit
		b.lines, b.ends = b.lines[:0], b.ends[:0]
		j := i
		for ; j < n; j++ {
			start := len(b.lines)
			_ = decodeRecord(&b.rec, rs.at(j)) // checked by the caller
			b.lines = f.s.format.appendLine(b.lines, &b.rec)
			if limit > 0 && f.size+int64(len(b.lines)) > limit && (f.records > 0 || j > i) {
				b.lines = b.lines[:start] // this one starts the next file
				break
			}
			b.ends = append(b.ends, len(b.lines))
		}
		b.rec = cdr.Record{} // drop the references into rs
		if j == i {
			b.closeLocked(closeSize) // full: the next record starts a new file
			continue
		}
		k, err := b.writeChunkLocked(f)
		if k > 0 {
			b.st.AddDelivered(uint64(k))
			i += k
		}
		if err != nil {
			return i - from, err
		}
		if j < n {
			b.closeLocked(closeSize)
		}
	}
	return i - from, nil
}

// writeChunkLocked writes b.lines (records ending at b.ends) to f with one
// write(2) (and, with fsync = always, one fsync) and returns how many
// records are in the file afterwards. On a failure it truncates the file
// back to the last record boundary so no torn line stays in it (when the
// truncation fails too, it is retried before the next write and before
// the file is renamed); with fsync = always, a failed fsync takes the
// whole chunk back out when it can, since it is not durable.
func (b *Backend) writeChunkLocked(f *openFile) (int, error) {
	n, err := f.f.Write(b.lines)
	k, kept := len(b.ends), len(b.lines)
	var werr error
	if err != nil {
		werr = b.fail(opWrite, f.path, err)
		k = sort.SearchInts(b.ends, n+1) // records whose line ends within the n bytes written
		kept = 0
		if k > 0 {
			kept = b.ends[k-1]
		}
		if n > kept {
			if terr := f.f.Truncate(f.size + int64(kept)); terr != nil {
				b.fail(opTruncate, f.path, terr)
				f.cut = true
			}
		}
	}
	if kept == 0 {
		return 0, werr
	}
	f.unsynced = true
	synced := false
	if f.s.fsync == fsyncAlways {
		serr := b.syncFile(f)
		if serr != nil && f.f.Truncate(f.size) == nil {
			f.cut = false
			return 0, serr
		}
		// On a failure the records cannot be taken back out: they are in
		// the file, written if not synced.
		synced = serr == nil
		if werr == nil {
			werr = serr
		}
	}
	b.addWritten(f, kept, k, synced)
	return k, werr
}

// addWritten counts bytes and records now in f; synced: and fsynced.
func (b *Backend) addWritten(f *openFile, bytes, records int, synced bool) {
	if !synced {
		b.unsyncedBytes.Add(int64(bytes))
	}
	f.size += int64(bytes)
	f.records += int64(records)
	b.bytesWritten.Add(uint64(bytes))
	b.curSize.Store(f.size)
}

// syncFile fsyncs f.
func (b *Backend) syncFile(f *openFile) error {
	if err := f.f.Sync(); err != nil {
		return b.fail(opFsync, f.path, err)
	}
	f.unsynced = false
	b.unsyncedBytes.Store(0)
	b.fsyncs.Add(1)
	return nil
}

// closeLocked completes the open file: it is fsynced (whatever the fsync
// policy), closed and renamed to its name without openSuffix, and the
// directory is fsynced so the rename survives a crash. A rename that fails
// is retried by the maintenance loop (the file keeps its .open name
// meanwhile). The caller holds b.mu.
func (b *Backend) closeLocked(why int) {
	f := b.cur
	if f == nil {
		return
	}
	b.cur = nil
	b.curName.Store("")
	b.curSize.Store(0)
	b.closed[why].Add(1)
	if f.cut {
		if err := f.f.Truncate(f.size); err != nil {
			b.fail(opTruncate, f.path, err)
		} else {
			f.cut = false
		}
	}
	if f.unsynced {
		b.syncFile(f) // counted and logged when it fails; the data is written
	}
	f.f.Close()
	if why == closeVanished {
		return
	}
	fin := &finishing{path: f.path, final: filepath.Join(f.dir, f.name), size: f.size, cut: f.cut}
	if !b.finish(fin) {
		b.addFinishingLocked(fin)
	}
	b.retentionDue.Store(true)
}

// finish truncates (when needed) and renames a closed file, and reports
// whether it is done.
func (b *Backend) finish(fin *finishing) bool {
	if fin.size < 0 {
		size, torn, err := recordBoundary(fin.path)
		if err != nil {
			b.fail(opRecover, fin.path, err)
			return false
		}
		fin.size, fin.cut = size, torn > 0
		if torn > 0 {
			b.tornBytes.Add(uint64(torn))
			b.logger.Warn("cdr_file: torn last record of a file left by an earlier run cut off", "file", fin.path, "bytes", torn)
		}
	}
	if fin.cut {
		if err := os.Truncate(fin.path, fin.size); err != nil {
			b.fail(opTruncate, fin.path, err)
			return false
		}
		fin.cut = false
		if err := syncPath(fin.path); err != nil {
			b.fail(opFsync, fin.path, err)
		}
	}
	if fin.final == "" {
		final, err := freeRecoveredName(strings.TrimSuffix(fin.path, openSuffix))
		if err != nil {
			b.fail(opRecover, fin.path, err)
			return false
		}
		fin.final = final
	}
	if err := os.Rename(fin.path, fin.final); err != nil {
		b.fail(opRename, fin.path, err)
		return false
	}
	if err := syncDir(filepath.Dir(fin.final)); err != nil {
		b.fail(opFsync, filepath.Dir(fin.final), err)
	}
	return true
}

// finishPendingLocked retries the files whose completion failed. The
// caller holds b.mu.
func (b *Backend) finishPendingLocked() {
	if len(b.finishing) == 0 {
		return
	}
	left := b.finishing[:0]
	for _, fin := range b.finishing {
		if !b.finish(fin) {
			left = append(left, fin)
		}
	}
	clear(b.finishing[len(left):])
	b.finishing = left
	b.pendingRenames.Store(int64(len(left)))
}

// recoverDir takes over the *.open files an earlier run left in dir (a
// crash or a stop that could not rename them): each is cut after its last
// complete record (a crash may leave a torn line) and renamed to its
// complete name. They were counted when written; this only completes them.
// Files that cannot be completed now are retried by the maintenance loop.
func (b *Backend) recoverDir(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			b.fail(opRecover, dir, err)
		}
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range ents {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), openSuffix) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if b.ownsLocked(path) {
			continue // this run's (a reload back to a directory)
		}
		fin := &finishing{path: path, size: -1}
		b.recoveredFiles.Add(1)
		b.logger.Info("cdr_file: completing a file left open by an earlier run", "file", fin.path)
		if !b.finish(fin) {
			b.addFinishingLocked(fin)
		}
	}
}

// ownsLocked reports whether path is this run's open file or one of its
// files awaiting their rename.
func (b *Backend) ownsLocked(path string) bool {
	if b.cur != nil && b.cur.path == path {
		return true
	}
	for _, fin := range b.finishing {
		if fin.path == path {
			return true
		}
	}
	return false
}

func (b *Backend) addFinishingLocked(fin *finishing) {
	b.finishing = append(b.finishing, fin)
	b.pendingRenames.Store(int64(len(b.finishing)))
}

// freeRecoveredName returns name, or name with _001, _002, ... before its
// extension when name exists.
func freeRecoveredName(name string) (string, error) {
	stem, ext := name, ""
	if i := strings.LastIndexByte(filepath.Base(name), '.'); i > 0 {
		j := len(name) - len(filepath.Base(name)) + i
		stem, ext = name[:j], name[j:]
	}
	for n := 0; n < 100000; n++ {
		cand := name
		if n > 0 {
			cand = stem + string(appendSeq(nil, n)) + ext
		}
		if _, err := os.Lstat(cand); errors.Is(err, fs.ErrNotExist) {
			return cand, nil
		}
	}
	return "", errors.New("no free name")
}

// recordBoundary returns the length of the complete records at the start of
// the file at path and how many bytes follow them (a torn last record, or
// the zeros a crash can leave). A JSON file (its first byte is '{') ends a
// record at every LF; a CSV file at every LF outside double quotes, since a
// quoted field may hold a line break.
func recordBoundary(path string) (keep, torn int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	size := st.Size()
	if size == 0 {
		return 0, 0, nil
	}
	var first [1]byte
	if _, err := f.ReadAt(first[:], 0); err != nil {
		return 0, 0, err
	}
	if first[0] == '{' {
		keep, err = lastLF(f, size)
		return keep, size - keep, err
	}
	r := bufio.NewReaderSize(f, 256<<10)
	inQuotes := false
	var off int64
	for {
		c, err := r.ReadByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return 0, 0, err
		}
		off++
		switch {
		case c == '"':
			inQuotes = !inQuotes
		case c == '\n' && !inQuotes:
			keep = off
		}
	}
	return keep, size - keep, nil
}

// lastLF returns the offset just after the last LF in f (0 if none),
// reading backwards from size.
func lastLF(f *os.File, size int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		chunk := buf[:end-start]
		if _, err := f.ReadAt(chunk, start); err != nil && err != io.EOF {
			return 0, err
		}
		if i := bytes.LastIndexByte(chunk, '\n'); i >= 0 {
			return start + int64(i) + 1, nil
		}
		end = start
	}
	return 0, nil
}

// syncDir fsyncs a directory, so the names created or renamed in it
// survive a crash.
func syncDir(dir string) error { return syncPath(dir) }

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// retention removes the oldest complete files of the current pattern in
// the current directory beyond max_files and those older than max_age
// (by modification time). It never touches the file being written nor any
// name the pattern does not produce. It runs in the maintenance loop,
// without b.mu: it only reads and removes complete files.
func (b *Backend) retention() {
	s := b.set.Load()
	if s.maxFiles == 0 && s.maxAge == 0 {
		return
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			b.retentionErrors.Add(1)
			b.warn("retention", "cdr_file: retention cannot read the directory", "dir", s.dir, "err", err.Error())
		}
		return
	}
	type file struct {
		name  string
		mtime time.Time
	}
	var files []file
	for _, e := range ents {
		if !e.Type().IsRegular() || !s.pat.matches(e.Name()) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		files = append(files, file{e.Name(), info.ModTime()})
	}
	sort.Slice(files, func(i, j int) bool {
		if !files[i].mtime.Equal(files[j].mtime) {
			return files[i].mtime.Before(files[j].mtime)
		}
		return files[i].name < files[j].name
	})
	now := b.now()
	for i, f := range files {
		tooMany := s.maxFiles > 0 && len(files)-i > s.maxFiles
		tooOld := s.maxAge > 0 && now.Sub(f.mtime) > s.maxAge
		if !tooMany && !tooOld {
			continue
		}
		if err := os.Remove(filepath.Join(s.dir, f.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			b.retentionErrors.Add(1)
			b.warn("retention", "cdr_file: retention cannot remove a file", "file", f.name, "err", err.Error())
			continue
		}
		b.removed.Add(1)
	}
}

// checkVanishedLocked closes the open file when its name no longer leads
// to it (removed or replaced from outside): writing on would put records
// where no reader finds them. The caller holds b.mu.
func (b *Backend) checkVanishedLocked() {
	f := b.cur
	if f == nil {
		return
	}
	st, err := f.f.Stat()
	if err != nil {
		return
	}
	if pst, err := os.Stat(f.path); err == nil && os.SameFile(st, pst) {
		return
	}
	b.vanished.Add(1)
	err = fmt.Errorf("the open file %s was removed or replaced from outside; its records are gone (counted delivered when written)", f.path)
	b.setErr(err)
	b.logger.Error("cdr_file: " + err.Error())
	b.closeLocked(closeVanished)
}
