package respolicy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

const seedFile = `# seed demo
{"type":"BEGIN_SYNC","group_id":"enterprise_a"}
{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"google.com","action":"whitelist","category":1}
{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"facebook.com","action":"blacklist","category":2}
{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"youtube.com","action":"blacklist","category":2}
{"type":"REMOVE_DOMAIN","group_id":"enterprise_a","domain":"youtube.com"}
this line is not json
{"type":"SYNC_COMPLETE","group_id":"enterprise_a"}
{"type":"ADD_MALICIOUS","domain":"c2.evil.net","category":4,"confidence":98}
`

func startPolicyHost(t *testing.T, confText string) (*core.Host, *Module, string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "res_policy.conf"), []byte(confText), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "seed.jsonl"), []byte(seedFile), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := core.NewRegistry()
	if err := reg.Register(Info()); err != nil {
		t.Fatal(err)
	}
	h := core.New(core.Options{Registry: reg, ConfigDir: dir, DataDir: t.TempDir(), Logger: discard})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Stop(core.StopGracefully) })
	mod, ok := h.Instance(Name)
	if !ok {
		t.Fatal("res_policy not running")
	}
	return h, mod.(*Module), dir
}

func run(t *testing.T, h *core.Host, line string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := h.Run(context.Background(), line, &buf); err != nil {
		t.Fatalf("%s: %v\n%s", line, err, buf.String())
	}
	return buf.String()
}

func TestModuleCLI(t *testing.T) {
	h, m, dir := startPolicyHost(t, `
[general]
seed_file = seed.jsonl
hyperscan = no

[groups]
enterprise_a => 1001
`)
	for q, want := range map[string]string{"google.com": "WHITELIST", "www.facebook.com": "BLACKLIST", "youtube.com": "NOT FOUND", "c2.evil.net": "MALICIOUS"} {
		out := run(t, h, "policy lookup enterprise_a "+q)
		if !strings.Contains(out, want) {
			t.Errorf("lookup %s: want %s in\n%s", q, want, out)
		}
	}
	out := run(t, h, "policy lookup enterprise_a www.facebook.com")
	for _, want := range []string{"block", "facebook.com (blacklist)", "Category:", "1001"} {
		if !strings.Contains(out, want) {
			t.Errorf("lookup output lacks %q:\n%s", want, out)
		}
	}
	out = run(t, h, "policy show groups")
	if !strings.Contains(out, "enterprise_a") || !strings.Contains(out, "1001") {
		t.Errorf("show groups:\n%s", out)
	}
	out = run(t, h, "policy show group enterprise_a")
	if !strings.Contains(out, "GOOGLE.COM") && !strings.Contains(out, "google.com") {
		t.Errorf("show group:\n%s", out)
	}
	out = run(t, h, "policy show malicious")
	if !strings.Contains(out, "c2.evil.net") {
		t.Errorf("show malicious:\n%s", out)
	}
	out = run(t, h, "policy show sync")
	if !strings.Contains(out, "malformed_json") || !strings.Contains(out, "seed") ||
		!strings.Contains(out, "SOURCE  BEGIN_SYNC  ADD_DOMAIN  REMOVE_DOMAIN  SYNC_COMPLETE  ADD_MALICIOUS  ADD_PATTERN  REMOVE_PATTERN\n") {
		t.Errorf("show sync:\n%s", out)
	}
	if c := m.Store().Counters(); c.Rejected["seed"][ReasonMalformedJSON] != 1 || c.Messages["seed"][TypeAddDomain] != 3 {
		t.Errorf("seed counters %+v", c)
	}
	// policy load: a second sync replaces the group's lists.
	f := filepath.Join(dir, "more.jsonl")
	os.WriteFile(f, []byte(`{"type":"BEGIN_SYNC","group_id":"enterprise_a"}
{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"youtube.com","action":"blacklist","category":8}
{"type":"SYNC_COMPLETE","group_id":"enterprise_a"}
{"type":"SYNC_COMPLETE","group_id":"enterprise_a"}
`), 0o600)
	out = run(t, h, "policy load "+f)
	if !strings.Contains(out, "3 applied, 1 rejected") || !strings.Contains(out, "complete_without_begin") {
		t.Errorf("load:\n%s", out)
	}
	if !strings.Contains(run(t, h, "policy lookup enterprise_a youtube.com"), "BLACKLIST") ||
		!strings.Contains(run(t, h, "policy lookup enterprise_a google.com"), "NOT FOUND") {
		t.Errorf("load did not replace the lists")
	}
	// Pattern rules: the lookup names the rule, the group and the pattern
	// listing show it with its hits.
	f = filepath.Join(dir, "patterns.jsonl")
	os.WriteFile(f, []byte(`{"type":"ADD_PATTERN","group_id":"enterprise_a","pattern":"^ad[sxv]?[0-9]*\\.","action":"blacklist","category":16}
{"type":"ADD_PATTERN","pattern":"*.tracker.test","syntax":"wildcard","action":"malicious","confidence":75}
{"type":"ADD_PATTERN","group_id":"enterprise_a","pattern":"(a)\\1","action":"blacklist"}
`), 0o600)
	if out = run(t, h, "policy load "+f); !strings.Contains(out, "2 applied, 1 rejected") || !strings.Contains(out, "invalid_pattern") {
		t.Errorf("load patterns:\n%s", out)
	}
	out = run(t, h, "policy lookup enterprise_a ads7.example.org")
	if !strings.Contains(out, "BLACKLIST") || !strings.Contains(out, `Matched pattern:  ^ad[sxv]?[0-9]*\. (blacklist)`) {
		t.Errorf("lookup by pattern:\n%s", out)
	}
	out = run(t, h, "policy lookup nosuchgroup a.b.tracker.test")
	if !strings.Contains(out, "MALICIOUS") || !strings.Contains(out, "*.tracker.test") || !strings.Contains(out, "Confidence:       75") {
		t.Errorf("lookup by global pattern:\n%s", out)
	}
	pm := m.NewMatcher()
	pm.Decide("enterprise_a", []byte("adv1.example.org"))
	pm.Decide("enterprise_a", []byte("ads.example.org"))
	pm.Close()
	out = run(t, h, "policy show group enterprise_a")
	if !regexp.MustCompile(`(?m)^\^ad\[sxv\]\?\[0-9\]\*\\\.\s+regex\s+group\s+BLACKLIST\s+16\s+-\s+2$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^\*\.tracker\.test\s+wildcard\s+global\s+MALICIOUS\s+0\s+75\s+0$`).MatchString(out) {
		t.Errorf("show group patterns:\n%s", out)
	}
	if out = run(t, h, "policy show patterns"); !strings.Contains(out, "*.tracker.test") || strings.Contains(out, "^ad") {
		t.Errorf("show patterns (global):\n%s", out)
	}
	// Completion of group names.
	var cmdFound bool
	for _, c := range h.Commands().Commands("policy", "lookup") {
		if c.Complete != nil {
			cmdFound = true
			if got := c.Complete(nil, "ent"); len(got) != 1 || got[0] != "enterprise_a" {
				t.Errorf("complete: %v", got)
			}
		}
	}
	if !cmdFound {
		t.Error("no completer on policy lookup")
	}
	// Metrics.
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	seedTypes := map[string]float64{}
	for _, mf := range mfs {
		names[mf.GetName()] = true
		if mf.GetName() != "switchboard_policy_messages_total" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			lbl := map[string]string{}
			for _, l := range mt.GetLabel() {
				lbl[l.GetName()] = l.GetValue()
			}
			if lbl["source"] == "seed" {
				seedTypes[lbl["type"]] = mt.GetCounter().GetValue()
			}
		}
	}
	// The type label is the wire name.
	if want := map[string]float64{"BEGIN_SYNC": 1, "ADD_DOMAIN": 3, "REMOVE_DOMAIN": 1, "SYNC_COMPLETE": 1, "ADD_MALICIOUS": 1}; fmt.Sprint(seedTypes) != fmt.Sprint(want) {
		t.Errorf("switchboard_policy_messages_total{source=seed} by type: %v, want %v", seedTypes, want)
	}
	for _, want := range []string{"switchboard_policy_generation", "switchboard_policy_entries", "switchboard_policy_rejected_total", "switchboard_policy_messages_total"} {
		if !names[want] {
			t.Errorf("metric %s missing (%v)", want, names)
		}
	}
	// GroupID and unknown groups.
	if id, ok := m.GroupID("enterprise_a"); !ok || id != 1001 {
		t.Errorf("GroupID %d %v", id, ok)
	}
	mt := m.NewMatcher()
	defer mt.Close()
	if d := mt.Decide("stranger", []byte("c2.evil.net")); d.Action != decision.Sinkhole || d.Group != 0 {
		t.Errorf("stranger: %+v", d)
	}
	// Reload: new ids and precedence apply at once, tables stay; an invalid
	// file keeps the running configuration.
	os.WriteFile(filepath.Join(dir, "res_policy.conf"), []byte("[general]\nwhitelist_vs_malicious = whitelist\nhyperscan = no\n[groups]\nenterprise_a => 2002\n"), 0o600)
	if err := h.Reload(Name); err != nil {
		t.Fatal(err)
	}
	if id, _ := m.GroupID("enterprise_a"); id != 2002 || !m.Snapshot().WhitelistWins() {
		t.Errorf("reload not applied: id %d", id)
	}
	if !strings.Contains(run(t, h, "policy lookup enterprise_a youtube.com"), "BLACKLIST") {
		t.Error("tables lost on reload")
	}
	os.WriteFile(filepath.Join(dir, "res_policy.conf"), []byte("[groups]\nenterprise_a => zero\n"), 0o600)
	if err := h.Reload(Name); err == nil {
		t.Error("invalid reload accepted")
	}
	if id, _ := m.GroupID("enterprise_a"); id != 2002 {
		t.Errorf("invalid reload changed the id to %d", id)
	}
	// Wrong arguments: the command and the problem, then the synopsis once.
	for line, want := range map[string]string{
		"policy lookup enterprise_a":           "policy lookup: expected <group> and <domain>, got 1 argument\nUsage: policy lookup <group> <domain>",
		"policy lookup a b c":                  "policy lookup: unexpected argument \"c\"\nUsage: policy lookup <group> <domain>",
		"policy show groups x":                 "policy show groups: unexpected argument \"x\"\nUsage: policy show groups",
		"policy show group":                    "policy show group: expected <name>, got no arguments\nUsage: policy show group <name> [all]",
		"policy show group enterprise_a most":  "policy show group: unexpected argument \"most\"\nUsage: policy show group <name> [all]",
		"policy show group enterprise_a all x": "policy show group: unexpected argument \"x\"\nUsage: policy show group <name> [all]",
		"policy show malicious some":           "policy show malicious: unexpected argument \"some\"\nUsage: policy show malicious [all]",
		"policy show sync now":                 "policy show sync: unexpected argument \"now\"\nUsage: policy show sync",
		"policy load":                          "policy load: expected <file>, got no arguments\nUsage: policy load <file>",
		"policy load a b":                      "policy load: unexpected argument \"b\"\nUsage: policy load <file>",
	} {
		var buf bytes.Buffer
		err := h.Run(context.Background(), line, &buf)
		if err == nil || err.Error() != want || !errors.Is(err, cli.ErrUsage) || buf.Len() != 0 {
			t.Errorf("%q: %v (output %q), want\n%s", line, err, buf.String(), want)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, text := range []string{
		"[general]\nwhitelist_vs_malicious = maybe\n",
		"[groups]\na => 0\n",
		"[groups]\na => 1\nb => 1\n",
		"[groups]\na => 3000000000\n",
		"[general]\nseed_file = /nonexistent/feed.jsonl\n",
		"[other]\nx = 1\n",
	} {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, "res_policy.conf"), []byte(text), 0o600)
		reg := core.NewRegistry()
		reg.Register(Info())
		h := core.New(core.Options{Registry: reg, ConfigDir: dir, Logger: discard})
		if err := h.CheckConfig(); err == nil {
			t.Errorf("config accepted:\n%s", text)
		}
	}
}
