package cdrkafka

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

func openT(t *testing.T, dir string) (*spool, int, []corruption) {
	t.Helper()
	s, n, bad, err := openSpool(spoolOptions{Dir: dir, FsyncInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s, n, bad
}

func recsN(from, n int) []kv {
	out := make([]kv, n)
	for i := range out {
		out[i] = kv{key: []byte{10, 0, 0, byte(from + i)}, value: fmt.Appendf(nil, `{"seq":%d}`, from+i)}
	}
	return out
}

func drain(t *testing.T, s *spool, deliver bool) []string {
	t.Helper()
	var got []string
	for {
		recs, _, lost := s.next(7, nil, nil)
		if lost != 0 {
			t.Fatalf("lost %d", lost)
		}
		if len(recs) == 0 {
			return got
		}
		for _, r := range recs {
			got = append(got, string(r.value))
			s.settle(r.seg, r.index, deliver)
		}
	}
}

func TestSpoolRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s, n, _ := openT(t, dir)
	if n != 0 {
		t.Fatal(n)
	}
	if _, _, err := s.append(recsN(0, 10)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.append(recsN(10, 5)); err != nil {
		t.Fatal(err)
	}
	s.close()
	s, n, bad := openT(t, dir)
	if n != 15 || len(bad) != 0 {
		t.Fatalf("reopen: %d records, corrupt %v", n, bad)
	}
	// Read exactly all records in one call: the segment must still go.
	recs, _, _ := s.next(15, nil, nil)
	var got []string
	for _, r := range recs {
		got = append(got, string(r.value))
		s.settle(r.seg, r.index, true)
	}
	if len(got) != 15 || got[0] != `{"seq":0}` || got[14] != `{"seq":14}` {
		t.Fatalf("replayed %v", got)
	}
	if !s.empty() || s.status().Segments != 0 {
		t.Fatalf("not empty after delivery: %+v", s.status())
	}
	s.close()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("files left: %v", ents)
	}
}

func TestSpoolAppendWhileReplaying(t *testing.T) {
	s, _, _ := openT(t, t.TempDir())
	defer s.close()
	s.append(recsN(0, 3))
	recs, _, _ := s.next(100, nil, nil) // seals the segment
	s.append(recsN(3, 2))               // goes to a new segment
	for _, r := range recs {
		s.settle(r.seg, r.index, true)
	}
	got := drain(t, s, true)
	if len(got) != 2 || got[0] != `{"seq":3}` {
		t.Fatalf("%v", got)
	}
	if !s.empty() {
		t.Fatal("not empty")
	}
}

func TestSpoolCorruptTailAndMiddle(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := openT(t, dir)
	s.append(recsN(0, 5))
	s.append(recsN(5, 5))
	s.close()
	files, _ := filepath.Glob(filepath.Join(dir, "spool-*.log"))
	if len(files) != 1 {
		t.Fatal(files)
	}
	data, _ := os.ReadFile(files[0])
	frame := (len(data) - len(spoolMagic)) / 10 // equal-size frames
	// Flip a byte inside record 3, and append a torn frame at the end.
	data[len(spoolMagic)+3*frame+frameHeader+3] ^= 0xff
	data = append(data, appendFrame(nil, []byte{1, 2, 3, 4}, []byte(`{"seq":99}`))[:9]...)
	os.WriteFile(files[0], data, 0o640)

	s, n, bad := openT(t, dir)
	defer s.close()
	if n != 9 || len(bad) != 2 {
		t.Fatalf("records %d corrupt %+v", n, bad)
	}
	if st := s.status(); st.CorruptRegions != 2 || st.CorruptBytes != uint64(frame+9) {
		t.Fatalf("%+v (frame %d)", st, frame)
	}
	got := drain(t, s, true)
	want := []string{`{"seq":0}`, `{"seq":1}`, `{"seq":2}`, `{"seq":4}`, `{"seq":5}`, `{"seq":6}`, `{"seq":7}`, `{"seq":8}`, `{"seq":9}`}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v", got)
	}
}

func TestSpoolAcksSkipDeliveredAfterCrash(t *testing.T) {
	dir := t.TempDir()
	s, _, _ := openT(t, dir)
	s.append(recsN(0, 10))
	recs, _, _ := s.next(4, nil, nil)
	for _, r := range recs {
		s.settle(r.seg, r.index, true)
	}
	// Let the sync loop write the acks, then "crash" (no close).
	testwait.Until(t, 5*time.Second, "the acks written", func() bool {
		a, _ := filepath.Glob(filepath.Join(dir, "*.ack"))
		if len(a) != 1 {
			return false
		}
		fi, _ := os.Stat(a[0])
		return fi != nil && fi.Size() == 32
	})
	s2, n, _ := openT(t, dir)
	defer s2.close()
	if n != 6 {
		t.Fatalf("after crash: %d records, want 6", n)
	}
	got := drain(t, s2, true)
	if len(got) != 6 || got[0] != `{"seq":4}` {
		t.Fatalf("%v", got)
	}
	s.close()
}

func TestSpoolSizeCap(t *testing.T) {
	s, _, _, err := openSpool(spoolOptions{Dir: t.TempDir(), MaxBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	if _, _, err := s.append(recsN(0, 2)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.append(recsN(0, 20)); err != errSpoolFull {
		t.Fatalf("err %v", err)
	}
}
