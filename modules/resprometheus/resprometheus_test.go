package resprometheus

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/core"
)

// counting is a module that exposes one counter, as real modules do.
type counting struct{ c prometheus.Counter }

func (m *counting) Describe(ch chan<- *prometheus.Desc) { m.c.Describe(ch) }
func (m *counting) Collect(ch chan<- prometheus.Metric) { m.c.Collect(ch) }

func startHost(t *testing.T, confText string) (*core.Host, error) {
	t.Helper()
	dir := t.TempDir()
	if confText != "" {
		if err := os.WriteFile(filepath.Join(dir, "res_prometheus.conf"), []byte(confText), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := core.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_test_things_total", Help: "Things."})
	c.Add(42)
	if err := reg.Register(info, core.ModuleInfo{Name: "counting", New: func() core.Module { return &counting{c: c} }}); err != nil {
		t.Fatal(err)
	}
	h := core.New(core.Options{Registry: reg, ConfigDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	err := h.Start(context.Background())
	t.Cleanup(func() { h.Stop(core.StopGracefully) })
	return h, err
}

func TestScrape(t *testing.T) {
	h, err := startHost(t, "[general]\nbind = 127.0.0.1:0\n")
	if err != nil {
		t.Fatal(err)
	}
	mod, ok := h.Instance(Name)
	if !ok {
		t.Fatal("res_prometheus not running")
	}
	resp, err := http.Get("http://" + mod.(*Module).Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		"switchboard_test_things_total 42",
		`switchboard_module_up{module="counting",state="Running"} 1`,
		`switchboard_module_up{module="res_prometheus",state="Running"} 1`,
		"switchboard_metrics_scrapes_total 1",
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for text, want := range map[string]string{
		"[general]\nbind = 0.0.0.0:9999\n": "res_prometheus.conf:2: [general] bind: 0.0.0.0:9999 is not a loopback address",
		"[general]\nbind = nonsense\n":     "[general] bind:",
		"[general]\nenabled = perhaps\n":   "res_prometheus.conf:2: [general] enabled",
		"[general]\nport = 1\n":            "unknown key",
		"[general]\nenabled = no\n":        "", // declines, not an error
	} {
		h, err := startHost(t, text)
		if err != nil {
			t.Fatalf("%q: host start: %v", text, err)
		}
		var st core.ModuleStatus
		for _, s := range h.Modules() {
			if s.Name == Name {
				st = s
			}
		}
		if want == "" {
			if st.State != core.StateDeclined {
				t.Errorf("%q: state %v, want declined", text, st.State)
			}
			continue
		}
		if st.State != core.StateFailed || !strings.Contains(st.LastError, want) {
			t.Errorf("%q: state %v error %q, want failed with %q", text, st.State, st.LastError, want)
		}
	}
}
