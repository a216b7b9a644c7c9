// Package remote is switchboard's control socket: a Unix socket server that
// runs command lines against a daemon's command tree, and the client used by
// "switchboard -r" (remote console) and "switchboard -rx" (one command).
//
// # Protocol
//
// One JSON object per line in each direction; the client sends a request and
// reads exactly one response before sending the next (a connection carries
// any number of requests, one at a time; open several connections for
// concurrency).
//
//	-> {"op":"run","line":"module show like res_"}
//	<- {"output":"Module ...\n1 modules loaded\n"}
//	-> {"op":"run","line":"bogus"}
//	<- {"error":"no such command: 'bogus'. Try 'core show help'","unknown":true}
//	-> {"op":"run","line":"module load"}
//	<- {"error":"module load: expected <name>, got no arguments\nUsage: module load <name>","usage":true}
//	-> {"op":"complete","line":"module sh"}
//	<- {"candidates":["show"]}
//
// A run response carries the command's whole output and, when the command
// failed, its error text as the daemon's command tree wrote it: one line, or
// for wrong arguments the two lines of a cli.UsageError ("<path>: <problem>",
// "Usage: <synopsis>"), which clients print unchanged. "unknown" is set when
// the line matched no command, "usage" when the arguments were wrong. An
// unknown op is answered with an error.
//
// # Socket file
//
// Listen creates the socket with mode 0660 (or Options.Mode) without ever
// exposing it under its final name with looser permissions: it binds a
// temporary name in the same directory, chmods it, then renames it into
// place. A socket left by a dead process (nothing answers on it) is replaced;
// a socket that answers makes Listen fail with ErrInUse, so a second daemon
// refuses to start. A path that exists but is not a socket is never removed.
package remote

import (
	"errors"
	"fmt"

	"github.com/switchboard-dp/switchboard/cli"
)

// Operations of a request.
const (
	OpRun      = "run"
	OpComplete = "complete"
)

// Request is one line sent by the client.
type Request struct {
	Op   string `json:"op"`
	Line string `json:"line"`
}

// Response is one line sent by the server.
type Response struct {
	Output     string   `json:"output,omitempty"`
	Error      string   `json:"error,omitempty"`
	Unknown    bool     `json:"unknown,omitempty"`
	Usage      bool     `json:"usage,omitempty"`
	Candidates []string `json:"candidates,omitempty"`
}

// CommandError is a command's failure as reported by the daemon. It unwraps to
// cli.ErrUnknownCommand when the line matched no command and to cli.ErrUsage
// when the arguments were wrong, so callers can test errors.Is the same way
// locally and remotely.
type CommandError struct {
	// Msg is the error text exactly as the daemon's tree wrote it.
	Msg string
	// Unknown is set when the line matched no command.
	Unknown bool
	// Usage is set when the command rejected its arguments.
	Usage bool
}

// Error returns the daemon's error text unchanged.
func (e *CommandError) Error() string { return e.Msg }

// Unwrap returns cli.ErrUnknownCommand for an unknown command, cli.ErrUsage
// for wrong arguments, else nil.
func (e *CommandError) Unwrap() error {
	switch {
	case e.Unknown:
		return cli.ErrUnknownCommand
	case e.Usage:
		return cli.ErrUsage
	}
	return nil
}

// ErrInUse is returned by Listen when a live daemon already answers on the
// socket path.
var ErrInUse = errors.New("control socket is in use by a running switchboard")

// ErrDisconnected is returned (wrapped) by the client when the daemon closed
// the connection or could not be reached mid-request.
var ErrDisconnected = errors.New("disconnected from switchboard")

func disconnected(err error) error { return fmt.Errorf("%w: %v", ErrDisconnected, err) }
