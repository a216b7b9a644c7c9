// Package cli holds switchboard's command tree: modules register commands under
// space-separated paths ("kafka show status"), and the interactive console, the
// remote console and one-shot commands all resolve and complete lines against
// the same tree. The package knows nothing about modules beyond an owner name.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Command is one command of the tree.
type Command struct {
	// Path is the command's words, space separated, e.g. "kafka show connection".
	Path string
	// Summary is a one-line description shown by "core show help".
	Summary string
	// Usage is the full usage text shown by "core show help <command>". Its
	// first line is the synopsis ("policy lookup <group> <domain>"), which is
	// what follows "Usage: " when the command rejects its arguments; further
	// lines explain it.
	Usage string
	// Run executes the command with the words after Path. It writes its output
	// to w. Wrong arguments are reported by returning a UsageError (see the
	// helpers NoArgs, ExactArgs, MinArgs, MaxArgs, Keyword and Unexpected);
	// any other error is printed as one line.
	Run func(ctx context.Context, w io.Writer, args []string) error
	// Complete, if set, returns candidates for the argument being typed; args
	// holds the complete words typed after Path and prefix the partial word.
	Complete func(args []string, prefix string) []string

	owner string
}

// UsageError reports that a command was called with wrong arguments.
//
// A command returns one with only Msg set: the problem, named concretely
// ("expected <group> and <domain>, got 1 argument"), without the command's
// path or usage. Tree.Run returns a copy with Path and Synopsis filled in,
// whose Error is exactly two lines:
//
//	policy lookup: expected <group> and <domain>, got 1 argument
//	Usage: policy lookup <group> <domain>
//
// Every front end (console, remote console, -rx) prints that text as it is.
// A UsageError matches ErrUsage with errors.Is.
type UsageError struct {
	// Msg is the problem; "" reads "wrong arguments".
	Msg string
	// Path is the command's path; set by Tree.Run.
	Path string
	// Synopsis is the first line of the command's usage; set by Tree.Run.
	Synopsis string
}

// Error returns the problem alone, or, once Tree.Run has set Path, the
// "<path>: <problem>" line followed by the "Usage: <synopsis>" line. A
// problem written on several lines is joined into one.
func (e *UsageError) Error() string {
	msg := strings.Join(strings.Fields(e.Msg), " ")
	if msg == "" {
		msg = "wrong arguments"
	}
	if e.Path == "" {
		return msg
	}
	return e.Path + ": " + msg + "\nUsage: " + e.Synopsis
}

// Is reports whether target is ErrUsage.
func (e *UsageError) Is(target error) bool { return target == ErrUsage }

// Usagef returns a UsageError whose problem is the formatted message. The
// message names what is wrong and must not repeat the command's path or
// usage: Tree.Run adds both.
func Usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// ErrUsage is matched (errors.Is) by every wrong-arguments error: a
// *UsageError here, and the remote client's error for one.
var ErrUsage = errors.New("wrong arguments")

// ErrUnknownCommand is returned (wrapped) for a line that matches no command.
var ErrUnknownCommand = errors.New("no such command")
