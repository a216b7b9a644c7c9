package cdrkafka

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/cdr"
)

// newJournalRig is newRig with journal = yes: spool in dir, journal in
// dir/journal with small segments.
func newJournalRig(t *testing.T, cfg *Config, fp *fakeProducer, dir string) *rig {
	t.Helper()
	e := cdr.NewEngine()
	k := newBackend(cfg, fp, slog.New(slog.DiscardHandler), nil)
	fp.k = k
	loaded, err := k.openSpool(spoolOptions{Dir: dir, FsyncInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	moved, err := k.openJournal(spoolOptions{Dir: filepath.Join(dir, "journal"), FsyncInterval: 10 * time.Millisecond,
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

// crash abandons a rig as kill -9 would: background loops stop, nothing is
// flushed, files stay as they are.
func (r *rig) crash() {
	k := r.k
	close(k.stop)
	<-k.done
	for _, s := range []*spool{k.sp, k.jr} {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		<-s.done
		if s.f != nil {
			s.f.Close()
		}
	}
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
	if n := r.k.jr.journalOutstanding(); n != 100 {
		t.Fatalf("journal outstanding %d, want 100", n)
	}
	fp.deliver(40, nil)
	if n := r.k.jr.journalOutstanding(); n != 60 {
		t.Fatalf("journal outstanding %d after 40 deliveries, want 60", n)
	}
	// Sealed segments whose records were all delivered are gone.
	testwait.Until(t, 5*time.Second, "acks written", func() bool {
		r.k.jr.mu.Lock()
		defer r.k.jr.mu.Unlock()
		for _, s := range r.k.jr.segs {
			if len(s.ackBuf) > 0 {
				return false
			}
		}
		return true
	})
	r.crash()

	fp2 := &fakeProducer{cap: 1000, auto: true}
	r2 := newJournalRig(t, cfg, fp2, dir)
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
	if logs, _ := journalFiles(t, dir); logs > 1 {
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
