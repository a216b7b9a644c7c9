package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func openJournalT(t *testing.T, dir string, segBytes int64) (*Spool, int) {
	t.Helper()
	j, n, bad, err := Open(Options{Dir: dir, FsyncInterval: 10 * time.Millisecond, SegmentBytes: segBytes, Journal: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(bad) != 0 {
		t.Fatalf("corrupt %+v", bad)
	}
	return j, n
}

func logFiles(t *testing.T, dir string) int {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "spool-*.log"))
	if err != nil {
		t.Fatal(err)
	}
	return len(files)
}

// Journal records are outstanding until acknowledged, are not records to
// replay, and a sealed segment goes once all of its records are
// acknowledged; the active one stays.
func TestJournalAckRemovesSealedSegments(t *testing.T) {
	dir := t.TempDir()
	j, _ := openJournalT(t, dir, 50) // a segment per batch of 3
	defer j.Close()
	var batches []Pos
	for b := range 4 {
		first, err := j.Append(recsN(3*b, 3))
		if err != nil {
			t.Fatal(err)
		}
		batches = append(batches, first)
	}
	if n := j.JournalOutstanding(); n != 12 {
		t.Fatalf("outstanding %d, want 12", n)
	}
	if !j.Empty() || j.Status().Records != 0 {
		t.Fatalf("journal records counted for replay: %+v", j.Status())
	}
	if n := logFiles(t, dir); n != 4 {
		t.Fatalf("%d segments, want 4", n)
	}
	for _, b := range batches[:2] {
		for i := range 3 {
			j.AckJournal(b.Plus(i))
		}
	}
	j.AckJournal(batches[2].Plus(0))
	if n := j.JournalOutstanding(); n != 5 {
		t.Fatalf("outstanding %d, want 5", n)
	}
	if n := logFiles(t, dir); n != 2 {
		t.Fatalf("%d segments left, want 2 (partly acknowledged and active)", n)
	}
	for i := range 3 {
		j.AckJournal(batches[3].Plus(i)) // the active segment stays
	}
	if n := logFiles(t, dir); n != 2 {
		t.Fatalf("%d segments left, want 2", n)
	}
}

// What a crash leaves unacknowledged in the journal is found at the next
// Open and moves to a main spool as a backend does it: Next, Append to the
// spool, Sync, Settle in the journal. After that neither a reopened journal
// nor the spool's replay sees a record twice.
func TestJournalCrashThenMove(t *testing.T) {
	dir := t.TempDir()
	jdir := filepath.Join(dir, "journal")
	// No background tick: the test writes the acks itself.
	j, _, _, err := Open(Options{Dir: jdir, FsyncInterval: time.Hour, Journal: true})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := j.Append(recsN(0, 5))
	j.AckJournal(first.Plus(1))
	j.AckJournal(first.Plus(3))
	j.mu.Lock()
	j.flushAcksLocked() // the tick that wrote the acks before the crash
	j.mu.Unlock()
	j.AckJournal(first.Plus(4)) // not yet written at the crash
	crash(j)

	j, found := openJournalT(t, jdir, 0)
	if found != 3 {
		t.Fatalf("journal found %d, want 3", found)
	}
	sp, _, _ := openT(t, dir)
	moved := 0
	for {
		recs, _, lost := j.Next(2, nil, nil)
		if lost != 0 {
			t.Fatalf("lost %d", lost)
		}
		if len(recs) == 0 {
			break
		}
		var rs []Record
		for _, r := range recs {
			rs = append(rs, Record{Key: r.Key, Value: r.Value})
		}
		if _, err := sp.Append(rs); err != nil {
			t.Fatal(err)
		}
		sp.Sync()
		for _, r := range recs {
			j.Settle(r.Pos, true)
		}
		moved += len(recs)
	}
	if moved != 3 || j.Status().Segments != 0 {
		t.Fatalf("moved %d, journal %+v", moved, j.Status())
	}
	j.Close()
	sp.Close()
	if j, n := openJournalT(t, jdir, 0); n != 0 {
		t.Fatalf("journal still holds %d after the move", n)
	} else {
		j.Close()
	}
	sp, n, _ := openT(t, dir)
	defer sp.Close()
	if got := drain(t, sp, true); n != 3 || fmt.Sprint(got) != `[{"seq":0} {"seq":2} {"seq":4}]` {
		t.Fatalf("spool found %d: %v", n, got)
	}
}

// A journal segment stays while it is active even with nothing
// outstanding, and goes at the next segment switch.
func TestJournalActiveSegmentRemovedWhenSealed(t *testing.T) {
	dir := t.TempDir()
	j, _ := openJournalT(t, dir, 50)
	defer j.Close()
	first, _ := j.Append(recsN(0, 3))
	for i := range 3 {
		j.AckJournal(first.Plus(i))
	}
	if n := logFiles(t, dir); n != 1 {
		t.Fatalf("%d segments", n)
	}
	j.Append(recsN(3, 1)) // seals the first segment, which goes
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("files %v", ents)
	}
}
