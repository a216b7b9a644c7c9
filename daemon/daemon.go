// Package daemon is the program around a switchboard host: the daemon with
// Asterisk's flags, its console, the remote console and one-shot remote
// commands, cli.conf's startup commands, signals and --check-config. The
// switchboard binary is Main with the built-in modules; a program that
// registers modules of its own gets the same daemon by calling Main too:
//
//	func main() { os.Exit(daemon.Main(daemon.Options{Name: "mydaemon"})) }
//
// Usage (NAME is Options.Name, "switchboard" for the switchboard binary):
//
//	NAME [-f] [-c] [-C DIR] [-D DIR] [-s PATH] [-d] [-v]   run the daemon
//	NAME -r  [-s PATH]                                     remote console
//	NAME -rx "command" [-s PATH]                           one command
//	NAME --check-config [-C DIR]                           validate config
//	NAME --version
//
// Daemon:
//
//   - Without -f the daemon goes to the background (it re-executes itself with
//     -f in a new session, stdin on /dev/null and its log appended to
//     DATA_DIR/NAME.log); the parent exits 0 once the control socket
//     answers, or 1 if the daemon died while starting.
//   - -f stays in the foreground, logging to stderr (log/slog text).
//   - -c (implies -f) adds an interactive console on the terminal. Its log
//     lines are printed above the prompt, so they never garble the line being
//     typed. Leaving the console (exit, quit, Ctrl-D) stops the daemon
//     gracefully, like "core stop gracefully"; Ctrl-C only clears the line.
//   - SIGTERM and SIGINT stop gracefully (modules in reverse start order, each
//     within its stop timeout); a second one exits at once. SIGHUP is
//     "core reload". "core stop now|gracefully" from any console is honoured.
//   - A second daemon on the same control socket refuses to start; a socket
//     left by a dead daemon is replaced.
//   - Under systemd (NOTIFY_SOCKET set; packaging/systemd/switchboard.service
//     is Type=notify) it reports READY=1 once every module started,
//     RELOADING=1 ... READY=1 around a SIGHUP reload, STOPPING=1, a STATUS=
//     line, and WATCHDOG=1 pings at half WatchdogSec while the host answers.
//
// Paths:
//
//   - -C DIR: configuration directory (modules.conf, cli.conf and every
//     module's files). Default: /etc/NAME if it exists, else
//     Options.FallbackConfigDir if that exists (switchboard: ./samples, handy
//     in a source checkout), else /etc/NAME.
//   - -D DIR: data directory (spools, the background log). Default: DIR/data
//     under the configuration directory.
//   - -s PATH: control socket, created with mode 0660. Default:
//     $XDG_RUNTIME_DIR/NAME/NAME.ctl when XDG_RUNTIME_DIR is set; otherwise
//     /run/NAME/NAME.ctl for root; otherwise DATA_DIR/NAME.ctl. Clients (-r,
//     -rx) compute the same default, so pass them the same -C / -D / -s as
//     the daemon.
//
// Remote control: -r attaches an interactive console to the running daemon
// (same command tree, tab completion included, history in ~/.NAME_history).
// -rx "command" (or -r -x "command") runs one command and prints its output;
// exit status 0 on success, 1 when the command failed (including wrong
// arguments, whose usage is printed), 2 for an unknown command, 3 when the
// daemon cannot be reached.
//
// --check-config decodes every configuration file of every module
// modules.conf selects, and cli.conf, without starting anything, and exits 1
// listing every problem (file:line and key).
//
// Logging: -v logs at debug level; -d logs at debug level with source
// locations. The default level is info.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/cli/console"
	"github.com/switchboard-dp/switchboard/cli/remote"
	"github.com/switchboard-dp/switchboard/core"
)

// Exit statuses of the remote control and the daemon.
const (
	exitOK          = 0
	exitFailed      = 1 // command failed, daemon failed to start, bad config
	exitUnknown     = 2 // -rx: unknown command; also bad flags
	exitUnreachable = 3 // -rx / -r: no daemon answers on the socket
)

// Options say what a program built on the daemon is called and what it runs.
type Options struct {
	// Name is the program's name in usage, banner, log and default paths;
	// "" means "switchboard".
	Name string
	// Version is printed by --version and "core show version"; "" means the
	// module version or VCS revision the binary was built from.
	Version string
	// Registry holds the module types; nil means core.Default, where the
	// built-in modules (imported through modules/all) and core.Register
	// calls add theirs.
	Registry *core.Registry
	// FallbackConfigDir is the configuration directory used when -C is not
	// given and /etc/NAME does not exist ("" means none).
	FallbackConfigDir string
}

// Main runs the program with the process's arguments and standard streams
// and returns its exit status (for os.Exit).
func Main(opts Options) int { return Run(opts, os.Args[1:], os.Stdout, os.Stderr) }

type options struct {
	Options
	foreground, console, remote bool
	command                     string
	configDir, dataDir, socket  string
	checkConfig, showVersion    bool
	debug, verbose              bool
}

// Run is Main with explicit arguments (without the program name) and
// output streams.
func Run(opts Options, args []string, stdout, stderr io.Writer) int {
	if opts.Name == "" {
		opts.Name = "switchboard"
	}
	if opts.Version == "" {
		opts.Version = buildVersion()
	}
	o := options{Options: opts}
	fs := flag.NewFlagSet(o.Name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.BoolVar(&o.foreground, "f", false, "run in the foreground (do not fork)")
	fs.BoolVar(&o.console, "c", false, "console on this terminal (implies -f)")
	fs.StringVar(&o.configDir, "C", "", "configuration `DIR` (default "+o.defaultConfigDirs()+")")
	fs.StringVar(&o.dataDir, "D", "", "data `DIR` (default DIR/data under the configuration directory)")
	fs.StringVar(&o.socket, "s", "", fmt.Sprintf("control socket `PATH` (default $XDG_RUNTIME_DIR/%[1]s/%[1]s.ctl; without XDG_RUNTIME_DIR\n/run/%[1]s/%[1]s.ctl for root, else DATA_DIR/%[1]s.ctl)", o.Name))
	fs.BoolVar(&o.remote, "r", false, "attach a remote console to the running daemon")
	fs.StringVar(&o.command, "rx", "", "run one `command` on the running daemon and exit")
	fs.StringVar(&o.command, "x", "", "with -r: run one `command` and exit (same as -rx)")
	fs.BoolVar(&o.checkConfig, "check-config", false, "validate the whole configuration directory and exit")
	fs.BoolVar(&o.debug, "d", false, "debug logging with source locations")
	fs.BoolVar(&o.verbose, "v", false, "verbose (debug level) logging")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage:
  %[1]s [-f] [-c] [-C DIR] [-D DIR] [-s PATH] [-d] [-v]   run the daemon
  %[1]s -r [-s PATH]                                      remote console
  %[1]s -rx "command" [-s PATH]                           run one command remotely
  %[1]s --check-config [-C DIR]                           validate the configuration
  %[1]s --version

Without -f the daemon forks to the background (log: DATA_DIR/%[1]s.log).
-rx exit status: 0 success, 1 command failed or wrong arguments, 2 unknown
command, 3 daemon unreachable.

Flags:
`, o.Name)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUnknown
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q (quote the command of -rx)\n", o.Name, fs.Args())
		return exitUnknown
	}
	if o.showVersion {
		fmt.Fprintf(stdout, "%s %s\n", o.Name, o.Version)
		return exitOK
	}
	o.resolvePaths()

	switch {
	case o.command != "":
		return remoteCommand(o, stdout, stderr)
	case o.remote:
		return remoteConsole(o, stderr)
	case o.checkConfig:
		return checkConfig(o, stdout, stderr)
	case !o.foreground && !o.console:
		return background(o, args, stdout, stderr)
	}
	return daemon(o, stderr)
}

// defaultConfigDirs says where the configuration is looked for without -C.
func (o *options) defaultConfigDirs() string {
	if o.FallbackConfigDir == "" {
		return "/etc/" + o.Name
	}
	return "/etc/" + o.Name + ", or " + o.FallbackConfigDir + " if that is missing"
}

// resolvePaths fills in the default directories and socket.
func (o *options) resolvePaths() {
	if o.configDir == "" {
		o.configDir = "/etc/" + o.Name
		if !isDir(o.configDir) && o.FallbackConfigDir != "" && isDir(o.FallbackConfigDir) {
			o.configDir = o.FallbackConfigDir
		}
	}
	if abs, err := filepath.Abs(o.configDir); err == nil {
		o.configDir = abs
	}
	if o.dataDir == "" {
		o.dataDir = filepath.Join(o.configDir, "data")
	}
	if abs, err := filepath.Abs(o.dataDir); err == nil {
		o.dataDir = abs
	}
	if o.socket == "" {
		switch {
		case os.Getenv("XDG_RUNTIME_DIR") != "":
			o.socket = filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), o.Name, o.Name+".ctl")
		case os.Geteuid() == 0:
			o.socket = filepath.Join("/run", o.Name, o.Name+".ctl")
		default:
			o.socket = filepath.Join(o.dataDir, o.Name+".ctl")
		}
	}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// buildVersion is the module version or VCS revision the binary was built
// from, else "dev".
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "dev"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	rev, dirty := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return "dev"
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if dirty {
		rev += "-dirty"
	}
	return "dev-" + rev
}

func (o options) logLevel() slog.Level {
	if o.debug || o.verbose {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// switchWriter is the log destination; the -c console swaps itself in so log
// lines are printed above its prompt.
type switchWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *switchWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *switchWriter) set(w io.Writer) {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
}

func (o options) historyFile() string {
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, "."+o.Name+"_history")
}

// remoteCommand is -rx: run one command on the daemon.
func remoteCommand(o options, stdout, stderr io.Writer) int {
	c, err := remote.Dial(o.socket)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", o.Name, err)
		return exitUnreachable
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = c.Run(ctx, stdout, o.command)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, remote.ErrDisconnected):
		fmt.Fprintf(stderr, "%s: %v\n", o.Name, err)
		return exitUnreachable
	case errors.Is(err, cli.ErrUnknownCommand):
		fmt.Fprintln(stderr, err)
		return exitUnknown
	default:
		fmt.Fprintln(stderr, err)
		return exitFailed
	}
}

// remoteConsole is -r: an interactive console on the daemon's command tree.
func remoteConsole(o options, stderr io.Writer) int {
	c, err := remote.Dial(o.socket)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", o.Name, err)
		return exitUnreachable
	}
	defer c.Close()
	con, err := console.New(c, console.Options{
		HistoryFile: o.historyFile(),
		Banner:      fmt.Sprintf("Connected to %s on %s. 'help' lists commands, 'exit' leaves.", o.Name, o.socket),
		Fatal:       func(err error) bool { return errors.Is(err, remote.ErrDisconnected) },
	})
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", o.Name, err)
		return exitFailed
	}
	go func() { <-c.Done(); con.Close() }() // the daemon went away while idle
	err = con.Run(context.Background())
	select {
	case <-c.Done(): // gone, and not by our Close (deferred)
	default:
		if err == nil {
			return exitOK
		}
	}
	fmt.Fprintf(stderr, "Disconnected from %s.\n", o.Name)
	return exitUnreachable
}

// checkConfig is --check-config.
func checkConfig(o options, stdout, stderr io.Writer) int {
	if !isDir(o.configDir) {
		fmt.Fprintf(stderr, "%s: configuration directory %s does not exist\n", o.Name, o.configDir)
		return exitFailed
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h := core.New(core.Options{ConfigDir: o.configDir, DataDir: o.dataDir, Logger: logger, Version: o.Version, Registry: o.Registry})
	err := h.CheckConfig()
	if _, cerr := loadCLIConf(o.configDir); cerr != nil {
		err = errors.Join(err, fmt.Errorf("cli: %w", cerr))
	}
	if err == nil {
		fmt.Fprintf(stdout, "Configuration in %s is valid.\n", o.configDir)
		return exitOK
	}
	problems := strings.Split(strings.TrimSpace(err.Error()), "\n")
	fmt.Fprintf(stderr, "Configuration in %s has %d problem(s):\n", o.configDir, len(problems))
	for _, p := range problems {
		fmt.Fprintf(stderr, "  %s\n", p)
	}
	return exitFailed
}

// background re-executes the binary with -f in a new session and returns once
// the daemon answers on its control socket (or died trying).
func background(o options, args []string, stdout, stderr io.Writer) int {
	if err := os.MkdirAll(o.dataDir, 0o750); err != nil {
		fmt.Fprintf(stderr, "%s: data directory: %v\n", o.Name, err)
		return exitFailed
	}
	logPath := filepath.Join(o.dataDir, o.Name+".log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		fmt.Fprintf(stderr, "%s: log file: %v\n", o.Name, err)
		return exitFailed
	}
	defer logf.Close()
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", o.Name, err)
		return exitFailed
	}
	cmd := exec.Command(exe, append([]string{"-f"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf // Stdin stays nil: /dev/null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(stderr, "%s: start daemon: %v\n", o.Name, err)
		return exitFailed
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.After(2 * time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			fmt.Fprintf(stderr, "%s: daemon exited while starting (%v); see %s\n", o.Name, err, logPath)
			return exitFailed
		case <-deadline:
			fmt.Fprintf(stderr, "%s: daemon (pid %d) did not answer on %s within 2m; see %s\n",
				o.Name, cmd.Process.Pid, o.socket, logPath)
			return exitFailed
		case <-tick.C:
			if answers(o.socket) {
				fmt.Fprintf(stdout, "%s running in the background (pid %d, socket %s, log %s)\n",
					o.Name, cmd.Process.Pid, o.socket, logPath)
				return exitOK
			}
		}
	}
}

// answers reports whether a daemon serves commands on the socket.
func answers(socket string) bool {
	c, err := remote.Dial(socket)
	if err != nil {
		return false
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return c.Run(ctx, io.Discard, "core show version") == nil
}

// daemon runs the host in the foreground, with the console when -c.
func daemon(o options, stderr io.Writer) int {
	logw := &switchWriter{w: stderr}
	logger := slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: o.logLevel(), AddSource: o.debug}))
	slog.SetDefault(logger)

	if !isDir(o.configDir) {
		logger.Error("configuration directory does not exist", "dir", o.configDir)
		return exitFailed
	}
	if err := os.MkdirAll(o.dataDir, 0o750); err != nil {
		logger.Error("cannot create the data directory", "dir", o.dataDir, "err", err)
		return exitFailed
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)

	h := core.New(core.Options{ConfigDir: o.configDir, DataDir: o.dataDir, Logger: logger, Version: o.Version, Registry: o.Registry})
	// The socket comes first: a second daemon must refuse before it starts
	// any module (and, say, joins a Kafka consumer group twice).
	srv, err := remote.Listen(o.socket, h.Commands(), remote.Options{Logger: logger})
	if err != nil {
		logger.Error("cannot open the control socket", "err", err)
		return exitFailed
	}
	cc, err := loadCLIConf(o.configDir)
	if err != nil {
		srv.Close()
		logger.Error("cli.conf is invalid", "err", err)
		return exitFailed
	}
	ctx := context.Background()
	if err := h.Start(ctx); err != nil {
		srv.Close()
		logger.Error(o.Name+" failed to start", "err", err)
		return exitFailed
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve() }()
	logger.Info(o.Name+" ready", "version", o.Version, "config", o.configDir, "socket", o.socket)
	notify := newNotifier(h, logger)
	notify.ready()
	stopWatchdog := make(chan struct{})
	go notify.watchdog(stopWatchdog)

	var consoleDone chan error
	var con *console.Console
	if o.console {
		con, err = console.New(h.Commands(), console.Options{
			HistoryFile: o.historyFile(),
			Banner:      o.banner(h, cc),
		})
		if err != nil {
			logger.Error("cannot open the console", "err", err)
		} else {
			logw.set(con.LogWriter())
			consoleDone = make(chan error, 1)
			go func() { consoleDone <- con.Run(ctx) }()
		}
	}

	// Startup commands may wait (for a policy sync, say): they run beside
	// the console, their output where the log goes, and are cancelled at stop.
	startupCtx, cancelStartup := context.WithCancel(ctx)
	defer cancelStartup()
	if len(cc.Startup.Run) > 0 {
		go runStartup(startupCtx, h, cc.Startup.Run, logw, logger)
	}

	mode := core.StopGracefully
wait:
	for {
		select {
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				logger.Info("SIGHUP: reloading")
				go func() {
					notify.reloading()
					if err := h.Reload(""); err != nil {
						logger.Error("reload after SIGHUP failed", "err", err)
					}
					notify.ready()
				}()
				continue
			}
			logger.Info("signal received; stopping gracefully", "signal", sig.String())
			break wait
		case mode = <-h.StopRequests():
			break wait
		case err := <-serveDone:
			logger.Error("control socket failed; stopping", "err", err)
			serveDone = nil
			break wait
		case <-consoleDone:
			logger.Info("console closed; stopping gracefully")
			consoleDone = nil
			break wait
		}
	}
	// A second SIGINT/SIGTERM while stopping exits at once.
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGHUP {
				logger.Warn("second signal while stopping; exiting now", "signal", sig.String())
				os.Exit(exitFailed)
			}
		}
	}()
	if con != nil {
		con.Close()
		if consoleDone != nil {
			<-consoleDone
		}
		logw.set(stderr)
	}
	if err := srv.Close(); err != nil {
		logger.Warn("closing the control socket", "err", err)
	}
	notify.stopping()
	close(stopWatchdog)
	modeName := map[core.StopMode]string{core.StopGracefully: "gracefully", core.StopNow: "now"}[mode]
	logger.Info("stopping modules", "mode", modeName)
	cancelStartup()
	h.Stop(mode)
	logger.Info(o.Name + " stopped")
	return exitOK
}
