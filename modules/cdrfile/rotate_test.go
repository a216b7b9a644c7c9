package cdrfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

func sizeLimit(n int64) rigOpt { return func(s *settings) { s.sizeLimit = n } }

// The file being written is <name>.open and holds what was written so far;
// it is renamed to <name> once complete (here: at stop).
func TestOpenFileRenamedWhenComplete(t *testing.T) {
	r := newRig(t, defaults(), nil)
	p := r.e.NewPoster()
	r.post(p, 1, 11)
	p.Flush()
	if got := files(t, r.dir); len(got) != 1 || got[0] != "cdr-20240603-140000.jsonl.open" {
		t.Fatalf("while writing: %v", got)
	}
	data, err := os.ReadFile(filepath.Join(r.dir, "cdr-20240603-140000.jsonl.open"))
	if err != nil || string(data) != r.lines(1, 11) {
		t.Fatalf("open file: %v\n%s", err, data)
	}
	p.Close()
	r.stop()
	names, content := complete(t, r.dir)
	if len(names) != 1 || names[0] != "cdr-20240603-140000.jsonl" || content != r.lines(1, 11) {
		t.Fatalf("after stop: %v\n%s", names, content)
	}
	if r.b.closed[closeStop].Load() != 1 || r.b.fsyncs.Load() == 0 {
		t.Fatalf("closed at stop %d, fsyncs %d", r.b.closed[closeStop].Load(), r.b.fsyncs.Load())
	}
}

// Rotation by size: no file grows beyond the limit, lines never split, the
// names sort in writing order, and the files hold every record once.
func TestRotateBySize(t *testing.T) {
	cfg := defaults()
	cfg.BatchMax = 7
	limit := int64(1000) // about five records per file
	r := newRig(t, cfg, nil, sizeLimit(limit))
	p := r.e.NewPoster()
	r.post(p, 100, 150)
	p.Close()
	r.stop()
	names, content := complete(t, r.dir)
	if content != r.lines(100, 150) {
		t.Fatalf("content:\n%s", content)
	}
	// Each file is as full as the limit allows: the next record would not
	// have fitted.
	next := 100
	for i, n := range names {
		data, _ := os.ReadFile(filepath.Join(r.dir, n))
		if int64(len(data)) > limit {
			t.Fatalf("%s: %d bytes, limit %d", n, len(data), limit)
		}
		k := next
		for k < 150 && len(r.lines(next, k+1)) <= len(data) {
			k++
		}
		if string(data) != r.lines(next, k) || (k < 150 && int64(len(data)+len(r.lines(k, k+1))) <= limit) {
			t.Fatalf("file %d %s holds the wrong records:\n%s", i, n, data)
		}
		next = k
	}
	// The first file of the period is named by the period; the next ones by
	// the time they started, with _001... when that second is taken.
	if names[0] != "cdr-20240603-140000.jsonl" || names[1] != "cdr-20240603-142000.jsonl" || names[2] != "cdr-20240603-142000_001.jsonl" {
		t.Fatalf("names %v", names)
	}
	if got, want := r.b.closed[closeSize].Load(), uint64(len(names)-1); got != want || len(names) < 8 {
		t.Fatalf("%d size rotations, %d files", got, len(names))
	}
	if s := r.check(); s.Delivered != 50 {
		t.Fatalf("%+v", s)
	}
}

// A record larger than the limit still gets a file of its own.
func TestRotateBySizeLargeRecord(t *testing.T) {
	r := newRig(t, defaults(), nil, sizeLimit(10))
	p := r.e.NewPoster()
	r.post(p, 1, 4)
	p.Close()
	r.stop()
	names, content := complete(t, r.dir)
	if len(names) != 3 || content != r.lines(1, 4) {
		t.Fatalf("%v\n%s", names, content)
	}
}

// Rotation by interval with an injected clock: files start on interval
// boundaries and are named by them; an idle file is closed at its boundary
// by the maintenance loop, with no record to trigger it.
func TestRotateByInterval(t *testing.T) {
	clock := &fakeClock{t: time.Date(2024, 6, 3, 14, 20, 0, 0, time.UTC)}
	r := newRig(t, defaults(), clock)
	p := r.e.NewPoster()
	r.post(p, 1, 11)
	p.Flush()
	clock.set(time.Date(2024, 6, 3, 14, 59, 59, 999e6, time.UTC))
	r.post(p, 11, 16)
	p.Flush() // still the 14:00 file
	clock.set(time.Date(2024, 6, 3, 15, 0, 0, 0, time.UTC))
	r.post(p, 16, 21)
	p.Flush() // the boundary: a new file
	if got := files(t, r.dir); fmt.Sprint(got) != "[cdr-20240603-140000.jsonl cdr-20240603-150000.jsonl.open]" {
		t.Fatalf("at 15:00: %v", got)
	}
	clock.set(time.Date(2024, 6, 3, 16, 30, 0, 0, time.UTC)) // idle past the next boundary
	testwait.UntilState(t, 5*time.Second, "the idle 15:00 file to be closed", func() (bool, string) {
		got := files(t, r.dir)
		return fmt.Sprint(got) == "[cdr-20240603-140000.jsonl cdr-20240603-150000.jsonl]", fmt.Sprint(got)
	})
	r.post(p, 21, 31)
	p.Close()
	r.stop()
	names, content := complete(t, r.dir)
	if fmt.Sprint(names) != "[cdr-20240603-140000.jsonl cdr-20240603-150000.jsonl cdr-20240603-160000.jsonl]" {
		t.Fatalf("names %v", names)
	}
	if content != r.lines(1, 31) {
		t.Fatalf("content:\n%s", content)
	}
	for name, want := range map[string]string{"cdr-20240603-140000.jsonl": r.lines(1, 16), "cdr-20240603-150000.jsonl": r.lines(16, 21)} {
		if data, _ := os.ReadFile(filepath.Join(r.dir, name)); string(data) != want {
			t.Fatalf("%s:\n%s", name, data)
		}
	}
	if r.b.closed[closeInterval].Load() != 2 || r.b.closed[closeStop].Load() != 1 {
		t.Fatalf("closed: interval %d, stop %d", r.b.closed[closeInterval].Load(), r.b.closed[closeStop].Load())
	}
	r.check()
}

// Without an interval, a file is named by the time it was opened.
func TestNoInterval(t *testing.T) {
	cfg := defaults()
	cfg.RotateInterval = 0
	clock := &fakeClock{t: time.Date(2024, 6, 3, 14, 20, 7, 0, time.UTC)}
	r := newRig(t, cfg, clock)
	p := r.e.NewPoster()
	r.post(p, 1, 3)
	p.Close()
	r.stop()
	if names, _ := complete(t, r.dir); fmt.Sprint(names) != "[cdr-20240603-142007.jsonl]" {
		t.Fatalf("%v", names)
	}
}

// Stop while a worker posts: the last file is complete (renamed, every
// line whole), every record counted delivered is in the files exactly
// once and in order, and the counters balance.
func TestStopMidTraffic(t *testing.T) {
	cfg := defaults()
	cfg.BatchMax = 50
	r := newRig(t, cfg, nil, sizeLimit(64<<10))
	p := r.e.NewPoster()
	var posted atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			p.Post(record(i))
			posted.Store(int64(i))
		}
	}()
	testwait.Until(t, 10*time.Second, "traffic across a few files", func() bool { return r.b.closed[closeSize].Load() >= 2 })
	r.stop() // mid-traffic
	close(stop)
	<-done
	p.Close()
	_, content := complete(t, r.dir)
	got := seqs(t, content)
	s := r.check()
	if uint64(len(got)) != s.Delivered || s.Delivered == 0 || s.Queued != 0 {
		t.Fatalf("%d records in the files; %+v", len(got), s)
	}
	checkSeqs(t, got, len(got))
	t.Logf("%d records posted, %d written before stop, %d files", posted.Load(), len(got), r.b.filesOpened.Load())
}

// Retention keeps the newest max_files complete files of the pattern and
// removes files older than max_age; it leaves other names alone.
func TestRetention(t *testing.T) {
	cfg := defaults()
	cfg.MaxFiles = 3
	r := newRig(t, cfg, nil, sizeLimit(1)) // one record per file
	if err := os.MkdirAll(r.dir, 0o750); err != nil {
		t.Fatal(err)
	}
	foreign := filepath.Join(r.dir, "README")
	os.WriteFile(foreign, []byte("not a CDR file"), 0o640)
	p := r.e.NewPoster()
	r.post(p, 100, 110) // 10 files
	p.Close()
	r.stop()
	names, content := complete(t, r.dir)
	if len(names) != 4 || names[0] != "README" || content != "not a CDR file"+r.lines(107, 110) {
		t.Fatalf("%v\n%s", names, content)
	}
	if r.b.removed.Load() != 7 {
		t.Fatalf("removed %d", r.b.removed.Load())
	}

	// max_age, by modification time against the backend's clock.
	cfg = defaults()
	cfg.MaxAge = 24 * time.Hour
	r2 := newRigIn(t, cfg, r.data, &fakeClock{t: time.Now().Add(48 * time.Hour)})
	testwait.Until(t, 5*time.Second, "old files removed", func() bool { return r2.b.removed.Load() == 3 })
	r2.stop()
	if got := files(t, r.dir); fmt.Sprint(got) != "[README]" {
		t.Fatalf("%v", got)
	}
}

// Files a crash left as *.open are cut after their last complete record
// and renamed at start.
func TestRecoverOpenFiles(t *testing.T) {
	data := t.TempDir()
	dir := filepath.Join(data, "cdr_file")
	os.MkdirAll(dir, 0o750)
	jsonText := jsonLines(1, 4)
	torn := `{"ts":1717430400004,"ip":"192.16`
	os.WriteFile(filepath.Join(dir, "cdr-20240603-130000.jsonl.open"), []byte(jsonText+torn), 0o640)
	os.WriteFile(filepath.Join(dir, "cdr-20240603-130000.jsonl"), []byte("taken\n"), 0o640)
	csvText := "ts,domain\n1,\"multi\nline\"\n2,plain\n"
	csvTorn := "3,\"unterminated\nquote"
	os.WriteFile(filepath.Join(dir, "cdr-20240603-120000.csv.open"), []byte(csvText+csvTorn), 0o640)
	os.WriteFile(filepath.Join(dir, "empty.open"), nil, 0o640)
	r := newRigIn(t, defaults(), data, nil)
	for name, want := range map[string]string{
		"cdr-20240603-130000_001.jsonl": jsonText,
		"cdr-20240603-130000.jsonl":     "taken\n",
		"cdr-20240603-120000.csv":       csvText,
		"empty":                         "",
	} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || string(got) != want {
			t.Errorf("%s: %v %q, want %q", name, err, got, want)
		}
	}
	if r.b.recoveredFiles.Load() != 3 || r.b.tornBytes.Load() != uint64(len(torn)+len(csvTorn)) {
		t.Fatalf("recovered %d, torn %d", r.b.recoveredFiles.Load(), r.b.tornBytes.Load())
	}
	var status strings.Builder
	r.b.WriteStatus(func(l, v string) { fmt.Fprintf(&status, "%s: %s\n", l, v) })
	if !strings.Contains(status.String(), "recovered at start: 3 files left open by an earlier run") {
		t.Fatalf("status:\n%s", status.String())
	}
}

// A new configuration applies at the next file: the open file keeps its
// format; the next one has the new format, name pattern and limits.
func TestSettingsApplyAtNextFile(t *testing.T) {
	r := newRig(t, defaults(), nil)
	p := r.e.NewPoster()
	r.post(p, 1, 3)
	p.Flush()
	cfg := defaults()
	cfg.Format, cfg.File, cfg.CSVHeader, cfg.Columns = "csv", "cdr-%Y%m%d-%H%M%S.csv", true, "seq,domain"
	s, err := resolve(cfg, r.data)
	if err != nil {
		t.Fatal(err)
	}
	s.sizeLimit = 1 // every record in a file of its own, from the next file on
	r.b.set.Store(s)
	r.post(p, 3, 5)
	p.Flush()
	r.clock.set(time.Date(2024, 6, 3, 15, 0, 0, 0, time.UTC))
	r.post(p, 5, 7)
	p.Close()
	r.stop()
	names, content := complete(t, r.dir)
	want := r.lines(1, 5) + "seq,domain\n5,example.com\n" + "seq,domain\n6,example.com\n"
	if fmt.Sprint(names) != "[cdr-20240603-140000.jsonl cdr-20240603-150000.csv cdr-20240603-150000_001.csv]" || content != want {
		t.Fatalf("%v\n%s", names, content)
	}
}
