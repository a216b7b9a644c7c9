package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestTreeRunCompleteAndOwners(t *testing.T) {
	tr := NewTree()
	var got []string
	run := func(_ context.Context, w io.Writer, args []string) error { got = args; return nil }
	err := tr.Register("res_kafka",
		&Command{Path: "kafka show status", Summary: "s", Run: run},
		&Command{Path: "kafka show connection", Summary: "c", Usage: "kafka show connection <name>", Run: func(_ context.Context, w io.Writer, args []string) error {
			return ExactArgs(args, "<name>")
		}, Complete: func(args []string, prefix string) []string { return []string{"alpha", "beta"} }},
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Register("other", &Command{Path: "kafka  show status", Run: run}); err == nil || !strings.Contains(err.Error(), "already registered by res_kafka") {
		t.Fatalf("duplicate: %v", err)
	}
	if err := tr.Run(context.Background(), io.Discard, `kafka show status "a b" c`); err != nil || strings.Join(got, "|") != "a b|c" {
		t.Fatalf("run: %v %q", err, got)
	}
	err = tr.Run(context.Background(), io.Discard, "kafka show connection")
	if err == nil || err.Error() != "kafka show connection: expected <name>, got no arguments\nUsage: kafka show connection <name>" {
		t.Fatalf("usage: %v", err)
	}
	if err := tr.Run(context.Background(), io.Discard, "kafka"); !errors.Is(err, ErrUnknownCommand) {
		t.Fatalf("unknown: %v", err)
	}
	if err := tr.Run(context.Background(), io.Discard, `kafka "x`); err == nil {
		t.Fatal("unterminated quote accepted")
	}
	for line, want := range map[string]string{
		"ka":                      "kafka",
		"kafka show ":             "connection,status",
		"kafka show c":            "connection",
		"kafka show connection ":  "alpha,beta",
		"kafka show connection b": "beta",
		"nothing":                 "",
	} {
		if c := strings.Join(tr.Complete(line), ","); c != want {
			t.Errorf("Complete(%q) = %q, want %q", line, c, want)
		}
	}
	tr.Unregister("res_kafka")
	if len(tr.Commands()) != 0 {
		t.Fatal("commands left after Unregister")
	}
	var b bytes.Buffer
	if err := tr.Run(context.Background(), &b, "   "); err != nil {
		t.Fatal(err)
	}
}

// TestUsageErrorFormat checks the one format of wrong arguments: the command
// path and the problem on one line, then the synopsis after "Usage: " once.
func TestUsageErrorFormat(t *testing.T) {
	tr := NewTree()
	err := tr.Register("test",
		&Command{Path: "policy lookup", Usage: "policy lookup <group> <domain>",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				return ExactArgs(args, "<group>", "<domain>")
			}},
		&Command{Path: "policy load", Usage: "policy load <file>\n  One message per line.",
			Run: func(_ context.Context, w io.Writer, args []string) error { return ExactArgs(args, "<file>") }},
		&Command{Path: "core show uptime",
			Run: func(_ context.Context, w io.Writer, args []string) error { return NoArgs(args) }},
		&Command{Path: "bare", Usage: "bare",
			Run: func(context.Context, io.Writer, []string) error { return &UsageError{} }},
		&Command{Path: "multiline",
			Run: func(context.Context, io.Writer, []string) error { return Usagef("first,\n  second\n") }},
		&Command{Path: "wrapped", Usage: "wrapped <n>",
			Run: func(context.Context, io.Writer, []string) error {
				return fmt.Errorf("context: %w", Usagef("n %q is not a number", "x"))
			}},
		&Command{Path: "outer", Usage: "outer",
			Run: func(ctx context.Context, w io.Writer, args []string) error {
				return tr.Run(ctx, w, "policy lookup a")
			}},
	)
	if err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string]string{
		"policy lookup enterprise_a": "policy lookup: expected <group> and <domain>, got 1 argument\nUsage: policy lookup <group> <domain>",
		"policy lookup a b c":        "policy lookup: unexpected argument \"c\"\nUsage: policy lookup <group> <domain>",
		"policy load":                "policy load: expected <file>, got no arguments\nUsage: policy load <file>",
		"core show uptime x y":       "core show uptime: unexpected arguments \"x\", \"y\"\nUsage: core show uptime",
		"bare":                       "bare: wrong arguments\nUsage: bare",
		"multiline":                  "multiline: first, second\nUsage: multiline",
		"wrapped":                    "wrapped: n \"x\" is not a number\nUsage: wrapped <n>",
		// A nested Run's usage error is passed on, not wrapped again.
		"outer": "policy lookup: expected <group> and <domain>, got 1 argument\nUsage: policy lookup <group> <domain>",
	} {
		err := tr.Run(context.Background(), io.Discard, line)
		if err == nil {
			t.Errorf("%q: no error", line)
			continue
		}
		if err.Error() != want {
			t.Errorf("%q:\n got %q\nwant %q", line, err.Error(), want)
		}
		if n := strings.Count(err.Error(), "Usage: "); n != 1 || strings.Count(err.Error(), "\n") != 1 {
			t.Errorf("%q: want two lines with the usage once, got %q", line, err.Error())
		}
		var ue *UsageError
		if !errors.Is(err, ErrUsage) || !errors.As(err, &ue) || errors.Is(err, ErrUnknownCommand) {
			t.Errorf("%q: %T does not match ErrUsage / *UsageError only", line, err)
		}
	}
	// Before Tree.Run completes it, a UsageError is the problem alone.
	if got := ExactArgs([]string{"a"}, "<group>", "<domain>").Error(); got != "expected <group> and <domain>, got 1 argument" {
		t.Errorf("bare UsageError: %q", got)
	}
	if errors.Is(errors.New("other"), ErrUsage) {
		t.Error("any error matches ErrUsage")
	}
}

func TestArgHelpers(t *testing.T) {
	none := []string(nil)
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"NoArgs ok", NoArgs(none), ""},
		{"NoArgs one", NoArgs([]string{"x"}), `unexpected argument "x"`},
		{"ExactArgs ok", ExactArgs([]string{"a", "b"}, "<a>", "<b>"), ""},
		{"ExactArgs none", ExactArgs(none, "<name>"), "expected <name>, got no arguments"},
		{"ExactArgs few", ExactArgs([]string{"a"}, "<a>", "<b>", "<c>"), "expected <a>, <b> and <c>, got 1 argument"},
		{"ExactArgs many", ExactArgs([]string{"a", "b", "c"}, "<a>"), `unexpected arguments "b", "c"`},
		{"MinArgs ok", MinArgs([]string{"a", "b"}, "<a>"), ""},
		{"MinArgs few", MinArgs([]string{"a", "b"}, "<a>", "<b>", "<c>"), "expected <a>, <b> and <c>, got 2 arguments"},
		{"MaxArgs ok", MaxArgs([]string{"a"}, 1), ""},
		{"MaxArgs many", MaxArgs([]string{"a", "b"}, 1), `unexpected argument "b"`},
		{"Keyword ok", Keyword([]string{"topic", "t"}, 0, "topic", "<topic>"), ""},
		{"Keyword missing", Keyword([]string{"connection", "c"}, 2, "topic", "<topic>"), "missing topic <topic>"},
		{"Keyword wrong", Keyword([]string{"x", "t"}, 0, "topic", "<topic>"), `expected topic, got "x"`},
		{"Keyword no value", Keyword([]string{"topic"}, 0, "topic", "<topic>"), `expected <topic> after "topic"`},
		{"Unexpected", Unexpected("a b"), `unexpected argument "a b"`},
	} {
		got := ""
		if c.err != nil {
			got = c.err.Error()
			var ue *UsageError
			if !errors.As(c.err, &ue) {
				t.Errorf("%s: %T is not a *UsageError", c.name, c.err)
			}
		}
		if got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestSynopsis(t *testing.T) {
	for _, c := range []struct{ cmd, want string }{
		{"", "x y"},
		{"x y <a>", "x y <a>"},
		{"x y <a>\n\n  More text.", "x y <a>"},
		{"\nlater", "x y"},
	} {
		if got := (&Command{Path: "x y", Usage: c.cmd}).Synopsis(); got != c.want {
			t.Errorf("Synopsis of %q = %q, want %q", c.cmd, got, c.want)
		}
	}
}
