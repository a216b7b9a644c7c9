package pktengine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/cdrkafka"
	"github.com/switchboard-dp/switchboard/modules/pktengine/capgen"
	"github.com/switchboard-dp/switchboard/modules/policysync"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// e2eRig is a host running the whole product against a broker.
type e2eRig struct {
	b        *kafkatest.Broker
	h        *core.Host
	capPath  string
	cdrTopic string
	logs     *syncbuf.Buffer
}

// startE2E feeds the policy through the broker, starts res_kafka, cdr,
// cdr_kafka, res_policy, policy_sync and pkt_engine, waits until the feed is
// applied and writes a capture of `queries` queries (plus responses).
func startE2E(t testing.TB, queries int, onQueueFull string) *e2eRig {
	t.Helper()
	b := kafkatest.Shared(t)
	policyTopic := kafkatest.UniqueTopic(t, "policy")
	cdrTopic := kafkatest.UniqueTopic(t, "cdr")
	kafkatest.CreateTopic(t, b.Bootstrap, policyTopic, 1, 1)
	kafkatest.CreateTopic(t, b.Bootstrap, cdrTopic, 3, 1)
	kafkatest.KcatProduce(t, b, policyTopic, []string{
		`{"type":"BEGIN_SYNC","group_id":"family"}`,
		`{"type":"ADD_DOMAIN","group_id":"family","domain":"blocked.example","action":"blacklist","category":4}`,
		`{"type":"ADD_DOMAIN","group_id":"family","domain":"white.example","action":"whitelist","category":16}`,
		`{"type":"SYNC_COMPLETE","group_id":"family"}`,
		`{"type":"ADD_MALICIOUS","domain":"evil-c2.example","category":1,"confidence":99}`,
	}, "")

	dir := t.TempDir()
	files := map[string]string{
		"modules.conf":     "[modules]\nautoload = yes\n",
		"kafka.conf":       fmt.Sprintf("[general]\nshutdown_flush_timeout_ms = 2000\n\n[default]\nbrokers = %s\nacks = 1\nlinger_ms = 5\n", b.Bootstrap),
		"res_policy.conf":  "[general]\n[groups]\nfamily = 3\n",
		"policy_sync.conf": fmt.Sprintf("[general]\nconnection = default\ntopic = %s\n", policyTopic),
		"cdr_kafka.conf":   fmt.Sprintf("[general]\nconnection = default\ntopic = %s\nflush_ms = 50\nkey = ip_text\non_queue_full = %s\n", cdrTopic, onQueueFull),
		"pkt_engine.conf":  "[general]\nworkers = 2\n",
		"subscribers.conf": "[general]\ndefault_group = default\n[home]\ngroup = family\nprefix = 10.0.0.0/8\nprefix = 2001:db8:1000::/36\n",
	}
	for name, body := range files {
		writeFile(t, filepath.Join(dir, name), body)
	}
	capPath := filepath.Join(dir, "q.pcap")
	f, _ := os.Create(capPath)
	if _, err := capgen.Generate(f, capgen.Config{Queries: queries, Seed: 12, Subscribers: 40, IPv6Share: 0.25, TCPShare: 0.1, Responses: true,
		Blocked: []string{"blocked.example", "evil-c2.example"}, BlockedShare: 0.5, Benign: []string{"white.example", "other.example"}}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	reg := core.NewRegistry()
	for _, info := range []core.ModuleInfo{reskafka.Info(), cdr.Info(), cdrkafka.Info(), respolicy.Info(), policysync.Info(), Info()} {
		if err := reg.Register(info); err != nil {
			t.Fatal(err)
		}
	}
	logs := &syncbuf.Buffer{}
	h := core.New(core.Options{Registry: reg, ConfigDir: dir, DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx := context.Background()
	if err := h.Start(ctx); err != nil {
		t.Fatalf("start: %v\n%s", err, logs)
	}
	t.Cleanup(func() { h.Stop(core.StopMode(0)) })

	// Wait until policy_sync has applied the feed.
	inst, _ := h.Instance(respolicy.Name)
	pol := inst.(*respolicy.Module)
	testwait.UntilState(t, 60*time.Second, "the policy feed applied", func() (bool, string) {
		s := pol.Snapshot()
		if s.Decide("family", []byte("blocked.example")).Action == decision.Block &&
			s.Decide("family", []byte("evil-c2.example")).Action == decision.Sinkhole {
			return true, ""
		}
		return false, "logs:\n" + logs.String()
	})

	return &e2eRig{b: b, h: h, capPath: capPath, cdrTopic: cdrTopic, logs: logs}
}

// TestEndToEndKafka: the policy is fed through the broker (kcat produces the
// feed, policy_sync consumes it into res_policy), a capture is replayed
// through pkt_engine, cdr_kafka produces the CDRs, and kcat reads them back:
// one per query, with the expected action, group, category and subscriber
// for known blocked, whitelisted, malicious and unlisted names.
//
// It uses kafkatest.Shared: the real Apache Kafka broker under make test
// (KAFKA_BOOTSTRAP), else the embedded broker.
func TestEndToEndKafka(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	const queries = 800
	rig := startE2E(t, queries, "block")
	b, h, capPath, cdrTopic, ctx := rig.b, rig.h, rig.capPath, rig.cdrTopic, context.Background()
	var out bytes.Buffer
	if err := h.Run(ctx, "packet replay "+capPath+" wait", &out); err != nil {
		t.Fatalf("replay: %v\n%s", err, out.String())
	}
	t.Log(strings.TrimSpace(out.String()))

	msgs := kafkatest.KcatConsume(t, b, cdrTopic, queries, 60*time.Second)
	if len(msgs) != queries {
		t.Fatalf("kcat read %d CDRs, want exactly %d", len(msgs), queries)
	}
	type wantCDR struct {
		action   string
		category string
	}
	want := map[string]wantCDR{
		"blocked.example": {"block", "0x00000004"},
		"evil-c2.example": {"sinkhole", "0x00000001"},
		"white.example":   {"allow", "0x00000010"},
		"other.example":   {"allow", "0x00000000"},
	}
	seen := map[string]int{}
	partOf := map[string]int32{}
	for _, m := range msgs {
		var c struct {
			TS           int64  `json:"ts"`
			IP           string `json:"ip"`
			SubscriberID string `json:"subscriber_id"`
			Domain       string `json:"domain"`
			QType        int    `json:"qtype"`
			Action       string `json:"action"`
			Group        uint32 `json:"group"`
			Category     string `json:"category"`
		}
		if err := json.Unmarshal(m.Value, &c); err != nil {
			t.Fatalf("CDR %q: %v", m.Value, err)
		}
		base := c.Domain
		if i := strings.Index(base, "."); i > 0 && strings.Count(base, ".") > 1 {
			base = base[i+1:]
		}
		w, ok := want[base]
		if !ok {
			t.Fatalf("CDR for unexpected domain %q", c.Domain)
		}
		if c.Action != w.action || c.Category != w.category || c.Group != 3 || c.SubscriberID != "home" || string(m.Key) != c.IP || c.QType == 0 || c.TS < 1767225600000 {
			t.Fatalf("CDR %s: want action %s category %s group 3 subscriber home key=ip", m.Value, w.action, w.category)
		}
		if p, ok := partOf[c.IP]; ok && p != m.Partition {
			t.Fatalf("subscriber %s in partitions %d and %d", c.IP, p, m.Partition)
		}
		partOf[c.IP] = m.Partition
		seen[base]++
	}
	for d := range want {
		if seen[d] == 0 {
			t.Errorf("no CDR for %s", d)
		}
	}
	t.Logf("CDRs by base domain: %v (broker %s)", seen, b)
}

// TestBenchEndToEndKafka measures the whole path on the broker: replay of
// PKT_E2E_BENCH queries (plus as many responses) -> decode -> decision ->
// cdr -> cdr_kafka -> delivered (delivery reports), on_queue_full = block so
// nothing is dropped. It prints one RESULT line.
func TestBenchEndToEndKafka(t *testing.T) {
	n := 0
	fmt.Sscan(os.Getenv("PKT_E2E_BENCH"), &n)
	if n <= 0 {
		t.Skip("set PKT_E2E_BENCH=<queries> (and KAFKA_BOOTSTRAP for the real broker)")
	}
	rig := startE2E(t, n, "block")
	inst, _ := rig.h.Instance(cdr.Name)
	eng := inst.(*cdr.Engine)
	delivered := func() (d, failed, dropped uint64) {
		for _, r := range eng.Registrations() {
			s := r.Snapshot()
			d, failed, dropped = d+s.Delivered, failed+s.Failed, dropped+s.Dropped
		}
		return
	}
	c0, t0 := cpuTime(), time.Now()
	var out bytes.Buffer
	if err := rig.h.Run(context.Background(), "packet replay "+rig.capPath+" wait", &out); err != nil {
		t.Fatalf("replay: %v\n%s", err, out.String())
	}
	decided := time.Since(t0)
	deadline := time.Now().Add(5 * time.Minute)
	for {
		d, f, dr := delivered()
		if f+dr > 0 {
			t.Fatalf("failed %d dropped %d", f, dr)
		}
		if d >= uint64(n) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d CDRs delivered after 5 minutes", d, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
	wall, cpu := time.Since(t0), cpuTime()-c0
	fmt.Printf("RESULT e2e queries=%d packets=%d broker=%q decided_s=%.3f delivered_s=%.3f cpu_s=%.3f cdrs_per_s=%.0f pps=%.0f cdrs_per_cpu_s=%.0f\n",
		n, 2*n, rig.b.Version, decided.Seconds(), wall.Seconds(), cpu.Seconds(), float64(n)/wall.Seconds(), float64(2*n)/wall.Seconds(), float64(n)/cpu.Seconds())
}
