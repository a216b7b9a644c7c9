package core

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/conf"
)

// greetConf is the config type of the test module "greeter": greeter.conf's
// [general] section, with a rule across keys.
type greetConf struct {
	General struct {
		Greeting string `conf:"greeting" default:"hello"`
		Times    int    `conf:"times" default:"1" min:"1" max:"9"`
		Loud     bool   `conf:"loud"`
	} `section:"general"`
}

func (c *greetConf) Validate(f *conf.File) error {
	var errs conf.Errors
	if c.General.Loud && c.General.Greeting == "psst" {
		errs.At(f, "general", "loud", "a loud psst makes no sense")
	}
	return errs.Err()
}

// greeter records the configuration it was started and reloaded with.
type greeter struct {
	seen      []string
	reloadErr error
	stopFor   time.Duration // StopTimeout
	stopTook  time.Duration // how long Stop blocks, unless ctx ends first
	stopGot   time.Duration // the budget Stop was given
}

func (g *greeter) Start(ctx *Context) error {
	g.seen = append(g.seen, "start:"+Config[*greetConf](ctx).General.Greeting)
	return nil
}

func (g *greeter) Reload(ctx *Context) error {
	if g.reloadErr != nil {
		return g.reloadErr
	}
	g.seen = append(g.seen, "reload:"+Config[*greetConf](ctx).General.Greeting)
	return nil
}

func (g *greeter) StopTimeout() time.Duration { return g.stopFor }

func (g *greeter) Stop(ctx context.Context) error {
	if dl, ok := ctx.Deadline(); ok {
		g.stopGot = time.Until(dl).Round(100 * time.Millisecond)
	}
	select {
	case <-time.After(g.stopTook):
	case <-ctx.Done():
	}
	return nil
}

func greeterHost(t *testing.T, g *greeter, files map[string]string) *Host {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	reg := NewRegistry()
	if err := reg.Register(ModuleInfo{Name: "greeter",
		Configs: []ConfigFile{{Name: "greeter.conf", New: func() any { return new(greetConf) }}},
		New:     func() Module { return g }}); err != nil {
		t.Fatal(err)
	}
	return New(Options{Registry: reg, ConfigDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
}

func TestHostDecodesDeclaredConfig(t *testing.T) {
	t.Run("missing file gives the defaults", func(t *testing.T) {
		g := &greeter{}
		h := greeterHost(t, g, nil)
		if err := h.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer h.Stop(StopNow)
		if strings.Join(g.seen, " ") != "start:hello" {
			t.Fatalf("seen %v", g.seen)
		}
	})
	t.Run("every problem, with file and line, at start and check", func(t *testing.T) {
		g := &greeter{}
		h := greeterHost(t, g, map[string]string{
			"modules.conf": "[modules]\nrequire => greeter\n",
			"greeter.conf": "[general]\ngreeting = psst\nloud = yes\ntimes = 10\n[extra]\n",
		})
		for name, err := range map[string]error{"Start": h.Start(context.Background()), "CheckConfig": h.CheckConfig()} {
			msg := ""
			if err != nil {
				msg = err.Error()
			}
			for _, want := range []string{"greeter.conf:4: [general] times:", "greeter.conf:5: [extra]: unknown section (want [general])"} {
				if !strings.Contains(msg, want) {
					t.Errorf("%s: %q lacks %q", name, msg, want)
				}
			}
		}
		if len(g.seen) != 0 {
			t.Errorf("started with an invalid file: %v", g.seen)
		}
	})
	t.Run("a validator's problem is located", func(t *testing.T) {
		h := greeterHost(t, &greeter{}, map[string]string{"greeter.conf": "[general]\ngreeting = psst\nloud = yes\n"})
		if err := h.CheckConfig(); err == nil || !strings.Contains(err.Error(), "greeter.conf:3: [general] loud: a loud psst makes no sense") {
			t.Fatalf("CheckConfig: %v", err)
		}
	})
	t.Run("required file", func(t *testing.T) {
		reg := NewRegistry()
		reg.Register(ModuleInfo{Name: "strict", Configs: []ConfigFile{{Name: "strict.conf", Required: true, New: func() any { return new(greetConf) }}},
			New: func() Module { return &greeter{} }})
		h := New(Options{Registry: reg, ConfigDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
		if err := h.CheckConfig(); err == nil || !strings.Contains(err.Error(), "strict.conf: required configuration file is missing") {
			t.Fatalf("CheckConfig: %v", err)
		}
	})
}

func TestReloadDecodesFirstAndRestoresOnFailure(t *testing.T) {
	g := &greeter{}
	h := greeterHost(t, g, map[string]string{"greeter.conf": "[general]\ngreeting = one\n"})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Stop(StopNow)
	path := filepath.Join(h.opts.ConfigDir, "greeter.conf")
	write := func(text string) {
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("[general]\ngreeting = two\ntimes = zero\n")
	if err := h.Reload("greeter"); err == nil || !strings.Contains(err.Error(), "greeter.conf:3: [general] times:") {
		t.Fatalf("invalid file: %v", err)
	}
	write("[general]\ngreeting = three\n")
	g.reloadErr = errors.New("cannot take it")
	if err := h.Reload("greeter"); err == nil || !strings.Contains(err.Error(), "cannot take it") {
		t.Fatalf("refused reload: %v", err)
	}
	g.reloadErr = nil
	write("[general]\ngreeting = four\n")
	if err := h.Reload("greeter"); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(g.seen, " "); got != "start:one reload:four" {
		t.Fatalf("seen %q: an invalid file must not reach Reload", got)
	}
	// The refused "three" was put back to "one" before "four" came: the
	// context holds what the module runs on.
	h.mu.Lock()
	cur := h.recs["greeter"].configs[0].(*greetConf).General.Greeting
	h.mu.Unlock()
	if cur != "four" {
		t.Fatalf("current config %q", cur)
	}
}

func TestRefusedReloadKeepsOldValues(t *testing.T) {
	g := &greeter{reloadErr: errors.New("no")}
	h := greeterHost(t, g, map[string]string{"greeter.conf": "[general]\ngreeting = one\n"})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Stop(StopNow)
	os.WriteFile(filepath.Join(h.opts.ConfigDir, "greeter.conf"), []byte("[general]\ngreeting = two\n"), 0o644)
	if err := h.Reload("greeter"); err == nil {
		t.Fatal("reload accepted")
	}
	h.mu.Lock()
	cur := h.recs["greeter"].configs[0].(*greetConf).General.Greeting
	h.mu.Unlock()
	if cur != "one" {
		t.Fatalf("after a refused reload the module's config is %q, want one", cur)
	}
}

func TestDepOnlyForDeclaredModules(t *testing.T) {
	var got []string
	reg := NewRegistry()
	reg.Register(
		ModuleInfo{Name: "base", New: func() Module { return &idle{} }},
		ModuleInfo{Name: "other", New: func() Module { return &idle{} }},
		ModuleInfo{Name: "user", Requires: []string{"base"}, Optional: []string{"absent"},
			New: func() Module {
				return starterFunc(func(ctx *Context) error {
					for _, name := range []string{"base", "other", "absent"} {
						_, err := Dep[*idle](ctx, name)
						got = append(got, name+"="+errString(err))
					}
					_, err := Dep[*testModule](ctx, "base")
					got = append(got, "wrongtype="+errString(err))
					return nil
				})
			}},
	)
	h := New(Options{Registry: reg, ConfigDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Stop(StopNow)
	want := []string{
		"base=",
		"other=module user asked for other, which it does not declare in Requires or Optional",
		"absent=module absent is not running",
		"wrongtype=module base is a *core.idle, not a *core.testModule",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, m := range h.Modules() {
		if m.Name == "base" && (m.UseCount != 1 || strings.Join(m.Users, ",") != "user") {
			t.Errorf("base: %+v", m)
		}
		if m.Name == "other" && m.UseCount != 0 {
			t.Errorf("other: %+v", m)
		}
	}
}

// idle is a module with no capability at all.
type idle struct{}

type starterFunc func(*Context) error

func (f starterFunc) Start(ctx *Context) error { return f(ctx) }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestStopBudget(t *testing.T) {
	for _, c := range []struct {
		name, modulesConf string
		asks              time.Duration
		mode              StopMode
		want              time.Duration
	}{
		{"default", "", 0, StopGracefully, 10 * time.Second},
		{"modules.conf stop_timeout", "[modules]\nstop_timeout = 3s\n", 0, StopGracefully, 3 * time.Second},
		{"the module asks for more", "[modules]\nstop_timeout = 3s\n", 20 * time.Second, StopGracefully, 20 * time.Second},
		{"the module asks for less", "", time.Second, StopGracefully, 10 * time.Second},
		{"stop now", "", 20 * time.Second, StopNow, time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := &greeter{stopFor: c.asks}
			files := map[string]string{}
			if c.modulesConf != "" {
				files["modules.conf"] = c.modulesConf
			}
			h := greeterHost(t, g, files)
			if err := h.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			h.Stop(c.mode)
			if g.stopGot != c.want {
				t.Fatalf("Stop got %s, want %s", g.stopGot, c.want)
			}
		})
	}
	h := greeterHost(t, &greeter{}, map[string]string{"modules.conf": "[modules]\nstop_timeout = soon\n"})
	if err := h.Start(context.Background()); err == nil || !strings.Contains(err.Error(), `modules.conf:2: [modules] stop_timeout: "soon" is not a duration`) {
		t.Fatalf("bad stop_timeout: %v", err)
	}
}

func TestWithin(t *testing.T) {
	if err := Within(context.Background(), func() error { return errors.New("done") }); err == nil || err.Error() != "done" {
		t.Fatalf("f's error: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	release := make(chan struct{})
	defer close(release)
	if err := Within(ctx, func() error { <-release; return nil }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked f: %v", err)
	}
}
