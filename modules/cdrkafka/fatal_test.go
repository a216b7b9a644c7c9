package cdrkafka

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
)

// A fatal error of the idempotent producer under a steady CDR load (raised
// with librdkafka's rd_kafka_test_fatal_error through "kafka test fatal"):
// res_kafka rebuilds the producer and hands back what the old one had not
// delivered, cdr_kafka (spool mode) spools those and replays them, and
// every CDR reaches the topic: 0 lost. The connection is up again and the
// event shows in "kafka show connection" and in the metrics.
func TestFatalErrorUnderLoadLosesNothing(t *testing.T) {
	b := kafkatest.Shared(t)
	if !b.Real {
		t.Skip("needs the real broker of make test (idempotent producer)")
	}
	topic := kafkatest.UniqueTopic(t, "cdrfatal")
	kafkatest.CreateTopic(t, b.Bootstrap, topic, 3, 1)
	r := startRig(t, kafkaConfOrdered(b.Bootstrap), fmt.Sprintf("[general]\nconnection = cdr\ntopic = %s\non_queue_full = spool\nbatch_max = 64\n", topic), "")
	defer r.stop()
	const n = 100000
	posted := make(chan int, 1)
	go func() { posted <- r.eng.PostSynthetic(t.Context(), n, 0, 1, 64).Posted }()
	testwait.Until(t, time.Minute, "part of the load delivered", func() bool { return r.status()["delivered"] > n/10 })
	out := r.cli("kafka test fatal connection cdr reason test-under-load")
	t.Logf("%s", strings.TrimSpace(out))
	if got := <-posted; got != n {
		t.Fatalf("posted %d of %d", got, n)
	}
	s := r.waitStatus("every CDR delivered", 2*time.Minute, func(s map[string]uint64) bool {
		return s["delivered"] == n && s["queued"] == 0
	})
	msgs := kafkatest.KcatConsume(t, b, topic, n, 2*time.Minute)
	seqRE := regexp.MustCompile(`"seq":(\d+)`)
	seen := map[uint64]int{}
	for _, m := range msgs {
		if sm := seqRE.FindSubmatch(m.Value); sm != nil {
			v, _ := strconv.ParseUint(string(sm[1]), 10, 64)
			seen[v]++
		}
	}
	lost, dup := 0, 0
	for i := uint64(1); i <= n; i++ {
		switch c := seen[i]; {
		case c == 0:
			lost++
		case c > 1:
			dup += c - 1
		}
	}
	t.Logf("posted %d, delivered %d, spooled %d, replayed %d; kcat: %d lost, %d duplicated", n, s["delivered"], s["spooled"], s["replayed"], lost, dup)
	if lost != 0 {
		t.Errorf("%d CDRs lost across the fatal error", lost)
	}
	conn := r.cli("kafka show connection cdr")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^State:\s+up\b`),
		regexp.MustCompile(`(?m)^Fatal errors:\s+1\b`),
		regexp.MustCompile(`(?m)^Producer rebuilds \(fatal\):\s+1\b`),
	} {
		if !want.MatchString(conn) {
			t.Errorf("kafka show connection lacks %s:\n%s", want, conn)
		}
	}
	inst, _ := r.h.Instance(reskafka.Name)
	if st, _ := inst.(*reskafka.Module).Status("cdr"); st.HandedBack == 0 || s["spooled"] == 0 {
		t.Errorf("the fatal error met no message in flight (handed back %d, spooled %d): the test proved nothing", st.HandedBack, s["spooled"])
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(inst.(prometheus.Collector))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fatal := -1.0
	for _, mf := range mfs {
		if mf.GetName() != "switchboard_kafka_fatal_errors_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "connection" && l.GetValue() == "cdr" {
					fatal = m.GetCounter().GetValue()
				}
			}
		}
	}
	if fatal != 1 {
		t.Errorf("switchboard_kafka_fatal_errors_total{connection=\"cdr\"} = %v, want 1", fatal)
	}
}
