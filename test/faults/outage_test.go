//go:build faults

package faults

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestStartupUnreachableThenOutage: switchboard starts while its broker is
// down (start-up must take under a second, the CLI must answer, CDRs must
// flow once the broker appears), then the broker goes down for 30 s under
// load with on_queue_full = spool: nothing is lost, and the CLI shows the
// outage while it lasts.
func TestStartupUnreachableThenOutage(t *testing.T) {
	d := dedicated(t, "outage")
	topic := "faults-outage"
	createTopic(t, d.bootstrap(), topic, 3, 1, nil)
	b := d.broker()
	d.stop(t)

	sb := newInstance(t, "outage", map[string]string{
		"modules.conf": modulesConf("res_kafka", "cdr", "cdr_kafka"),
		// A small producer queue and a 10 s message timeout, so a 30 s outage
		// exercises both ways into the spool: queue full and failed delivery.
		"kafka.conf":     kafkaConf(d.bootstrap(), "queue_buffering_max_messages = 2000", "message_timeout_ms = 10000"),
		"cdr_kafka.conf": cdrKafkaConf(topic, "on_queue_full = spool"),
	})

	// --- broker unreachable at start-up
	startup := sb.startReady()
	st := sb.must("kafka show status")
	if !strings.Contains(st, "cdr") {
		t.Errorf("kafka show status does not list the connection:\n%s", st)
	}
	const n1 = 2000
	sb.must(fmt.Sprintf("cdr test post %d start 1", n1))
	time.Sleep(500 * time.Millisecond) // let the batches reach the (unreachable) producer
	out, _, _, queued, _ := sb.cdrCounters()
	if queued <= 0 {
		t.Errorf("with the broker down, cdr show status shows nothing queued:\n%s", out)
	}
	d.start(t)
	sb.waitDrained(2 * time.Minute)
	tl, _ := readBack(t, b, topic, 1, n1, time.Minute)
	report(t, "startup-broker-unreachable", tl.sent, tl.received, tl.lost, tl.dup,
		fmt.Sprintf("start-up to first CLI answer %s", startup.Round(time.Millisecond)))
	if startup > time.Second {
		t.Errorf("start-up with the broker unreachable took %s, want < 1s", startup)
	}
	if tl.lost != 0 || tl.dup != 0 {
		t.Errorf("start-up: lost %d duplicated %d (missing e.g. %v)", tl.lost, tl.dup, tl.missing(1, n1))
	}

	// --- whole broker down for 30 s under load (spool)
	const first = 1_000_001
	const rate = 500
	l := startLoad(sb, first, rate)
	time.Sleep(5 * time.Second) // steady export before the outage
	d.stop(t)
	outageStart := time.Now()
	var sawDown, sawQueued bool
	var maxQueued, maxSpooled int64
	var sample string
	for time.Since(outageStart) < 30*time.Second {
		ks, _ := sb.rx("kafka show status")
		cs, _, _, q, sp := sb.cdrCounters()
		if rowState(ks, "cdr") == "down" {
			sawDown = true
		}
		if q > 0 {
			sawQueued = true
		}
		maxQueued, maxSpooled = max(maxQueued, q), max(maxSpooled, sp)
		if time.Since(outageStart) > 20*time.Second && sample == "" {
			sample = ks + "\n" + cs
		}
		time.Sleep(2 * time.Second) // CLI sampling period during the outage
	}
	t.Logf("CLI during the outage:\n%s", sample)
	killedFor := time.Since(outageStart)
	d.start(t)
	outage := time.Since(outageStart)
	time.Sleep(5 * time.Second) // steady export after recovery
	posted := l.finish()
	final := sb.waitDrained(3 * time.Minute)
	tl, _ = readBack(t, b, topic, first, posted, 2*time.Minute)
	report(t, "broker-down-30s-spool", tl.sent, tl.received, tl.lost, tl.dup,
		fmt.Sprintf("broker dead %s, unavailable %s incl. restart; CLI: state down=%v, max queued %d, spooled %d",
			killedFor.Round(time.Second), outage.Round(time.Second), sawDown, maxQueued, maxSpooled))
	if !sawDown || !sawQueued || maxSpooled <= 0 {
		t.Errorf("CLI during the outage: state down seen %v, queued seen %v, spooled %d; want all\n%s", sawDown, sawQueued, maxSpooled, sample)
	}
	if tl.lost != 0 {
		t.Errorf("outage: lost %d (missing e.g. %v)\n%s", tl.lost, tl.missing(first, posted), final)
	}
	if len(l.failures) > 0 {
		t.Logf("load command failures: %v", l.failures)
	}
}

// rowState returns the State column of connection name in "kafka show
// status" output.
func rowState(out, name string) string {
	lines := strings.Split(out, "\n")
	var hdr []string
	for _, ln := range lines {
		f := strings.Fields(ln)
		if len(f) > 0 && f[0] == "Name" {
			hdr = f
			continue
		}
		if hdr != nil && len(f) >= len(hdr) && f[0] == name {
			// State may be two words ("auth failed"): take the columns
			// between Brokers and the 5 counters.
			return strings.Join(f[2:len(f)-5], " ")
		}
	}
	return ""
}
