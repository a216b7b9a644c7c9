package core

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
)

// Context is what the host hands a module in Configure, Start and Reload. Its
// context.Context is cancelled when the module is unloaded or the host stops.
type Context struct {
	context.Context
	// Logger is the host's logger tagged with module=<name>.
	Logger *slog.Logger

	host *Host
	rec  *record
}

// Name returns the name of the module the context belongs to.
func (c *Context) Name() string { return c.rec.info.Name }

// Host returns the host running the module.
func (c *Context) Host() *Host { return c.host }

// ConfigDir returns the configuration directory (-C).
func (c *Context) ConfigDir() string { return c.host.opts.ConfigDir }

// DataDir returns the directory where modules keep state (spools and such).
func (c *Context) DataDir() string { return c.host.opts.DataDir }

// ConfigPath returns the path of a file in the configuration directory.
func (c *Context) ConfigPath(file string) string {
	if filepath.IsAbs(file) {
		return file
	}
	return filepath.Join(c.host.opts.ConfigDir, file)
}

// Config returns the module's decoded configuration of type T: the value
// the host decoded from the declared file whose ConfigFile.New returns a T.
// It is valid from Configure on and, after a reload, holds the new values.
// Asking for a type the module did not declare is a programming error and
// panics with the reason.
func Config[T any](ctx *Context) T {
	ctx.host.mu.Lock()
	vals := ctx.rec.configs
	ctx.host.mu.Unlock()
	for _, v := range vals {
		if t, ok := v.(T); ok {
			return t
		}
	}
	var zero T
	panic(fmt.Sprintf("core: module %s declares no config file of type %T", ctx.Name(), zero))
}

// Dep returns the running instance of a module this one declared in
// Requires or Optional, as type T. The host took the reference when this
// module started and gives it back when it stops, so the instance stays
// loaded meanwhile. A name the module did not declare, an optional module
// that is not running and a module of another type are errors.
func Dep[T any](ctx *Context, name string) (T, error) {
	var zero T
	info := ctx.rec.info
	if !slices.Contains(info.Requires, name) && !slices.Contains(info.Optional, name) {
		return zero, fmt.Errorf("module %s asked for %s, which it does not declare in Requires or Optional", info.Name, name)
	}
	m, err := ctx.host.held(ctx.rec, name)
	if err != nil {
		return zero, err
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("module %s is a %T, not a %T", name, m, zero)
	}
	return t, nil
}

// Within runs f and returns its error, or the context's error if ctx ends
// first; f then goes on in the background. A Stop whose work cannot be
// cancelled (closing a client, waiting for a handler) uses it to return by
// its deadline all the same.
func Within(ctx context.Context, f func() error) error {
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("gave up waiting: %w", ctx.Err())
	}
}
