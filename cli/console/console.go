// Package console is switchboard's interactive console, built on ishell
// (github.com/abiosoft/ishell/v2) and its readline. The same console serves
// the daemon's own terminal ("switchboard -c", running lines against the local
// command tree) and the remote console ("switchboard -r", running them
// through the control socket): both are a Runner.
//
// Lines are run as typed; besides the command tree the console itself knows
// "help [words]" (= "core show help [words]") and "exit" / "quit" (leave the
// console; Ctrl-D too). Ctrl-C clears the line being typed and never exits.
// Tab completes command words and, through the tree's completers, dynamic
// arguments such as module names. History is kept in Options.HistoryFile.
//
// A failed line's error is printed as the Runner returns it: one line, or for
// wrong arguments the two lines of a cli.UsageError ("<path>: <problem>",
// "Usage: <synopsis>"), the same text -rx prints.
//
// Writes to LogWriter appear above the prompt without garbling the line being
// typed, which is how the daemon shows its log on the "-c" console. A
// command's output is held until the command returns and then written in one
// piece (pieces of about 4 MB for larger outputs), so log lines appear before
// or after it, never inside it, and the prompt returns once.
package console

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/abiosoft/ishell/v2"
	"github.com/abiosoft/readline"
)

// Runner runs and completes command lines. *cli.Tree and *remote.Client
// implement it.
type Runner interface {
	// Run executes one command line, writing its output to w.
	Run(ctx context.Context, w io.Writer, line string) error
	// Complete returns the candidates for the last (partial) word of line.
	Complete(line string) []string
}

// DefaultPrompt is the prompt unless Options.Prompt says otherwise.
const DefaultPrompt = "switchboard*CLI> "

// Options configure a Console. The zero value reads the process's terminal.
type Options struct {
	// Prompt is shown before each line; "" means DefaultPrompt.
	Prompt string
	// HistoryFile keeps the line history across sessions; "" keeps none.
	HistoryFile string
	// Banner is printed once when the console starts.
	Banner string
	// Stdin, Stdout: nil means the process's own.
	Stdin  io.ReadCloser
	Stdout io.Writer
	// Fatal reports whether a Runner error ends the console (for example a
	// lost connection to the daemon); Run then returns that error. nil means
	// no error is fatal.
	Fatal func(error) bool
}

// Console is an interactive command console.
type Console struct {
	runner Runner
	opts   Options
	rl     *readline.Instance
	in     io.Closer // the cancelable stdin readline reads
	shell  *ishell.Shell
	out    io.Writer // above-the-prompt writer of rl

	ctx   context.Context
	mu    sync.Mutex
	fatal error
}

// New returns a console running lines with r. Call Run to start it.
func New(r Runner, opts Options) (*Console, error) {
	if opts.Prompt == "" {
		opts.Prompt = DefaultPrompt
	}
	var stdin io.Reader = os.Stdin
	if opts.Stdin != nil {
		stdin = opts.Stdin
	}
	// Close makes this reader return EOF, so the shell ends in its own
	// goroutine (closing readline from another goroutine races with it).
	in := readline.NewCancelableStdin(stdin)
	cfg := &readline.Config{
		Prompt:            opts.Prompt,
		HistoryFile:       opts.HistoryFile,
		HistorySearchFold: true,
		AutoComplete:      completer{r},
		Stdin:             in,
		Stdout:            opts.Stdout,
		Stderr:            opts.Stdout,
	}
	if f, ok := opts.Stdin.(*os.File); opts.Stdin != nil && (!ok || !IsTerminal(f)) {
		cfg.FuncIsTerminal = func() bool { return false } // a pipe: no raw mode, no escapes
	}
	rl, err := readline.NewEx(cfg)
	if err != nil {
		return nil, fmt.Errorf("console: %w", err)
	}
	c := &Console{runner: r, opts: opts, rl: rl, in: in, out: rl.Stdout(), ctx: context.Background()}
	// NewWithReadline keeps our readline (and so our history file); calling
	// the shell's SetHistoryPath would replace it.
	sh := ishell.NewWithReadline(rl)
	for _, name := range []string{"exit", "help", "clear"} {
		sh.DeleteCmd(name) // every line goes to NotFound, i.e. to the Runner
	}
	sh.AutoHelp(false)
	sh.CustomCompleter(completer{r})
	sh.NotFound(func(ic *ishell.Context) { c.exec(joinArgs(ic.Args)) })
	sh.Interrupt(func(*ishell.Context, int, string) {}) // Ctrl-C: drop the line, keep going
	sh.EOF(func(ic *ishell.Context) {
		fmt.Fprintln(c.out)
		ic.Stop()
	})
	c.shell = sh
	return c, nil
}

// LogWriter returns a writer whose lines appear above the prompt, leaving the
// line being typed intact. It is safe for concurrent use.
func (c *Console) LogWriter() io.Writer { return c.out }

// Run runs the console until the user leaves it, ctx is done, Close is
// called, or the Runner fails fatally (see Options.Fatal); it returns the
// fatal error, if any.
func (c *Console) Run(ctx context.Context) error {
	c.ctx = ctx
	stop := context.AfterFunc(ctx, c.Close)
	defer stop()
	if c.opts.Banner != "" {
		fmt.Fprintln(c.out, c.opts.Banner)
	}
	c.shell.Run()
	c.in.Close()
	c.shell.Close() // restores the terminal
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fatal
}

// Close ends the console as if the user typed Ctrl-D: Run returns (after the
// command being run, if any) and restores the terminal. It is safe to call
// more than once and from any goroutine.
func (c *Console) Close() { c.in.Close() }

// exec runs one line typed at the prompt.
func (c *Console) exec(line string) {
	line = strings.TrimSpace(line)
	words := strings.Fields(line)
	switch {
	case len(words) == 0:
		return
	case len(words) == 1 && (words[0] == "exit" || words[0] == "quit"):
		c.shell.Stop()
		return
	case words[0] == "help":
		line = strings.TrimSpace("core show help " + strings.TrimSpace(strings.TrimPrefix(line, "help")))
	}
	w := &outputBuffer{out: c.out}
	err := c.run(w, line)
	if err != nil {
		w.endLine()
		fmt.Fprintln(w, err)
	}
	w.endLine()
	w.flush()
	if err == nil {
		return
	}
	if c.opts.Fatal != nil && c.opts.Fatal(err) {
		c.mu.Lock()
		c.fatal = err
		c.mu.Unlock()
		c.shell.Stop()
	}
}

// run calls the Runner; a panicking command is reported, not fatal.
func (c *Console) run(w io.Writer, line string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("command panicked: %v", p)
		}
	}()
	return c.runner.Run(c.ctx, w, line)
}

// outputBufferMax is how much of a command's output the console holds
// before it writes it out ahead of the command's end.
const outputBufferMax = 4 << 20

// outputBuffer holds a command's output until the command returns and then
// writes it to the console in one Write, so that the prompt is redrawn once
// and log lines land before or after the output, never inside it. An
// output larger than outputBufferMax is written in pieces of about that
// size, each whole.
type outputBuffer struct {
	out io.Writer
	buf []byte
	// last is the last byte of the output so far ('\n' before any).
	last byte
}

func (b *outputBuffer) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.buf = append(b.buf, p...)
	b.last = p[len(p)-1]
	if len(b.buf) >= outputBufferMax {
		// Cut at the last full line so that no line is split.
		if i := bytes.LastIndexByte(b.buf, '\n'); i >= 0 {
			_, err := b.out.Write(b.buf[:i+1])
			b.buf = append(b.buf[:0], b.buf[i+1:]...)
			if err != nil {
				return len(p), err
			}
		}
	}
	return len(p), nil
}

// endLine ends an output that lacks a final newline.
func (b *outputBuffer) endLine() {
	if b.last != 0 && b.last != '\n' {
		b.buf = append(b.buf, '\n')
		b.last = '\n'
	}
}

// flush writes what the buffer holds.
func (b *outputBuffer) flush() {
	if len(b.buf) > 0 {
		_, _ = b.out.Write(b.buf)
		b.buf = b.buf[:0]
	}
}

// joinArgs rebuilds a command line from the words ishell split, quoting the
// words that hold blanks so the tree splits them the same way.
func joinArgs(args []string) string {
	parts := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t") {
			a = `"` + a + `"`
		}
		parts[i] = a
	}
	return strings.Join(parts, " ")
}

// completer adapts a Runner's Complete to readline: it returns the rest of
// each candidate after the partial word, with a trailing blank so a unique
// completion is ready for the next word.
type completer struct{ r Runner }

func (cp completer) Do(line []rune, pos int) ([][]rune, int) {
	text := string(line[:pos])
	prefix := ""
	if text != "" && !strings.HasSuffix(text, " ") && !strings.HasSuffix(text, "\t") {
		f := strings.Fields(text)
		prefix = f[len(f)-1]
	}
	var out [][]rune
	for _, cand := range cp.r.Complete(text) {
		if strings.HasPrefix(cand, prefix) {
			out = append(out, []rune(cand[len(prefix):]+" "))
		}
	}
	return out, len([]rune(prefix))
}

// IsTerminal reports whether f is a terminal, for callers deciding between
// the console and plain line reading.
func IsTerminal(f *os.File) bool { return readline.IsTerminal(int(f.Fd())) }
