package console

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
)

// TestOutputWholeUnderLogFlood drives the console through a pseudo-terminal
// (raw mode, prompt redraws, as a user's terminal) while a logger writes
// lines above the prompt as fast as it can, and runs commands that write
// their output in many small pieces. On the captured screen every
// command's output must be contiguous: no log line and no prompt inside it.
func TestOutputWholeUnderLogFlood(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("open a pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	const lines = 40
	tree := cli.NewTree()
	if err := tree.Register("test", &cli.Command{Path: "pieces", Summary: "write in pieces", Usage: "pieces <n>",
		Run: func(_ context.Context, w io.Writer, args []string) error {
			for i := 0; i < lines; i++ {
				fmt.Fprintf(w, "OUT-%s ", args[0])
				time.Sleep(50 * time.Microsecond) // let the logger in between the pieces
				fmt.Fprintf(w, "line %d\n", i)
			}
			return nil
		}}); err != nil {
		t.Fatal(err)
	}
	screen := &syncbuf.Buffer{}
	copied := make(chan struct{})
	go func() {
		io.Copy(screen, ptmx)
		close(copied)
	}()
	c, err := New(tree, Options{Stdin: tty, Stdout: tty})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Run(context.Background()) }()

	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			fmt.Fprintf(c.LogWriter(), "LOG %d\n", i)
			time.Sleep(20 * time.Microsecond) // the flood's pace: at most 50,000 lines a second
		}
	}()
	const commands = 5
	for n := 0; n < commands; n++ {
		if _, err := fmt.Fprintf(ptmx, "pieces %d\r", n); err != nil {
			t.Fatal(err)
		}
		// The last piece of each command's output, whole or torn.
		last := fmt.Sprintf("line %d\r\n", lines-1)
		deadline := time.Now().Add(20 * time.Second)
		for strings.Count(screen.String(), last) < n+1 {
			if time.Now().After(deadline) {
				t.Fatalf("command %d: no output; screen so far:\n%s", n, tail(screen.String()))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	stop.Store(true)
	wg.Wait()
	c.Close()
	fmt.Fprint(ptmx, "\x04")
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("console did not end")
	}
	tty.Close()
	ptmx.Close()
	<-copied

	// The screen as lines: escape sequences dropped, and of each line what
	// follows its last carriage return (what a terminal shows).
	esc := regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)
	var shown []string
	for _, l := range strings.Split(esc.ReplaceAllString(screen.String(), ""), "\n") {
		if i := strings.LastIndexByte(strings.TrimRight(l, "\r"), '\r'); i >= 0 {
			l = l[i+1:]
		}
		shown = append(shown, strings.TrimRight(l, "\r"))
	}
	logs := 0
	for _, l := range shown {
		if strings.HasPrefix(l, "LOG ") {
			logs++
		}
	}
	if logs < 100 {
		t.Fatalf("only %d log lines reached the screen: the flood did not run", logs)
	}
	for n := 0; n < commands; n++ {
		first := fmt.Sprintf("OUT-%d line 0", n)
		at := -1
		for i, l := range shown {
			if l == first {
				at = i
				break
			}
		}
		if at < 0 || at+lines > len(shown) {
			t.Fatalf("command %d: its first line is not on a line of its own:\n%s", n, tail(strings.Join(shown, "\n")))
		}
		for i := 0; i < lines; i++ {
			if want := fmt.Sprintf("OUT-%d line %d", n, i); shown[at+i] != want {
				t.Fatalf("command %d: line %d of its output is %q, want %q:\n%s", n, i, shown[at+i], want,
					strings.Join(shown[max(0, at-3):min(len(shown), at+lines+3)], "\n"))
			}
		}
	}
}

// tail returns the end of a long screen for an error message.
func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}
