package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// plainGoEnv is the environment of a user's shell: no GOFLAGS (so no build
// tag) and no Kafka settings of the test run.
func plainGoEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GOFLAGS=") || strings.HasPrefix(kv, "KAFKA_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func runIn(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s", name, strings.Join(args, " "), dir, err, out)
	}
	return string(out)
}

// TestFreshClone does what a new user does: clone the repository alone into
// an empty directory (what is committed, nothing beside it), build every
// package with plain "go build ./...", generate the demo data with the
// Makefile and start the sample configuration on the embedded broker.
// Within 60 s of the start, CDRs reach dp_cdr and at least one is a block.
// The changes to the samples are res_prometheus and dns_firewall on free
// ports, so the test does not depend on 127.0.0.1:8088 and :5353 being free.
func TestFreshClone(t *testing.T) {
	if testing.Short() {
		t.Skip("clones and builds the repository")
	}
	for _, tool := range []string{"git", "make", "go", "kcat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	dir := filepath.Join(t.TempDir(), "switchboard")
	env := plainGoEnv()
	runIn(t, repoRoot, env, "git", "clone", "--quiet", "--no-hardlinks", repoRoot, dir)
	runIn(t, dir, env, "go", "build", "./...")
	runIn(t, dir, env, "make", "--no-print-directory", "build", "demo-data")
	for _, f := range []string{"bin/switchboard", "var/demo/policy_feed.jsonl", "var/demo/demo.pcap"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Fatalf("%s after make: %v", f, err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "samples", "res_prometheus.conf"), []byte("[general]\nbind = 127.0.0.1:0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "samples", "dns_firewall.conf"), []byte("[general]\nlisten = 127.0.0.1:0\n[upstream]\nserver = 127.0.0.1:53\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	sockDir, err := os.MkdirTemp("", "sbclone")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "ctl")
	bin := filepath.Join(dir, "bin", "switchboard")
	log := &syncbuf.Buffer{}
	start := time.Now()
	cmd := exec.Command(bin, "-f", "-C", "samples", "-D", filepath.Join(dir, "var", "data"), "-s", sock)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", log.String())
		}
	})
	rx := func(command string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "-s", sock, "-rx", command).CombinedOutput()
		return string(out), err
	}
	// The daemon answers, and the demo's CDRs reach dp_cdr, within 60 s of its start.
	var status string
	deadline := start.Add(60 * time.Second)
	testwait.UntilState(t, time.Until(deadline), "the daemon to answer (60 s from its start)", func() (bool, string) {
		out, err := rx("kafka show connection default")
		status = out
		return err == nil, fmt.Sprintf("%v\n%s", err, out)
	})
	addr := regexp.MustCompile(`embedded \((127\.0\.0\.1:\d+)[;)]`).FindStringSubmatch(status)
	if addr == nil {
		t.Fatalf("no embedded broker address in 'kafka show connection default':\n%s", status)
	}
	// The replay goes on writing dp_cdr while kcat reads it: read the first 200.
	msgs := kafkatest.KcatConsumeFirst(t, &kafkatest.Broker{Bootstrap: addr[1]}, "dp_cdr", 200, time.Until(deadline))
	actions := map[string]int{}
	for _, m := range msgs {
		if a := regexp.MustCompile(`"action":"([a-z]+)"`).FindSubmatch(m.Value); a != nil {
			actions[string(a[1])]++
		}
	}
	if actions["block"] == 0 {
		t.Fatalf("no block among %d CDRs: %v", len(msgs), actions)
	}
	t.Logf("fresh clone: %d CDRs on dp_cdr %s after the start, actions %v", len(msgs), time.Since(start).Round(time.Millisecond), actions)
}

// librarySnippet returns the Go program of the README's "As a library"
// section.
func librarySnippet(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	i := strings.Index(s, "### 3. As a library")
	if i < 0 {
		t.Fatal("README has no '### 3. As a library' section")
	}
	m := regexp.MustCompile("(?s)```go\n(.*?)```").FindStringSubmatch(s[i:])
	if m == nil || !strings.Contains(m[1], "package main") {
		t.Fatal("the README's library section has no complete Go program")
	}
	return m[1]
}

// TestLibraryOutsideRepo builds the README's library example as a user
// would: a new module in an empty directory that requires switchboard
// (a replace directive points at this checkout), plain go build, no tag.
// The binary is then the whole daemon: it runs its own module next to the
// host, answers -rx with the module's command and its usage errors, checks
// its config, and stops on SIGTERM.
func TestLibraryOutsideRepo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program outside the repository")
	}
	dir := t.TempDir()
	gomod := fmt.Sprintf("module example.com/mydaemon\n\ngo 1.26\n\nrequire github.com/switchboard-dp/switchboard v0.0.0\n\nreplace github.com/switchboard-dp/switchboard => %s\n", repoRoot)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(librarySnippet(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(repoRoot, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.sum"), sum, 0o644); err != nil {
		t.Fatal(err)
	}
	env := plainGoEnv()
	runIn(t, dir, append(env, "GOFLAGS=-mod=mod"), "go", "build", "-o", "mydaemon", ".")

	conf := filepath.Join(dir, "conf")
	if err := os.MkdirAll(conf, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, text := range map[string]string{
		"modules.conf": "[modules]\nautoload = no\nload => hello\n",
		"hello.conf":   "[general]\ngreeting = Howdy\n",
	} {
		if err := os.WriteFile(filepath.Join(conf, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(dir, "mydaemon")
	if out, err := exec.Command(bin, "--check-config", "-C", conf).CombinedOutput(); err != nil {
		t.Fatalf("--check-config: %v\n%s", err, out)
	}
	sockDir, err := os.MkdirTemp("", "sblib")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "ctl")
	log := &syncbuf.Buffer{}
	cmd := exec.Command(bin, "-f", "-C", conf, "-D", filepath.Join(dir, "data"), "-s", sock)
	cmd.Dir, cmd.Env = dir, env
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() }) // a failed test leaves no daemon behind
	rx := func(command string) (string, int) {
		out, err := exec.Command(bin, "-s", sock, "-rx", command).CombinedOutput()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), ee.ExitCode()
		}
		return string(out), 0
	}
	testwait.UntilState(t, 30*time.Second, "an answer to hello say you", func() (bool, string) {
		out, rc := rx("hello say you")
		if rc == 0 {
			if out != "Howdy, you!\n" {
				t.Fatalf("hello say you: %q", out)
			}
			return true, ""
		}
		select {
		case err := <-exited:
			t.Fatalf("the program exited: %v\n%s", err, log.String())
		default:
		}
		return false, fmt.Sprintf("%q\n%s", out, log.String())
	})
	if out, rc := rx("hello say a b"); rc != 1 || out != "hello say: unexpected argument \"b\"\nUsage: hello say [name]\n" {
		t.Errorf("usage error: exit %d, %q", rc, out)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, log.String())
		}
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("no exit after SIGTERM:\n%s", log.String())
	}
	if !hasLogLine(log.String(), "module unloaded", "module=hello") {
		t.Errorf("hello was not stopped:\n%s", log.String())
	}
}

// hasLogLine reports whether a line of log holds every one of parts.
func hasLogLine(log string, parts ...string) bool {
	for _, l := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(l, p)
		}
		if all {
			return true
		}
	}
	return false
}
