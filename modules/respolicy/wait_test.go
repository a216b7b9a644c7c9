package respolicy

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
)

func TestWaitSync(t *testing.T) {
	h, m, _ := startPolicyHost(t, "[general]\nhyperscan = no\n")
	var buf bytes.Buffer
	err := h.Run(context.Background(), "policy wait sync enterprise_a timeout 0.2", &buf)
	if err == nil || !strings.Contains(err.Error(), "no completed sync within 200ms for: enterprise_a") {
		t.Fatalf("want timeout, got %v", err)
	}
	if err := m.BeginSync("enterprise_a"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(context.Background(), "policy wait sync enterprise_a timeout 30", &buf) }()
	select {
	case err := <-done:
		t.Fatalf("returned while the sync is open: %v", err)
	case <-time.After(3 * waitPoll):
	}
	if err := m.CompleteSync("enterprise_a"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil || !strings.Contains(buf.String(), "Policy synced for enterprise_a") {
		t.Fatalf("wait: %v %q", err, buf.String())
	}
	const usage = "\nUsage: policy wait sync <group> [<group>...] [timeout <seconds>]"
	for bad, want := range map[string]string{
		"policy wait sync":              "policy wait sync: expected at least one <group>" + usage,
		"policy wait sync a timeout x":  "policy wait sync: timeout \"x\" is not a positive number of seconds" + usage,
		"policy wait sync a timeout -1": "policy wait sync: timeout \"-1\" is not a positive number of seconds" + usage,
		"policy wait sync a timeout":    "policy wait sync: expected <seconds> after \"timeout\"" + usage,
		"policy wait sync timeout 5":    "policy wait sync: expected at least one <group>" + usage,
	} {
		if err := h.Run(context.Background(), bad, &buf); err == nil || err.Error() != want || !errors.Is(err, cli.ErrUsage) {
			t.Errorf("%q: got %v, want\n%s", bad, err, want)
		}
	}
}
