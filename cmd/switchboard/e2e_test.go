package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/cli/remote"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// The end-to-end tests build the real binary and drive it as an operator
// would: daemon, -rx, -r in tmux, -c in tmux, signals, background mode.

const e2eVersion = "e2e-test"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

// binary builds switchboard once per test run (with -race when the tests run
// with -race, so the daemon is checked too).
func binary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test builds the binary; skipped with -short")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "sbbin")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "switchboard")
		args := []string{"build", "-ldflags", "-X main.version=" + e2eVersion, "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, ".")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	rc := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(rc)
}

// env is one test's world: a config dir, a data dir, a short socket path and
// a HOME for the console history.
type env struct {
	t                           *testing.T
	bin, conf, data, sock, home string
	extraEnv                    []string // added to the daemon's environment
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{t: t, bin: binary(t), conf: t.TempDir(), data: t.TempDir(), home: t.TempDir()}
	// Only res_prometheus (on an ephemeral port): the Kafka-dependent
	// modules need a broker and are not what this test is about.
	write(t, filepath.Join(e.conf, "modules.conf"), "[modules]\nautoload = no ; only what is named\nload => res_prometheus\n")
	write(t, filepath.Join(e.conf, "res_prometheus.conf"), "[general]\nbind = 127.0.0.1:0\n")
	// Unix socket paths are limited to ~107 bytes; t.TempDir can be long.
	sockDir, err := os.MkdirTemp("", "sbe2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	e.sock = filepath.Join(sockDir, "ctl")
	return e
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *env) environ() []string {
	return append(append(os.Environ(), "HOME="+e.home, "XDG_RUNTIME_DIR="), e.extraEnv...)
}

// daemonProc is a running "switchboard -f".
type daemonProc struct {
	cmd  *exec.Cmd
	log  *syncbuf.Buffer
	done chan struct{}
	err  error // Wait's result, valid after done
}

func (e *env) startDaemon(extra ...string) *daemonProc {
	e.t.Helper()
	d := &daemonProc{log: &syncbuf.Buffer{}, done: make(chan struct{})}
	args := append([]string{"-f", "-C", e.conf, "-D", e.data, "-s", e.sock}, extra...)
	d.cmd = exec.Command(e.bin, args...)
	d.cmd.Env = e.environ()
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.done) }()
	e.t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
		if e.t.Failed() {
			e.t.Logf("daemon log:\n%s", d.log.String())
		}
	})
	return d
}

// waitReady polls the socket until the daemon answers a command.
func (e *env) waitReady(d *daemonProc) {
	e.t.Helper()
	testwait.UntilState(e.t, 60*time.Second, "daemon answers on "+e.sock, func() (bool, string) {
		select {
		case <-d.done:
			e.t.Fatalf("daemon exited while starting: %v\n%s", d.err, d.log.String())
		default:
		}
		c, err := remote.Dial(e.sock)
		if err != nil {
			return false, err.Error()
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err = c.Run(ctx, io.Discard, "core show version")
		return err == nil, fmt.Sprint(err)
	})
}

// waitExit waits for the daemon to exit and returns its exit code.
func (d *daemonProc) waitExit(t *testing.T) int {
	t.Helper()
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon did not exit\n%s", d.log.String())
	}
	var ee *exec.ExitError
	if errors.As(d.err, &ee) {
		return ee.ExitCode()
	}
	if d.err != nil {
		t.Fatalf("wait: %v", d.err)
	}
	return 0
}

// cli runs the binary with args and returns stdout, stderr and exit code.
func (e *env) cli(args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(e.bin, args...)
	cmd.Env = e.environ()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	case err != nil:
		e.t.Fatalf("%v: %v", args, err)
	}
	return out.String(), errb.String(), 0
}

func (e *env) rx(command string) (string, string, int) {
	e.t.Helper()
	return e.cli("-rx", command, "-s", e.sock)
}

func socketGone(path string) (bool, string) {
	_, err := os.Lstat(path)
	return errors.Is(err, os.ErrNotExist), fmt.Sprint(err)
}

func TestDaemonRemoteControl(t *testing.T) {
	e := newEnv(t)

	// A daemon killed outright leaves its socket behind...
	first := e.startDaemon()
	e.waitReady(first)
	first.cmd.Process.Signal(syscall.SIGKILL)
	first.waitExit(t)
	if fi, err := os.Lstat(e.sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("killed daemon left no stale socket: %v", err)
	}
	// ...which the next daemon replaces.
	d := e.startDaemon()
	e.waitReady(d)
	fi, err := os.Lstat(e.sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o660 != 0 {
		t.Errorf("socket mode %#o is looser than 0660", perm)
	}

	// -rx success: exit 0 and the command's output.
	out, errOut, rc := e.rx("module show")
	if rc != 0 || !strings.Contains(out, "res_prometheus") || !strings.Contains(out, "Running") ||
		!strings.Contains(out, "1 modules loaded") {
		t.Errorf("-rx 'module show': exit %d\n%s%s", rc, out, errOut)
	}
	for _, col := range []string{"Module", "Description", "Use Count", "Status"} {
		if !strings.Contains(out, col) {
			t.Errorf("module show lacks column %q", col)
		}
	}
	if out, errOut, rc := e.rx("core show version"); rc != 0 || out != "switchboard "+e2eVersion+"\n" {
		t.Errorf("-rx 'core show version': exit %d, %q %q", rc, out, errOut)
	}
	if out, _, rc := e.cli("-r", "-x", "core show help module", "-s", e.sock); rc != 0 ||
		!strings.Contains(out, "module show") || !strings.Contains(out, "-- ") {
		t.Errorf("-r -x 'core show help module': exit %d, %q", rc, out)
	}

	// -rx failures: non-zero, one clear line (plus usage for wrong arguments).
	if out, errOut, rc := e.rx("frobnicate the widgets"); rc != 2 || out != "" ||
		!strings.Contains(errOut, "core show help") {
		t.Errorf("-rx unknown command: exit %d, %q %q", rc, out, errOut)
	}
	if out, errOut, rc := e.rx("core stop sideways"); rc != 1 || out != "" ||
		errOut != "core stop: expected now|gracefully, got \"sideways\"\nUsage: core stop now|gracefully\n" {
		t.Errorf("-rx usage error: exit %d, %q %q", rc, out, errOut)
	}
	if _, errOut, rc := e.rx("module load no_such_module"); rc != 1 || !strings.Contains(errOut, "no_such_module") {
		t.Errorf("-rx failing command: exit %d, %q", rc, errOut)
	}
	if _, errOut, rc := e.cli("-rx", "core show version", "-s", e.sock+".none"); rc != 3 || !strings.Contains(errOut, "is it running") {
		t.Errorf("-rx without a daemon: exit %d, %q", rc, errOut)
	}

	// A second daemon on a live socket refuses to start, and leaves the
	// first one alone.
	if _, errOut, rc := e.cli("-f", "-C", e.conf, "-D", e.data, "-s", e.sock); rc == 0 || !strings.Contains(errOut, "in use") {
		t.Errorf("second daemon: exit %d, %q", rc, errOut)
	}
	if _, _, rc := e.rx("core show uptime"); rc != 0 {
		t.Error("first daemon stopped answering after a second one was refused")
	}

	// SIGHUP is "core reload".
	d.cmd.Process.Signal(syscall.SIGHUP)
	testwait.UntilState(t, 10*time.Second, "reload after SIGHUP", func() (bool, string) {
		return strings.Contains(d.log.String(), "SIGHUP: reloading"), d.log.String()
	})
	if _, _, rc := e.rx("module show"); rc != 0 {
		t.Error("daemon not answering after SIGHUP")
	}

	// An interactive remote console completes "module sh" to "module show".
	t.Run("remote console in tmux", func(t *testing.T) {
		tm := newTmux(t, e, e.bin+" -r -s "+e.sock)
		tm.waitScreen("banner", "Connected to switchboard")
		tm.send("module sh", "Tab")
		tm.waitLineEnd("completion of 'module sh'", "CLI> module show")
		tm.send("Enter")
		tm.waitScreen("module show output", "1 modules loaded")
		// Dynamic arguments complete too: running module names.
		tm.send("module reload res_prom", "Tab")
		tm.waitLineEnd("completion of a module name", "CLI> module reload res_prometheus")
		tm.send("C-u", "bogus", "Enter")
		tm.waitScreen("unknown command error", "no such command: 'bogus'")
		tm.send("exit", "Enter")
		tm.waitGone()
		if h, err := os.ReadFile(filepath.Join(e.home, ".switchboard_history")); err != nil || !strings.Contains(string(h), "module show") {
			t.Errorf("history file: %v %q", err, h)
		}
	})

	// A remote console left open sees the daemon go.
	var watcher *tmux
	if _, err := exec.LookPath("tmux"); err == nil {
		watcher = newTmux(t, e, e.bin+" -r -s "+e.sock+"; echo EXIT=$?; sleep 60")
		watcher.waitScreen("banner", "Connected to switchboard")
	}

	// core stop gracefully: -rx answers, the daemon exits 0, the socket goes.
	if out, errOut, rc := e.rx("core stop gracefully"); rc != 0 || !strings.Contains(out, "Stopping") {
		t.Errorf("-rx 'core stop gracefully': exit %d, %q %q", rc, out, errOut)
	}
	if rc := d.waitExit(t); rc != 0 {
		t.Errorf("daemon exit %d after core stop gracefully\n%s", rc, d.log.String())
	}
	if gone, state := socketGone(e.sock); !gone {
		t.Errorf("socket not removed: %s", state)
	}
	if !strings.Contains(d.log.String(), "module unloaded") {
		t.Errorf("modules were not stopped:\n%s", d.log.String())
	}
	if watcher != nil {
		watcher.waitScreen("remote console noticing the daemon stopped", "Disconnected from switchboard.")
		watcher.waitScreen("remote console exit status", "EXIT=3")
	}
}

func TestDaemonSignals(t *testing.T) {
	e := newEnv(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		d := e.startDaemon()
		e.waitReady(d)
		d.cmd.Process.Signal(sig)
		if rc := d.waitExit(t); rc != 0 {
			t.Errorf("%v: exit %d\n%s", sig, rc, d.log.String())
		}
		if gone, state := socketGone(e.sock); !gone {
			t.Errorf("%v: socket not removed: %s", sig, state)
		}
		if !strings.Contains(d.log.String(), "module unloaded") {
			t.Errorf("%v: modules not stopped gracefully:\n%s", sig, d.log.String())
		}
	}
	// core stop now.
	d := e.startDaemon()
	e.waitReady(d)
	if _, _, rc := e.rx("core stop now"); rc != 0 {
		t.Error("core stop now failed")
	}
	if rc := d.waitExit(t); rc != 0 {
		t.Errorf("core stop now: exit %d", rc)
	}
}

func TestDaemonStartFailure(t *testing.T) {
	e := newEnv(t)
	write(t, filepath.Join(e.conf, "modules.conf"), "[modules]\nautoload = no\nrequire => res_prometheus\n")
	write(t, filepath.Join(e.conf, "res_prometheus.conf"), "[general]\nbind = 10.1.2.3:9\n") // not loopback
	d := e.startDaemon()
	if rc := d.waitExit(t); rc == 0 {
		t.Errorf("daemon with a failing required module exited 0\n%s", d.log.String())
	}
	if gone, state := socketGone(e.sock); !gone {
		t.Errorf("socket left after failed start: %s", state)
	}
}

func TestCheckConfig(t *testing.T) {
	e := newEnv(t)
	if out, errOut, rc := e.cli("--check-config", "-C", e.conf); rc != 0 || !strings.Contains(out, "valid") {
		t.Errorf("valid config: exit %d, %q %q", rc, out, errOut)
	}
	write(t, filepath.Join(e.conf, "modules.conf"),
		"[modules]\nautoload = sometimes\nload => res_nothing\nrequire => res_prometheus\nnoload => res_prometheus\n")
	_, errOut, rc := e.cli("--check-config", "-C", e.conf)
	if rc == 0 {
		t.Fatal("invalid config: exit 0")
	}
	for _, want := range []string{"modules.conf:2", "sometimes", "modules.conf:3", "res_nothing", "modules.conf:4", "both required and noloaded"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("--check-config output lacks %q:\n%s", want, errOut)
		}
	}
	// A module's own config problems are listed with file:line and key.
	write(t, filepath.Join(e.conf, "modules.conf"), "[modules]\nautoload = no\nload => res_prometheus\n")
	write(t, filepath.Join(e.conf, "res_prometheus.conf"), "[general]\nbind = 127.0.0.1:0\nenabld = yes\n")
	if _, errOut, rc := e.cli("--check-config", "-C", e.conf); rc == 0 || !strings.Contains(errOut, "res_prometheus.conf:3") ||
		!strings.Contains(errOut, "enabld") {
		t.Errorf("module config problem: exit %d, %q", rc, errOut)
	}
	if _, _, rc := e.cli("--check-config", "-C", filepath.Join(e.conf, "missing")); rc == 0 {
		t.Error("missing config dir: exit 0")
	}
}

func TestVersionAndFlags(t *testing.T) {
	e := newEnv(t)
	if out, _, rc := e.cli("--version"); rc != 0 || out != "switchboard "+e2eVersion+"\n" {
		t.Errorf("--version: %d %q", rc, out)
	}
	if _, _, rc := e.cli("-nosuchflag"); rc == 0 {
		t.Error("unknown flag accepted")
	}
	if _, errOut, rc := e.cli("-rx", "core", "show", "version"); rc == 0 || !strings.Contains(errOut, "quote") {
		t.Errorf("unquoted -rx: %d %q", rc, errOut)
	}
}

func TestBackground(t *testing.T) {
	e := newEnv(t)
	out, errOut, rc := e.cli("-C", e.conf, "-D", e.data, "-s", e.sock)
	if rc != 0 || !strings.Contains(out, "running in the background") {
		t.Fatalf("background start: exit %d, %q %q", rc, out, errOut)
	}
	t.Cleanup(func() { e.rx("core stop now") })
	if out, _, rc := e.rx("module show"); rc != 0 || !strings.Contains(out, "1 modules loaded") {
		t.Errorf("background daemon: %d %q", rc, out)
	}
	if _, _, rc := e.rx("core stop gracefully"); rc != 0 {
		t.Error("core stop gracefully failed")
	}
	testwait.UntilState(t, 30*time.Second, "background daemon to remove its socket", func() (bool, string) { return socketGone(e.sock) })
	// The socket goes first, then the modules stop and the last line is
	// logged.
	testwait.UntilState(t, 30*time.Second, "the background log to end", func() (bool, string) {
		log, err := os.ReadFile(filepath.Join(e.data, "switchboard.log"))
		return err == nil && strings.Contains(string(log), "switchboard stopped"), fmt.Sprintf("%v\n%s", err, log)
	})
}

// TestConsole runs "switchboard -c" in tmux: commands work on the terminal,
// log lines do not garble the prompt, and leaving the console stops the
// daemon.
func TestConsole(t *testing.T) {
	e := newEnv(t)
	tm := newTmux(t, e, fmt.Sprintf("%s -c -C %s -D %s -s %s; echo EXIT=$?; sleep 60", e.bin, e.conf, e.data, e.sock))
	tm.waitScreen("console banner", "'help' lists every command")
	tm.send("core show ver", "Tab")
	tm.waitLineEnd("completion", "CLI> core show version")
	tm.send("Enter")
	tm.waitScreen("version output", "switchboard "+e2eVersion)
	// A log line (from an unload, done remotely) lands above the prompt and
	// the half-typed line survives it.
	tm.send("module sh")
	tm.waitLineEnd("typed text", "CLI> module sh")
	if _, errOut, rc := e.rx("module unload res_prometheus"); rc != 0 {
		t.Errorf("remote unload failed: %s", errOut)
	}
	tm.waitScreen("log line above the prompt", `msg="module unloaded" module=res_prometheus`)
	tm.waitLineEnd("prompt redrawn with the typed text", "switchboard*CLI> module sh")
	tm.send("C-u", "exit", "Enter")
	tm.waitScreen("daemon exit status", "EXIT=0")
	if gone, state := socketGone(e.sock); !gone {
		t.Errorf("socket not removed after leaving the console: %s", state)
	}
}

// tmux drives a program in a detached tmux session on a private server.
type tmux struct {
	t      *testing.T
	server string
}

func newTmux(t *testing.T, e *env, command string) *tmux {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tmux is required in CI")
		}
		t.Skip("tmux not installed")
	}
	tm := &tmux{t: t, server: fmt.Sprintf("sbe2e-%d-%d", os.Getpid(), time.Now().UnixNano())}
	shell := fmt.Sprintf("env HOME=%s XDG_RUNTIME_DIR= TERM=xterm %s", e.home, command)
	tm.run("new-session", "-d", "-x", "200", "-y", "50", "-s", "sb", shell)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tmux screen:\n%s", tm.screen())
		}
		exec.Command("tmux", "-L", tm.server, "kill-server").Run()
	})
	return tm
}

func (tm *tmux) run(args ...string) string {
	tm.t.Helper()
	cmd := exec.Command("tmux", append([]string{"-L", tm.server}, args...)...)
	cmd.Env = append(os.Environ(), "TERM=xterm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		tm.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (tm *tmux) screen() string {
	out, _ := exec.Command("tmux", "-L", tm.server, "capture-pane", "-p", "-t", "sb").CombinedOutput()
	return string(out)
}

// send sends keys: tmux key names (Tab, Enter, C-u) or literal text.
func (tm *tmux) send(keys ...string) {
	tm.t.Helper()
	for _, k := range keys {
		switch k {
		case "Tab", "Enter", "C-u", "C-d", "C-c":
			tm.run("send-keys", "-t", "sb", k)
		default:
			tm.run("send-keys", "-t", "sb", "-l", k)
		}
	}
}

func (tm *tmux) waitScreen(what, text string) {
	tm.t.Helper()
	testwait.UntilState(tm.t, 30*time.Second, what+" ("+text+")", func() (bool, string) {
		s := tm.screen()
		return strings.Contains(s, text), s
	})
}

// waitLineEnd waits for a screen line ending with text (tmux drops trailing
// blanks, so a completion's trailing space cannot be seen).
func (tm *tmux) waitLineEnd(what, text string) {
	tm.t.Helper()
	testwait.UntilState(tm.t, 30*time.Second, what+" ("+text+")", func() (bool, string) {
		s := tm.screen()
		for _, l := range strings.Split(s, "\n") {
			if strings.HasSuffix(strings.TrimRight(l, " "), text) {
				return true, s
			}
		}
		return false, s
	})
}

// waitGone waits for the session's program to end.
func (tm *tmux) waitGone() {
	tm.t.Helper()
	testwait.UntilState(tm.t, 30*time.Second, "the console to exit", func() (bool, string) {
		err := exec.Command("tmux", "-L", tm.server, "has-session", "-t", "sb").Run()
		return err != nil, tm.screen()
	})
}
