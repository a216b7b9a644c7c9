package reskafka

import (
	"fmt"
	"strings"

	"github.com/switchboard-dp/switchboard/core"
)

// KcatCommand returns a kcat command line that reads topic on the named
// connection from the beginning and exits at its end: the bootstrap
// address (the embedded broker's when the connection uses it) and the
// security settings of the connection. A SASL password is written as the
// placeholder <password>, never as itself.
func (m *Module) KcatCommand(connName, topic string) (string, error) {
	c, err := m.conn(connName)
	if err != nil {
		return "", err
	}
	cfg := c.cfg()
	args := []string{"kcat", "-C", "-b", m.bootstrapFor(cfg), "-t", topic, "-e"}
	if cfg.SecurityProtocol != "plaintext" {
		args = append(args, "-X", "security.protocol="+cfg.SecurityProtocol)
	}
	if strings.HasPrefix(cfg.SecurityProtocol, "sasl_") {
		args = append(args, "-X", "sasl.mechanisms="+cfg.SASLMechanisms,
			"-X", "sasl.username="+cfg.SASLUsername, "-X", "sasl.password=<password>")
	}
	for _, p := range []struct{ key, value string }{
		{"ssl.ca.location", cfg.SSLCALocation},
		{"ssl.certificate.location", cfg.SSLCertificateLocation},
		{"ssl.key.location", cfg.SSLKeyLocation},
	} {
		if p.value != "" {
			args = append(args, "-X", p.key+"="+p.value)
		}
	}
	for i, a := range args {
		if strings.ContainsAny(a, " \t'\"<>|&;$") {
			args[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(args, " "), nil
}

// Greeting tells the console where the embedded broker listens, when a
// connection uses it.
func (m *Module) Greeting() []string {
	if m.embAddr == "" {
		return nil
	}
	budget := int64(0)
	if m.emb != nil {
		budget, _, _ = m.emb.Retention()
	}
	return []string{fmt.Sprintf("Embedded Kafka broker at %s (in memory, the newest %d MB of records; nothing on disk; for demos and development, not production).",
		m.embAddr, budget>>20)}
}

var _ core.Greeter = (*Module)(nil)
