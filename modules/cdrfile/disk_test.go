package cdrfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/cdr"
)

// errorConfig is the configuration of the failure tests: the CDR
// directory and the spool on different file systems, quick retries.
func errorConfig(dir, spoolDir string) *Config {
	cfg := defaults()
	cfg.Directory, cfg.SpoolDir = dir, spoolDir
	cfg.BatchMax = 64
	cfg.RetryMinMs, cfg.RetryMaxMs = 5, 50
	return cfg
}

// statusText returns the backend's "cdr show status" lines.
func (r *rig) statusText() string {
	var b strings.Builder
	r.b.WriteStatus(func(l, v string) { fmt.Fprintf(&b, "%s: %s\n", l, v) })
	return b.String()
}

// waitDrained waits until the spool is written out and batches are written
// directly again.
func (r *rig) waitDrained() {
	r.t.Helper()
	testwait.UntilState(r.t, 20*time.Second, "the spool to be written to the files", func() (bool, string) {
		s := r.reg.Snapshot()
		return s.SpoolPending == 0 && s.Inflight == 0 && !r.b.spoolOn.Load(), fmt.Sprintf("%+v\n%s", s, r.statusText())
	})
}

// A full disk: the CDR directory is a 256 KiB tmpfs, the spool elsewhere.
// Posting fills it until write(2) fails with ENOSPC; from then on the CDRs
// are spooled (a batch that fit only in part is cut back to its last
// complete line, the rest spooled). Once the tmpfs is made bigger, the
// replayer writes the spool out, and every CDR is in the files exactly
// once, in order, with the counters balanced throughout.
func TestDiskFullSpoolsThenReplays(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "cdr")
	mountTmpfs(t, dir, "256k")
	r := newRig(t, errorConfig(dir, filepath.Join(base, "spool")), nil)
	p := r.e.NewPoster()
	n := 0
	for r.reg.Snapshot().Spooled == 0 {
		if n > 100000 {
			t.Fatalf("a 256k tmpfs took %d CDRs without ENOSPC", n)
		}
		r.post(p, n+1, n+65)
		n += 64
		p.Flush()
		r.check()
	}
	// The batch that met ENOSPC was cut back to its last complete line:
	// the lines that fit count delivered, the rest spooled.
	s := r.check()
	t.Logf("ENOSPC after %d CDRs: %d in the file (the last batch kept %d of 64), %d spooled", n, s.Delivered, s.Delivered%64, s.Spooled)
	r.post(p, n+1, n+501) // behind the spool
	n += 500
	p.Flush()
	s = r.check()
	if s.Spooled < 500 || s.SpoolPending == 0 || !r.b.spoolOn.Load() || r.b.errs[opWrite].Load() == 0 {
		t.Fatalf("not spooling: %+v\n%s", s, r.statusText())
	}
	if e := r.b.lastErr.Load(); e == nil || !strings.Contains(e.msg, syscall.ENOSPC.Error()) {
		t.Fatalf("last error %+v", e)
	}
	st := r.statusText()
	for _, want := range []string{"spool state: spooling", "write errors: ", "last error: ", "no space left on device"} {
		if !strings.Contains(st, want) {
			t.Fatalf("status lacks %q:\n%s", want, st)
		}
	}
	// The open file holds only complete lines, even mid-outage, whenever no
	// write is under way: the replayer keeps retrying, and a retry that
	// writes part of a line cuts it off again under the backend's lock.
	open := files(t, dir)
	if len(open) != 1 || !strings.HasSuffix(open[0], openSuffix) {
		t.Fatalf("files %v", open)
	}
	r.b.mu.Lock()
	data, _ := os.ReadFile(filepath.Join(dir, open[0]))
	r.b.mu.Unlock()
	checkSeqs(t, seqs(t, string(data)), int(s.Delivered))

	remount(t, dir, "size=8m") // free space
	r.waitDrained()
	r.post(p, n+1, n+101) // direct again
	n += 100
	p.Close()
	r.stop()
	_, content := complete(t, dir)
	checkSeqs(t, seqs(t, content), n)
	s = r.check()
	if s.Delivered != uint64(n) || s.Queued != 0 || s.Dropped != 0 || s.Replayed != s.Spooled {
		t.Fatalf("%+v", s)
	}
	if r.b.retries.Load() == 0 {
		t.Fatal("no failed replay attempt counted")
	}
	t.Logf("%d CDRs, %d spooled while the disk was full, %d replay retries, write errors %d", n, s.Spooled, r.b.retries.Load(), r.b.errs[opWrite].Load())
}

// An unwritable directory: a read-only mount (root ignores permission
// bits), and a file where the directory should be. CDRs are spooled until
// it is writable, then written, in order, once.
func TestUnwritableDirectory(t *testing.T) {
	for _, tc := range []struct {
		name, errText string
		breakDir      func(t *testing.T, dir string)
		repair        func(t *testing.T, dir string)
	}{
		{"read-only mount", syscall.EROFS.Error(),
			func(t *testing.T, dir string) { mountTmpfs(t, dir, "1m"); remount(t, dir, "ro") },
			func(t *testing.T, dir string) { remount(t, dir, "rw") }},
		{"file in place of the directory", syscall.ENOTDIR.Error(),
			func(t *testing.T, dir string) { os.WriteFile(dir, []byte("in the way"), 0o640) },
			func(t *testing.T, dir string) { os.Remove(dir) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			dir := filepath.Join(base, "cdr")
			tc.breakDir(t, dir)
			r := newRig(t, errorConfig(filepath.Join(dir, "sub"), filepath.Join(base, "spool")), nil)
			p := r.e.NewPoster()
			r.post(p, 1, 101)
			p.Flush()
			s := r.check()
			if s.Spooled != 100 || s.Delivered != 0 {
				t.Fatalf("%+v", s)
			}
			testwait.Until(t, 5*time.Second, "failed retries", func() bool { return r.b.retries.Load() >= 2 })
			if st := r.statusText(); !strings.Contains(st, tc.errText) || !strings.Contains(st, "spool state: spooling") {
				t.Fatalf("status:\n%s", st)
			}
			tc.repair(t, dir)
			r.waitDrained()
			r.post(p, 101, 201)
			p.Close()
			r.stop()
			names, content := complete(t, filepath.Join(dir, "sub"))
			checkSeqs(t, seqs(t, content), 200)
			if len(names) != 1 || names[0] != "cdr-20240603-140000.jsonl" {
				t.Fatalf("files %v (the first file of the period is named by it, failed attempts or not)", names)
			}
			if s := r.check(); s.Delivered != 200 || s.Queued != 0 {
				t.Fatalf("%+v", s)
			}
		})
	}
}

// on_error = drop: what cannot be written is dropped and counted with the
// reason write_error; writing resumes as soon as it works.
func TestDropMode(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "cdr")
	os.WriteFile(dir, []byte("in the way"), 0o640)
	cfg := errorConfig(dir, filepath.Join(base, "spool"))
	cfg.OnError = "drop"
	r := newRig(t, cfg, nil)
	p := r.e.NewPoster()
	r.post(p, 1, 101)
	p.Flush()
	s := r.check()
	if s.Dropped != 100 || s.DroppedBy[cdr.DropWriteError] != 100 || s.Spooled != 0 {
		t.Fatalf("%+v", s)
	}
	if r.b.sp != nil {
		t.Fatal("a spool in drop mode")
	}
	if st := r.statusText(); !strings.Contains(st, "on_error: drop") || !strings.Contains(st, "mkdir=") {
		t.Fatalf("status:\n%s", st)
	}
	os.Remove(dir)
	r.post(p, 101, 201)
	p.Close()
	r.stop()
	_, content := complete(t, dir)
	got := seqs(t, content)
	if len(got) != 100 || got[0] != 101 || got[99] != 200 {
		t.Fatalf("%d records, %v..", len(got), got[:1])
	}
	if s := r.check(); s.Delivered != 100 || s.DroppedBy[cdr.DropWriteError] != 100 {
		t.Fatalf("%+v", s)
	}
	if DropReasonName := cdr.DropWriteError.String(); DropReasonName != "write_error" {
		t.Fatal(DropReasonName)
	}
}

// When the spool cannot be written either, the CDRs are dropped and
// counted (spool_error), never lost silently.
func TestSpoolFailsToo(t *testing.T) {
	base := t.TempDir()
	dir, spoolDir := filepath.Join(base, "cdr"), filepath.Join(base, "spool")
	os.WriteFile(dir, []byte("in the way"), 0o640)
	r := newRig(t, errorConfig(dir, spoolDir), nil)
	// The spool's directory disappears under it: no segment can be created.
	if err := os.RemoveAll(spoolDir); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(spoolDir, nil, 0o640)
	p := r.e.NewPoster()
	r.post(p, 1, 51)
	p.Close()
	s := r.check()
	if s.DroppedBy[cdr.DropSpoolError] != 50 || s.Spooled != 0 {
		t.Fatalf("%+v", s)
	}
	r.stop()
}

// Spooled CDRs left at stop are written at the next start, before new ones.
func TestSpoolSurvivesRestart(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "cdr")
	os.WriteFile(dir, []byte("in the way"), 0o640)
	cfg := errorConfig(dir, filepath.Join(base, "spool"))
	r := newRigIn(t, cfg, base, nil)
	p := r.e.NewPoster()
	r.post(p, 1, 151)
	p.Close()
	r.stop()
	if s := r.check(); s.SpoolPending != 150 || s.Delivered != 0 {
		t.Fatalf("%+v", s)
	}
	os.Remove(dir)
	r2 := newRigIn(t, cfg, base, nil)
	if s := r2.check(); s.Loaded != 150 {
		t.Fatalf("%+v", s)
	}
	p = r2.e.NewPoster()
	r.post(p, 151, 201) // queued behind the loaded ones until they are written
	p.Flush()
	r2.waitDrained()
	p.Close()
	r2.stop()
	_, content := complete(t, dir)
	checkSeqs(t, seqs(t, content), 200)
	if s := r2.check(); s.Delivered != 200 || s.Queued != 0 {
		t.Fatalf("%+v", s)
	}
}

// fsync = always syncs every batch before counting it; the counters
// balance and the file is whole.
func TestFsyncAlways(t *testing.T) {
	cfg := defaults()
	cfg.Fsync, cfg.BatchMax = "always", 10
	r := newRig(t, cfg, nil)
	p := r.e.NewPoster()
	r.post(p, 1, 101)
	p.Close()
	if got := r.b.fsyncs.Load(); got < 10 {
		t.Fatalf("%d fsyncs for 10 batches", got)
	}
	r.stop()
	_, content := complete(t, r.dir)
	checkSeqs(t, seqs(t, content), 100)
}

// Removing the open file from outside is noticed, counted and logged, and
// writing goes on in a new file.
func TestOpenFileVanished(t *testing.T) {
	r := newRig(t, defaults(), nil)
	p := r.e.NewPoster()
	r.post(p, 1, 11)
	p.Flush()
	names := files(t, r.dir)
	if err := os.Remove(filepath.Join(r.dir, names[0])); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, "the vanished file noticed", func() bool { return r.b.vanished.Load() == 1 })
	r.post(p, 11, 21)
	p.Close()
	r.stop()
	_, content := complete(t, r.dir)
	if content != r.lines(11, 21) {
		t.Fatalf("%s", content)
	}
	if !strings.Contains(r.logText(), "removed or replaced from outside") {
		t.Fatal("not logged")
	}
}

// The stop budget grows with what the final fsync has to write back: with
// fsync = never, everything written since the last rotation.
func TestStopTimeoutFollowsUnsyncedBytes(t *testing.T) {
	cfg := defaults()
	cfg.Fsync = "never"
	r := newRig(t, cfg, nil)
	m := &Module{b: r.b}
	if got := m.StopTimeout(); got != stopBase {
		t.Fatalf("idle: %v", got)
	}
	p := r.e.NewPoster()
	r.post(p, 1, 1001)
	p.Flush()
	n := r.b.unsyncedBytes.Load()
	if n != int64(len(r.lines(1, 1001))) {
		t.Fatalf("unsynced %d", n)
	}
	if got, want := m.StopTimeout(), stopBase+time.Duration(float64(n)/stopSyncRate*float64(time.Second)); got != want || got <= stopBase {
		t.Fatalf("StopTimeout %v, want %v", got, want)
	}
	p.Close()
	r.stop()
	if got := m.StopTimeout(); got != stopBase {
		t.Fatalf("after the final fsync: %v", got)
	}
}
