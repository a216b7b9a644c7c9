package cli

import (
	"bytes"
	"context"
	"errors"
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
			if len(args) != 1 {
				return Usagef("name one connection")
			}
			return nil
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
	if err == nil || err.Error() != "name one connection\nUsage: kafka show connection <name>" {
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
