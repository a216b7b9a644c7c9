package blocklist

import (
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestReadPlainAndCompressed(t *testing.T) {
	dir := t.TempDir()
	text := "# comment\nEvil.COM.\n\n0.0.0.0 ads.example # hosts format\nevil.com\n"
	want := []string{"evil.com", "ads.example", "evil.com"}
	if err := os.WriteFile(filepath.Join(dir, "plain.txt"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "packed.txt.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write([]byte(text))
	zw.Close()
	f.Close()
	for _, name := range []string{"plain.txt", "packed.txt.gz", "packed.txt"} {
		got, err := Read(filepath.Join(dir, name))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Read(%s) = %q, %v; want %q", name, got, err, want)
		}
	}
	files, err := Files(dir)
	if err != nil || len(files) != 2 {
		t.Errorf("Files = %q, %v", files, err)
	}
}

func TestMissingIsAnError(t *testing.T) {
	dir := t.TempDir()
	_, err := Read(filepath.Join(dir, "nope.txt"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "nope.txt") {
		t.Errorf("Read of a missing list: %v", err)
	}
	if _, err := Files(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Files of an empty dir: %v", err)
	}
	if _, err := Files(filepath.Join(dir, "absent")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Files of a missing dir: %v", err)
	}
}

// The repository carries every list its tools and tests name, readable.
func TestRepositoryLists(t *testing.T) {
	dir := filepath.Join("..", "..", Dir)
	for _, name := range Names {
		d, err := Read(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(d) < 1000 {
			t.Errorf("%s: only %d entries", name, len(d))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "LICENSE")); err != nil {
		t.Errorf("licence beside the lists: %v", err)
	}
}
