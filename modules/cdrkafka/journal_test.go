package cdrkafka

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/cdr/spool"
)

// newJournalRig is newRig with journal = yes: spool in dir, journal in
// dir/journal with small segments.
func newJournalRig(t *testing.T, cfg *Config, fp *fakeProducer, dir string) *rig {
	t.Helper()
	e := cdr.NewEngine()
	k := newBackend(cfg, fp, slog.New(slog.DiscardHandler), nil)
	fp.k = k
	loaded, err := k.openSpool(spool.Options{Dir: dir, FsyncInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	moved, err := k.openJournal(spool.Options{Dir: filepath.Join(dir, "journal"), FsyncInterval: 10 * time.Millisecond,
		SegmentBytes: 2000, Journal: true})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := e.Register(k)
	if err != nil {
		t.Fatal(err)
	}

	k.startReplay(loaded + moved)
	return &rig{e: e, k: k, fp: fp, reg: reg}
}

// copyDir copies the files of dir (recursively) into a new temporary
// directory and returns it. Copying the data directory of a running rig
// gives what a kill -9 would leave at this instant: what the spool and the
// journal wrote is there, nothing they still buffer is.
func copyDir(t *testing.T, dir string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o750)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// journalUnacked returns how many records a start would find
// unacknowledged in the journal of data directory dir (opened on a copy:
// dir stays as it is).
func journalUnacked(t *testing.T, dir string) int {
	t.Helper()
	probe := copyDir(t, filepath.Join(dir, "journal"))
	jr, n, _, err := spool.Open(spool.Options{Dir: probe, Journal: true})
	if err != nil {
		t.Fatal(err)
	}
	jr.Close()
	return n
}

func journalFiles(t *testing.T, dir string) (logs, bytes int) {
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(dir, "journal"))
	for _, e := range ents {
		if filepath.Ext(e.Name()) == ".log" {
			logs++
			if fi, err := e.Info(); err == nil {
				bytes += int(fi.Size())
			}
		}
	}
	return logs, bytes
}

// TestJournalKill9: what was handed over and is still in the producer when
// the process dies is in the journal; the next start moves it to the spool
// and replays it. Delivered records are not replayed (their acks were
// written by the sync tick).
func TestJournalKill9(t *testing.T) {
	dir := t.TempDir()
	cfg := defaults()
	cfg.OnQueueFull, cfg.Journal, cfg.BatchMax = "spool", true, 10
	fp := &fakeProducer{cap: 1000}
	r := newJournalRig(t, cfg, fp, dir)
	p := r.e.NewPoster()
	for i := range 100 {
		p.Post(record(i))
	}
	p.Flush()
	if n := r.k.jr.JournalOutstanding(); n != 100 {
		t.Fatalf("journal outstanding %d, want 100", n)
	}
	fp.deliver(40, nil)
	if n := r.k.jr.JournalOutstanding(); n != 60 {
		t.Fatalf("journal outstanding %d after 40 deliveries, want 60", n)
	}
	// The kill -9 comes once the sync tick wrote the acks of the 40
	// delivered records: the files then hold the 60 others unacknowledged.
	var img string
	testwait.Until(t, 5*time.Second, "acks written", func() bool {
		img = copyDir(t, dir)
		return journalUnacked(t, img) == 60
	})
	r.stop() // the crashed process's files are img; dir is not used again

	fp2 := &fakeProducer{cap: 1000, auto: true}
	r2 := newJournalRig(t, cfg, fp2, img)
	if s := check(t, r2.reg); s.Loaded != 60 {
		t.Fatalf("loaded %d from the journal, want 60", s.Loaded)
	}
	testwait.Until(t, 5*time.Second, "replay", func() bool { return check(t, r2.reg).Queued == 0 })
	p2 := r2.e.NewPoster()
	for i := 100; i < 120; i++ {
		p2.Post(record(i))
	}
	p2.Close()
	testwait.Until(t, 5*time.Second, "new records", func() bool { return check(t, r2.reg).Delivered == 80 })
	r2.stop()
	all := fp.seqs(t)
	for seq, n := range fp2.seqs(t) {
		all[seq] += n
	}
	for i := 1; i <= 120; i++ {
		if all[uint64(i)] != 1 {
			t.Fatalf("seq %d delivered %d times", i, all[uint64(i)])
		}
	}
	if logs, _ := journalFiles(t, img); logs > 1 {
		t.Fatalf("%d journal segments left after everything was delivered", logs)
	}
}

// TestJournalFailuresAndStop: failed deliveries and a graceful stop move
// records to the spool and acknowledge them in the journal, so the next
// start replays each exactly once.
func TestJournalFailuresAndStop(t *testing.T) {
	dir := t.TempDir()
	cfg := defaults()
	cfg.OnQueueFull, cfg.Journal, cfg.BatchMax = "spool", true, 10
	fp := &fakeProducer{cap: 35} // the 4th batch meets a full queue
	r := newJournalRig(t, cfg, fp, dir)
	p := r.e.NewPoster()
	for i := range 50 {
		p.Post(record(i))
	}
	p.Close()
	fp.deliver(10, nil)
	fp.deliver(5, fmt.Errorf("broker said no")) // -> spool, acked in the journal
	r.stop()                                    // producer leftovers -> spool, acked
	if s := check(t, r.reg); s.Delivered != 10 {
		t.Fatalf("%+v", s)
	}
	fp2 := &fakeProducer{cap: 1000, auto: true}
	r2 := newJournalRig(t, cfg, fp2, dir)
	if s := check(t, r2.reg); s.Loaded != 40 {
		t.Fatalf("loaded %d, want 40 (the spool's only: the journal was acknowledged)", s.Loaded)
	}
	testwait.Until(t, 5*time.Second, "replay", func() bool { return check(t, r2.reg).Queued == 0 })
	r2.stop()
	all := fp.seqs(t)
	for seq, n := range fp2.seqs(t) {
		all[seq] += n
	}
	for i := 1; i <= 50; i++ {
		if all[uint64(i)] != 1 {
			t.Fatalf("seq %d delivered %d times", i, all[uint64(i)])
		}
	}
}

// TestReleaseV1SpoolReplays: a spool and a journal left by the release
// whose spool was private to cdr_kafka (package spool's testdata/v1: seq
// 1..8 spooled with 1 and 2 acknowledged, seq 9..12 journalled with 9
// acknowledged) replay after the upgrade: the spool's records first, then
// the journal's, each once, and no file is left.
func TestReleaseV1SpoolReplays(t *testing.T) {
	dir := copyDir(t, "../cdr/spool/testdata/v1")
	cfg := defaults()
	cfg.OnQueueFull, cfg.Journal = "spool", true
	fp := &fakeProducer{cap: 1000, auto: true}
	r := newJournalRig(t, cfg, fp, dir)
	if s := check(t, r.reg); s.Loaded != 9 {
		t.Fatalf("loaded %d, want 9", s.Loaded)
	}
	testwait.Until(t, 5*time.Second, "replay", func() bool { return check(t, r.reg).Delivered == 9 })
	r.stop()
	if got := fmt.Sprint(fp.deliveredSeqs(t)); got != "[3 4 5 6 7 8 10 11 12]" {
		t.Fatalf("delivered %s", got)
	}
	for _, d := range []string{dir, filepath.Join(dir, "journal")} {
		if logs, _ := filepath.Glob(filepath.Join(d, "spool-*")); len(logs) != 0 {
			t.Fatalf("files left: %v", logs)
		}
	}
}
