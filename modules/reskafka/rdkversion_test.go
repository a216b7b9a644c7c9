package reskafka

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
)

func TestCheckRdkafkaVersion(t *testing.T) {
	for _, c := range []struct {
		v  int
		ok bool
	}{
		{0x020b01ff, true},  // 2.11.1
		{0x020000ff, true},  // 2.0.0
		{0x02000001, true},  // a 2.0.0 pre-release
		{0x02ffffff, true},  // the last 2.x
		{0x010902ff, false}, // 1.9.2
		{0x01ffffff, false},
		{0x03000000, false}, // a 3.0.0 pre-release
		{0x030000ff, false}, // 3.0.0
		{0, false},
	} {
		err := checkRdkafkaVersion(c.v)
		if (err == nil) != c.ok {
			t.Errorf("%#x: %v, want ok=%v", c.v, err, c.ok)
		}
	}
	err := checkRdkafkaVersion(0x030100ff)
	if err == nil {
		t.Fatal("3.1.0 accepted")
	}
	for _, want := range []string{"3.1.0 (0x030100ff)", ">= 2.0.0 (0x02000000)", "< 3.0.0 (0x03000000)", "sb_rdkafka.h"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not name %q", err, want)
		}
	}
}

// TestStartRefusesUnsupportedRdkafka: res_kafka does not start on a
// librdkafka its declarations are not written for, and says why.
func TestStartRefusesUnsupportedRdkafka(t *testing.T) {
	if err := checkRdkafkaVersion(rdkafkaLinkedVersion()); err != nil {
		t.Fatalf("the linked librdkafka: %v", err)
	}
	orig := rdkafkaLinkedVersion
	rdkafkaLinkedVersion = func() int { return 0x030000ff }
	defer func() { rdkafkaLinkedVersion = orig }()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kafka.conf"), []byte("[main]\nbrokers = 127.0.0.1:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	reg := core.NewRegistry()
	if err := reg.Register(Info()); err != nil {
		t.Fatal(err)
	}
	h := core.New(core.Options{Registry: reg, ConfigDir: dir, DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Stop(core.StopGracefully)
	if _, ok := h.Instance("res_kafka"); ok {
		t.Fatal("res_kafka started on librdkafka 3.0.0")
	}
	if !strings.Contains(logs.String(), "the linked librdkafka is 3.0.0 (0x030000ff)") {
		t.Fatalf("the refusal is not logged:\n%s", logs)
	}
}
