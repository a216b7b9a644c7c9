package respolicy

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
)

// waitPoll is how often "policy wait sync" looks at the groups' sync state.
const waitPoll = 50 * time.Millisecond

func (m *Module) waitCommand() *cli.Command {
	return &cli.Command{
		Path:    "policy wait sync",
		Summary: "Wait until groups have completed a policy sync",
		Usage: "policy wait sync <group> [<group>...] [timeout <seconds>]\n" +
			"  Returns once every named group has completed at least one sync and has\n" +
			"  none open (default timeout 60 s). For scripts and cli.conf start-up.",
		Run: m.cliWaitSync,
		Complete: func(args []string, prefix string) []string {
			return m.completeGroup(len(args)+1)(args, prefix)
		},
	}
}

func (m *Module) cliWaitSync(ctx context.Context, w io.Writer, args []string) error {
	timeout := 60 * time.Second
	if n := len(args); n >= 1 && args[n-1] == "timeout" {
		return cli.Keyword(args, n-1, "timeout", "<seconds>")
	}
	if n := len(args); n >= 2 && args[n-2] == "timeout" {
		secs, err := strconv.ParseFloat(args[n-1], 64)
		if err != nil || secs <= 0 {
			return cli.Usagef("timeout %q is not a positive number of seconds", args[n-1])
		}
		timeout = time.Duration(secs * float64(time.Second))
		args = args[:n-2]
	}
	if len(args) == 0 {
		return cli.Usagef("expected at least one <group>")
	}
	start := time.Now()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(waitPoll)
	defer tick.Stop()
	for {
		s, err := m.running()
		if err != nil {
			return err
		}
		waiting := missingSyncs(s.SyncStates(), args)
		if len(waiting) == 0 {
			fmt.Fprintf(w, "Policy synced for %s (waited %s)\n", strings.Join(args, ", "), time.Since(start).Round(time.Millisecond))
			return nil
		}
		select {
		case <-tick.C:
		case <-deadline.C:
			return fmt.Errorf("no completed sync within %s for: %s", timeout, strings.Join(waiting, ", "))
		case <-ctx.Done():
			return fmt.Errorf("interrupted while waiting for: %s", strings.Join(waiting, ", "))
		}
	}
}

// missingSyncs returns the groups of want that have no completed sync or an
// open one.
func missingSyncs(states []SyncState, want []string) []string {
	done := make(map[string]bool, len(states))
	for _, st := range states {
		done[st.Group] = st.Syncs > 0 && !st.Open
	}
	var out []string
	for _, g := range want {
		if !done[g] {
			out = append(out, g)
		}
	}
	return out
}
