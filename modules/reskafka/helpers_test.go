package reskafka

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
)

// testHost runs res_kafka alone in a host on kafka.conf text.
type testHost struct {
	t    testing.TB
	h    *core.Host
	m    *Module
	logs *syncbuf.Buffer
	dir  string
}

func startHost(t testing.TB, kafkaConf string) *testHost {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kafka.conf"), []byte(kafkaConf), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := core.NewRegistry()
	if err := reg.Register(Info()); err != nil {
		t.Fatal(err)
	}
	h := core.New(core.Options{Registry: reg, ConfigDir: dir, DataDir: t.TempDir(), Logger: logger})
	if err := h.Start(context.Background()); err != nil {
		t.Fatalf("start: %v\nlogs:\n%s", err, logs)
	}
	inst, ok := h.Instance("res_kafka")
	if !ok {
		t.Fatalf("res_kafka not running; logs:\n%s", logs)
	}
	th := &testHost{t: t, h: h, m: inst.(*Module), logs: logs, dir: dir}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("status at failure:\n%s\n%s", th.run("kafka show status"), th.run("kafka show consumers"))
			for _, s := range th.m.allSubscriptions() {
				t.Logf("%s", th.run("kafka show consumer "+s.name))
			}
		}
		h.Stop(core.StopGracefully)
		if t.Failed() {
			var lines []string
			for _, l := range strings.Split(logs.String(), "\n") {
				if !strings.Contains(l, "level=DEBUG") {
					lines = append(lines, l)
				}
			}
			if len(lines) > 200 {
				lines = lines[len(lines)-200:]
			}
			t.Logf("logs:\n%s", strings.Join(lines, "\n"))
		}
	})
	return th
}

// run runs a CLI line and returns its output.
func (th *testHost) run(line string) string {
	th.t.Helper()
	var b bytes.Buffer
	if err := th.h.Run(context.Background(), line, &b); err != nil {
		fmt.Fprintf(&b, "ERROR: %v\n", err)
	}
	return b.String()
}

// writeConf replaces kafka.conf.
func (th *testHost) writeConf(text string) {
	th.t.Helper()
	if err := os.WriteFile(filepath.Join(th.dir, "kafka.conf"), []byte(text), 0o600); err != nil {
		th.t.Fatal(err)
	}
}

func uniqueTopic(t testing.TB) string {
	return strings.NewReplacer("/", "-", " ", "-").Replace(fmt.Sprintf("rk-%s-%d", t.Name(), time.Now().UnixNano()%1e9))
}
