// Package e2e runs the "make run" scenario of switchboard non-interactively:
// the real binary as a daemon on the sample configuration, driven with -rx,
// checked with kcat. It runs once on the embedded broker, exactly as
// "make run" does, and once on the real Apache Kafka broker of "make test".
package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/blocklist"
	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
)

const (
	demoQueries = 4000
	feedLimit   = 3000 // domains per block list in the feed
)

var repoRoot string

func TestMain(m *testing.M) {
	var err error
	if repoRoot, err = kafkatest.RepoRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// build compiles the binary and the demo-data generators once per test run.
func build(t *testing.T) (bin, feed, capture string) {
	t.Helper()
	dir := t.TempDir()
	bin = filepath.Join(dir, "switchboard")
	lists := blockLists(t)
	for _, b := range [][]string{
		{"build", "-o", bin, "./cmd/switchboard"},
		{"run", "./cmd/mkpolicyfeed", "-lists", lists,
			"-limit", strconv.Itoa(feedLimit), "-o", filepath.Join(dir, "feed.jsonl")},
		{"run", "./cmd/mkcapture", "-n", strconv.Itoa(demoQueries), "-pps", "50000",
			"-blocklists", lists, "-o", filepath.Join(dir, "demo.pcap")},
	} {
		cmd := exec.Command("go", b...)
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(b, " "), err, out)
		}
	}
	return bin, filepath.Join(dir, "feed.jsonl"), filepath.Join(dir, "demo.pcap")
}

// blockLists is the real block lists the repository carries.
func blockLists(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(repoRoot, blocklist.Dir)
	if _, err := blocklist.Files(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// daemon is one switchboard started with -f on a config dir.
type daemon struct {
	t      *testing.T
	bin    string
	socket string
	cmd    *exec.Cmd
	log    *os.File
}

func (d *daemon) rx(command string) (string, error) {
	out, err := exec.Command(d.bin, "-s", d.socket, "-rx", command).CombinedOutput()
	return string(out), err
}

func (d *daemon) must(command string) string {
	d.t.Helper()
	out, err := d.rx(command)
	if err != nil {
		d.t.Fatalf("-rx %q: %v\n%s\nlog:\n%s", command, err, out, d.logTail())
	}
	return out
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log.Name())
	s := string(b)
	if len(s) > 6000 {
		s = s[len(s)-6000:]
	}
	return s
}

// startDemo copies samples/ into a fresh config dir, applies the overrides
// (file name -> content), and starts the daemon.
func startDemo(t *testing.T, bin string, overrides map[string]string) *daemon {
	t.Helper()
	cfg := t.TempDir()
	samples, err := filepath.Glob(filepath.Join(repoRoot, "samples", "*.conf"))
	if err != nil || len(samples) == 0 {
		t.Fatalf("no sample configs: %v", err)
	}
	for _, f := range samples {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cfg, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if overrides == nil {
		overrides = map[string]string{}
	}
	if _, ok := overrides["dns_firewall.conf"]; !ok {
		// The sample's 127.0.0.1:5353 is shared with whatever else runs here.
		overrides["dns_firewall.conf"] = "[general]\nlisten = 127.0.0.1:0\n[upstream]\nserver = 127.0.0.1:53\n"
	}
	for name, text := range overrides {
		if err := os.WriteFile(filepath.Join(cfg, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	data := t.TempDir()
	logf, err := os.Create(filepath.Join(data, "daemon.log"))
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, bin: bin, socket: filepath.Join(data, "ctl"), log: logf}
	d.cmd = exec.Command(bin, "-f", "-C", cfg, "-D", data, "-s", d.socket)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if _, err := d.rx("core stop gracefully"); err == nil {
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				d.cmd.Process.Kill()
				<-exited
			}
		} else {
			d.cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.logTail())
		}
	})
	testwait.Until(t, 30*time.Second, "the control socket", func() bool { _, err := d.rx("core show version"); return err == nil })
	return d
}

var counterLine = regexp.MustCompile(`(?m)^\s+([a-z ]+?)\s{2,}(\d+)\s*$`)

// cdrCounters parses the counters of "cdr show status".
func cdrCounters(out string) map[string]int {
	m := map[string]int{}
	for _, g := range counterLine.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(g[2])
		m[g[1]] = n
	}
	return m
}

func cliConf(feed, capture, topic string) string {
	return fmt.Sprintf(`[startup_commands]
run => kafka publish file connection default topic %s file %s key feed
run => policy wait sync enterprise_a enterprise_b default timeout 120
run => packet replay %s
`, topic, feed, capture)
}

func TestDemoScenario(t *testing.T) {
	for _, tool := range []string{"kcat", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	bin, feed, capture := build(t)
	t.Run("embedded", func(t *testing.T) {
		d := startDemo(t, bin, map[string]string{
			"cli.conf":            cliConf(feed, capture, "policy_updates"),
			"res_prometheus.conf": "[general]\nbind = 127.0.0.1:0\n",
		})
		addr := regexp.MustCompile(`embedded \((127\.0\.0\.1:\d+)[;)]`).FindStringSubmatch(d.must("kafka show connection default"))
		if addr == nil {
			t.Fatal("no embedded broker address in 'kafka show connection default'")
		}
		checkDemo(t, d, &kafkatest.Broker{Bootstrap: addr[1]}, "dp_cdr")
	})
	t.Run("real_broker", func(t *testing.T) {
		b := kafkatest.Shared(t)
		if !b.Real {
			t.Skip("no real broker (KAFKA_BOOTSTRAP unset outside CI); the embedded run covered the scenario")
		}
		policyTopic := kafkatest.UniqueTopic(t, "policy")
		cdrTopic := kafkatest.UniqueTopic(t, "cdr")
		kafkatest.CreateTopic(t, b.Bootstrap, policyTopic, 1, 1)
		kafkatest.CreateTopic(t, b.Bootstrap, cdrTopic, 3, 1)
		d := startDemo(t, bin, map[string]string{
			"kafka.conf":          fmt.Sprintf("[default]\ntype = connection\nbrokers = %s\ngroup_id = e2e\n", b.Bootstrap),
			"cli.conf":            cliConf(feed, capture, policyTopic),
			"policy_sync.conf":    fmt.Sprintf("[general]\nconnection = default\ntopic = %s\n", policyTopic),
			"cdr_kafka.conf":      fmt.Sprintf("[general]\nconnection = default\ntopic = %s\n", cdrTopic),
			"res_prometheus.conf": "[general]\nbind = 127.0.0.1:0\n",
		})
		checkDemo(t, d, b, cdrTopic)
	})
}

// checkDemo waits for the scenario to run through and checks: policy active,
// every query decided and its CDR delivered, kcat reads exactly as many CDRs
// as "cdr show status" says were delivered, and no error counted anywhere.
func checkDemo(t *testing.T, d *daemon, b *kafkatest.Broker, cdrTopic string) {
	var cdrs map[string]int
	testwait.Until(t, 3*time.Minute, "every query's CDR to be delivered", func() bool {
		out, err := d.rx("cdr show status")
		if err != nil {
			return false
		}
		cdrs = cdrCounters(out)
		return cdrs["posted"] == demoQueries && cdrs["delivered"] == demoQueries
	})
	groups := d.must("policy show groups")
	for _, g := range []string{"enterprise_a", "enterprise_b", "default"} {
		if !regexp.MustCompile(`(?m)^` + g + `\s+\d+\s+\d+\s+\d+\s+\d+\s+1\s`).MatchString(groups) {
			t.Errorf("group %s has not completed one sync:\n%s", g, groups)
		}
	}
	if out := d.must("policy lookup enterprise_a google.com"); !strings.Contains(out, "WHITELIST") {
		t.Errorf("google.com is not whitelisted for enterprise_a:\n%s", out)
	}
	if out := d.must("policy lookup enterprise_a facebook.com"); !strings.Contains(out, "BLACKLIST") {
		t.Errorf("facebook.com is not blacklisted for enterprise_a:\n%s", out)
	}
	for _, k := range []string{"failed", "dropped", "spooled", "spool lost"} {
		if cdrs[k] != 0 {
			t.Errorf("cdr %s = %d, want 0", k, cdrs[k])
		}
	}
	sync := d.must("policy show sync")
	_, rejected, _ := strings.Cut(sync, "REJECTED")
	if m := regexp.MustCompile(`(?m)^kafka((?:\s+\d+)+)\s*$`).FindStringSubmatch(rejected); m == nil {
		t.Errorf("no rejected-message row for kafka in 'policy show sync':\n%s", sync)
	} else if counts := strings.Fields(m[1]); len(counts) != len(respolicy.RejectReasons) || strings.Trim(strings.Join(counts, ""), "0") != "" {
		t.Errorf("policy messages rejected: %v\n%s", counts, sync)
	}
	pkt := d.must("packet show status")
	if !regexp.MustCompile(`Decode errors:\s+0\b`).MatchString(pkt) || !regexp.MustCompile(fmt.Sprintf(`Queries:\s+%d\b`, demoQueries)).MatchString(pkt) {
		t.Errorf("packet status:\n%s", pkt)
	}
	status := d.must("kafka show status")
	if m := regexp.MustCompile(`(?m)^default\s.*\sup\s+\d+\s+\d+\s+(\d+)\s+(\d+)\s+\d+\s*$`).FindStringSubmatch(status); m == nil || m[1] != "0" || m[2] != "0" {
		t.Errorf("kafka connection failed/dropped not zero:\n%s", status)
	}
	msgs := kafkatest.KcatConsume(t, b, cdrTopic, cdrs["delivered"], 60*time.Second)
	if len(msgs) != cdrs["delivered"] {
		t.Fatalf("kcat read %d CDRs, cdr show status says %d delivered", len(msgs), cdrs["delivered"])
	}
	actions := map[string]int{}
	for _, m := range msgs {
		a := regexp.MustCompile(`"action":"([a-z]+)"`).FindSubmatch(m.Value)
		if a == nil {
			t.Fatalf("CDR without action: %s", m.Value)
		}
		actions[string(a[1])]++
	}
	if actions["block"] == 0 || actions["allow"] == 0 {
		t.Errorf("expected both blocked and allowed CDRs, got %v", actions)
	}
	t.Logf("demo: %d CDRs delivered and read back by kcat; actions %v", len(msgs), actions)
	checkMetrics(t, d, cdrs["delivered"])
}

// checkMetrics scrapes res_prometheus and checks that every module's
// metrics are there and agree with the CLI.
func checkMetrics(t *testing.T, d *daemon, delivered int) {
	t.Helper()
	url := regexp.MustCompile(`http://\S+`).FindString(d.must("prometheus show status"))
	if url == "" {
		t.Fatal("no metrics URL in 'prometheus show status'")
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`switchboard_kafka_produced_total{connection="default"}`,
		`switchboard_kafka_queue_messages{connection="default"}`,
		`switchboard_kafka_consumer_lag_messages`,
		`switchboard_policy_entries`,
		`switchboard_policy_generation`,
		fmt.Sprintf(`switchboard_cdr_delivered_total{backend="kafka"} %d`, delivered),
		`switchboard_cdr_oldest_batched_seconds`,
		`switchboard_pkt_packets_total`,
		`switchboard_pkt_decode_errors_total`,
		`switchboard_module_up{module="pkt_engine",state="Running"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	checkDashboard(t, string(body))
}

// checkDashboard: every metric the sample Grafana dashboard queries is in
// the running instance's /metrics.
func checkDashboard(t *testing.T, metrics string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "samples", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("samples/grafana-dashboard.json: %v", err)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(metrics, "\n") {
		if name, _, ok := strings.Cut(line, " "); ok && !strings.HasPrefix(line, "#") {
			name, _, _ = strings.Cut(name, "{")
			have[name] = true
		}
	}
	queried := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, name := range regexp.MustCompile(`switchboard_[a-z0-9_]+`).FindAllString(tg.Expr, -1) {
				queried++
				if !have[name] {
					t.Errorf("dashboard panel %q queries %s, which the running instance does not export", p.Title, name)
				}
			}
		}
	}
	if queried < 30 {
		t.Errorf("the dashboard queries %d metrics; expected its panels to cover Kafka, CDRs, policy, packets and DNS", queried)
	}
}
