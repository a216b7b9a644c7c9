package policysync

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
)

// createTopic creates a topic with the given partitions on b.
func createTopic(t *testing.T, b *kafkatest.Broker, topic string, partitions int) {
	t.Helper()
	ac, err := kafka.NewAdminClient(b.ConfigMap())
	if err != nil {
		t.Fatal(err)
	}
	defer ac.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := ac.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Error.Code() != kafka.ErrNoError && r.Error.Code() != kafka.ErrTopicAlreadyExists {
			t.Fatalf("create topic %s: %v", topic, r.Error)
		}
	}
}

type policyHost struct {
	t      *testing.T
	h      *core.Host
	dir    string
	logs   *syncbuf.Buffer
	policy *respolicy.Module
}

// startPolicyHost runs res_kafka, res_policy and policy_sync on b, reading topic.
func startPolicyHost(t *testing.T, b *kafkatest.Broker, dir, topic string) *policyHost {
	t.Helper()
	files := map[string]string{
		"kafka.conf":      fmt.Sprintf("[general]\n[main]\nbrokers = %s\n", b.Bootstrap),
		"res_policy.conf": "[general]\nhyperscan = no\n[groups]\nenterprise_a => 1001\n",
		"policy_sync.conf": fmt.Sprintf("[general]\nconnection = main\ntopic = %s\ngroup_id = ps-test-%d\n", topic,
			time.Now().UnixNano()),
	}
	for name, text := range files {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil && name == "policy_sync.conf" {
			continue // keep the group prefix across restarts of the same "instance"
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	reg := core.NewRegistry()
	if err := reg.Register(reskafka.Info(), respolicy.Info(), Info()); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	h := core.New(core.Options{Registry: reg, ConfigDir: dir, DataDir: t.TempDir(), Logger: logger})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ph := &policyHost{t: t, h: h, dir: dir, logs: logs}
	inst, ok := h.Instance(respolicy.Name)
	if !ok {
		t.Fatal("res_policy not running")
	}
	ph.policy = inst.(*respolicy.Module)
	if _, ok := h.Instance(Name); !ok {
		t.Fatalf("policy_sync not running: %v", h.Modules())
	}
	return ph
}

func (ph *policyHost) run(line string) string {
	var buf bytes.Buffer
	if err := ph.h.Run(context.Background(), line, &buf); err != nil {
		fmt.Fprintf(&buf, "ERROR: %v", err)
	}
	return buf.String()
}

func (ph *policyHost) sync() *Module {
	inst, ok := ph.h.Instance(Name)
	if !ok {
		ph.t.Fatal("policy_sync not running")
	}
	return inst.(*Module)
}

// waitApplied waits until the feeder applied offset off of partition 0.
func (ph *policyHost) waitApplied(topic string, off int64) {
	ph.t.Helper()
	testwait.Until(ph.t, 60*time.Second, fmt.Sprintf("offset %d applied", off), func() bool {
		f := ph.sync().Feeder()
		return f != nil && f.Stats().Applied[TP{topic, 0}] >= off
	})
}

func (ph *policyHost) committed(topic string) int64 {
	sub := ph.sync().Subscription()
	for _, p := range sub.Status().Partitions {
		if p.Topic == topic && p.Partition == 0 {
			return p.Committed
		}
	}
	return -1
}

func demoLines() []string {
	return append(seedFeed()[:len(seedFeed())-1],
		`not even json`,
		`{"type":"SYNC_COMPLETE","group_id":"nobody"}`,
		`{"type":"SYNC_COMPLETE","group_id":"enterprise_a"}`,
		`{"type":"ADD_MALICIOUS","domain":"c2.evil.net","category":4,"confidence":98}`)
}

// The seed demo fed through the broker with kcat: lookups answer WHITELIST /
// BLACKLIST / NOT FOUND, rejected messages are counted by reason, and the
// committed offset points just past the SYNC_COMPLETE.
func TestSeedDemoThroughKafka(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := fmt.Sprintf("policy-demo-%d", time.Now().UnixNano())
	createTopic(t, b, topic, 1)
	lines := demoLines()
	ph := startPolicyHost(t, b, t.TempDir(), topic)
	defer ph.h.Stop(core.StopGracefully)
	// Not ready until a sync completed: the topic is still empty.
	if ok, reasons := ph.h.Ready(); ok || !strings.Contains(strings.Join(reasons, "\n"), "module policy_sync: no policy sync completed yet") {
		t.Errorf("ready before any sync: %v %q", ok, reasons)
	}
	kafkatest.KcatProduce(t, b, topic, lines, "enterprise_a")
	ph.waitApplied(topic, int64(len(lines)-1))
	testwait.Until(t, 10*time.Second, "the host ready after the sync", func() bool { ok, _ := ph.h.Ready(); return ok })
	for q, want := range map[string]string{"google.com": "WHITELIST", "www.facebook.com": "BLACKLIST", "youtube.com": "NOT FOUND",
		"x.c2.evil.net": "MALICIOUS"} {
		if out := ph.run("policy lookup enterprise_a " + q); !strings.Contains(out, want) {
			t.Errorf("lookup %s: want %s in\n%s", q, want, out)
		}
	}
	complete := int64(len(lines) - 2) // offset of SYNC_COMPLETE enterprise_a
	testwait.Until(t, 30*time.Second, "commit", func() bool { return ph.committed(topic) == complete+1 })
	c := ph.policy.Store().Counters()
	if c.Rejected["kafka"][respolicy.ReasonMalformedJSON] != 1 || c.Rejected["kafka"][respolicy.ReasonCompleteWithoutBegin] != 1 {
		t.Errorf("rejected %+v", c.Rejected)
	}
	out := ph.run("policy show sync")
	for _, want := range []string{"policy_sync", "malformed_json", "Commits 1", topic} {
		if !strings.Contains(out, want) {
			t.Errorf("show sync lacks %q:\n%s", want, out)
		}
	}
}

// Crash replay through the broker: the consumer stops between BEGIN_SYNC and
// SYNC_COMPLETE (nothing committed past the previous SYNC_COMPLETE); the
// rest is produced; a restarted switchboard (fresh tables) and a consumer
// restarted alone both end with the policy of a clean run.
func TestCrashReplayThroughKafka(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := fmt.Sprintf("policy-crash-%d", time.Now().UnixNano())
	createTopic(t, b, topic, 1)
	first := []string{
		`{"type":"BEGIN_SYNC","group_id":"enterprise_a"}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"old.com","action":"blacklist","category":1}`,
		`{"type":"SYNC_COMPLETE","group_id":"enterprise_a"}`,
		`{"type":"BEGIN_SYNC","group_id":"enterprise_a"}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"google.com","action":"whitelist","category":1}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"facebook.com","action":"blacklist","category":2}`,
	}
	rest := []string{
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"youtube.com","action":"blacklist","category":2}`,
		`{"type":"REMOVE_DOMAIN","group_id":"enterprise_a","domain":"youtube.com"}`,
		`{"type":"SYNC_COMPLETE","group_id":"enterprise_a"}`,
		`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"late.com","action":"blacklist","category":3}`,
	}
	kafkatest.KcatProduce(t, b, topic, first, "enterprise_a")
	dir := t.TempDir()
	ph := startPolicyHost(t, b, dir, topic)
	ph.waitApplied(topic, int64(len(first)-1))
	testwait.Until(t, 30*time.Second, "first commit", func() bool { return ph.committed(topic) == 3 })
	// Mid-sync: the old policy is still active.
	if out := ph.run("policy lookup enterprise_a old.com"); !strings.Contains(out, "BLACKLIST") {
		t.Fatalf("mid-sync lookup:\n%s", out)
	}
	ph.h.Stop(core.StopNow) // the "crash": no SYNC_COMPLETE seen, nothing more committed

	kafkatest.KcatProduce(t, b, topic, rest, "enterprise_a")
	total := int64(len(first) + len(rest))
	check := func(ph *policyHost) {
		t.Helper()
		for q, want := range map[string]string{"google.com": "WHITELIST", "m.facebook.com": "BLACKLIST", "youtube.com": "NOT FOUND",
			"old.com": "NOT FOUND", "late.com": "BLACKLIST"} {
			if out := ph.run("policy lookup enterprise_a " + q); !strings.Contains(out, want) {
				t.Errorf("lookup %s: want %s in\n%s", q, want, out)
			}
		}
	}
	// Restart: fresh tables, new group, read from the earliest offset.
	ph2 := startPolicyHost(t, b, dir, topic)
	defer ph2.h.Stop(core.StopGracefully)
	ph2.waitApplied(topic, total-1)
	check(ph2)
	testwait.Until(t, 30*time.Second, "commit past the second SYNC_COMPLETE", func() bool { return ph2.committed(topic) == total-1 })
	g, _ := ph2.policy.Snapshot().Group("enterprise_a")
	if g.Syncs != 2 {
		t.Errorf("syncs %d", g.Syncs)
	}
	// The consumer alone restarts: same store, same group, resumes from the
	// commit; the re-read message is skipped, the policy is unchanged.
	gen := ph2.policy.Snapshot().Generation
	if err := ph2.h.Unload(Name, false); err != nil {
		t.Fatal(err)
	}
	if err := ph2.h.Load(Name); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 60*time.Second, "re-read after the commit", func() bool {
		st := ph2.sync().Feeder().Stats()
		return st.Replayed >= 1
	})
	check(ph2)
	if ph2.policy.Snapshot().Generation != gen {
		t.Errorf("replayed messages changed the policy")
	}
	if c := ph2.policy.Store().Counters(); len(c.Rejected["kafka"]) != 0 {
		t.Errorf("rejections on replay: %+v", c.Rejected)
	}
}
