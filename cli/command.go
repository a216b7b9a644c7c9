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
)

// Command is one command of the tree.
type Command struct {
	// Path is the command's words, space separated, e.g. "kafka show connection".
	Path string
	// Summary is a one-line description shown by "core show help".
	Summary string
	// Usage is the full usage text shown for "core show help <command>" and
	// when the command returns a UsageError.
	Usage string
	// Run executes the command with the words after Path. It writes its output
	// to w. Returning a UsageError prints the usage; any other error is printed
	// as one line.
	Run func(ctx context.Context, w io.Writer, args []string) error
	// Complete, if set, returns candidates for the argument being typed; args
	// holds the complete words typed after Path and prefix the partial word.
	Complete func(args []string, prefix string) []string

	owner string
}

// UsageError reports that a command was called with wrong arguments.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string {
	if e.Msg == "" {
		return "wrong arguments"
	}
	return e.Msg
}

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, a ...any) error { return &UsageError{Msg: fmt.Sprintf(format, a...)} }

// ErrUnknownCommand is returned (wrapped) for a line that matches no command.
var ErrUnknownCommand = errors.New("no such command")
