package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/daemon"
	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// configDir copies conf/ into a temporary directory, with kafka.conf on the
// test broker (the real one under make test) and the given overrides.
func configDir(t *testing.T, overrides map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files, err := filepath.Glob("conf/*.conf")
	if err != nil || len(files) == 0 {
		t.Fatalf("no sample configs: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := kafkatest.Shared(t)
	overrides["kafka.conf"] = fmt.Sprintf("[default]\ntype = connection\nbrokers = %s\n", b.Bootstrap)
	for name, text := range overrides {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// rx runs "custom -rx command" in-process and returns stdout, stderr and
// the exit status.
func rx(sock, command string) (string, string, int) {
	var out, errOut bytes.Buffer
	rc := daemon.Run(options, []string{"-rx", command, "-s", sock}, &out, &errOut)
	return out.String(), errOut.String(), rc
}

// TestDaemon runs the example exactly as its main does, as a daemon on a
// control socket, and drives it with -rx: greetings are counted, go through
// Kafka and come back, a bad reload keeps the old greeting, wrong
// arguments read as everywhere else, and "core stop" ends it.
func TestDaemon(t *testing.T) {
	topic := kafkatest.UniqueTopic(t, "greetings")
	dir := configDir(t, map[string]string{
		"hello_counter.conf": "[general]\ngreeting = Howdy\n",
		"hello_kafka.conf":   "[general]\ntopic = " + topic + "\n",
	})
	sockDir, err := os.MkdirTemp("", "custom")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "ctl")
	log := &syncbuf.Buffer{}
	done := make(chan int, 1)
	go func() {
		done <- daemon.Run(options, []string{"-f", "-C", dir, "-D", t.TempDir(), "-s", sock}, log, log)
	}()
	defer func() {
		if t.Failed() {
			t.Logf("daemon log:\n%s", log.String())
		}
	}()
	testwait.UntilState(t, 60*time.Second, "the daemon to answer", func() (bool, string) {
		out, errOut, rc := rx(sock, "core show version")
		return rc == 0, out + errOut
	})
	for _, name := range []string{"a", "b", "c"} {
		if out, errOut, rc := rx(sock, "hello say "+name); rc != 0 || out != "Howdy, "+name+"!\n" {
			t.Fatalf("hello say %s: exit %d, %q %q", name, rc, out, errOut)
		}
	}
	// Each greeting is a CDR, which the module receives back as a backend;
	// the engine's counters for it balance.
	testwait.UntilState(t, 10*time.Second, "the greetings' CDRs", func() (bool, string) {
		out, _, _ := rx(sock, "hello count")
		return out == "Greetings: 3\nCDRs received: allow 3, block 0, sinkhole 0\n", out
	})
	if out, _, _ := rx(sock, "cdr show status"); !strings.Contains(out, "hello") || !strings.Contains(out, ": ok") {
		t.Errorf("cdr show status:\n%s", out)
	}
	testwait.UntilState(t, 60*time.Second, "the greetings back from Kafka", func() (bool, string) {
		out, _, _ := rx(sock, "hello heard")
		return strings.Contains(out, "produced 3, failed 0, heard back 3"), out
	})
	// An invalid file is refused by the host, which keeps the old greeting.
	os.WriteFile(filepath.Join(dir, "hello_counter.conf"), []byte("[general]\nbogus = 1\n"), 0o644)
	if _, errOut, rc := rx(sock, "module reload hello_counter"); rc != 1 || !strings.Contains(errOut, "hello_counter.conf:2: [general] bogus") {
		t.Errorf("reload of an invalid config: exit %d, %q", rc, errOut)
	}
	if out, _, _ := rx(sock, "hello say"); out != "Howdy, world!\n" {
		t.Errorf("after the refused reload: %q", out)
	}
	if out, errOut, rc := rx(sock, "hello say a b"); rc != 1 || out != "" ||
		errOut != "hello say: unexpected argument \"b\"\nUsage: hello say [name]\n" {
		t.Errorf("usage error: exit %d, %q %q", rc, out, errOut)
	}
	if _, _, rc := rx(sock, "hello nonsense"); rc != 2 {
		t.Errorf("unknown command: exit %d, want 2", rc)
	}
	if _, errOut, rc := rx(sock, "core stop gracefully"); rc != 0 {
		t.Fatalf("core stop: exit %d %s", rc, errOut)
	}
	select {
	case rc := <-done:
		if rc != 0 {
			t.Errorf("daemon exit %d", rc)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop after core stop gracefully")
	}
}

// --check-config reads every declared file of the example modules.
func TestCheckConfig(t *testing.T) {
	var out, errOut bytes.Buffer
	if rc := daemon.Run(options, []string{"--check-config", "-C", "conf"}, &out, &errOut); rc != 0 {
		t.Fatalf("sample config: exit %d, %s%s", rc, out.String(), errOut.String())
	}
	dir := configDir(t, map[string]string{"hello_kafka.conf": "[general]\ntopik = x\n"})
	out.Reset()
	errOut.Reset()
	if rc := daemon.Run(options, []string{"--check-config", "-C", dir}, &out, &errOut); rc != 1 ||
		!strings.Contains(errOut.String(), "hello_kafka.conf:2: [general] topik: unknown key") {
		t.Errorf("bad config: exit %d, %q", rc, errOut.String())
	}
}
