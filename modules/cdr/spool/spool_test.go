package spool

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

func openT(t *testing.T, dir string) (*Spool, int, []Corruption) {
	t.Helper()
	s, n, bad, err := Open(Options{Dir: dir, FsyncInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s, n, bad
}

func recsN(from, n int) []Record {
	out := make([]Record, n)
	for i := range out {
		out[i] = Record{Key: []byte{10, 0, 0, byte(from + i)}, Value: fmt.Appendf(nil, `{"seq":%d}`, from+i)}
	}
	return out
}

func drain(t *testing.T, s *Spool, deliver bool) []string {
	t.Helper()
	var got []string
	for {
		recs, _, lost := s.Next(7, nil, nil)
		if lost != 0 {
			t.Fatalf("lost %d", lost)
		}
		if len(recs) == 0 {
			return got
		}
		for _, r := range recs {
			got = append(got, string(r.Value))
			s.Settle(r.Pos, deliver)
		}
	}
}

// crash abandons s as kill -9 would: the sync loop stops, nothing is
// flushed, acknowledged or fsynced, the files stay as they are.
func crash(s *Spool) {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	s.mu.Lock()
	if s.f != nil {
		s.f.Close()
	}
	for _, seg := range s.segs {
		if seg.rf != nil {
			seg.rf.Close()
		}
	}
	s.mu.Unlock()
}

func TestSpoolRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, n, _ := openT(t, dir)
	if n != 0 {
		t.Fatal(n)
	}
	if _, err := s.Append(recsN(0, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(recsN(10, 5)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, n, bad := openT(t, dir)
	if n != 15 || len(bad) != 0 {
		t.Fatalf("reopen: %d records, corrupt %v", n, bad)
	}
	// Read exactly all records in one call: the segment must still go.
	recs, _, _ := s.Next(15, nil, nil)
	var got []string
	for _, r := range recs {
		got = append(got, string(r.Value))
		s.Settle(r.Pos, true)
	}
	if len(got) != 15 || got[0] != `{"seq":0}` || got[14] != `{"seq":14}` {
		t.Fatalf("replayed %v", got)
	}
	if !s.Empty() || s.Status().Segments != 0 {
		t.Fatalf("not empty after delivery: %+v", s.Status())
	}
	s.Close()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
}

func TestSpoolAppendPositions(t *testing.T) {
	s, _, _ := openT(t, t.TempDir())
	defer s.Close()
	if p, err := s.Append(nil); err != nil || !p.IsZero() {
		t.Fatalf("empty append: %v %v", p, err)
	}
	s.Append(recsN(0, 3))
	first, err := s.Append(recsN(3, 4))
	if err != nil || first.IsZero() {
		t.Fatal(err)
	}
	recs, _, _ := s.Next(100, nil, nil)
	if len(recs) != 7 {
		t.Fatalf("read %d", len(recs))
	}
	for i := range 4 {
		if recs[3+i].Pos != first.Plus(i) {
			t.Fatalf("record %d at %v, Append said %v", 3+i, recs[3+i].Pos, first.Plus(i))
		}
	}
	if string(recs[3].Key) != string([]byte{10, 0, 0, 3}) || string(recs[3].Value) != `{"seq":3}` {
		t.Fatalf("record 3: %q %q", recs[3].Key, recs[3].Value)
	}
}

func TestSpoolAppendWhileReplaying(t *testing.T) {
	s, _, _ := openT(t, t.TempDir())
	defer s.Close()
	s.Append(recsN(0, 3))
	recs, _, _ := s.Next(100, nil, nil) // seals the segment
	s.Append(recsN(3, 2))               // goes to a new segment
	for _, r := range recs {
		s.Settle(r.Pos, true)
	}
	got := drain(t, s, true)
	if len(got) != 2 || got[0] != `{"seq":3}` {
		t.Fatalf("%v", got)
	}
	if !s.Empty() {
		t.Fatal("not empty")
	}
}

func TestSpoolCorruptTailAndMiddle(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := openT(t, dir)
	s.Append(recsN(0, 5))
	s.Append(recsN(5, 5))
	s.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "spool-*.log"))
	if len(files) != 1 {
		t.Fatal(files)
	}
	data, _ := os.ReadFile(files[0])
	frame := (len(data) - len(magic)) / 10 // equal-size frames
	// Flip a byte inside record 3, and append a torn frame at the end.
	data[len(magic)+3*frame+frameHeader+3] ^= 0xff
	data = append(data, appendFrame(nil, []byte{1, 2, 3, 4}, []byte(`{"seq":99}`))[:9]...)
	os.WriteFile(files[0], data, 0o640)

	s, n, bad := openT(t, dir)
	defer s.Close()
	if n != 9 || len(bad) != 2 {
		t.Fatalf("records %d corrupt %+v", n, bad)
	}
	if st := s.Status(); st.CorruptRegions != 2 || st.CorruptBytes != uint64(frame+9) {
		t.Fatalf("%+v (frame %d)", st, frame)
	}
	got := drain(t, s, true)
	want := []string{`{"seq":0}`, `{"seq":1}`, `{"seq":2}`, `{"seq":4}`, `{"seq":5}`, `{"seq":6}`, `{"seq":7}`, `{"seq":8}`, `{"seq":9}`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v", got)
	}
}

// A segment whose header is torn or foreign: the header counts as corrupt
// and the frames after it are kept.
func TestSpoolCorruptHeader(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := openT(t, dir)
	s.Append(recsN(0, 3))
	s.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "spool-*.log"))
	data, _ := os.ReadFile(files[0])
	copy(data, "XXXXXXXX")
	os.WriteFile(files[0], data, 0o640)
	s, n, bad := openT(t, dir)
	defer s.Close()
	if n != 3 || len(bad) != 1 || bad[0].Offset != 0 || bad[0].Bytes != int64(len(magic)) {
		t.Fatalf("records %d corrupt %+v", n, bad)
	}
	if got := drain(t, s, true); len(got) != 3 {
		t.Fatalf("%v", got)
	}
}

// A segment that goes bad after Open: Next reports the rest of its records
// as lost.
func TestSpoolUnreadableAfterOpen(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := openT(t, dir)
	s.Append(recsN(0, 4))
	s.Close()
	s, n, _ := openT(t, dir)
	defer s.Close()
	if n != 4 {
		t.Fatal(n)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "spool-*.log"))
	data, _ := os.ReadFile(files[0])
	frame := (len(data) - len(magic)) / 4
	data[len(magic)+frame+frameHeader+3] ^= 0xff // record 1
	os.WriteFile(files[0], data, 0o640)
	recs, _, lost := s.Next(10, nil, nil)
	if len(recs) != 1 || lost != 3 || !s.Empty() {
		t.Fatalf("read %d lost %d, %+v", len(recs), lost, s.Status())
	}
	if st := s.Status(); st.CorruptRegions != 1 || st.LastError == "" {
		t.Fatalf("%+v", st)
	}
}

func TestSpoolAcksSkipDeliveredAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := openT(t, dir)
	s.Append(recsN(0, 10))
	recs, _, _ := s.Next(4, nil, nil)
	for _, r := range recs {
		s.Settle(r.Pos, true)
	}
	// Let the sync loop write the acks, then crash.
	testwait.Until(t, 5*time.Second, "the acks written", func() bool {
		a, _ := filepath.Glob(filepath.Join(dir, "*.ack"))
		if len(a) != 1 {
			return false
		}
		fi, _ := os.Stat(a[0])
		return fi != nil && fi.Size() == 32
	})
	crash(s)
	s2, n, _ := openT(t, dir)
	defer s2.Close()
	if n != 6 {
		t.Fatalf("after crash: %d records, want 6", n)
	}
	got := drain(t, s2, true)
	if len(got) != 6 || got[0] != `{"seq":4}` {
		t.Fatalf("%v", got)
	}
}

// Records read back and not settled at Close, and records settled as not
// delivered, are found again by the next Open.
func TestSpoolUnsettledStay(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := openT(t, dir)
	s.Append(recsN(0, 6))
	recs, _, _ := s.Next(4, nil, nil)
	s.Settle(recs[0].Pos, true)
	s.Settle(recs[1].Pos, false)
	s.Close()
	s, n, _ := openT(t, dir)
	defer s.Close()
	if n != 5 {
		t.Fatalf("found %d, want 5", n)
	}
	if got := drain(t, s, true); got[0] != `{"seq":1}` {
		t.Fatalf("%v", got)
	}
}

// Ack of a record never read back: the next Open skips it, also when the
// spool was closed before.
func TestSpoolAckUnread(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := openT(t, dir)
	first, _ := s.Append(recsN(0, 3))
	s.Ack(first)
	s.Close()
	s.Ack(first.Plus(2)) // after Close: written at once
	s, n, _ := openT(t, dir)
	defer s.Close()
	if n != 1 {
		t.Fatalf("found %d, want 1", n)
	}
	if got := drain(t, s, true); fmt.Sprint(got) != `[{"seq":1}]` {
		t.Fatalf("%v", got)
	}
}

func TestSpoolSizeCap(t *testing.T) {
	s, _, _, err := Open(Options{Dir: t.TempDir(), MaxBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Append(recsN(0, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(recsN(0, 20)); err != ErrFull {
		t.Fatalf("err %v", err)
	}
	s.SetPolicy(Options{MaxBytes: 0})
	if _, err := s.Append(recsN(0, 20)); err != nil {
		t.Fatalf("after lifting the cap: %v", err)
	}
}

func TestSpoolRecordTooLarge(t *testing.T) {
	s, _, _ := openT(t, t.TempDir())
	defer s.Close()
	if _, err := s.Append([]Record{{Key: make([]byte, 70000), Value: []byte("x")}}); err == nil {
		t.Fatal("a 70000-byte key accepted")
	}
	if !s.Empty() {
		t.Fatal("refused record counted")
	}
}

func TestSpoolClosedRefusesAppend(t *testing.T) {
	s, _, _ := openT(t, t.TempDir())
	s.Close()
	if _, err := s.Append(recsN(0, 1)); err == nil {
		t.Fatal("append after close accepted")
	}
	s.Close() // idempotent
}
