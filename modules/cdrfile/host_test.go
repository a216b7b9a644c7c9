package cdrfile

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/cdr"
)

// hostRig runs cdr + cdr_file in a core.Host.
type hostRig struct {
	t       *testing.T
	h       *core.Host
	logs    *syncbuf.Buffer
	cfgDir  string
	dataDir string
}

func startHost(t *testing.T, cdrFileConf string) *hostRig {
	t.Helper()
	r := &hostRig{t: t, logs: &syncbuf.Buffer{}, cfgDir: t.TempDir(), dataDir: t.TempDir()}
	if cdrFileConf != "" {
		r.writeConf(cdrFileConf)
	}
	reg := core.NewRegistry()
	if err := reg.Register(cdr.Info(), Info()); err != nil {
		t.Fatal(err)
	}
	r.h = core.New(core.Options{Registry: reg, ConfigDir: r.cfgDir, DataDir: r.dataDir,
		Logger: slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := r.h.Start(context.Background()); err != nil {
		t.Fatalf("start: %v\n%s", err, r.logs)
	}
	t.Cleanup(func() { r.h.Stop(core.StopGracefully) })
	return r
}

func (r *hostRig) writeConf(text string) {
	if err := os.WriteFile(filepath.Join(r.cfgDir, ConfigFile), []byte(text), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

func (r *hostRig) cli(line string) string {
	r.t.Helper()
	var b bytes.Buffer
	if err := r.h.Run(context.Background(), line, &b); err != nil {
		r.t.Fatalf("%s: %v\n%s", line, err, b.String())
	}
	return b.String()
}

func (r *hostRig) state(name string) core.ModuleStatus {
	for _, s := range r.h.Modules() {
		if s.Name == name {
			return s
		}
	}
	r.t.Fatalf("no module %s", name)
	return core.ModuleStatus{}
}

var rowRE = regexp.MustCompile(`(?m)^  ([a-z -]+?)\s{2,}(\d+)`)

// status runs "cdr show status", checks the invariant line and returns the
// counters.
func (r *hostRig) status() (map[string]uint64, string) {
	r.t.Helper()
	out := r.cli("cdr show status")
	if !strings.Contains(out, "Backend file") || !strings.Contains(out, ": ok") || strings.Contains(out, "VIOLATED") {
		r.t.Fatalf("invariant not ok:\n%s", out)
	}
	m := map[string]uint64{}
	for _, g := range rowRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseUint(g[2], 10, 64)
		m[strings.TrimSpace(g[1])] = v
	}
	return m, out
}

func (r *hostRig) waitDelivered(n uint64) {
	r.t.Helper()
	testwait.UntilState(r.t, 10*time.Second, fmt.Sprintf("%d CDRs delivered", n), func() (bool, string) {
		m, out := r.status()
		return m["delivered"] == n && m["queued"] == 0, out
	})
}

// Not enabled (the default, and the sample's setting): the module declines,
// writes nothing and says why.
func TestHostDeclinedByDefault(t *testing.T) {
	for _, text := range []string{"", "[general]\nenabled = no\n"} {
		r := startHost(t, text)
		st := r.state(Name)
		if st.State != core.StateDeclined || !strings.Contains(st.LastError, "enabled = no") {
			t.Fatalf("%q: %v %q", text, st.State, st.LastError)
		}
		if _, err := os.Stat(filepath.Join(r.dataDir, "cdr_file")); err == nil {
			t.Fatal("a declined module made its directory")
		}
	}
}

// The module in a host with cdr: "cdr test post" goes to the files;
// "cdr show status" shows the backend's lines with the invariant ok;
// the metrics are collected; stopping the host completes the file.
func TestHostTestPost(t *testing.T) {
	r := startHost(t, "[general]\nenabled = yes\nflush_ms = 20\n")
	if st := r.state(Name); st.State != core.StateRunning {
		t.Fatalf("%v %s\n%s", st.State, st.LastError, r.logs)
	}
	r.cli("cdr test post 1000 start 1")
	r.waitDelivered(1000)
	_, out := r.status()
	dir := filepath.Join(r.dataDir, "cdr_file")
	for _, want := range []string{"directory", dir, "current file", openSuffix, "bytes written", "files", "fsync", "write errors", "spool state", "direct", "replay retries"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	mod, _ := r.h.Instance(Name)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(mod.(*Module)); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got[mf.GetName()] += v
		}
	}
	if got["switchboard_cdr_file_bytes_written_total"] == 0 || got["switchboard_cdr_file_files_opened_total"] != 1 || got["switchboard_cdr_file_open_file_bytes"] == 0 {
		t.Fatalf("metrics %v", got)
	}
	if err := r.h.Unload(Name, false); err != nil {
		t.Fatal(err)
	}
	_, content := complete(t, dir)
	checkSeqs(t, seqs(t, content), 1000)
}

// Reload: format changes apply at the next file; a new directory closes the
// open file and the next CDRs go to a file there; on_error cannot change.
func TestHostReload(t *testing.T) {
	base := t.TempDir()
	dir1, dir2 := filepath.Join(base, "one"), filepath.Join(base, "two")
	r := startHost(t, "[general]\nenabled = yes\nflush_ms = 20\ndirectory = "+dir1+"\n")
	r.cli("cdr test post 5 start 1")
	r.waitDelivered(5)
	r.writeConf("[general]\nenabled = yes\nflush_ms = 20\ndirectory = " + dir1 + "\nformat = csv\ncolumns = seq\ncsv_header = yes\n")
	if err := r.h.Reload(Name); err != nil {
		t.Fatal(err)
	}
	r.cli("cdr test post 5 start 6")
	r.waitDelivered(10)
	if got := files(t, dir1); len(got) != 1 || !strings.HasSuffix(got[0], ".jsonl"+openSuffix) {
		t.Fatalf("dir one: %v", got) // the open file kept its format
	}
	r.writeConf("[general]\nenabled = yes\nflush_ms = 20\ndirectory = " + dir2 + "\nformat = csv\ncolumns = seq\ncsv_header = yes\nfile = cdr-%Y%m%d-%H%M%S.csv\n")
	if err := r.h.Reload(Name); err != nil {
		t.Fatal(err)
	}
	names1, content1 := complete(t, dir1) // closed and renamed by the directory change
	if len(names1) != 1 || fmt.Sprint(seqs(t, content1)) != "[1 2 3 4 5 6 7 8 9 10]" {
		t.Fatalf("dir one: %v\n%s", names1, content1)
	}
	r.cli("cdr test post 3 start 11")
	r.waitDelivered(13)
	r.writeConf("[general]\nenabled = yes\ndirectory = " + dir2 + "\non_error = drop\n")
	if err := r.h.Reload(Name); err == nil || !strings.Contains(err.Error(), "on_error") {
		t.Fatalf("on_error change: %v", err)
	}
	if err := r.h.Unload(Name, false); err != nil {
		t.Fatal(err)
	}
	names2, content2 := complete(t, dir2)
	if len(names2) != 1 || !strings.HasSuffix(names2[0], ".csv") || content2 != "seq\n11\n12\n13\n" {
		t.Fatalf("dir two: %v\n%q", names2, content2)
	}
}

// Loading and unloading under traffic: no record reaches the backend
// before its counters exist, every unload completes its file, and the
// counters balance after every round.
func TestHostLoadUnloadUnderTraffic(t *testing.T) {
	r := startHost(t, "[general]\nenabled = yes\nbatch_max = 1\nflush_ms = 5\n")
	e, _ := r.h.Instance(cdr.Name)
	eng := e.(*cdr.Engine)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			eng.PostSynthetic(ctx, 100, 20000, 0, 8)
		}
	}()
	dir := filepath.Join(r.dataDir, "cdr_file")
	for i := 0; i < 10; i++ {
		if err := r.h.Unload(Name, false); err != nil {
			t.Fatal(err)
		}
		ents, _ := os.ReadDir(dir) // absent until the first record
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), openSuffix) {
				t.Fatalf("round %d: %s left open after unload", i, e.Name())
			}
		}
		if err := r.h.Load(Name); err != nil {
			t.Fatal(err)
		}
		testwait.Until(t, 5*time.Second, "traffic through the loaded backend", func() bool {
			m, _ := r.status()
			return m["delivered"] > 0
		})
	}
	cancel()
	<-done
	testwait.UntilState(t, 10*time.Second, "everything accounted", func() (bool, string) {
		m, out := r.status()
		return m["queued"] == 0, out
	})
}
