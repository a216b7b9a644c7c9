package remote

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
)

// Runner is what the server runs lines against; *cli.Tree implements it.
type Runner interface {
	Run(ctx context.Context, w io.Writer, line string) error
	Complete(line string) []string
}

// Options tune a Server. The zero value is fine.
type Options struct {
	// Mode is the socket file's permission bits; 0 means 0660. Bits beyond
	// 0660 (execute, or anything for others) are refused.
	Mode os.FileMode
	// Logger receives connection-level problems; nil means slog.Default().
	Logger *slog.Logger
	// DrainTimeout bounds how long Close waits for running commands to
	// answer before it cancels them and drops their connections; 0 means 5 s.
	DrainTimeout time.Duration
}

// DefaultMode is the socket's permission bits unless Options.Mode says
// otherwise: owner and group may connect.
const DefaultMode os.FileMode = 0o660

// Server answers requests on a Unix control socket.
type Server struct {
	path   string
	runner Runner
	opts   Options
	ln     *net.UnixListener
	self   os.FileInfo // the socket file we created, to remove only our own

	ctx    context.Context // passed to commands; cancelled when Close gives up waiting
	cancel context.CancelFunc

	mu      sync.Mutex
	closing bool
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup // one per connection handler
}

// Listen creates the control socket at path (see the package doc for how a
// stale socket is replaced and a live one refused) and returns a server that
// answers once Serve is called. The socket's directory is created (mode 0750)
// if missing.
func Listen(path string, r Runner, opts Options) (*Server, error) {
	if opts.Mode == 0 {
		opts.Mode = DefaultMode
	}
	if opts.Mode&^DefaultMode != 0 {
		return nil, fmt.Errorf("control socket mode %#o is looser than %#o", opts.Mode, DefaultMode)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 5 * time.Second
	}
	if err := checkExisting(path); err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".sb%d.%d.tmp", os.Getpid(), rand.Uint32()))
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false) // the file is renamed; Close removes the final name itself
	fail := func(err error) (*Server, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(tmp, opts.Mode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	self, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{path: path, runner: r, opts: opts, ln: ln, self: self, ctx: ctx, cancel: cancel,
		conns: map[net.Conn]struct{}{}}, nil
}

// checkExisting refuses a live socket or a non-socket at path and lets a
// stale socket be replaced.
func checkExisting(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("control socket %s: exists and is not a socket (refusing to replace it)", path)
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w (%s)", ErrInUse, path)
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return nil // stale: nobody listens; it will be replaced by the rename
	}
	return fmt.Errorf("control socket %s: cannot tell whether it is in use: %w", path, err)
}

// Serve accepts connections until Close. It returns nil after Close.
func (s *Server) Serve() error {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("control socket accept: %w", err)
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			conn.Close()
			continue
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(conn)
	}
}

func (s *Server) handle(conn net.Conn) {
	defer func() {
		conn.Close()
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
		s.wg.Done()
	}()
	dec := json.NewDecoder(bufio.NewReader(conn))
	enc := json.NewEncoder(conn)
	for {
		var req Request
		if err := dec.Decode(&req); err != nil {
			var se *json.SyntaxError
			var te *json.UnmarshalTypeError
			if errors.As(err, &se) || errors.As(err, &te) {
				enc.Encode(Response{Error: "malformed request: " + err.Error()})
				s.opts.Logger.Warn("control socket: malformed request", "err", err)
			}
			return // EOF, closed by Close, or junk
		}
		if err := enc.Encode(s.do(req)); err != nil {
			return
		}
	}
}

// do answers one request; a panicking command is reported, not fatal.
func (s *Server) do(req Request) (resp Response) {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Logger.Error("command panicked", "line", req.Line, "panic", p, "stack", string(debug.Stack()))
			resp = Response{Error: fmt.Sprintf("command panicked: %v", p)}
		}
	}()
	switch req.Op {
	case OpRun:
		var out bytes.Buffer
		err := s.runner.Run(s.ctx, &out, req.Line)
		resp.Output = out.String()
		if err != nil {
			resp.Error = err.Error()
			resp.Unknown = errors.Is(err, cli.ErrUnknownCommand)
			resp.Usage = errors.Is(err, cli.ErrUsage)
		}
	case OpComplete:
		resp.Candidates = s.runner.Complete(req.Line)
	default:
		resp.Error = fmt.Sprintf("unknown op %q (want %q or %q)", req.Op, OpRun, OpComplete)
	}
	return resp
}

// Close stops accepting, lets commands that are running answer (up to the
// drain timeout, then cancels them and drops their connections), closes idle
// connections and removes the socket file if it is still the one Listen made.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil
	}
	s.closing = true
	conns := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	err := s.ln.Close()
	// Idle handlers are blocked reading: wake them. A busy handler writes its
	// answer (writes are not affected), then fails its next read and exits.
	for _, c := range conns {
		c.SetReadDeadline(time.Now())
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(s.opts.DrainTimeout):
		s.opts.Logger.Warn("control socket: commands still running at shutdown; cancelling them")
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		select { // a command that ignores its context is abandoned
		case <-done:
		case <-time.After(time.Second):
		}
	}
	s.cancel()
	if fi, statErr := os.Lstat(s.path); statErr == nil && os.SameFile(fi, s.self) {
		if rmErr := os.Remove(s.path); rmErr != nil && err == nil {
			err = rmErr
		}
	}
	return err
}
