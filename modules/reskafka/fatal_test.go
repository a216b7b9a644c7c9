package reskafka

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// outcomes records the delivery outcome of numbered messages.
type outcomes struct {
	mu        sync.Mutex
	delivered map[int]int // seq -> deliveries
	rebuilt   []int       // handed back with ErrProducerRebuilt, in order
	status    map[Persistence]int
	other     []error // any other failure
}

func newOutcomes() *outcomes {
	return &outcomes{delivered: map[int]int{}, status: map[Persistence]int{}}
}

func (o *outcomes) callback(d Delivery) {
	seq := d.Opaque.(int)
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case d.Err == nil:
		o.delivered[seq]++
	case errors.Is(d.Err, ErrProducerRebuilt):
		o.rebuilt = append(o.rebuilt, seq)
		o.status[d.Status]++
	default:
		o.other = append(o.other, fmt.Errorf("message %d: %w", seq, d.Err))
	}
}

// TestFatalErrorRebuildsProducer raises a fatal error (librdkafka's test
// hook, as the idempotent producer raises one) on a producer under a steady
// load, against the real broker, and checks that res_kafka heals: every
// message is either delivered or handed back with ErrProducerRebuilt (none
// without an outcome, no other failure), the producer is rebuilt within a
// second behind the same handle, re-producing the handed-back messages
// through it delivers them all (kcat reads every number back), the
// connection is up again, and "kafka show connection" and the metrics show
// the event.
func TestFatalErrorRebuildsProducer(t *testing.T) {
	b := testBroker(t)
	th := startHost(t, fmt.Sprintf(`
[general]
[main]
brokers = %s
enable_idempotence = yes
acks = -1
linger_ms = 500
batch_num_messages = 100000
statistics_interval_ms = 500
`, b.Bootstrap))
	topic := uniqueTopic(t)
	if err := th.m.EnsureTopic(context.Background(), "main", topic, 3, 1); err != nil {
		t.Fatal(err)
	}
	p, err := th.m.Producer("main")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	out := newOutcomes()
	var accepted atomic.Int64 // messages 0..accepted-1 were accepted
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		// Steady load: 20 messages every millisecond, one at a time.
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for range 20 {
				v := []byte(strconv.Itoa(seq))
				if err := p.ProduceOpaque(topic, v, v, nil, out.callback, seq); err != nil {
					t.Errorf("produce %d: %v", seq, err)
					return
				}
				seq++
				accepted.Store(int64(seq))
			}
		}
	}()
	delivered := func() int {
		out.mu.Lock()
		defer out.mu.Unlock()
		return len(out.delivered)
	}
	testwait.Until(t, 30*time.Second, "2000 messages delivered", func() bool { return delivered() >= 2000 })

	p.mu.RLock()
	oldClient := p.name
	p.mu.RUnlock()
	atFatal := accepted.Load()
	if err := p.TestFatalError(kafka.ErrOutOfOrderSequenceNumber, "raised by "+t.Name()); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "the producer rebuilt", func() bool {
		st, _ := th.m.Status("main")
		return st.FatalRebuilds == 1
	})
	// The load goes on through the rebuilt producer.
	testwait.Until(t, 30*time.Second, "deliveries after the rebuild", func() bool {
		return accepted.Load() > atFatal+5000 && delivered() > int(atFatal)+1000
	})
	close(stop)
	<-done
	if left := p.Flush(30 * time.Second); left != 0 {
		t.Fatalf("%d messages without an outcome after the flush", left)
	}

	n := int(accepted.Load())
	out.mu.Lock()
	rebuilt := append([]int(nil), out.rebuilt...)
	noOutcome := 0
	handedBack := map[int]bool{}
	for _, seq := range rebuilt {
		handedBack[seq] = true
	}
	for seq := range n {
		if out.delivered[seq] == 0 && !handedBack[seq] {
			noOutcome++
		}
	}
	t.Logf("accepted %d, delivered %d, handed back %d (status %v), other failures %d, no outcome %d; fatal at message %d",
		n, len(out.delivered), len(rebuilt), out.status, len(out.other), noOutcome, atFatal)
	for i, err := range out.other {
		if i < 5 {
			t.Errorf("failure other than ErrProducerRebuilt: %v", err)
		}
	}
	out.mu.Unlock()
	if noOutcome != 0 {
		t.Errorf("%d messages with no outcome", noOutcome)
	}
	if len(rebuilt) == 0 {
		t.Errorf("no message handed back: the fatal error met an empty producer (the test proves nothing)")
	}

	// Re-producing the handed-back messages through the same handle
	// delivers them all.
	for _, seq := range rebuilt {
		v := []byte(strconv.Itoa(seq))
		if err := p.ProduceOpaque(topic, v, v, nil, out.callback, seq); err != nil {
			t.Fatalf("re-produce %d: %v", seq, err)
		}
	}
	if left := p.Flush(30 * time.Second); left != 0 {
		t.Fatalf("%d re-produced messages undelivered", left)
	}
	out.mu.Lock()
	for _, seq := range rebuilt {
		if out.delivered[seq] == 0 {
			t.Errorf("message %d handed back and re-produced, still not delivered", seq)
		}
	}
	if len(out.rebuilt) != len(rebuilt) || len(out.other) != 0 {
		t.Errorf("re-producing failed again: %d handed back, %d other failures", len(out.rebuilt)-len(rebuilt), len(out.other))
	}
	out.mu.Unlock()

	msgs := kafkatest.KcatConsume(t, b, topic, n, 60*time.Second)
	seen := make([]int, n)
	for _, m := range msgs {
		seq, err := strconv.Atoi(string(m.Value))
		if err != nil || seq < 0 || seq >= n {
			t.Fatalf("unexpected message %q", m.Value)
		}
		seen[seq]++
	}
	lost, dup := 0, 0
	for _, c := range seen {
		switch {
		case c == 0:
			lost++
		case c > 1:
			dup++
		}
	}
	t.Logf("kcat read %d messages: lost %d, duplicated %d", len(msgs), lost, dup)
	if lost != 0 {
		t.Errorf("%d messages lost", lost)
	}

	st, _ := th.m.Status("main")
	if st.State != stateUp {
		t.Errorf("state %q after the rebuild, want up", st.State)
	}
	if st.FatalErrors != 1 || st.FatalRebuilds != 1 || st.HandedBack != int64(len(rebuilt)) {
		t.Errorf("fatal errors %d, rebuilds %d, handed back %d (want 1, 1, %d)", st.FatalErrors, st.FatalRebuilds, st.HandedBack, len(rebuilt))
	}
	if !st.LastFatal.Recovered || !strings.Contains(st.LastFatal.Message, "OUT_OF_ORDER_SEQUENCE_NUMBER") {
		t.Errorf("last fatal error %+v", st.LastFatal)
	}
	if took := st.RebuiltAt.Sub(st.LastFatal.At); st.RebuiltAt.IsZero() || took >= time.Second {
		t.Errorf("producer rebuilt %s after the fatal error, want within a second", took)
	} else {
		t.Logf("producer rebuilt %s after the fatal error", took)
	}
	p.mu.RLock()
	newClient := p.name
	p.mu.RUnlock()
	if newClient == oldClient {
		t.Errorf("producer client still %s", oldClient)
	}

	show := th.run("kafka show connection main")
	t.Logf("kafka show connection main:\n%s", show)
	for label, want := range map[string]string{
		"State":                     "up",
		"Fatal errors":              "1",
		"Producer rebuilds (fatal)": "1",
		"Handed back (rebuilt)":     strconv.Itoa(len(rebuilt)),
		"Producer client":           newClient + " (since ",
		"Last fatal error":          "OUT_OF_ORDER_SEQUENCE_NUMBER: test_fatal_error: raised by " + t.Name() + " (at ",
	} {
		if got := showField(show, label); !strings.HasPrefix(got, want) {
			t.Errorf("kafka show connection main: %s: %q, want %q...", label, got, want)
		}
	}
	if lf := showField(show, "Last fatal error"); !strings.Contains(lf, ", recovered at ") || !strings.Contains(lf, "; producer rebuilt ") {
		t.Errorf("last fatal error not shown recovered: %q", lf)
	}

	vals := gather(t, th.m)
	for _, want := range []struct {
		name  string
		value float64
	}{
		{`switchboard_kafka_fatal_errors_total{connection="main"}`, 1},
		{`switchboard_kafka_producer_rebuilds_total{connection="main",reason="fatal"}`, 1},
		{`switchboard_kafka_producer_rebuilds_total{connection="main",reason="reload"}`, 0},
		{`switchboard_kafka_delivery_failed_rebuilt_total{connection="main"}`, float64(len(rebuilt))},
		{`switchboard_kafka_connection_up{connection="main",state="up"}`, 1},
	} {
		if got, ok := vals[want.name]; !ok || got != want.value {
			t.Errorf("%s = %v (present %v), want %v", want.name, got, ok, want.value)
		}
	}

	// The fatal error was logged once, with its code and reason.
	logs := th.logs.String()
	if n := strings.Count(logs, "kafka producer fatal error; rebuilding the producer"); n != 1 {
		t.Errorf("fatal error logged %d times, want once", n)
	}
	librdkafkaLine := false
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "tag=FATAL") {
			librdkafkaLine = true
			if !strings.Contains(l, "level=DEBUG") {
				t.Errorf("librdkafka's own fatal error line logged besides res_kafka's: %s", l)
			}
		}
		if strings.Contains(l, "kafka producer fatal error") &&
			(!strings.Contains(l, "code=OUT_OF_ORDER_SEQUENCE_NUMBER") || !strings.Contains(l, "test_fatal_error: raised by")) {
			t.Errorf("fatal error log line without its code and reason: %s", l)
		}
	}
	if !librdkafkaLine {
		t.Error("librdkafka's own FATAL line not found, even at debug: is it still tagged FATAL?")
	}
	// The rebuilt producer heals the same way; "kafka test fatal" raises
	// the error.
	if got := th.run("kafka test fatal connection main reason once more"); !strings.HasPrefix(got, "Fatal error raised on the producer of connection main;") {
		t.Errorf("kafka test fatal: %q", got)
	}
	testwait.Until(t, 10*time.Second, "the second rebuild", func() bool {
		st, _ := th.m.Status("main")
		return st.FatalRebuilds == 2 && st.FatalErrors == 2
	})
	if lf := showField(th.run("kafka show connection main"), "Last fatal error"); !strings.Contains(lf, "test_fatal_error: once more (at ") {
		t.Errorf("last fatal error after the second one: %q", lf)
	}
	for line, want := range map[string]string{
		"kafka test fatal connection nope":      "ERROR: no connection named nope",
		"kafka test fatal connection main what": `ERROR: kafka test fatal: expected reason, got "what"`,
		"kafka test fatal":                      "ERROR: kafka test fatal: missing connection <name>",
	} {
		if got := strings.TrimSpace(th.run(line)); !strings.HasPrefix(got, want) {
			t.Errorf("%s: %q, want %q", line, got, want)
		}
	}
}

// "kafka test fatal" does not create a producer to fail.
func TestFatalCommandNeedsProducer(t *testing.T) {
	th := startHost(t, "[general]\n[idle]\nbrokers = 127.0.0.1:1\n")
	if got := strings.TrimSpace(th.run("kafka test fatal connection idle")); got != "ERROR: connection idle has no producer yet (nothing to fail)" {
		t.Errorf("kafka test fatal on a connection without producer: %q", got)
	}
	if st, _ := th.m.Status("idle"); st.ProducerCreated {
		t.Error("kafka test fatal created a producer")
	}
}

// gather scrapes the module's metrics through a pedantic registry and
// returns them as "name{label="value",...}" -> value.
func gather(t *testing.T, m *Module) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(m)
	return gatherRegistry(t, reg)
}

// gatherRegistry returns the metrics of reg as gather does.
func gatherRegistry(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var ls []string
			for _, lp := range mt.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			name := mf.GetName()
			if len(ls) > 0 {
				name += "{" + strings.Join(ls, ",") + "}"
			}
			out[name] = metricValue(mf.GetType(), mt)
		}
	}
	return out
}

func metricValue(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	return 0
}

// showField returns the value of "<label>: value" in a "kafka show ..."
// output, "" when the label is missing.
func showField(out, label string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, label+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// What an owner gets for a handed-back message: ErrProducerRebuilt and the
// message's own librdkafka error, and a text naming both.
func TestRebuiltErrorWraps(t *testing.T) {
	var err error = &rebuiltError{fatal: "PRODUCER_FENCED: fenced", err: kafka.NewError(kafka.ErrPurgeQueue, "Local: Purged in queue", false)}
	if !errors.Is(err, ErrProducerRebuilt) {
		t.Error("not ErrProducerRebuilt")
	}
	var ke kafka.Error
	if !errors.As(err, &ke) || ke.Code() != kafka.ErrPurgeQueue {
		t.Errorf("message's own error %v", ke)
	}
	if want := "kafka: message not delivered: its producer failed fatally (PRODUCER_FENCED: fenced) and was rebuilt: Local: Purged in queue"; err.Error() != want {
		t.Errorf("%q, want %q", err, want)
	}
	if errors.Is(kafka.NewError(kafka.ErrPurgeQueue, "x", false), ErrProducerRebuilt) {
		t.Error("an ordinary purge is ErrProducerRebuilt")
	}
}
