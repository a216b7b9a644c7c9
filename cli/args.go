package cli

import (
	"fmt"
	"strings"
)

// Argument checks shared by commands, so that the same mistake reads the same
// in every command. Each returns nil when args pass, else a *UsageError whose
// problem names what is wrong. Names are written as the command's usage writes
// them ("<group>", "now|gracefully"); words the user typed are quoted.

// NoArgs reports any argument as unexpected:
//
//	unexpected argument "x"
func NoArgs(args []string) error { return MaxArgs(args, 0) }

// ExactArgs requires one argument per name. Too few reads
//
//	expected <group> and <domain>, got 1 argument
//
// and too many names the extra ones, as Unexpected does.
func ExactArgs(args []string, names ...string) error {
	if err := MinArgs(args, names...); err != nil {
		return err
	}
	return MaxArgs(args, len(names))
}

// MinArgs requires at least one argument per name; more may follow. Too few
// reads as in ExactArgs.
func MinArgs(args []string, names ...string) error {
	if len(args) >= len(names) {
		return nil
	}
	return Usagef("expected %s, got %s", joinNames(names), countArgs(len(args)))
}

// MaxArgs allows at most n arguments and names the extra ones, as Unexpected
// does.
func MaxArgs(args []string, n int) error {
	if len(args) <= n {
		return nil
	}
	return Unexpected(args[n:]...)
}

// Keyword requires args[i] to be the word kw followed by a value, as in
// "topic <topic>". What is missing or wrong reads
//
//	missing topic <topic>
//	expected topic, got "x"
//	expected <topic> after "topic"
func Keyword(args []string, i int, kw, value string) error {
	switch {
	case len(args) <= i:
		return Usagef("missing %s %s", kw, value)
	case args[i] != kw:
		return Usagef("expected %s, got %q", kw, args[i])
	case len(args) == i+1:
		return Usagef("expected %s after %q", value, kw)
	}
	return nil
}

// Unexpected reports words the command does not take:
//
//	unexpected argument "x"
//	unexpected arguments "x", "y"
func Unexpected(words ...string) error {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = fmt.Sprintf("%q", w)
	}
	if len(q) == 1 {
		return Usagef("unexpected argument %s", q[0])
	}
	return Usagef("unexpected arguments %s", strings.Join(q, ", "))
}

// joinNames lists names as "a", "a and b" or "a, b and c".
func joinNames(names []string) string {
	switch len(names) {
	case 0:
		return "nothing"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// countArgs says how many arguments were given.
func countArgs(n int) string {
	switch n {
	case 0:
		return "no arguments"
	case 1:
		return "1 argument"
	}
	return fmt.Sprintf("%d arguments", n)
}
