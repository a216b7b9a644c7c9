package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotify runs the daemon as systemd would, with NOTIFY_SOCKET
// pointing at a datagram socket the test listens on and a 400 ms watchdog:
// READY=1 with a STATUS line after start, WATCHDOG=1 pings, RELOADING=1
// then READY=1 around SIGHUP, STOPPING=1 at SIGTERM. Without NOTIFY_SOCKET
// the daemon logs nothing about it.
func TestSystemdNotify(t *testing.T) {
	e := newEnv(t)
	dir, err := os.MkdirTemp("", "sbnotify")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sockPath := filepath.Join(dir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	// next waits for a notification containing want, returning every one
	// seen on the way.
	next := func(want string) []string {
		t.Helper()
		var seen []string
		deadline := time.After(20 * time.Second)
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					t.Fatalf("notify socket closed waiting for %q; seen %q", want, seen)
				}
				seen = append(seen, m)
				if strings.Contains(m, want) {
					return seen
				}
			case <-deadline:
				t.Fatalf("no %q notification within 20 s; seen %q", want, seen)
			}
		}
	}
	e.extraEnv = []string{"NOTIFY_SOCKET=" + sockPath, "WATCHDOG_USEC=400000"}
	d := e.startDaemon()
	seen := next("READY=1")
	if last := seen[len(seen)-1]; !strings.Contains(last, "STATUS=1 modules running") {
		t.Errorf("READY without the status line: %q", last)
	}
	for _, m := range seen[:len(seen)-1] {
		if strings.Contains(m, "WATCHDOG=1") {
			t.Errorf("a watchdog ping before READY=1: %q", seen)
		}
	}
	// Ready means the control socket answers at once.
	if _, _, rc := e.rx("core show version"); rc != 0 {
		t.Error("READY=1 before the control socket answers")
	}
	start := time.Now()
	next("WATCHDOG=1")
	next("WATCHDOG=1")
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("two watchdog pings took %v (interval 400 ms: one every 200 ms)", el)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	next("RELOADING=1")
	next("READY=1")
	d.cmd.Process.Signal(syscall.SIGTERM)
	next("STOPPING=1")
	if rc := d.waitExit(t); rc != 0 {
		t.Errorf("exit %d", rc)
	}

	// Without NOTIFY_SOCKET: nothing sent, nothing logged.
	e.extraEnv = nil
	d = e.startDaemon()
	e.waitReady(d)
	d.cmd.Process.Signal(syscall.SIGTERM)
	if rc := d.waitExit(t); rc != 0 {
		t.Errorf("exit %d without NOTIFY_SOCKET", rc)
	}
	if strings.Contains(d.log.String(), "service manager") || strings.Contains(d.log.String(), "watchdog") {
		t.Errorf("the daemon talked about systemd without NOTIFY_SOCKET:\n%s", d.log.String())
	}
}

// TestSystemdUnitVerifies: systemd-analyze accepts the shipped unit (with
// ExecStart pointing at the binary under test).
func TestSystemdUnitVerifies(t *testing.T) {
	tool, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze not found (apt-get install systemd; scripts/deps.sh installs it)")
	}
	unit, err := os.ReadFile("../../packaging/systemd/switchboard.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "WatchdogSec=", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "ReadWritePaths=/var/lib/switchboard", "CapabilityBoundingSet=", "User=switchboard"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %q", want)
		}
	}
	path := filepath.Join(t.TempDir(), "switchboard.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(string(unit), "/usr/bin/switchboard", binary(t))), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tool, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "switchboard.service") {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
