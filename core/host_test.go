package core

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/switchboard-dp/switchboard/cli"
)

// journal records lifecycle events of test modules, in order.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	j.events = append(j.events, e)
	j.mu.Unlock()
}

func (j *journal) String() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return strings.Join(j.events, " ")
}

// testModule is a configurable module for host tests.
type testModule struct {
	info      ModuleInfo
	j         *journal
	startErr  error
	cfgErr    error
	borrow    []string // modules Start reaches with Dep
	reloadErr func() error
	value     string // "configuration" kept across reloads
}

func (m *testModule) Configure(ctx *Context) error {
	m.j.add("configure:" + m.info.Name)
	m.value = "v1"
	return m.cfgErr
}
func (m *testModule) Start(ctx *Context) error {
	if m.startErr != nil {
		m.j.add("fail:" + m.info.Name)
		return m.startErr
	}
	for _, b := range m.borrow {
		if _, err := Dep[*testModule](ctx, b); err != nil {
			return err
		}
	}
	m.j.add("start:" + m.info.Name)
	return nil
}
func (m *testModule) Stop(context.Context) error { m.j.add("stop:" + m.info.Name); return nil }
func (m *testModule) Reload(ctx *Context) error {
	if m.reloadErr != nil {
		if err := m.reloadErr(); err != nil {
			return err // keep m.value as it was
		}
	}
	m.value = "v2"
	return nil
}
func (m *testModule) Commands() []*cli.Command {
	return []*cli.Command{{Path: "test " + m.info.Name, Summary: "test command",
		Run: func(_ context.Context, w io.Writer, _ []string) error {
			_, err := io.WriteString(w, m.value)
			return err
		}}}
}

type spec struct {
	name      string
	prio      int
	requires  []string
	optional  []string
	startErr  error
	cfgErr    error
	borrow    []string
	reloadErr func() error
}

func newHost(t *testing.T, modulesConf string, specs ...spec) (*Host, *journal, map[string]*testModule) {
	t.Helper()
	dir := t.TempDir()
	if modulesConf != "" {
		if err := os.WriteFile(filepath.Join(dir, "modules.conf"), []byte(modulesConf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	j := &journal{}
	reg := NewRegistry()
	inst := map[string]*testModule{}
	for _, s := range specs {
		s := s
		info := ModuleInfo{Name: s.name, Description: "test " + s.name, Priority: s.prio,
			Requires: s.requires, Optional: s.optional}
		info.New = func() Module {
			m := &testModule{info: info, j: j, startErr: s.startErr, cfgErr: s.cfgErr, borrow: s.borrow, reloadErr: s.reloadErr}
			inst[s.name] = m
			return m
		}
		if err := reg.Register(info); err != nil {
			t.Fatal(err)
		}
	}
	h := New(Options{Registry: reg, ConfigDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return h, j, inst
}

func run(t *testing.T, h *Host, line string) (string, error) {
	t.Helper()
	var b bytes.Buffer
	err := h.Run(context.Background(), line, &b)
	return b.String(), err
}

func TestStartOrderDiamondAndPriority(t *testing.T) {
	h, j, _ := newHost(t, "",
		spec{name: "top", requires: []string{"left", "right"}},
		spec{name: "left", requires: []string{"base"}, prio: 5},
		spec{name: "right", requires: []string{"base"}, prio: 1},
		spec{name: "base", prio: 99},
		spec{name: "free", prio: 0},
		spec{name: "opt", optional: []string{"top", "absent"}, prio: 0},
	)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := "configure:free configure:base configure:right configure:left configure:top configure:opt " +
		"start:free start:base start:right start:left start:top start:opt"
	if got := j.String(); got != want {
		t.Fatalf("order\n got %s\nwant %s", got, want)
	}
	h.Stop(StopGracefully)
	if got := j.String(); !strings.HasSuffix(got, "stop:opt stop:top stop:left stop:right stop:base stop:free") {
		t.Fatalf("stop order not reversed: %s", got)
	}
}

func TestCycleIsAnErrorNamingIt(t *testing.T) {
	h, _, _ := newHost(t, "",
		spec{name: "a", requires: []string{"b"}},
		spec{name: "b", optional: []string{"c"}},
		spec{name: "c", requires: []string{"a"}},
		spec{name: "d"},
	)
	err := h.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "dependency cycle: a -> b -> c -> a") {
		t.Fatalf("want cycle error, got %v", err)
	}
}

func TestDeclineCascades(t *testing.T) {
	h, j, _ := newHost(t, "",
		spec{name: "res", startErr: Decline("disabled in res.conf")},
		spec{name: "mid", requires: []string{"res"}},
		spec{name: "leaf", requires: []string{"mid"}},
		spec{name: "other", optional: []string{"res"}},
	)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	states := map[string]ModuleStatus{}
	for _, m := range h.Modules() {
		states[m.Name] = m
	}
	if states["res"].State != StateDeclined || states["mid"].State != StateDeclined || states["leaf"].State != StateDeclined {
		t.Fatalf("decline did not cascade: %+v", states)
	}
	if !strings.Contains(states["leaf"].LastError, "requires mid, which is declined") {
		t.Fatalf("leaf reason: %q", states["leaf"].LastError)
	}
	if states["other"].State != StateRunning {
		t.Fatalf("optional dependent should run: %+v", states["other"])
	}
	if strings.Contains(j.String(), "start:mid") {
		t.Fatalf("mid started: %s", j)
	}
	out, _ := run(t, h, "module show")
	if !strings.Contains(out, "1 modules loaded") || !strings.Contains(out, "Declined") {
		t.Fatalf("module show:\n%s", out)
	}
}

func TestRequiredFailureRollsBack(t *testing.T) {
	h, j, _ := newHost(t, "[modules]\nautoload = yes\nrequire => bad\n",
		spec{name: "a", prio: 1},
		spec{name: "b", prio: 2},
		spec{name: "bad", prio: 3, startErr: errors.New("boom")},
		spec{name: "z", prio: 4},
	)
	err := h.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "required module bad: boom") {
		t.Fatalf("want fatal error, got %v", err)
	}
	got := j.String()
	if !strings.HasSuffix(got, "start:a start:b fail:bad stop:b stop:a") {
		t.Fatalf("no rollback: %s", got)
	}
	if len(h.Running()) != 0 {
		t.Fatal("modules still running after rollback")
	}
}

func TestNotRequiredFailureIsLoggedAndDependentsDecline(t *testing.T) {
	h, _, _ := newHost(t, "",
		spec{name: "bad", startErr: errors.New("boom")},
		spec{name: "dep", requires: []string{"bad"}},
	)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range h.Modules() {
		if m.Name == "bad" && (m.State != StateFailed || m.LastError != "boom") {
			t.Fatalf("bad: %+v", m)
		}
		if m.Name == "dep" && m.State != StateDeclined {
			t.Fatalf("dep: %+v", m)
		}
	}
}

func TestConfigErrorOfRequiredModuleStopsBeforeAnythingStarts(t *testing.T) {
	h, j, _ := newHost(t, "[modules]\nrequire => b\n",
		spec{name: "a"},
		spec{name: "b", cfgErr: errors.New("b.conf:3: [general] x: bad")},
	)
	err := h.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "b.conf:3") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(j.String(), "start:") {
		t.Fatalf("something started: %s", j)
	}
	if err := h.CheckConfig(); err == nil || !strings.Contains(err.Error(), "b: b.conf:3") {
		t.Fatalf("CheckConfig: %v", err)
	}
}

func TestUseCountsAndUnload(t *testing.T) {
	h, j, _ := newHost(t, "",
		spec{name: "res"},
		spec{name: "user1", requires: []string{"res"}, borrow: []string{"res"}},
		spec{name: "user2", requires: []string{"res"}, borrow: []string{"res", "res"}},
	)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, m := range h.Modules() {
		if m.Name == "res" && (m.UseCount != 2 || strings.Join(m.Users, ",") != "user1,user2") {
			t.Fatalf("use count: %+v", m)
		}
	}
	_, err := run(t, h, "module unload res")
	if err == nil || !strings.Contains(err.Error(), "in use by user1, user2") {
		t.Fatalf("unload should be refused: %v", err)
	}
	if _, err := run(t, h, "module unload user1"); err != nil {
		t.Fatal(err)
	}
	if out, _ := run(t, h, "module show like res"); !strings.Contains(out, "res   ") || !strings.Contains(out, " 1 ") {
		t.Fatalf("module show like res:\n%s", out)
	}
	if _, err := run(t, h, "test user1"); !errors.Is(err, cli.ErrUnknownCommand) {
		t.Fatalf("command of unloaded module still there: %v", err)
	}
	if _, err := run(t, h, "module unload -f res"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(j.String(), "stop:user2 stop:res") {
		t.Fatalf("forced unload order: %s", j)
	}
	if out, err := run(t, h, "module load res.so"); err != nil || !strings.Contains(out, "Loaded res") {
		t.Fatalf("load: %q %v", out, err)
	}
	if out, err := run(t, h, "module load user2"); err != nil || !strings.Contains(out, "Loaded user2") {
		t.Fatalf("load: %q %v", out, err)
	}
	if _, err := run(t, h, "module load nosuch"); err == nil || !strings.Contains(err.Error(), "no module named nosuch") {
		t.Fatalf("load unknown: %v", err)
	}
}

func TestReloadFailureKeepsOldConfig(t *testing.T) {
	fail := true
	h, _, _ := newHost(t, "",
		spec{name: "r", reloadErr: func() error {
			if fail {
				return errors.New("r.conf:2: [general] port: 70000 out of range 0..65535")
			}
			return nil
		}},
	)
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, h, "module reload r")
	if err == nil || !strings.Contains(err.Error(), "r.conf:2") {
		t.Fatalf("want reload error, got %v", err)
	}
	if out, _ := run(t, h, "test r"); out != "v1" {
		t.Fatalf("config after failed reload = %q, want v1", out)
	}
	fail = false
	if _, err := run(t, h, "core reload"); err != nil {
		t.Fatal(err)
	}
	if out, _ := run(t, h, "test r"); out != "v2" {
		t.Fatalf("config after reload = %q, want v2", out)
	}
}

func TestReloadUnsupported(t *testing.T) {
	reg := NewRegistry()
	_ = reg.Register(ModuleInfo{Name: "plain", New: func() Module { return plainModule{} }})
	h := New(Options{Registry: reg, ConfigDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, h, "module reload plain"); err == nil || !strings.Contains(err.Error(), "does not support reload") {
		t.Fatalf("got %v", err)
	}
}

type plainModule struct{}

func TestModulesConf(t *testing.T) {
	mods := []spec{{name: "a"}, {name: "b"}, {name: "c"}}
	cases := []struct {
		conf    string
		running string
		err     string
	}{
		{"", "a b c", ""},
		{"[modules]\nautoload = no\nload => b\n", "b", ""},
		{"[modules]\nautoload=yes\nnoload => a\n", "b c", ""},
		{"[modules]\nautoload = no\npreload => c\nrequire => a\n", "c a", ""},
		{"[modules]\nnoload => a\nrequire => a\n", "", "modules.conf:3: [modules] require: module \"a\" is both required and noloaded"},
		{"[modules]\nload => nosuch\n", "", "modules.conf:2: [modules] load: unknown module \"nosuch\""},
		{"[modules]\nautoload = maybe\n", "", "modules.conf:2: [modules] autoload: \"maybe\" is not a boolean"},
		{"[modules]\nbogus = 1\n", "", "unknown key"},
	}
	for _, c := range cases {
		h, _, _ := newHost(t, c.conf, mods...)
		err := h.Start(context.Background())
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: want error %q, got %v", c.conf, c.err, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.conf, err)
			continue
		}
		var names []string
		for _, m := range h.Running() {
			names = append(names, m.(*testModule).info.Name)
		}
		if got := strings.Join(names, " "); got != c.running {
			t.Errorf("%q: running %q, want %q", c.conf, got, c.running)
		}
		h.Stop(StopNow)
	}
}

func TestHelpAndUnknownCommand(t *testing.T) {
	h, _, _ := newHost(t, "", spec{name: "a"})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, h, "core show help module")
	if err != nil || !strings.Contains(out, "module show") || !strings.Contains(out, "-- List modules") || strings.Contains(out, "core reload") {
		t.Fatalf("help: %q %v", out, err)
	}
	out, err = run(t, h, "core show help module unload")
	if err != nil || !strings.Contains(out, "Usage: module unload [-f] <name>") {
		t.Fatalf("help exact: %q %v", out, err)
	}
	_, err = run(t, h, "frobnicate now")
	if !errors.Is(err, cli.ErrUnknownCommand) || !strings.Contains(err.Error(), "core show help") {
		t.Fatalf("unknown: %v", err)
	}
	// Wrong arguments: the command and the problem, then the usage once.
	for line, want := range map[string]string{
		"module load":           "module load: expected <name>, got no arguments\nUsage: module load <name>",
		"module load a b":       "module load: unexpected argument \"b\"\nUsage: module load <name>",
		"module unload -f":      "module unload: expected <name> after \"-f\"\nUsage: module unload [-f] <name>",
		"module unload a b":     "module unload: unexpected argument \"b\"\nUsage: module unload [-f] <name>",
		"module reload a b":     "module reload: unexpected argument \"b\"\nUsage: module reload [<name>]",
		"module show a":         "module show: expected like, got \"a\"\nUsage: module show [like <text>]",
		"module show like":      "module show: expected <text> after \"like\"\nUsage: module show [like <text>]",
		"module show like a b":  "module show: unexpected argument \"b\"\nUsage: module show [like <text>]",
		"core show version x":   "core show version: unexpected argument \"x\"\nUsage: core show version",
		"core show uptime x":    "core show uptime: unexpected argument \"x\"\nUsage: core show uptime",
		"core reload x":         "core reload: unexpected argument \"x\"\nUsage: core reload",
		"core stop":             "core stop: expected now|gracefully, got no arguments\nUsage: core stop now|gracefully",
		"core stop later":       "core stop: expected now|gracefully, got \"later\"\nUsage: core stop now|gracefully",
		"core stop now at once": "core stop: unexpected arguments \"at\", \"once\"\nUsage: core stop now|gracefully",
	} {
		if _, err := run(t, h, line); err == nil || err.Error() != want || !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%q: %v, want\n%s", line, err, want)
		}
	}
	if got := h.Commands().Complete("module sh"); strings.Join(got, ",") != "show" {
		t.Fatalf("complete: %v", got)
	}
	if got := h.Commands().Complete("module unload "); strings.Join(got, ",") != "a" {
		t.Fatalf("complete args: %v", got)
	}
	if _, err := run(t, h, "core stop gracefully"); err != nil {
		t.Fatal(err)
	}
	if mode := <-h.StopRequests(); mode != StopGracefully {
		t.Fatalf("mode %v", mode)
	}
}
