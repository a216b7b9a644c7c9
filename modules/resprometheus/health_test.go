package resprometheus

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/switchboard-dp/switchboard/core"
)

// gate is a module whose readiness the test sets, as res_kafka's follows its
// connections and policy_sync's its first sync.
type gate struct{ ready *atomic.Bool }

func (g *gate) Ready() (bool, string) {
	if g.ready.Load() {
		return true, ""
	}
	return false, "waiting for the gate"
}

// slowStop starts after res_prometheus (so it stops before it) and holds
// its Stop until released: the host is stopping while /ready still answers.
type slowStop struct {
	stopping chan struct{}
	release  chan struct{}
}

func (s *slowStop) Stop(context.Context) error {
	close(s.stopping)
	<-s.release
	return nil
}

// broken fails to start.
type broken struct{}

func (broken) Start(*core.Context) error { return errors.New("cannot start: on purpose") }

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestHealthAndReady: /healthz answers 200 while the host answers; /ready
// is 503 with the reason while a module is not ready, 200 once it is, 503
// when a module failed, and 503 ("stopping") once the host stops.
func TestHealthAndReady(t *testing.T) {
	var open atomic.Bool
	slow := &slowStop{stopping: make(chan struct{}), release: make(chan struct{})}
	start := func(withBroken bool) (*core.Host, string) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "res_prometheus.conf"), []byte("[general]\nbind = 127.0.0.1:0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		reg := core.NewRegistry()
		infos := []core.ModuleInfo{info, {Name: "gate", New: func() core.Module { return &gate{ready: &open} }},
			{Name: "slowstop", Priority: info.Priority + 1, New: func() core.Module { return slow }}}
		if withBroken {
			infos = append(infos, core.ModuleInfo{Name: "broken", New: func() core.Module { return broken{} }})
		}
		if err := reg.Register(infos...); err != nil {
			t.Fatal(err)
		}
		h := core.New(core.Options{Registry: reg, ConfigDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err := h.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Stop(core.StopGracefully) })
		mod, ok := h.Instance(Name)
		if !ok {
			t.Fatal("res_prometheus not running")
		}
		return h, "http://" + mod.(*Module).Addr()
	}
	h, base := start(false)
	if code, body := get(t, base+"/healthz"); code != 200 || !strings.HasPrefix(body, "ok") {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, body := get(t, base+"/ready"); code != 503 || !strings.Contains(body, "module gate: waiting for the gate") {
		t.Errorf("/ready with the gate shut: %d %q", code, body)
	}
	open.Store(true)
	if code, body := get(t, base+"/ready"); code != 200 || body != "ready\n" {
		t.Errorf("/ready with the gate open: %d %q", code, body)
	}
	// Stopping: slowstop stops first and holds; res_prometheus still serves.
	stopped := make(chan struct{})
	go func() {
		h.Stop(core.StopGracefully)
		close(stopped)
	}()
	<-slow.stopping
	if code, body := get(t, base+"/ready"); code != 503 || !strings.Contains(body, "stopping") {
		t.Errorf("/ready while stopping: %d %q", code, body)
	}
	close(slow.release)
	<-stopped
	slow = &slowStop{stopping: make(chan struct{}), release: make(chan struct{})}
	close(slow.release)

	// A failed module: not ready, with its error.
	_, base = start(true)
	if code, body := get(t, base+"/ready"); code != 503 || !strings.Contains(body, "module broken failed: cannot start: on purpose") {
		t.Errorf("/ready with a failed module: %d %q", code, body)
	}
}
