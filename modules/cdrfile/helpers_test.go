package cdrfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// defaults returns the configuration of a missing cdr_file.conf.
func defaults() *Config {
	var f File
	if err := conf.DecodeFile(nil, &f); err != nil {
		panic(err)
	}
	return &f.General
}

// fakeClock is an injectable clock for file periods.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// rig is an engine with the file backend registered, outside a host.
type rig struct {
	t     testing.TB
	e     *cdr.Engine
	b     *Backend
	reg   *cdr.Registration
	clock *fakeClock
	dir   string // the CDR directory
	data  string // the data dir
	logs  *bytes.Buffer
	mu    sync.Mutex // guards logs
	done  bool
	want  map[int]string // seq -> its JSON line, as posted (Post gives each record its ID)
}

type rigOpt func(*settings)

// newRig starts a backend on cfg (directory and spool_dir relative to a
// fresh data dir unless absolute), with the fake clock at 2024-06-03
// 14:20:00 UTC unless the clock is given. mods adjust the settings (sizes
// in bytes).
func newRig(t testing.TB, cfg *Config, clock *fakeClock, mods ...rigOpt) *rig {
	t.Helper()
	data := t.TempDir()
	return newRigIn(t, cfg, data, clock, mods...)
}

func newRigIn(t testing.TB, cfg *Config, data string, clock *fakeClock, mods ...rigOpt) *rig {
	t.Helper()
	if clock == nil {
		clock = &fakeClock{t: time.Date(2024, 6, 3, 14, 20, 0, 0, time.UTC)}
	}
	s, err := resolve(cfg, data)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		m(s)
	}
	r := &rig{t: t, e: cdr.NewEngine(), clock: clock, dir: s.dir, data: data, logs: &bytes.Buffer{}, want: map[int]string{}}
	logger := slog.New(slog.NewTextHandler(lockedWriter{r}, nil))
	r.b = newBackend(s, logger, func(key, msg string, args ...any) { logger.Warn(msg, args...) })
	r.b.now = clock.now
	r.b.maintTick = 5 * time.Millisecond
	r.b.recoverDir(s.dir)
	loaded := 0
	if !s.drop {
		if loaded, err = r.b.openSpool(spoolOpts(s)); err != nil {
			t.Fatal(err)
		}
	}
	if r.reg, err = r.e.Register(r.b); err != nil {
		t.Fatal(err)
	}
	r.b.start(loaded)
	t.Cleanup(r.stop)
	return r
}

type lockedWriter struct{ r *rig }

func (w lockedWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.logs.Write(p)
}

func (r *rig) logText() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.logs.String()
}

// stop unregisters and shuts the backend down (as Module.Stop does) and
// checks the invariant; it runs at most once.
func (r *rig) stop() {
	if r.done {
		return
	}
	r.done = true
	r.check()
	r.reg.Unregister()
	r.b.shutdown()
	r.check()
}

// check fails the test unless the counters balance, and, while the
// backend is registered, unless "cdr show status" says the invariant is ok.
func (r *rig) check() cdr.Snapshot {
	r.t.Helper()
	if r.reg.State() != cdr.StateUnregistered {
		var b bytes.Buffer
		if err := r.e.WriteStatus(&b); err != nil {
			r.t.Fatal(err)
		}
		if out := b.String(); !strings.Contains(out, "Backend file") || !regexp.MustCompile(`invariant .*: ok\n`).MatchString(out) {
			r.t.Fatalf("cdr show status:\n%s", out)
		}
	}
	s := r.reg.Snapshot()
	if !s.Balanced() {
		r.t.Fatalf("counters do not balance: %+v", s)
	}
	return s
}

// record returns a record with sequence id seq.
func record(seq int) *cdr.Record {
	return &cdr.Record{TS: 1717430400000 + int64(seq), IP: netip.AddrFrom4([4]byte{192, 168, byte(seq >> 8), byte(seq)}),
		SubscriberID: fmt.Sprintf("subscriber-%d", seq%100), Domain: []byte("example.com"), QType: 1,
		Action: decision.Action(seq % 3), Group: 3, Category: uint32(seq), Seq: uint64(seq)}
}

// post posts records with seq from..to-1 through p and notes the JSON
// line each must have in the files.
func (r *rig) post(p *cdr.Poster, from, to int) {
	for i := from; i < to; i++ {
		rec := record(i)
		p.Post(rec)
		r.want[i] = string(append(cdr.AppendJSON(nil, rec), '\n'))
	}
}

// lines returns the JSON lines records from..to-1 were posted as.
func (r *rig) lines(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		line, ok := r.want[i]
		if !ok {
			r.t.Fatalf("record %d was not posted", i)
		}
		b.WriteString(line)
	}
	return b.String()
}

// jsonLines returns the JSON lines of records from..to-1 without IDs.
func jsonLines(from, to int) string {
	var b []byte
	for i := from; i < to; i++ {
		b = append(cdr.AppendJSON(b, record(i)), '\n')
	}
	return string(b)
}

// files returns the names in dir, sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names
}

// complete returns the content of every complete file in dir, in name
// order, and fails if a file is still *.open.
func complete(t *testing.T, dir string) (names []string, content string) {
	t.Helper()
	var b strings.Builder
	for _, n := range files(t, dir) {
		if strings.HasSuffix(n, openSuffix) {
			t.Fatalf("%s is still open: %v", n, files(t, dir))
		}
		data, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
		b.Write(data)
	}
	return names, b.String()
}

// seqs parses JSON lines and returns their seq fields in order; it fails
// on a line that is not a complete JSON object.
func seqs(t *testing.T, content string) []uint64 {
	t.Helper()
	var out []uint64
	for i, line := range strings.SplitAfter(content, "\n") {
		if line == "" {
			continue
		}
		if !strings.HasSuffix(line, "\n") {
			t.Fatalf("line %d is not complete: %q", i+1, line)
		}
		var w struct {
			Seq uint64
			ID  string
		}
		if err := json.Unmarshal([]byte(line), &w); err != nil {
			t.Fatalf("line %d: %v: %q", i+1, err, line)
		}
		if w.ID == "" {
			t.Fatalf("line %d has no id: %q", i+1, line)
		}
		out = append(out, w.Seq)
	}
	return out
}

// checkSeqs fails unless got is exactly 1..n, in order (each record
// exactly once).
func checkSeqs(t *testing.T, got []uint64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("%d records in the files, want %d", len(got), n)
	}
	for i, s := range got {
		if s != uint64(i+1) {
			t.Fatalf("record %d has seq %d, want %d (each exactly once, in order)", i, s, i+1)
		}
	}
}

// mountTmpfs mounts a tmpfs of size (such as "256k") on dir and unmounts it
// at cleanup. Without the privilege to mount it skips the test, except
// under CI=true, where it fails.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("mount -t tmpfs on %s: %v: %s", dir, err, out)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + " (needs root; CI=true makes this a failure)")
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			exec.Command("umount", "-l", dir).Run()
			t.Logf("umount %s: %v: %s", dir, err, out)
		}
	})
}

// remount changes the options of the mount at dir ("ro", "rw",
// "size=1m").
func remount(t *testing.T, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opts, dir).CombinedOutput(); err != nil {
		t.Fatalf("mount -o remount,%s %s: %v: %s", opts, dir, err, out)
	}
}
