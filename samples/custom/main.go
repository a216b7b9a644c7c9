// Command custom is an example of using switchboard as a library: a program
// of its own that registers its own module, hello_counter, next to the
// built-in modules, runs the host, and serves the same control socket as the
// switchboard daemon, so "switchboard -r -s PATH" attaches to it.
//
//	go run ./samples/custom -C samples/custom/conf -s /tmp/custom.ctl
//	switchboard -rx "hello say world" -s /tmp/custom.ctl
//	switchboard -rx "hello count" -s /tmp/custom.ctl
//
// With -x "command" it runs one command in-process once the modules have
// started, prints its output and exits (status 1 if the command failed).
//
// hello_counter adds two commands, "hello say [name]" and "hello count", and
// counts the greetings it has made. Its optional hello_counter.conf:
//
//	[general]
//	greeting = Hello   ; what "hello say" says
//
// Two ways to choose the modules: this program registers hello_counter into
// core.Default, where the built-ins (imported through modules/all) register
// too, and modules.conf picks among them. A program that wants none of the
// built-ins makes its own registry instead:
//
//	reg := core.NewRegistry()
//	reg.Register(helloInfo)
//	h := core.New(core.Options{Registry: reg, ...})
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/cli/remote"
	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/core"

	_ "github.com/switchboard-dp/switchboard/modules/all" // the built-in modules
)

// helloInfo registers hello_counter.
var helloInfo = core.ModuleInfo{
	Name:        "hello_counter",
	Description: "Example module: greets and counts greetings",
	Priority:    core.PriorityApplication,
	Support:     core.SupportExtended,
	New:         func() core.Module { return new(HelloCounter) },
}

func init() { core.Register(helloInfo) }

// HelloConfig is hello_counter.conf's [general] section.
type HelloConfig struct {
	Greeting string `conf:"greeting" default:"Hello"`
}

// HelloCounter is the example module.
type HelloCounter struct {
	cfg       atomic.Pointer[HelloConfig] // swapped whole by Reload
	greetings atomic.Int64
}

var (
	_ core.Configurer = (*HelloCounter)(nil)
	_ core.Reloader   = (*HelloCounter)(nil)
	_ core.Commander  = (*HelloCounter)(nil)
)

// Info implements core.Module.
func (m *HelloCounter) Info() core.ModuleInfo { return helloInfo }

// Configure reads hello_counter.conf; without one the defaults apply.
func (m *HelloCounter) Configure(ctx *core.Context) error {
	cfg, err := loadHello(ctx)
	if err != nil {
		return err
	}
	m.cfg.Store(&cfg)
	return nil
}

// Reload re-reads hello_counter.conf; an invalid one keeps the old greeting.
// The count survives a reload.
func (m *HelloCounter) Reload(ctx *core.Context) error { return m.Configure(ctx) }

func loadHello(ctx *core.Context) (HelloConfig, error) {
	var cfg HelloConfig
	f, err := ctx.LoadConfig("hello_counter.conf")
	if errors.Is(err, fs.ErrNotExist) {
		ctx.Logger.Info("no hello_counter.conf; using defaults")
		return cfg, conf.Decode(&conf.Section{Name: "general"}, &cfg)
	}
	if err != nil {
		return cfg, err
	}
	s := f.Section("general")
	if s == nil {
		s = &conf.Section{Name: "general", File: f.Path}
	}
	return cfg, conf.Decode(s, &cfg)
}

// Commands implements core.Commander.
func (m *HelloCounter) Commands() []*cli.Command {
	return []*cli.Command{
		{Path: "hello say", Summary: "Greet someone (and count it)", Usage: "hello say [name]",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.MaxArgs(args, 1); err != nil {
					return err
				}
				name := "world"
				if len(args) == 1 {
					name = args[0]
				}
				m.greetings.Add(1)
				fmt.Fprintf(w, "%s, %s!\n", m.cfg.Load().Greeting, name)
				return nil
			},
			Complete: func(args []string, _ string) []string {
				if len(args) == 0 {
					return []string{"world", "switchboard"}
				}
				return nil
			}},
		{Path: "hello count", Summary: "Show how many greetings were made", Usage: "hello count",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.NoArgs(args); err != nil {
					return err
				}
				fmt.Fprintf(w, "Greetings: %d\n", m.greetings.Load())
				return nil
			}},
	}
}

func main() { os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr)) }

// run is main with its dependencies passed in, so the test can run it. It
// returns when the context is done, on SIGINT/SIGTERM, or on "core stop".
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("custom", flag.ContinueOnError)
	fl.SetOutput(stderr)
	configDir := fl.String("C", "samples/custom/conf", "configuration `DIR`")
	socket := fl.String("s", "", "control socket `PATH` (none if empty)")
	command := fl.String("x", "", "run one `command` and exit")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, nil))
	h := core.New(core.Options{ConfigDir: *configDir, DataDir: os.TempDir(), Logger: logger, Version: "custom-example"})
	if err := h.Start(ctx); err != nil {
		logger.Error("start", "err", err)
		return 1
	}
	defer h.Stop(core.StopGracefully)

	if *command != "" {
		if err := h.Run(ctx, *command, stdout); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	if *socket != "" {
		srv, err := remote.Listen(*socket, h.Commands(), remote.Options{Logger: logger})
		if err != nil {
			logger.Error("control socket", "err", err)
			return 1
		}
		go srv.Serve()
		defer srv.Close()
		logger.Info("ready", "socket", *socket)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	select {
	case <-ctx.Done():
	case <-sigs:
	case <-h.StopRequests():
	}
	return 0
}
