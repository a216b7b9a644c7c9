package policysync

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// syncState returns the "State:" line of "policy show sync".
func (ph *policyHost) syncState() string {
	for _, l := range strings.Split(ph.run("policy show sync"), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "State: "); ok {
			return v
		}
	}
	return ""
}

// consumerLastError returns the "Last error:" value of "kafka show consumer
// policy_sync" ("" without one).
func (ph *policyHost) consumerLastError() string {
	for _, l := range strings.Split(ph.run("kafka show consumer "+Name), "\n") {
		if v, ok := strings.CutPrefix(l, "Last error:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func problemLines(logs string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

// A feed topic that does not exist when policy_sync starts is waited for:
// "policy show sync" says so, nothing is logged as a problem, and the feed
// published once the topic exists is applied.
func TestFeedTopicCreatedAfterStart(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := fmt.Sprintf("policy-later-%d", time.Now().UnixNano())
	start := time.Now()
	ph := startPolicyHost(t, b, t.TempDir(), topic)
	defer ph.h.Stop(core.StopGracefully)
	want := "waiting for topic " + topic + " to be created"
	testwait.Until(t, 20*time.Second, "the waiting state", func() bool { return strings.Contains(ph.syncState(), want) })
	if st := ph.syncState(); strings.Contains(st, "last error") {
		t.Errorf("State while waiting: %s", st)
	}
	createTopic(t, b, topic, 1)
	lines := seedFeed()
	kafkatest.KcatProduce(t, b, topic, lines, "enterprise_a")
	ph.waitApplied(topic, int64(len(lines)-1))
	testwait.Until(t, 10*time.Second, "the end of the wait", func() bool { return !strings.Contains(ph.syncState(), "waiting") })
	if st := ph.syncState(); !strings.HasPrefix(st, "running since ") || strings.Contains(st, "last error") {
		t.Errorf("State after the feed: %s", st)
	}
	if out := ph.run("policy lookup enterprise_a google.com"); !strings.Contains(out, "WHITELIST") {
		t.Errorf("lookup after the feed:\n%s", out)
	}
	if d := time.Since(start); d >= 30*time.Second {
		t.Fatalf("took %s, beyond the grace period: the no-warning check proves nothing", d)
	}
	if p := problemLines(ph.logs.String()); len(p) > 0 {
		t.Errorf("warnings or errors for a topic created after the start:\n%s", strings.Join(p, "\n"))
	}
}

// A feed topic still missing after the grace period is the consumer's last
// error, "still failing", then "recovered" once the topic exists; "policy
// show sync" and "kafka show consumer policy_sync" show the same text.
func TestFeedTopicMissingAfterGrace(t *testing.T) {
	b := kafkatest.Shared(t)
	old := missingTopicGrace
	missingTopicGrace = 1500 * time.Millisecond
	t.Cleanup(func() { missingTopicGrace = old })
	topic := fmt.Sprintf("policy-missing-%d", time.Now().UnixNano())
	ph := startPolicyHost(t, b, t.TempDir(), topic)
	defer ph.h.Stop(core.StopGracefully)
	lastErr := regexp.MustCompile(`last error: (.*)$`)
	agree := func(what string) string {
		t.Helper()
		var st, ce string
		testwait.Until(t, 20*time.Second, what, func() bool {
			st, ce = ph.syncState(), ph.consumerLastError()
			m := lastErr.FindStringSubmatch(st)
			return m != nil && m[1] == ce && strings.Contains(ce, what)
		})
		if !strings.Contains(ce, "Subscribed topic not available: "+topic) {
			t.Errorf("last error %q", ce)
		}
		return st
	}
	st := agree("still failing")
	if strings.Contains(st, "waiting") {
		t.Errorf("still waiting after the grace period: %s", st)
	}
	createTopic(t, b, topic, 1)
	lines := seedFeed()
	kafkatest.KcatProduce(t, b, topic, lines, "enterprise_a")
	ph.waitApplied(topic, int64(len(lines)-1))
	st = agree("recovered at")
	t.Logf("policy show sync: State: %s", st)
}
