package pktengine

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/modules/dataplane"
	"github.com/switchboard-dp/switchboard/modules/pktengine/capgen"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

func TestSampleConfig(t *testing.T) {
	f, err := conf.Load(filepath.Join("..", "..", "samples", "pkt_engine.conf"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := new(Config)
	if err := conf.DecodeFile(f, cfg); err != nil {
		t.Fatal(err)
	}
	subs, _, err := dataplane.LoadSubscribers(filepath.Join("..", "..", "samples", cfg.General.Subscribers))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CDRSet != decision.AllActions || len(cfg.Ports) != 1 || cfg.Ports[0] != 53 || subs.Prefixes() == 0 {
		t.Fatalf("%+v", cfg)
	}
	if got := cfg.LiveOptions().Filter; got != "udp port 53 or tcp port 53" {
		t.Fatalf("filter %q", got)
	}
}

func TestConfigErrors(t *testing.T) {
	f, err := conf.Parse("pkt_engine.conf", []byte("[general]\nsource = tape:x\ndns_ports = 53, x\ncdr_actions = allow, drop\nworkers = -1\n[bogus]\n"))
	if err != nil {
		t.Fatal(err)
	}
	err = conf.DecodeFile(f, new(Config))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"pkt_engine.conf:5: [general] workers", "pkt_engine.conf:6: [bogus]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	f, _ = conf.Parse("pkt_engine.conf", []byte("[general]\nsource = tape:x\ndns_ports = 53, x\ncdr_actions = allow, drop\n"))
	err = conf.DecodeFile(f, new(Config))
	for _, want := range []string{"pkt_engine.conf:2: [general] source", "pkt_engine.conf:3: [general] dns_ports: bad port \"x\"", "pkt_engine.conf:4: [general] cdr_actions: unknown action \"drop\""} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

// moduleWithFakes returns a Module whose engine uses the test fakes, as if
// started.
func moduleWithFakes(t *testing.T) (*Module, *harness) {
	h := newHarness(t, 2, decision.AllActions, nil)
	return &Module{engine: h.e, cfg: &Config{}}, h
}

func run(t *testing.T, m *Module, line string) (string, error) {
	t.Helper()
	for _, c := range m.Commands() {
		if strings.HasPrefix(line+" ", c.Path+" ") {
			var buf bytes.Buffer
			args := strings.Fields(strings.TrimPrefix(line, c.Path))
			err := c.Run(context.Background(), &buf, args)
			return buf.String(), err
		}
	}
	t.Fatalf("no command for %q", line)
	return "", nil
}

func TestCLI(t *testing.T) {
	m, _ := moduleWithFakes(t)
	path := writeCapture(t, capgen.Config{Queries: 500, Seed: 3, Responses: true, Blocked: []string{"0-google.com"}})
	out, err := run(t, m, "packet replay "+path+" speed 0 wait")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "1000 packets, 500 queries, 500 responses, 0 decode errors") {
		t.Fatalf("replay output: %s", out)
	}
	out, err = run(t, m, "packet show status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Queries:", "500", "Decisions:", "block", "Worker", "Queued", "pcap:" + path, "finished"} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
	// A slow replay, then stop it.
	slow := writeCapture(t, capgen.Config{Queries: 1000, Seed: 4, PPS: 10})
	out, err = run(t, m, "packet replay "+slow+" speed 1")
	if err != nil || !strings.Contains(out, "as source 2") {
		t.Fatalf("%s %v", out, err)
	}
	out, err = run(t, m, "packet stop")
	if err != nil || !strings.Contains(out, "Stopped 1 source") {
		t.Fatalf("%s %v", out, err)
	}
	out, _ = run(t, m, "packet stop")
	if !strings.Contains(out, "No source running") {
		t.Fatalf("%s", out)
	}
	// Wrong arguments are usage errors naming the problem (cli.Tree.Run adds
	// the command path and the usage).
	for line, want := range map[string]string{
		"packet replay":              "expected <file>, got no arguments",
		"packet replay x speed":      `expected <x> after "speed"`,
		"packet replay x speed fast": `speed "fast" is not a number >= 0 (0 = as fast as possible, 1 = capture pace, x = x times faster)`,
		"packet replay x slowly":     `unexpected argument "slowly"`,
		"packet stop 0":              `source id "0" is not a positive number`,
		"packet stop 1 2":            `unexpected argument "2"`,
		"packet show status x":       `unexpected argument "x"`,
	} {
		var ue *cli.UsageError
		if _, err := run(t, m, line); err == nil || !asUsage(err, &ue) || err.Error() != want {
			t.Errorf("%q: %v, want usage error %q", line, err, want)
		}
	}
	if _, err := run(t, m, "packet replay /nonexistent.pcap"); err == nil {
		t.Fatal("missing file accepted")
	}
}

func asUsage(err error, ue **cli.UsageError) bool {
	u, ok := err.(*cli.UsageError)
	*ue = u
	return ok
}

func TestCollector(t *testing.T) {
	m, h := moduleWithFakes(t)
	h.replay(t, writeCapture(t, capgen.Config{Queries: 100, Seed: 2}), 0)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(m); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range mt.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			if c := mt.GetCounter(); c != nil {
				got[key] = c.GetValue()
			} else if g := mt.GetGauge(); g != nil {
				got[key] = g.GetValue()
			}
		}
	}
	for key, want := range map[string]float64{
		"switchboard_pkt_packets_total":                         100,
		"switchboard_pkt_queries_total":                         100,
		"switchboard_pkt_decisions_total{action=allow}":         100,
		"switchboard_pkt_cdrs_total":                            100,
		"switchboard_pkt_decode_errors_total{reason=bad_label}": 0,
		"switchboard_pkt_worker_queue_depth{worker=1}":          0,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
