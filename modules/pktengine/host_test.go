package pktengine

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/pktengine/capgen"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// captureBackend is a CDR backend that keeps every record.
type captureBackend struct {
	mu   sync.Mutex
	recs []gotCDR
}

func (b *captureBackend) Name() string              { return "test_capture" }
func (b *captureBackend) Attach(*cdr.Registration)  {}
func (b *captureBackend) FlushAfter() time.Duration { return 10 * time.Millisecond }
func (b *captureBackend) NewBatcher() cdr.Batcher   { return &captureBatcher{b: b} }

type captureBatcher struct {
	b    *captureBackend
	recs []gotCDR
}

func (c *captureBatcher) Add(r *cdr.Record) bool {
	c.recs = append(c.recs, gotCDR{Record: *r, domain: string(r.Domain)})
	return len(c.recs) >= 64
}
func (c *captureBatcher) Len() int { return len(c.recs) }
func (c *captureBatcher) Flush() {
	c.b.mu.Lock()
	c.b.recs = append(c.b.recs, c.recs...)
	c.b.mu.Unlock()
	c.recs = c.recs[:0]
}

func (b *captureBackend) snapshot() []gotCDR {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]gotCDR(nil), b.recs...)
}

func writeFile(t testing.TB, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestInHost runs res_policy, cdr and pkt_engine in a host: a capture
// replayed with "packet replay ... wait" yields one CDR per query with the
// policy's action for known blocked, whitelisted and malicious names and the
// subscriber of subscribers.conf; a reload of subscribers.conf applies to
// the next replay.
func TestInHost(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "seed.jsonl"), strings.Join([]string{
		`{"type":"BEGIN_SYNC","group_id":"family"}`,
		`{"type":"ADD_DOMAIN","group_id":"family","domain":"blocked.example","action":"blacklist","category":4}`,
		`{"type":"ADD_DOMAIN","group_id":"family","domain":"white.example","action":"whitelist"}`,
		`{"type":"SYNC_COMPLETE","group_id":"family"}`,
		`{"type":"ADD_MALICIOUS","domain":"evil-c2.example","category":1,"confidence":99}`,
	}, "\n")+"\n")
	writeFile(t, filepath.Join(dir, "res_policy.conf"), "[general]\nseed_file = seed.jsonl\nhyperscan = no\n[groups]\nfamily = 3\n")
	writeFile(t, filepath.Join(dir, "subscribers.conf"), "[general]\ndefault_group = default\n[home]\ngroup = family\nprefix = 10.0.0.0/8\n")
	writeFile(t, filepath.Join(dir, "pkt_engine.conf"), "[general]\nworkers = 2\ncdr_actions = allow, block, sinkhole\n")
	capPath := filepath.Join(dir, "q.pcap")
	f, _ := os.Create(capPath)
	if _, err := capgen.Generate(f, capgen.Config{Queries: 600, Seed: 4, Subscribers: 30,
		Blocked: []string{"blocked.example", "evil-c2.example"}, BlockedShare: 0.5,
		Benign: []string{"white.example", "other.example"}}); err != nil {
		t.Fatal(err)
	}
	f.Close()

	reg := core.NewRegistry()
	for _, info := range []core.ModuleInfo{respolicy.Info(), cdr.Info(), Info()} {
		if err := reg.Register(info); err != nil {
			t.Fatal(err)
		}
	}
	h := core.New(core.Options{Registry: reg, ConfigDir: dir, DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx := context.Background()
	if err := h.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer h.Stop(core.StopMode(0))
	inst, _ := h.Instance("cdr")
	be := &captureBackend{}
	if _, err := inst.(*cdr.Engine).Register(be); err != nil {
		t.Fatal(err)
	}

	replay := func(wantCDRs int) []gotCDR {
		t.Helper()
		var buf bytes.Buffer
		if err := h.Run(ctx, "packet replay "+capPath+" wait", &buf); err != nil {
			t.Fatalf("replay: %v: %s", err, buf.String())
		}
		testwait.Until(t, 10*time.Second, fmt.Sprintf("%d CDRs", wantCDRs), func() bool { return len(be.snapshot()) >= wantCDRs })
		recs := be.snapshot()
		if len(recs) != wantCDRs {
			t.Fatalf("%d CDRs, want %d", len(recs), wantCDRs)
		}
		return recs[wantCDRs-600:]
	}
	want := map[string]struct {
		action   decision.Action
		category uint32
	}{
		"blocked.example": {decision.Block, 4}, "evil-c2.example": {decision.Sinkhole, 1},
		"white.example": {decision.Allow, 0}, "other.example": {decision.Allow, 0},
	}
	seen := map[string]int{}
	for _, r := range replay(600) {
		base := r.domain
		for _, lbl := range []string{"www.", "api.", "cdn.", "mail.", "img.", "static.", "m.", "login.", "app.", "edge."} {
			base = strings.TrimPrefix(base, lbl)
		}
		w, ok := want[base]
		if !ok {
			t.Fatalf("unexpected domain %q", r.domain)
		}
		if r.Action != w.action || r.Category != w.category || r.SubscriberID != "home" || r.Group != 3 {
			t.Fatalf("%s: %+v, want %s category %d subscriber home group 3", r.domain, r.Record, w.action, w.category)
		}
		seen[base]++
	}
	for d := range want {
		if seen[d] == 0 {
			t.Errorf("no query for %s in the capture", d)
		}
	}

	var buf bytes.Buffer
	if err := h.Run(ctx, "packet show status", &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "Queries:") || !strings.Contains(buf.String(), "600") {
		t.Fatalf("status:\n%s", buf.String())
	}

	// Reload: the subscribers move to another group; a broken file is refused.
	writeFile(t, filepath.Join(dir, "subscribers.conf"), "[home]\nprefix = 10.0.0.0/33\n")
	if err := h.Reload(Name); err == nil || !strings.Contains(err.Error(), "subscribers.conf:2") {
		t.Fatalf("reload of a broken subscribers.conf: %v", err)
	}
	writeFile(t, filepath.Join(dir, "subscribers.conf"), "[flat]\nid = flat-7\ngroup = other\nprefix = 10.0.0.0/8\n")
	if err := h.Reload(Name); err != nil {
		t.Fatal(err)
	}
	for _, r := range replay(1200) {
		if r.SubscriberID != "flat-7" {
			t.Fatalf("after reload: subscriber %q", r.SubscriberID)
		}
		// Group "other" has no tables: only the malicious table applies.
		if strings.HasSuffix(r.domain, "blocked.example") && r.Action != decision.Allow {
			t.Fatalf("after reload: %s %s", r.domain, r.Action)
		}
		if strings.HasSuffix(r.domain, "evil-c2.example") && r.Action != decision.Sinkhole {
			t.Fatalf("after reload: %s %s", r.domain, r.Action)
		}
	}
}
