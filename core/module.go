// Package core is switchboard's module host: it keeps a registry of module
// types, decides which modules to load from modules.conf, configures them all
// before any starts, starts them in dependency order, tracks who borrows whom
// (use counts), reloads and unloads them, and stops them in reverse order.
//
// The package knows nothing about Kafka, DNS or any other module's subject.
// A module is a tiny interface (Module) plus optional capabilities found by type
// assertion (Configurer, Starter, Stopper, Reloader, Commander, Greeter), in the manner
// of Caddy's module system and Asterisk's loader.
package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchboard-dp/switchboard/cli"
)

// SupportLevel tells operators how well a module is looked after.
type SupportLevel int

// Support levels, as Asterisk's core / extended / deprecated.
const (
	SupportCore SupportLevel = iota
	SupportExtended
	SupportDeprecated
)

func (s SupportLevel) String() string {
	switch s {
	case SupportCore:
		return "core"
	case SupportExtended:
		return "extended"
	case SupportDeprecated:
		return "deprecated"
	}
	return fmt.Sprintf("support(%d)", int(s))
}

// Load priorities: lower numbers start first among modules whose
// dependencies allow either order (as Asterisk's AST_MODPRI_*).
const (
	PriorityResource    = 10  // shared resources such as res_kafka
	PriorityEngine      = 50  // engines other modules post to, such as cdr
	PriorityBackend     = 60  // backends of an engine, such as cdr_kafka
	PriorityApplication = 100 // everything else
)

// ModuleInfo describes a module type. It is what a module registers.
type ModuleInfo struct {
	// Name is the module's unique name, Asterisk style: res_kafka, cdr_kafka.
	Name string
	// Description is one line shown by "module show".
	Description string
	// Priority orders modules whose dependencies do not order them.
	Priority int
	// Requires lists modules that must be running before this one starts; if
	// one is missing or declines, this module declines too.
	Requires []string
	// Optional lists modules started before this one when they are loaded.
	Optional []string
	// Support is the module's support level.
	Support SupportLevel
	// New returns a new, unconfigured instance. It must have no side effects.
	New func() Module
}

// Module is the one interface every module implements.
type Module interface {
	// Info returns the module's registration record.
	Info() ModuleInfo
}

// Configurer is implemented by modules that have configuration. Configure
// decodes and validates it (normally from ctx.LoadConfig) and keeps it in the
// instance; it must not start anything. Every module is configured before any
// module starts, and "switchboard --check-config" calls only Configure.
type Configurer interface {
	Configure(ctx *Context) error
}

// Starter is implemented by modules that do work once configured. Start may
// return an error made by Decline to decline loading; dependents then decline.
type Starter interface {
	Start(ctx *Context) error
}

// Stopper is implemented by modules that hold resources. Stop must return by
// the time ctx is done.
type Stopper interface {
	Stop(ctx context.Context) error
}

// Reloader is implemented by modules that can re-read their configuration
// while running. A Reload whose new configuration is invalid must keep the old
// one in force and return the reason.
type Reloader interface {
	Reload(ctx *Context) error
}

// Commander is implemented by modules that add CLI commands. The commands are
// registered after Start and removed when the module is unloaded.
type Commander interface {
	Commands() []*cli.Command
}

// Greeter is implemented by modules with something to tell an operator who
// opens the console, such as where their output can be read. The lines are
// printed under the console banner, in start order.
type Greeter interface {
	Greeting() []string
}

// DeclineError is returned by Configure or Start to decline loading.
type DeclineError struct{ Reason string }

func (e *DeclineError) Error() string { return "declined: " + e.Reason }

// Decline returns an error that declines loading for the given reason.
func Decline(format string, a ...any) error {
	return &DeclineError{Reason: fmt.Sprintf(format, a...)}
}

// IsDecline reports whether err declines loading.
func IsDecline(err error) bool {
	var d *DeclineError
	return errors.As(err, &d)
}
