package spool

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// testdata/v1 is a spool directory written by cdr_kafka's spool before it
// became this package (the release on-disk format), by writeV1 below:
//
//	spool-…1.log  records seq 1..5, spool-…1.ack acknowledging seq 1 and 2
//	spool-…2.log  records seq 6..8
//	journal/spool-…1.log  records seq 9..12, journal/spool-…1.ack acknowledging seq 9
const v1Dir = "testdata/v1"

// writeV1 writes what testdata/v1 holds, through this package.
func writeV1(t *testing.T, dir string) {
	t.Helper()
	s, _, _, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	s.Append(recsN(1, 5))
	recs, _, _ := s.Next(2, nil, nil)
	for _, r := range recs {
		s.Settle(r.Pos, true)
	}
	s.Append(recsN(6, 3))
	s.Close()
	j, _, _, err := Open(Options{Dir: filepath.Join(dir, "journal"), Journal: true, SegmentBytes: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	first, err := j.Append(recsN(9, 4))
	if err != nil {
		t.Fatal(err)
	}
	j.AckJournal(first)
	j.Close()
}

// copyDir copies the files of src (recursively) into a new temporary
// directory: Open rewrites segments, testdata stays as checked in.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
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

// A spool and a journal written by the release before this package replay:
// acknowledged records are skipped, the others come back in order with
// their keys.
func TestOpenReleaseV1Spool(t *testing.T) {
	dir := copyDir(t, v1Dir)
	s, n, bad, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n != 6 || len(bad) != 0 {
		t.Fatalf("found %d records, corrupt %+v; want 6, none", n, bad)
	}
	var got []string
	for {
		recs, _, lost := s.Next(4, nil, nil)
		if lost != 0 {
			t.Fatalf("lost %d", lost)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			got = append(got, fmt.Sprintf("%v=%s", r.Key, r.Value))
			s.Settle(r.Pos, true)
		}
	}
	want := `[[10 0 0 3]={"seq":3} [10 0 0 4]={"seq":4} [10 0 0 5]={"seq":5} [10 0 0 6]={"seq":6} [10 0 0 7]={"seq":7} [10 0 0 8]={"seq":8}]`
	if fmt.Sprint(got) != want {
		t.Fatalf("replayed %v\nwant     %s", got, want)
	}

	j, n, bad, err := Open(Options{Dir: filepath.Join(dir, "journal"), Journal: true})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if n != 3 || len(bad) != 0 {
		t.Fatalf("journal: found %d records, corrupt %+v; want 3, none", n, bad)
	}
	recs, _, _ := j.Next(10, nil, nil)
	got = got[:0]
	for _, r := range recs {
		got = append(got, string(r.Value))
	}
	if fmt.Sprint(got) != `[{"seq":10} {"seq":11} {"seq":12}]` {
		t.Fatalf("journal: %v", got)
	}
}

// This package writes the release format byte for byte: the same calls
// produce the same files, under the same names, as testdata/v1.
func TestFormatMatchesReleaseV1(t *testing.T) {
	dir := t.TempDir()
	writeV1(t, dir)
	files := func(root string) map[string][]byte {
		out := map[string][]byte{}
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(root, path)
				out[rel], _ = os.ReadFile(path)
			}
			return nil
		})
		return out
	}
	want, got := files(v1Dir), files(dir)
	if len(want) != 5 || len(got) != len(want) {
		t.Fatalf("files: wrote %d, testdata has %d (want 5)", len(got), len(want))
	}
	for name, w := range want {
		if g, ok := got[name]; !ok || !bytes.Equal(g, w) {
			t.Errorf("%s differs from the release format:\n got %x\nwant %x", name, g, w)
		}
	}
}
