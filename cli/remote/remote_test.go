package remote

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// sockPath returns a short socket path (Unix socket paths are limited to
// about 107 bytes, and t.TempDir can be long).
func sockPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sbsock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "ctl")
}

func testTree(t *testing.T) *cli.Tree {
	t.Helper()
	tree := cli.NewTree()
	err := tree.Register("test",
		&cli.Command{Path: "echo", Usage: "echo <words>",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.MinArgs(args, "<words>"); err != nil {
					return err
				}
				fmt.Fprintln(w, strings.Join(args, " "))
				return nil
			}},
		&cli.Command{Path: "fail", Run: func(_ context.Context, w io.Writer, _ []string) error {
			fmt.Fprintln(w, "partial output")
			return errors.New("it broke")
		}},
		&cli.Command{Path: "panic", Run: func(context.Context, io.Writer, []string) error { panic("boom") }},
		&cli.Command{Path: "module show", Run: func(context.Context, io.Writer, []string) error { return nil },
			Complete: func([]string, string) []string { return []string{"like"} }},
		&cli.Command{Path: "module load", Run: func(context.Context, io.Writer, []string) error { return nil }},
	)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

func startServer(t *testing.T, path string, r Runner, opts Options) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger()
	}
	srv, err := Listen(path, r, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve() }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

func dial(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRunAndComplete(t *testing.T) {
	path := sockPath(t)
	startServer(t, path, testTree(t), Options{})
	c := dial(t, path)
	ctx := context.Background()

	var out bytes.Buffer
	if err := c.Run(ctx, &out, `echo hello "big world"`); err != nil || out.String() != "hello big world\n" {
		t.Errorf("echo: %q, %v", out.String(), err)
	}

	out.Reset()
	err := c.Run(ctx, &out, "nosuch thing")
	var ce *CommandError
	if !errors.As(err, &ce) || !errors.Is(err, cli.ErrUnknownCommand) || !strings.Contains(err.Error(), "core show help") {
		t.Errorf("unknown command: %v (%T)", err, err)
	}

	out.Reset()
	err = c.Run(ctx, &out, "fail")
	if err == nil || errors.Is(err, cli.ErrUnknownCommand) || err.Error() != "it broke" || out.String() != "partial output\n" {
		t.Errorf("failing command: %q, %v", out.String(), err)
	}

	err = c.Run(ctx, &out, "echo")
	if err == nil || err.Error() != "echo: expected <words>, got no arguments\nUsage: echo <words>" ||
		!errors.Is(err, cli.ErrUsage) || errors.Is(err, cli.ErrUnknownCommand) {
		t.Errorf("usage error: %v", err)
	}
	if errors.Is(c.Run(ctx, &out, "fail"), cli.ErrUsage) {
		t.Error("a failing command reads as wrong arguments")
	}

	if err := c.Run(ctx, &out, "panic"); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Errorf("panic: %v", err)
	}
	// The connection survives all of the above.
	for line, want := range map[string][]string{"module s": {"show"}, "mo": {"module"}, "module show ": {"like"}, "zzz": nil} {
		if got := c.Complete(line); !reflect.DeepEqual(got, want) {
			t.Errorf("Complete(%q) = %q, want %q", line, got, want)
		}
	}
}

// TestUsageErrorSameRemotely runs wrong arguments through the server and the
// client: the client's error prints (as -rx and the remote console print it)
// exactly the two lines the local tree returns, the usage once.
func TestUsageErrorSameRemotely(t *testing.T) {
	tree := cli.NewTree()
	err := tree.Register("test", &cli.Command{Path: "policy lookup", Usage: "policy lookup <group> <domain>\n  Decides a domain.",
		Run: func(_ context.Context, w io.Writer, args []string) error {
			return cli.ExactArgs(args, "<group>", "<domain>")
		}})
	if err != nil {
		t.Fatal(err)
	}
	path := sockPath(t)
	startServer(t, path, tree, Options{})
	c := dial(t, path)
	const want = "policy lookup: expected <group> and <domain>, got 1 argument\nUsage: policy lookup <group> <domain>\n"

	local := tree.Run(context.Background(), io.Discard, "policy lookup enterprise_a")
	var out bytes.Buffer
	remoteErr := c.Run(context.Background(), &out, "policy lookup enterprise_a")
	var ce *CommandError
	if !errors.As(remoteErr, &ce) || !ce.Usage || ce.Unknown || !errors.Is(remoteErr, cli.ErrUsage) || out.Len() != 0 {
		t.Fatalf("remote: %#v, output %q", remoteErr, out.String())
	}
	for name, err := range map[string]error{"local": local, "remote": remoteErr} {
		var printed bytes.Buffer
		fmt.Fprintln(&printed, err) // what the consoles and -rx print
		if printed.String() != want {
			t.Errorf("%s prints %q, want %q", name, printed.String(), want)
		}
		if n := strings.Count(printed.String(), "policy lookup <group> <domain>"); n != 1 {
			t.Errorf("%s: usage printed %d times", name, n)
		}
	}
}

func TestSocketMode(t *testing.T) {
	for _, mode := range []os.FileMode{0, 0o600} {
		path := sockPath(t)
		srv := startServer(t, path, testTree(t), Options{Mode: mode})
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		want := mode
		if want == 0 {
			want = DefaultMode
		}
		if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != want {
			t.Errorf("socket mode %v, want socket with %#o", fi.Mode(), want)
		}
		if fi.Mode().Perm()&0o007 != 0 {
			t.Errorf("others may use the socket: %v", fi.Mode())
		}
		// No temporary file is left next to it.
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Errorf("directory holds %d entries, want only the socket", len(entries))
		}
		srv.Close()
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket not removed by Close: %v", err)
		}
	}
	if _, err := Listen(sockPath(t), testTree(t), Options{Mode: 0o666}); err == nil {
		t.Error("mode 0666 accepted")
	}
}

func TestLiveSocketRefused(t *testing.T) {
	path := sockPath(t)
	startServer(t, path, testTree(t), Options{})
	_, err := Listen(path, testTree(t), Options{Logger: quietLogger()})
	if !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen: %v, want ErrInUse", err)
	}
	// The first server still answers.
	var out bytes.Buffer
	if err := dial(t, path).Run(context.Background(), &out, "echo ok"); err != nil || out.String() != "ok\n" {
		t.Errorf("first server after refused second: %q %v", out.String(), err)
	}
}

// TestStaleSocketReplaced leaves a socket behind from a process that died
// (killed, so it could not clean up) and checks the next server takes over.
func TestStaleSocketReplaced(t *testing.T) {
	path := sockPath(t)
	if os.Getenv("SB_REMOTE_HELPER") == "" {
		// Make the stale socket in a child process that is then SIGKILLed.
		cmd := exec.Command(os.Args[0], "-test.run=^TestStaleSocketHelper$")
		cmd.Env = append(os.Environ(), "SB_REMOTE_HELPER="+path)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "listening") {
			t.Fatalf("helper: %q %v", line, err)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("no stale socket left behind: %v", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		t.Fatal("stale socket still answers")
	}
	startServer(t, path, testTree(t), Options{})
	var out bytes.Buffer
	if err := dial(t, path).Run(context.Background(), &out, "echo replaced"); err != nil || out.String() != "replaced\n" {
		t.Errorf("after replacing a stale socket: %q %v", out.String(), err)
	}
}

// TestStaleSocketHelper is the child process of TestStaleSocketReplaced.
func TestStaleSocketHelper(t *testing.T) {
	path := os.Getenv("SB_REMOTE_HELPER")
	if path == "" {
		t.Skip("helper process only")
	}
	srv, err := Listen(path, cli.NewTree(), Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	fmt.Println("listening")
	select {} // killed by the parent
}

func TestNonSocketNotReplaced(t *testing.T) {
	path := sockPath(t)
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, testTree(t), Options{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("regular file was touched")
	}
}

func TestConcurrentClients(t *testing.T) {
	path := sockPath(t)
	startServer(t, path, testTree(t), Options{})
	const clients, each = 16, 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := Dial(path)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := range each {
				var out bytes.Buffer
				want := fmt.Sprintf("client %d line %d", i, j)
				if err := c.Run(context.Background(), &out, "echo "+want); err != nil || out.String() != want+"\n" {
					errs <- fmt.Errorf("%q: got %q, %v", want, out.String(), err)
					return
				}
				if j%10 == 0 {
					if got := c.Complete("mod"); !reflect.DeepEqual(got, []string{"module"}) {
						errs <- fmt.Errorf("complete: %q", got)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// blockingRunner runs "block" until released, to test Close's draining.
type blockingRunner struct {
	started chan struct{}
	release chan struct{}
}

func (b *blockingRunner) Run(ctx context.Context, w io.Writer, line string) error {
	close(b.started)
	select {
	case <-b.release:
		fmt.Fprintln(w, "finished")
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
func (b *blockingRunner) Complete(string) []string { return nil }

func TestCloseLetsRunningCommandAnswer(t *testing.T) {
	path := sockPath(t)
	br := &blockingRunner{started: make(chan struct{}), release: make(chan struct{})}
	srv, err := Listen(path, br, Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	busy, idle := dial(t, path), dial(t, path)
	idle.Complete("x") // make sure the idle connection is accepted
	res := make(chan error, 1)
	var out bytes.Buffer
	go func() { res <- busy.Run(context.Background(), &out, "block") }()
	<-br.started
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	// The idle client is dropped; the busy one still gets its answer.
	testwait.Until(t, 5*time.Second, "Close to close the idle connection", func() bool {
		return idle.Run(context.Background(), io.Discard, "x") != nil
	})
	close(br.release)
	if err := <-res; err != nil || out.String() != "finished\n" {
		t.Errorf("running command during Close: %q %v", out.String(), err)
	}
	<-closed
	if err := busy.Run(context.Background(), io.Discard, "x"); !errors.Is(err, ErrDisconnected) {
		t.Errorf("after Close: %v, want ErrDisconnected", err)
	}
}

func TestDialNoDaemon(t *testing.T) {
	_, err := Dial(sockPath(t))
	if err == nil || !strings.Contains(err.Error(), "is it running") {
		t.Errorf("Dial without daemon: %v", err)
	}
}

func TestMalformedRequest(t *testing.T) {
	path := sockPath(t)
	startServer(t, path, testTree(t), Options{})
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintln(conn, `{"op":"frobnicate"}`)
	fmt.Fprintln(conn, `not json`)
	r := bufio.NewReader(conn)
	l1, _ := r.ReadString('\n')
	l2, _ := r.ReadString('\n')
	if !strings.Contains(l1, `unknown op`) || !strings.Contains(l2, "malformed request") {
		t.Errorf("answers %q, %q", l1, l2)
	}
	if _, err := r.ReadString('\n'); err == nil {
		t.Error("connection not closed after a malformed request")
	}
}

func TestContextCancelsClientRun(t *testing.T) {
	path := sockPath(t)
	br := &blockingRunner{started: make(chan struct{}), release: make(chan struct{})}
	startServer(t, path, br, Options{DrainTimeout: 100 * time.Millisecond})
	c := dial(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() { res <- c.Run(ctx, io.Discard, "block") }()
	<-br.started
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
	close(br.release)
}

func TestDoneWhenDaemonGoes(t *testing.T) {
	path := sockPath(t)
	srv, err := Listen(path, testTree(t), Options{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve()
	c := dial(t, path)
	if err := c.Run(context.Background(), io.Discard, "echo x"); err != nil {
		t.Fatal(err)
	}
	srv.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the server closed an idle connection")
	}
	if err := c.Run(context.Background(), io.Discard, "echo x"); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Run after disconnect: %v", err)
	}
}
