package core

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	"github.com/switchboard-dp/switchboard/conf"
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

// LoadConfig parses a file of the configuration directory. A missing file is
// reported with an error satisfying errors.Is(err, fs.ErrNotExist), so a
// module can choose to run on defaults.
func (c *Context) LoadConfig(file string) (*conf.File, error) {
	f, err := conf.Load(c.ConfigPath(file))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name(), err)
	}
	return f, nil
}

// Borrow returns the running instance of the named module and records that
// this module holds it: its use count rises until Release, or until this
// module is unloaded, so the host refuses to unload it meanwhile.
func (c *Context) Borrow(name string) (Module, error) {
	return c.host.borrow(c.rec, name)
}

// Release gives back one reference taken by Borrow.
func (c *Context) Release(name string) { c.host.release(c.rec, name) }

// Borrow is the typed form of Context.Borrow: it borrows the named module and
// asserts its type.
func Borrow[T any](ctx *Context, name string) (T, error) {
	var zero T
	m, err := ctx.Borrow(name)
	if err != nil {
		return zero, err
	}
	t, ok := m.(T)
	if !ok {
		ctx.Release(name)
		return zero, fmt.Errorf("module %s is a %T, not the expected type", name, m)
	}
	return t, nil
}
