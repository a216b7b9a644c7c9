package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/cli/remote"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
)

func testTree(t *testing.T) (*cli.Tree, *[]string) {
	t.Helper()
	tree := cli.NewTree()
	var seen []string
	err := tree.Register("test",
		&cli.Command{Path: "module show", Summary: "List modules", Usage: "module show [like <text>]",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				seen = append(seen, "module show "+strings.Join(args, "|"))
				fmt.Fprintln(w, "Module  Description")
				return nil
			}},
		&cli.Command{Path: "module load", Summary: "Load a module", Usage: "module load <name>",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.ExactArgs(args, "<name>"); err != nil {
					return err
				}
				seen = append(seen, "module load "+args[0])
				fmt.Fprint(w, "Loaded ", args[0]) // no final newline: the console adds one
				return nil
			},
			Complete: func(args []string, prefix string) []string { return []string{"res_kafka", "res_policy", "cdr"} }},
		&cli.Command{Path: "core show help", Summary: "help",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				seen = append(seen, "help "+strings.Join(args, "|"))
				return nil
			}},
	)
	if err != nil {
		t.Fatal(err)
	}
	return tree, &seen
}

func runConsole(t *testing.T, r Runner, input string, opts Options) (string, error) {
	t.Helper()
	pr, pw := io.Pipe()
	go func() {
		io.WriteString(pw, input)
		pw.Close()
	}()
	out := &syncbuf.Buffer{}
	opts.Stdin, opts.Stdout = pr, out
	c, err := New(r, opts)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		c.Close()
		t.Fatalf("console did not finish; output so far:\n%s", out.String())
	}
	return out.String(), err
}

func TestConsoleRunsLines(t *testing.T) {
	tree, seen := testTree(t)
	hist := filepath.Join(t.TempDir(), "history")
	out, err := runConsole(t, tree, "module show like res\nmodule load \"a b\"\nbogus cmd\nmodule load\nhelp module\nexit\nmodule show\n",
		Options{HistoryFile: hist, Banner: "Welcome"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"module show like|res", "module load a b", "help module"}
	if !reflect.DeepEqual(*seen, want) {
		t.Errorf("ran %q, want %q (nothing after exit)", *seen, want)
	}
	for _, s := range []string{"Welcome", "Module  Description", "Loaded a b\n",
		"no such command: 'bogus cmd'. Try 'core show help'", "module load: expected <name>, got no arguments\nUsage: module load <name>\n"} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
	h, err := os.ReadFile(hist)
	if err != nil {
		t.Fatalf("history file: %v", err)
	}
	if !strings.Contains(string(h), "module show like res") {
		t.Errorf("history lacks the line typed:\n%s", h)
	}
}

// TestConsoleUsageError runs wrong arguments at the console, against the local
// tree and through the control socket (as "switchboard -r" does): both print
// the same two lines, the usage once.
func TestConsoleUsageError(t *testing.T) {
	const want = "module load: unexpected argument \"b\"\nUsage: module load <name>\n"
	tree, _ := testTree(t)
	dir, err := os.MkdirTemp("", "sbcon")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "ctl")
	srv, err := remote.Listen(sock, tree, remote.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve() }()
	t.Cleanup(func() { srv.Close(); <-served })
	client, err := remote.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	for name, r := range map[string]Runner{"local": tree, "remote": client} {
		out, err := runConsole(t, r, "module load a b\n", Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		// On a pipe there is no prompt; the final newline is the console's
		// answer to end of input.
		if out != want+"\n" || strings.Count(out, "module load <name>") != 1 {
			t.Errorf("%s console printed:\n%q\nwant:\n%q", name, out, want+"\n")
		}
	}
}

func TestConsoleEOFEnds(t *testing.T) {
	tree, seen := testTree(t)
	if _, err := runConsole(t, tree, "module show\n", Options{}); err != nil {
		t.Fatal(err)
	}
	if len(*seen) != 1 {
		t.Errorf("ran %q", *seen)
	}
}

type failingRunner struct{ err error }

func (f failingRunner) Run(context.Context, io.Writer, string) error { return f.err }
func (f failingRunner) Complete(string) []string                     { return nil }

func TestConsoleFatalError(t *testing.T) {
	lost := errors.New("connection lost")
	out, err := runConsole(t, failingRunner{lost}, "x\ny\n", Options{Fatal: func(e error) bool { return errors.Is(e, lost) }})
	if !errors.Is(err, lost) {
		t.Fatalf("Run returned %v, want %v", err, lost)
	}
	if strings.Count(out, "connection lost") != 1 {
		t.Errorf("want one error line, the console must stop after it:\n%s", out)
	}
}

func TestConsoleCloseFromOutside(t *testing.T) {
	tree, _ := testTree(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	c, err := New(tree, Options{Stdin: pr, Stdout: &syncbuf.Buffer{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("console did not stop when its context was cancelled")
	}
}

func TestCompleter(t *testing.T) {
	tree, _ := testTree(t)
	cp := completer{tree}
	cases := []struct {
		line string
		want []string
		n    int
	}{
		{"module sh", []string{"ow "}, 2},
		{"mod", []string{"ule "}, 3},
		{"module ", []string{"load ", "show "}, 0},
		{"module load res_", []string{"kafka ", "policy "}, 4},
		{"module load c", []string{"dr "}, 1},
		{"nothing", nil, 7},
	}
	for _, c := range cases {
		got, n := cp.Do([]rune(c.line), len([]rune(c.line)))
		var gs []string
		for _, g := range got {
			gs = append(gs, string(g))
		}
		if !reflect.DeepEqual(gs, c.want) || n != c.n {
			t.Errorf("Do(%q) = %q, %d; want %q, %d", c.line, gs, n, c.want, c.n)
		}
	}
}

func TestJoinArgs(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"module", "show"}, "module show"},
		{[]string{"x", "a b", ""}, `x "a b" ""`},
	} {
		if got := joinArgs(c.in); got != c.want {
			t.Errorf("joinArgs(%q) = %q, want %q", c.in, got, c.want)
		}
		if words, _ := cli.Split(joinArgs(c.in)); !reflect.DeepEqual(words, c.in) && len(c.in[len(c.in)-1]) > 0 {
			t.Errorf("Split(joinArgs(%q)) = %q", c.in, words)
		}
	}
}
