package reskafka

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSampleConfigEmbedded loads samples/kafka.conf: it must be valid, use
// the embedded broker, show its address with the not-for-production note, and
// deliver a test message that kcat can see.
func TestSampleConfigEmbedded(t *testing.T) {
	sample, err := os.ReadFile(filepath.Join("..", "..", "samples", "kafka.conf"))
	if err != nil {
		t.Fatal(err)
	}
	th := startHost(t, string(sample))
	addr := th.m.EmbeddedAddr()
	if addr == "" {
		t.Fatal("embedded broker not started")
	}
	if !strings.Contains(th.logs.String(), "embedded Kafka broker started") || !strings.Contains(th.logs.String(), addr) {
		t.Errorf("embedded address not logged")
	}
	out := th.run("kafka show connection default")
	if !strings.Contains(out, addr) || !strings.Contains(out, "not production") {
		t.Errorf("show connection:\n%s", out)
	}
	if out := th.run("kafka test send connection default topic demo message hello"); !strings.Contains(out, "Message delivered to demo [") {
		t.Errorf("test send: %s", out)
	}
	if got := th.h.Commands().Complete("kafka show connection de"); len(got) != 1 || got[0] != "default" {
		t.Errorf("completion: %v", got)
	}
	for line, want := range map[string]string{
		"kafka test send connection de":                   "default",
		"kafka test send connection default ":             "topic",
		"kafka test send connection default topic t m":    "message",
		"kafka publish file connection default topic t ":  "file",
		"kafka test fatal connection default ":            "reason",
		"kafka test send connection default topic t m x ": "key",
	} {
		if got := th.h.Commands().Complete(line); len(got) != 1 || !strings.HasSuffix(got[0], want) {
			t.Errorf("completion of %q: %v, want %s", line, got, want)
		}
	}
	if _, err := exec.LookPath("kcat"); err == nil {
		cmd := exec.Command("kcat", "-L", "-b", addr, "-m", "5")
		done := make(chan struct{})
		var outb []byte
		go func() { outb, err = cmd.CombinedOutput(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if err != nil || !strings.Contains(string(outb), "demo") {
			t.Errorf("kcat -L: %v\n%s", err, outb)
		}
	}
}
