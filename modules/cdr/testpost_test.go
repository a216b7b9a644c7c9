package cdr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

func TestTestPostCommand(t *testing.T) {
	e := NewEngine()
	f := &fakeBackend{name: "fake", max: 100, age: 10 * time.Millisecond}
	reg, err := e.Register(f)
	if err != nil {
		t.Fatal(err)
	}
	e.StartFlusher()
	defer e.Close()
	cmd := e.testPostCommand()
	var out bytes.Buffer
	if err := cmd.Run(context.Background(), &out, []string{"250", "start", "1000", "subscribers", "3", "rate", "100000"}); err != nil {
		t.Fatal(err)
	}
	if want := "posted 250 CDRs seq 1000..1249"; !strings.HasPrefix(out.String(), want) {
		t.Fatalf("output %q, want prefix %q", out.String(), want)
	}
	testwait.Until(t, 5*time.Second, "250 records", func() bool { return f.count() == 250 })
	f.mu.Lock()
	for i, g := range f.got {
		if !strings.Contains(g, fmt.Sprintf(`"seq":%d}`, 1000+i)) || !strings.Contains(g, fmt.Sprintf(`"ip":"10.77.0.%d"`, i%3+1)) {
			t.Fatalf("record %d: %s", i, g)
		}
	}
	f.mu.Unlock()
	if s := reg.Snapshot(); s.Posted != 250 || s.Delivered != 250 {
		t.Fatalf("posted %d delivered %d, want 250", s.Posted, s.Delivered)
	}

	// Default ids: consecutive invocations never overlap.
	out.Reset()
	cmd.Run(context.Background(), &out, []string{"10"})
	cmd.Run(context.Background(), &out, []string{"10"})
	var a0, a1, b0, b1 uint64
	if _, err := fmt.Sscanf(out.String(), "posted 10 CDRs seq %d..%d in", &a0, &a1); err != nil {
		t.Fatal(err, out.String())
	}
	second := out.String()[strings.Index(out.String(), "\n")+1:]
	if _, err := fmt.Sscanf(second, "posted 10 CDRs seq %d..%d in", &b0, &b1); err != nil {
		t.Fatal(err, second)
	}
	if a1-a0 != 9 || b0 != a1+1 || a0>>20 == 0 {
		t.Fatalf("ranges %d..%d then %d..%d", a0, a1, b0, b1)
	}

	// Bad arguments are usage errors; a cancelled context stops early.
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "expected <count>, got no arguments"},
		{[]string{"x"}, `count "x" is not a whole number from 1 to 100000000`},
		{[]string{"0"}, `count "0" is not a whole number from 1 to 100000000`},
		{[]string{"5", "rate"}, `expected <per_second> after "rate"`},
		{[]string{"5", "rate", "-1"}, `rate "-1" is not a positive number of CDRs per second (at most 1e9)`},
		{[]string{"5", "start", "0"}, `start "0" is not a positive sequence id (at most 18446744073709551610)`},
		{[]string{"5", "colour", "red"}, `unexpected argument "colour"`},
		{[]string{"5", "subscribers", "70000"}, `subscribers "70000" is not a whole number from 1 to 65535`},
	} {
		var ue *cli.UsageError
		if err := cmd.Run(context.Background(), &out, c.args); !errors.As(err, &ue) || err.Error() != c.want {
			t.Errorf("args %q: err %v, want usage error %q", c.args, err, c.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := cmd.Run(ctx, &out, []string{"1000", "rate", "10"}); err == nil || !strings.Contains(err.Error(), "interrupted") {
		t.Fatalf("cancelled: %v", err)
	}
}
