// Package blocklist reads the domain block lists that the demo data
// generators, tests and benchmarks use: one domain per line, '#' comments,
// hosts-file lines ("0.0.0.0 domain") accepted, optionally gzip-compressed.
//
// The repository carries its lists compressed under testdata/blocklists
// (Dir); a name such as "phishing-nl.txt" finds "phishing-nl.txt.gz" there.
package blocklist

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Dir is where the repository keeps its block lists, relative to its root.
const Dir = "testdata/blocklists"

// Names are the lists the repository carries, without the .gz suffix.
var Names = []string{"phishing-nl.txt", "ransomware-nl.txt", "scam-nl.txt", "tracking-nl.txt"}

// Open opens a list for reading. A path ending in .gz is decompressed; a path
// that does not exist is tried with .gz appended. A missing list is an error
// naming the path and satisfying errors.Is(err, fs.ErrNotExist).
func Open(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && !strings.HasSuffix(path, ".gz") {
		if g, gerr := os.Open(path + ".gz"); gerr == nil {
			f, err, path = g, nil, path+".gz"
		}
	}
	if err != nil {
		return nil, fmt.Errorf("block list: %w", err)
	}
	if !strings.HasSuffix(path, ".gz") {
		return f, nil
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("block list %s: %w", path, err)
	}
	return &gzFile{Reader: zr, f: f}, nil
}

type gzFile struct {
	*gzip.Reader
	f *os.File
}

func (g *gzFile) Close() error {
	return errors.Join(g.Reader.Close(), g.f.Close())
}

// Read returns the entries of a list in file order: each line's domain,
// lower-cased and without a trailing dot. Comments and blank lines are
// skipped; a hosts-file line gives its last field. Duplicates are kept.
func Read(path string) ([]string, error) {
	rc, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var out []string
	sc := bufio.NewScanner(rc)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		out = append(out, strings.ToLower(strings.TrimSuffix(fields[len(fields)-1], ".")))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("block list %s: %w", path, err)
	}
	return out, nil
}

// Files returns the lists in dir (*.txt and *.txt.gz), sorted. A directory
// that holds none is an error naming it.
func Files(dir string) ([]string, error) {
	var files []string
	for _, pat := range []string{"*.txt", "*.txt.gz"} {
		m, err := filepath.Glob(filepath.Join(dir, pat))
		if err != nil {
			return nil, err
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("block lists: %w", err)
		}
		return nil, fmt.Errorf("block lists: no *.txt or *.txt.gz files in %s", dir)
	}
	sort.Strings(files)
	return files, nil
}
