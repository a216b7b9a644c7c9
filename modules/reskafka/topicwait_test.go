package reskafka

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// problemLines returns the WARN and ERROR lines of a text log.
func problemLines(logs string) []string {
	var out []string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

// cliLine returns the value of the "label:" line of CLI output.
func cliLine(out, label string) string {
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, label+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// topicExists asks the cluster through a consumer (which never creates
// topics) whether topic exists.
func topicExists(t *testing.T, b *kafkatest.Broker, topic string) bool {
	t.Helper()
	kc, err := kafka.NewConsumer(&kafka.ConfigMap{"bootstrap.servers": b.Bootstrap, "group.id": "probe-" + topic})
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	md, err := kc.GetMetadata(&topic, false, 10000)
	if err != nil {
		t.Fatalf("metadata of %s: %v", topic, err)
	}
	tm, ok := md.Topics[topic]
	return ok && tm.Error.Code() == kafka.ErrNoError && len(tm.Partitions) > 0
}

// produceOne produces one message through res_kafka and waits for its
// delivery.
func (th *testHost) produceOne(conn, topic, value string) {
	th.t.Helper()
	p, err := th.m.Producer(conn)
	if err != nil {
		th.t.Fatal(err)
	}
	defer p.Release()
	done := make(chan Delivery, 1)
	if err := p.Produce(topic, nil, []byte(value), nil, func(d Delivery) { done <- d }); err != nil {
		th.t.Fatal(err)
	}
	select {
	case d := <-done:
		if d.Err != nil {
			th.t.Fatalf("delivery to %s: %v", topic, d.Err)
		}
	case <-time.After(30 * time.Second):
		th.t.Fatalf("no delivery report from %s within 30 s", topic)
	}
}

// A subscription to a topic that does not exist yet waits for it: no
// warning, no connection error, "Waiting for topics" in the CLI; once the
// topic is created its first message is handled and the wait is over.
func TestSubscribeMissingTopicWaits(t *testing.T) {
	b := testBroker(t)
	th := startHost(t, fmt.Sprintf("[main]\nbrokers = %s\ngroup_id = wait-%d\nauto_offset_reset = earliest\n",
		b.Bootstrap, time.Now().UnixNano()))
	topic := uniqueTopic(t)
	got := make(chan string, 10)
	start := time.Now()
	sub, err := th.m.Subscribe("main", []string{topic}, func(_ context.Context, msg *Message) error {
		got <- string(msg.Value)
		return nil
	}, SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 20*time.Second, "the waiting state", func() bool {
		return slices.Equal(sub.Status().WaitingTopics, []string{topic})
	})
	out := th.run("kafka show consumer " + sub.Name())
	if w := cliLine(out, "Waiting for topics"); !strings.HasPrefix(w, topic+" ") {
		t.Errorf("show consumer: Waiting for topics %q, want %s first:\n%s", w, topic, out)
	}
	if strings.Contains(out, "Last error") {
		t.Errorf("show consumer shows a last error while waiting:\n%s", out)
	}
	cs, err := th.m.Status("main")
	if err != nil {
		t.Fatal(err)
	}
	if cs.State == stateError || cs.Errors != 0 || cs.LastError.Message != "" {
		t.Errorf("waiting counted as a connection error: state %q, errors %d, last error %q", cs.State, cs.Errors, cs.LastError)
	}
	if out := th.run("kafka show connection main"); cliLine(out, "Last error") != "(none)" {
		t.Errorf("show connection while waiting:\n%s", out)
	}

	kafkatest.CreateTopic(t, b.Bootstrap, topic, 1, 1)
	th.produceOne("main", topic, "first")
	select {
	case v := <-got:
		if v != "first" {
			t.Errorf("handled %q, want first", v)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("message not handled within 30 s; status %+v", sub.Status())
	}
	testwait.Until(t, 10*time.Second, "the end of the waiting state", func() bool { return len(sub.Status().WaitingTopics) == 0 })
	out = th.run("kafka show consumer " + sub.Name())
	if strings.Contains(out, "Waiting for topics") || strings.Contains(out, "Last error") {
		t.Errorf("show consumer after the topic appeared:\n%s", out)
	}
	elapsed := time.Since(start)
	if elapsed >= MissingTopicGrace {
		t.Fatalf("the test took %s, not within the grace period %s: the no-warning check proves nothing", elapsed, MissingTopicGrace)
	}
	logs := th.logs.String()
	if p := problemLines(logs); len(p) > 0 {
		t.Errorf("warnings or errors within the grace period:\n%s", strings.Join(p, "\n"))
	}
	if n := strings.Count(logs, `msg="kafka subscription waiting for topic to be created"`); n != 1 {
		t.Errorf("waiting logged %d times, want once", n)
	}
	if !strings.Contains(logs, `msg="kafka subscribed topic exists now"`) {
		t.Errorf("the end of the wait is not logged")
	}
	if cs, _ := th.m.Status("main"); cs.State != stateUp || cs.Errors != 0 {
		t.Errorf("connection state %q, errors %d after the topic appeared", cs.State, cs.Errors)
	}
	t.Logf("waited and handled within %s (grace %s)", elapsed.Round(time.Millisecond), MissingTopicGrace)
}

// A topic still missing when the grace period ends is a warning and the
// last error of the subscription and of the connection ("still failing");
// once the topic exists and its message is handled, both show the error as
// recovered and the connection is up again.
func TestSubscribeMissingTopicWarnsAfterGraceThenRecovers(t *testing.T) {
	b := testBroker(t)
	th := startHost(t, fmt.Sprintf("[main]\nbrokers = %s\ngroup_id = late-%d\nauto_offset_reset = earliest\n",
		b.Bootstrap, time.Now().UnixNano()))
	topic := uniqueTopic(t)
	const grace = 2 * time.Second
	got := make(chan string, 10)
	sub, err := th.m.Subscribe("main", []string{topic}, func(_ context.Context, msg *Message) error {
		got <- string(msg.Value)
		return nil
	}, SubscribeOptions{MissingTopicGrace: grace})
	if err != nil {
		t.Fatal(err)
	}
	warning := regexp.MustCompile(`level=WARN msg="kafka client error" .*Subscribed topic not available: ` + regexp.QuoteMeta(topic))
	testwait.Until(t, 10*time.Second, "the waiting state", func() bool { return len(sub.Status().WaitingTopics) == 1 })
	// Logs read before a status that still shows the wait are from within
	// the grace period: the wait ends before the warning is logged.
	logs := th.logs.String()
	if st := sub.Status(); len(st.WaitingTopics) == 1 {
		if p := problemLines(logs); len(p) > 0 {
			t.Errorf("warnings while waiting:\n%s", strings.Join(p, "\n"))
		}
	}
	testwait.Until(t, 20*time.Second, "the warning after the grace period", func() bool { return warning.MatchString(th.logs.String()) })
	st := sub.Status()
	if len(st.WaitingTopics) != 0 {
		t.Errorf("still waiting for %v after the warning", st.WaitingTopics)
	}
	if !strings.Contains(st.LastError.Message, "Unknown topic or partition") || st.LastError.Recovered {
		t.Errorf("subscription last error %+v, want the missing topic, not recovered", st.LastError)
	}
	if d := st.LastError.At.Sub(sub.started); d < grace {
		t.Errorf("reported %s after the start, within the grace period %s", d, grace)
	}
	out := th.run("kafka show consumer " + sub.Name())
	if le := cliLine(out, "Last error"); !strings.Contains(le, topic) || !strings.HasSuffix(le, ", still failing)") {
		t.Errorf("show consumer Last error %q:\n%s", le, out)
	}
	cs, _ := th.m.Status("main")
	if cs.State != stateError || cs.LastError.Recovered || !strings.Contains(cs.LastError.Message, topic) {
		t.Errorf("connection: state %q, last error %+v", cs.State, cs.LastError)
	}
	conn := th.run("kafka show connection main")
	if le := cliLine(conn, "Last error"); !strings.Contains(le, topic) || !strings.HasSuffix(le, ", still failing)") {
		t.Errorf("show connection Last error %q:\n%s", le, conn)
	}
	if topicExists(t, b, topic) {
		t.Fatalf("checking for %s created it", topic)
	}

	kafkatest.CreateTopic(t, b.Bootstrap, topic, 1, 1)
	th.produceOne("main", topic, "late")
	select {
	case v := <-got:
		if v != "late" {
			t.Errorf("handled %q, want late", v)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("message not handled within 30 s; status %+v", sub.Status())
	}
	testwait.Until(t, 10*time.Second, "both errors recovered", func() bool {
		cs, _ := th.m.Status("main")
		return sub.Status().LastError.Recovered && cs.LastError.Recovered && cs.State == stateUp
	})
	recovered := regexp.MustCompile(`^Subscribed topic not available: ` + regexp.QuoteMeta(topic) +
		`: Broker: Unknown topic or partition \(at \S+, recovered at \d\d:\d\d:\d\d\)$`)
	out = th.run("kafka show consumer " + sub.Name())
	if le := cliLine(out, "Last error"); !recovered.MatchString(le) {
		t.Errorf("show consumer Last error %q, want %s:\n%s", le, recovered, out)
	}
	conn = th.run("kafka show connection main")
	if le := cliLine(conn, "Last error"); !recovered.MatchString(le) {
		t.Errorf("show connection Last error %q, want %s:\n%s", le, recovered, conn)
	}
	if s := cliLine(conn, "State"); s != stateUp {
		t.Errorf("show connection State %q, want up", s)
	}
	if n := len(warning.FindAllString(th.logs.String(), -1)); n != 1 {
		t.Errorf("%d warnings for the missing topic, want 1", n)
	}
	t.Logf("show consumer: Last error: %s", cliLine(out, "Last error"))
}

func TestLastErrorString(t *testing.T) {
	at := time.Date(2026, 12, 1, 17, 24, 7, 0, time.UTC)
	for _, c := range []struct {
		e    LastError
		want string
	}{
		{LastError{}, ""},
		{LastError{Message: "boom", At: at}, "boom (at 2026-12-01T17:24:07Z, still failing)"},
		{LastError{Message: "boom", At: at, Recovered: true, RecoveredAt: at.Add(2 * time.Second)},
			"boom (at 2026-12-01T17:24:07Z, recovered at 17:24:09)"},
		{LastError{Message: "boom", At: at, Recovered: true, RecoveredAt: at.Add(7 * time.Hour)},
			"boom (at 2026-12-01T17:24:07Z, recovered at 2026-12-02T00:24:07Z)"},
	} {
		if got := c.e.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.e, got, c.want)
		}
	}
	var e LastError
	if e.recover(at) {
		t.Error("recovered without an error")
	}
	e.set("boom", at)
	if !e.recover(at.Add(time.Second)) || e.recover(at.Add(2*time.Second)) || e.RecoveredAt != at.Add(time.Second) {
		t.Errorf("recover: %+v", e)
	}
	e.set("again", at.Add(3*time.Second))
	if e.Recovered || !e.RecoveredAt.IsZero() {
		t.Errorf("a new error starts failing: %+v", e)
	}
}

// A connection's last error recovers when the connection is confirmed up
// after it, except from a fatal error; "all brokers down" after an
// authentication failure keeps the latter.
func TestConnLastErrorRecovery(t *testing.T) {
	c := newConn(nil, &Connection{Name: "x"}, "localhost:1")
	c.setError(kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false))
	if st, le := c.getState(); st != stateDown || le.Recovered || le.Message != "1/1 brokers are down" {
		t.Fatalf("after the error: %s %+v", st, le)
	}
	c.confirmUp()
	st, le := c.getState()
	if st != stateUp || !le.Recovered || le.RecoveredAt.Before(le.At) {
		t.Fatalf("after confirmUp: %s %+v", st, le)
	}
	if c.unconfirmed.Load() {
		t.Error("confirmed connection still marked unconfirmed")
	}
	c.setError(kafka.NewError(kafka.ErrTransport, "broker: Connection refused", false))
	if st, le := c.getState(); st != stateUp || le.Recovered || !c.unconfirmed.Load() {
		t.Fatalf("a transport error keeps the state but fails: %s %+v", st, le)
	}
	c.confirmUp()
	if _, le := c.getState(); !le.Recovered {
		t.Fatalf("transport error not recovered: %+v", le)
	}
	c.setError(kafka.NewError(kafka.ErrAuthentication, "SASL authentication error", false))
	c.setError(kafka.NewError(kafka.ErrAllBrokersDown, "1/1 brokers are down", false))
	if st, le := c.getState(); st != stateAuthFailed || le.Message != "SASL authentication error" || le.Recovered {
		t.Fatalf("auth failure then brokers down: %s %+v", st, le)
	}
	c.confirmUp()
	if st, le := c.getState(); st != stateUp || !le.Recovered {
		t.Fatalf("auth failure not recovered: %s %+v", st, le)
	}
	c.setError(kafka.NewError(kafka.ErrFatal, "fatal idempotent producer error", true))
	c.confirmUp()
	if st, le := c.getState(); st != stateFatal || le.Recovered {
		t.Fatalf("a fatal error recovered: %s %+v", st, le)
	}
}

func TestMissingTopicMatch(t *testing.T) {
	s := &Subscription{topics: []string{"a", "a.b", "policy_updates"}}
	for _, c := range []struct {
		e     kafka.Error
		topic string
		ok    bool
	}{
		{kafka.NewError(kafka.ErrUnknownTopicOrPart, "Subscribed topic not available: a.b: Broker: Unknown topic or partition", false), "a.b", true},
		{kafka.NewError(kafka.ErrUnknownTopicOrPart, "Subscribed topic not available: a: Broker: Unknown topic or partition", false), "a", true},
		{kafka.NewError(kafka.ErrUnknownTopic, "policy_updates: Local: Unknown topic", false), "policy_updates", true},
		{kafka.NewError(kafka.ErrUnknownTopicOrPart, "Subscribed topic not available: other: Broker: Unknown topic or partition", false), "", false},
		{kafka.NewError(kafka.ErrTopicAuthorizationFailed, "Subscribed topic not available: a: Broker: Topic authorization failed", false), "", false},
	} {
		topic, ok := s.missingTopic(c.e)
		if topic != c.topic || ok != c.ok {
			t.Errorf("%v: %q %v, want %q %v", c.e, topic, ok, c.topic, c.ok)
		}
	}
}
