package reskafka

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// TestMTLSClientCertificates: against the broker's listener with
// ssl.client.auth = required, res_kafka produces and consumes with a client
// certificate of the broker's CA (plain key, and encrypted key with
// ssl_key_password); without a certificate, with an expired one or with
// one of a foreign CA the connection is in state auth failed with the
// broker's TLS alert as last error, and nothing crashes. The key password
// is shown as ******** and never appears in the log or the CLI.
func TestMTLSClientCertificates(t *testing.T) {
	b := testBroker(t)
	if !b.HasMTLS() {
		t.Skip("the broker has no listener requiring client certificates (embedded fallback, or an env file of an older kafka.sh); run make test")
	}
	conn := func(name, extra string) string {
		timeoutMs := 8000
		if !strings.Contains(extra, b.ClientCert+"\n") {
			timeoutMs = 2000 // refused: kafka test send need not wait long
		}
		return fmt.Sprintf(`
[%s]
brokers = %s
security_protocol = ssl
ssl_ca_location = %s
group_id = mtls-%d
auto_offset_reset = earliest
message_timeout_ms = %d
%s`, name, b.MTLSBootstrap, b.CALocation, time.Now().UnixNano(), timeoutMs, extra)
	}
	keyed := func(cert, key string) string {
		return fmt.Sprintf("ssl_certificate_location = %s\nssl_key_location = %s\n", cert, key)
	}
	th := startHost(t, conn("mtls", keyed(b.ClientCert, b.ClientKey))+
		conn("encrypted", keyed(b.ClientCert, b.ClientKeyEncrypted)+"ssl_key_password = "+b.ClientKeyPassword+"\n")+
		conn("nocert", "")+
		conn("expired", keyed(b.ExpiredClientCert, b.ClientKey))+
		conn("foreign", keyed(b.ForeignClientCert, b.ForeignClientKey)))
	var outputs []string
	run := func(line string) string {
		out := th.run(line)
		outputs = append(outputs, out)
		return out
	}
	topic := uniqueTopic(t)
	if err := th.m.EnsureTopic(context.Background(), "mtls", topic, 1, 1); err != nil {
		t.Fatalf("EnsureTopic with a client certificate: %v", err)
	}
	col := newCollector()
	sub, err := th.m.Subscribe("mtls", []string{topic}, col.handle, SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	for _, name := range []string{"mtls", "encrypted"} {
		if delivered, derr := produceSpread(t, th, name, topic, name, 5, 0); delivered != 5 || derr != nil {
			t.Errorf("%s: delivered %d of 5 (first error: %v)", name, delivered, derr)
		}
	}
	testwait.Until(t, 30*time.Second, "every message read back", func() bool { return col.count() == 10 })
	for _, name := range []string{"mtls", "encrypted"} {
		if st, _ := th.m.Status(name); st.State != stateUp {
			t.Errorf("%s: state %q, want up (last error %q)", name, st.State, st.LastError.Message)
		}
	}
	out := run("kafka show connection encrypted")
	for _, want := range []string{"SSL certificate location:     " + b.ClientCert, "SSL key password:             ********"} {
		if !strings.Contains(out, want) {
			t.Errorf("kafka show connection encrypted lacks %q:\n%s", want, out)
		}
	}
	// The broker answers a missing or untrusted certificate with alert 42
	// (bad certificate), an expired one with 46 (certificate unknown).
	refusal := regexp.MustCompile(`SSL alert number (42|46)|certificate`)
	for _, name := range []string{"nocert", "expired", "foreign"} {
		out := run("kafka test send connection " + name + " topic " + topic + " message never")
		if strings.Contains(out, "Message delivered") {
			t.Errorf("%s: delivered through a listener requiring a valid client certificate:\n%s", name, out)
		}
		show := waitAuthFailed(t, th, name, refusal)
		outputs = append(outputs, show)
	}
	run("kafka show status")
	if !strings.Contains(th.logs.String(), "kafka authentication failed") {
		t.Errorf("the refused certificates are not logged as authentication failures")
	}
	all := th.logs.String() + strings.Join(outputs, "\n")
	if i := strings.Index(all, b.ClientKeyPassword); i >= 0 {
		t.Errorf("the key password appears in log/CLI: ...%s...", all[max(0, i-200):min(len(all), i+50)])
	}
}
