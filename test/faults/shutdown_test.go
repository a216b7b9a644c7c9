//go:build faults

package faults

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// TestShutdownBrokerDown: SIGTERM under load while the broker is down.
// cdr_kafka (on_queue_full = spool, journal = yes) must spool every CDR the
// producer still holds before res_kafka closes, within its stop budget
// (shutdown_flush_ms + 2 s), and say how many it spooled. After a restart
// with the broker up, every id posted before the SIGTERM is read back by
// kcat: no gap at all up to the highest id delivered; duplicates only as
// the journal allows (at least once).
func TestShutdownBrokerDown(t *testing.T) {
	d := dedicated(t, "shutdown")
	topic := "faults-shutdown"
	createTopic(t, d.bootstrap(), topic, 3, 1, nil)
	b := d.broker()
	const flushMs = 3000
	sb := newInstance(t, "shutdown", map[string]string{
		"modules.conf":   modulesConf("res_kafka", "cdr", "cdr_kafka"),
		"kafka.conf":     kafkaConf(d.bootstrap(), "message_timeout_ms = 300000"),
		"cdr_kafka.conf": cdrKafkaConf(topic, "on_queue_full = spool", "journal = yes", fmt.Sprintf("shutdown_flush_ms = %d", flushMs)),
	})
	sb.startReady()
	posting := make(chan struct{})
	go func() {
		defer close(posting)
		sb.rx("cdr test post 200000 rate 2000 start 1") // cut short by the SIGTERM
	}()
	time.Sleep(3 * time.Second) // export under way
	d.stop(t)
	time.Sleep(3 * time.Second) // CDRs pile up in the producer while the broker is down
	_, accepted, _, _, _ := sb.cdrCounters()
	t0 := time.Now()
	sb.stop()
	took := time.Since(t0)
	<-posting
	log := sb.log()
	m := regexp.MustCompile(`msg="cdr_kafka stopped".* spooled=(\d+)`).FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("cdr_kafka did not say what it spooled at shutdown:\n%s", tail(log, 4000))
	}
	spooled, _ := strconv.Atoi(m[1])
	for _, l := range regexp.MustCompile(`(?m)^.*(signal received|stopping modules|cdr_kafka|module unloaded|res_kafka unloaded|stopped").*$`).FindAllString(log, -1) {
		t.Log(l)
	}
	if spooled == 0 {
		t.Errorf("nothing spooled at shutdown with the broker down:\n%s", tail(log, 4000))
	}
	// cdr_kafka's budget, then res_kafka's (shutdown_flush_timeout_ms 5 s + 1 s),
	// then the rest of the modules: well under 20 s.
	if took > 20*time.Second {
		t.Errorf("SIGTERM to exit took %s", took)
	}

	d.start(t)
	sb.startReady()
	status := sb.waitDrained(3 * time.Minute)
	loaded := statusValue(status, "loaded")
	tl, msgs := readBack(t, b, topic, 1, int(accepted), 2*time.Minute)
	var top uint64
	for _, msg := range msgs {
		if sm := seqRE.FindSubmatch(msg.Value); sm != nil {
			if v, _ := strconv.ParseUint(string(sm[1]), 10, 64); v > top {
				top = v
			}
		}
	}
	full := account(msgs, 1, int(top))
	sb.stop()
	report(t, "sigterm-broker-down", tl.sent, tl.received, tl.lost, tl.dup,
		fmt.Sprintf("SIGTERM to exit %s (budget %d ms flush + 2 s); spooled at shutdown %d; loaded at restart %d; up to the highest id delivered (%d): %d gaps, %d dups",
			took.Round(time.Millisecond), flushMs, spooled, loaded, full.sent, full.lost, full.dup))
	if tl.lost != 0 {
		t.Errorf("lost %d CDRs accepted before the SIGTERM (e.g. %v)\n%s", tl.lost, tl.missing(1, tl.sent), status)
	}
	if full.lost != 0 {
		t.Errorf("%d gaps up to the highest id delivered (%d): a graceful stop loses nothing (e.g. %v)", full.lost, top, full.missing(1, full.sent))
	}
}
