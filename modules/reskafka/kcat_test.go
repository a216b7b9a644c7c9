package reskafka

import (
	"strings"
	"testing"
)

// KcatCommand carries the connection's address and security settings, and
// never the SASL password.
func TestKcatCommand(t *testing.T) {
	th := startHost(t, `[plain]
type = connection
brokers = 127.0.0.1:1
[secure]
type = connection
brokers = kafka-1:9093,kafka-2:9093
security_protocol = sasl_ssl
sasl_mechanisms = SCRAM-SHA-512
sasl_username = cdr-reader
sasl_password = s3cret-pass
ssl_ca_location = /etc/ssl/my ca.pem
`)
	got, err := th.m.KcatCommand("plain", "dp_cdr")
	if want := "kcat -C -b 127.0.0.1:1 -t dp_cdr -e"; err != nil || got != want {
		t.Errorf("plain: %q, %v; want %q", got, err, want)
	}
	got, err = th.m.KcatCommand("secure", "dp_cdr")
	want := "kcat -C -b kafka-1:9093,kafka-2:9093 -t dp_cdr -e -X security.protocol=sasl_ssl -X sasl.mechanisms=SCRAM-SHA-512" +
		" -X sasl.username=cdr-reader -X 'sasl.password=<password>' -X 'ssl.ca.location=/etc/ssl/my ca.pem'"
	if err != nil || got != want {
		t.Errorf("secure:\n got %q, %v\nwant %q", got, err, want)
	}
	if strings.Contains(got, "s3cret") {
		t.Errorf("the password leaked: %s", got)
	}
	if _, err := th.m.KcatCommand("nope", "t"); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("unknown connection: %v", err)
	}
	if g := th.m.Greeting(); g != nil {
		t.Errorf("greeting without the embedded broker: %q", g)
	}
}
