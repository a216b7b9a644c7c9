// Package core is switchboard's module host: it keeps a registry of module
// types, decides which modules to load from modules.conf, configures them all
// before any starts, starts them in dependency order, tracks who borrows whom
// (use counts), reloads and unloads them, and stops them in reverse order.
//
// The package knows nothing about Kafka, DNS or any other module's subject.
// A module type is a registration (ModuleInfo: name, dependencies, config
// files, constructor); an instance has optional capabilities found by type
// assertion (Starter, Stopper, Reloader, Commander, Greeter, ...), in the
// manner of Caddy's module system and Asterisk's loader. The host does the
// host's work: it decodes every module's declared config files, holds the
// references to the modules each one requires, and hands both to the module
// through its Context (Config, Dep).
package core

import (
	"context"
	"errors"
	"fmt"
	"time"

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

// ModuleInfo describes a module type: it is what a module registers, and
// the one place that says what the module is.
type ModuleInfo struct {
	// Name is the module's unique name, Asterisk style: res_kafka, cdr_kafka.
	Name string
	// Description is one line shown by "module show".
	Description string
	// Priority orders modules whose dependencies do not order them.
	Priority int
	// Requires lists modules that must be running before this one starts; if
	// one is missing or declines, this module declines too. The host holds a
	// reference to each while this module runs; the module reaches them with
	// Dep.
	Requires []string
	// Optional lists modules started before this one when they are loaded;
	// the host holds a reference to those that run, reached with Dep.
	Optional []string
	// Support is the module's support level.
	Support SupportLevel
	// Configs declares the module's configuration files. The host loads,
	// decodes and validates each one before any module starts (and again
	// for a reload); the module reads the decoded values with Config.
	Configs []ConfigFile
	// New returns a new, unconfigured instance. It must have no side effects.
	New func() Module
}

// ConfigFile declares one configuration file of a module.
type ConfigFile struct {
	// Name is the file's name in the configuration directory, such as
	// "res_policy.conf".
	Name string
	// New returns a pointer to a fresh value of the module's config type,
	// which conf.DecodeFile fills (section tags, defaults, validation).
	New func() any
	// Required makes a missing file an error. Otherwise a missing file
	// decodes like an empty one: every default applies.
	Required bool
}

// Module is an instance of a registered module type. The host needs nothing
// of it beyond its registration; what else it can do is found by type
// assertion on the optional interfaces below.
type Module any

// Configurer is implemented by modules that check more than their declared
// files can say (that a file a setting names exists, say). Configure runs
// after the host decoded the module's files, before any module starts, and
// for "--check-config"; it must not start anything.
type Configurer interface {
	Configure(ctx *Context) error
}

// Starter is implemented by modules that do work once configured. Start may
// return an error made by Decline to decline loading; dependents then decline.
type Starter interface {
	Start(ctx *Context) error
}

// Stopper is implemented by modules that hold resources. Stop must return by
// the time ctx is done: the host gives each module the larger of its default
// stop timeout and what the module's StopTimeouter asks for.
type Stopper interface {
	Stop(ctx context.Context) error
}

// StopTimeouter is implemented by modules whose Stop may need more than the
// host's default stop timeout, such as a backend that flushes for a
// configured time. StopTimeout is asked when the module is stopped, so it may
// follow a reloaded configuration.
type StopTimeouter interface {
	StopTimeout() time.Duration
}

// Reloader is implemented by modules that can take a new configuration while
// running. The host decodes the module's files first: an invalid file is
// reported and Reload is not called. Reload then reads the new values with
// Config; if it returns an error, the host restores the old values, and the
// module must keep the old configuration in force.
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

// Readier is implemented by modules that serve only once something beyond
// their start happened (a connection is up, a first sync completed). Ready
// reports whether the module serves and, when it does not, why (one line).
// It must be cheap and must not block: readiness probes call it.
type Readier interface {
	Ready() (ready bool, reason string)
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
