package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/cli/remote"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
)

func configDir(t *testing.T, helloConf string) string {
	t.Helper()
	dir := t.TempDir()
	mods, err := os.ReadFile("conf/modules.conf")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "modules.conf"), mods, 0o644); err != nil {
		t.Fatal(err)
	}
	if helloConf != "" {
		if err := os.WriteFile(filepath.Join(dir, "hello_counter.conf"), []byte(helloConf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestOneCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if rc := run(context.Background(), []string{"-C", "conf", "-x", "hello say gopher"}, &out, &errOut); rc != 0 {
		t.Fatalf("exit %d: %s", rc, errOut.String())
	}
	if out.String() != "Hello, gopher!\n" {
		t.Errorf("output %q", out.String())
	}
	out.Reset()
	if rc := run(context.Background(), []string{"-C", "conf", "-x", "module show like hello"}, &out, &errOut); rc != 0 ||
		!strings.Contains(out.String(), "hello_counter") || !strings.Contains(out.String(), "1 modules loaded") {
		t.Errorf("module show: exit %d, %q", rc, out.String())
	}
	errOut.Reset()
	if rc := run(context.Background(), []string{"-C", "conf", "-x", "hello say a b"}, &out, &errOut); rc != 1 ||
		!strings.Contains(errOut.String(), "\nhello say: unexpected argument \"b\"\nUsage: hello say [name]\n") ||
		strings.Count(errOut.String(), "hello say [name]") != 1 {
		t.Errorf("usage error: exit %d, %q", rc, errOut.String())
	}
}

func TestBadConfigRefused(t *testing.T) {
	var out, errOut bytes.Buffer
	dir := configDir(t, "[general]\ngreting = Hi\n")
	// hello_counter is only "load"ed, so a bad config makes it fail (and
	// "module show" says why) without stopping the host.
	if rc := run(context.Background(), []string{"-C", dir, "-x", "module show"}, &out, &errOut); rc != 0 ||
		!strings.Contains(out.String(), "Failed") || !strings.Contains(out.String(), "hello_counter.conf:2") {
		t.Errorf("exit %d, output %q, log %q", rc, out.String(), errOut.String())
	}
}

// TestServeAndCount runs the example as a daemon on a control socket and
// drives it with the same client "switchboard -rx" uses.
func TestServeAndCount(t *testing.T) {
	dir := configDir(t, "[general]\ngreeting = Howdy\n")
	sockDir, err := os.MkdirTemp("", "custom")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "ctl")
	var errOut syncbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- run(context.Background(), []string{"-C", dir, "-s", sock}, &bytes.Buffer{}, &errOut) }()

	var c *remote.Client
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err = remote.Dial(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("socket never answered: %v\n%s", err, errOut.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.Close()
	ctx := context.Background()
	for _, name := range []string{"a", "b", "c"} {
		var out bytes.Buffer
		if err := c.Run(ctx, &out, "hello say "+name); err != nil || out.String() != "Howdy, "+name+"!\n" {
			t.Fatalf("hello say %s: %q %v", name, out.String(), err)
		}
	}
	// Reload with an invalid file keeps the old greeting and says why.
	os.WriteFile(filepath.Join(dir, "hello_counter.conf"), []byte("[general]\nbogus = 1\n"), 0o644)
	if err := c.Run(ctx, &bytes.Buffer{}, "module reload hello_counter"); err == nil {
		t.Error("reload of an invalid config succeeded")
	}
	var out bytes.Buffer
	if err := c.Run(ctx, &out, "hello count"); err != nil || out.String() != "Greetings: 3\n" {
		t.Errorf("hello count: %q %v", out.String(), err)
	}
	out.Reset()
	if err := c.Run(ctx, &out, "hello say"); err != nil || out.String() != "Howdy, world!\n" {
		t.Errorf("after failed reload: %q %v", out.String(), err)
	}
	if got := c.Complete("hello "); strings.Join(got, ",") != "count,say" {
		t.Errorf("complete: %q", got)
	}
	if err := c.Run(ctx, &out, "hello nonsense"); !errors.Is(err, cli.ErrUnknownCommand) {
		t.Errorf("unknown command: %v", err)
	}
	if err := c.Run(ctx, &out, "core stop gracefully"); err != nil {
		t.Fatal(err)
	}
	select {
	case rc := <-done:
		if rc != 0 {
			t.Errorf("exit %d", rc)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop after core stop gracefully")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}
