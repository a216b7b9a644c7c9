package reskafka

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// TestSASLSSLScram: SCRAM-SHA-512 over SASL_SSL works; a wrong password
// shows as a clear error in the log and the CLI; no password appears in any
// log line or CLI output.
func TestSASLSSLScram(t *testing.T) {
	b := testBroker(t)
	if !b.HasSASL() {
		t.Skip("the broker has no SASL_SSL listener (embedded fallback); run make test")
	}
	const wrong = "wrong-Pa55word-xyz"
	th := startHost(t, fmt.Sprintf(`
[secure]
brokers = %[1]s
security_protocol = sasl_ssl
sasl_mechanisms = SCRAM-SHA-512
sasl_username = %[2]s
sasl_password = %[3]s
ssl_ca_location = %[4]s
statistics_interval_ms = 500
[badpass]
brokers = %[1]s
security_protocol = sasl_ssl
sasl_mechanisms = SCRAM-SHA-512
sasl_username = %[2]s
sasl_password = %[5]s
ssl_ca_location = %[4]s
message_timeout_ms = 3000
debug = security,broker
`, b.SASLBootstrap, b.SASLUsername, b.SASLPassword, b.CALocation, wrong))
	topic := uniqueTopic(t)
	var outputs []string
	run := func(line string) string {
		out := th.run(line)
		outputs = append(outputs, out)
		return out
	}
	out := run("kafka test send connection secure topic " + topic + " message over-sasl")
	if !strings.Contains(out, "Message delivered to "+topic) {
		t.Errorf("SASL_SSL send: %s", out)
	}
	out = run("kafka test send connection badpass topic " + topic + " message never")
	if !strings.Contains(out, "failed") && !strings.Contains(out, "not delivered") {
		t.Errorf("wrong password send: %s", out)
	}
	testwait.Until(t, 20*time.Second, "auth failed state", func() bool {
		st, _ := th.m.Status("badpass")
		return st.State == stateAuthFailed
	})
	out = run("kafka show connection badpass")
	if !strings.Contains(out, "State:") || !strings.Contains(out, stateAuthFailed) || !strings.Contains(out, "Authentication failed") {
		t.Errorf("show connection badpass does not explain the failure:\n%s", out)
	}
	if !strings.Contains(out, "SASL password:                ********") {
		t.Errorf("password not masked:\n%s", out)
	}
	run("kafka show connection secure")
	run("kafka show status")
	testwait.Until(t, 10*time.Second, "broker statistics", func() bool {
		out := run("kafka show connection secure")
		return strings.Contains(out, "Statistics of the producer (") && strings.Contains(out, "  UP  ")
	})
	logs := th.logs.String()
	if !strings.Contains(logs, "kafka authentication failed") {
		t.Errorf("no clear authentication error in the log")
	}
	all := logs + strings.Join(outputs, "\n")
	for _, secret := range []string{b.SASLPassword, wrong} {
		if strings.Contains(all, secret) {
			i := strings.Index(all, secret)
			t.Errorf("secret found in output/log: ...%s...", all[max(0, i-200):min(len(all), i+50)])
		}
	}
	t.Logf("badpass:\n%s", outputs[len(outputs)-4])
}
