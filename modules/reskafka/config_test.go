package reskafka

import (
	"strings"
	"testing"

	"github.com/switchboard-dp/switchboard/conf"
)

// parseConfig decodes kafka.conf text as the host does.
func parseConfig(name string, data []byte) (*Config, error) {
	f, err := conf.Parse(name, data)
	if err != nil {
		return nil, err
	}
	cfg := new(Config)
	if err := conf.DecodeFile(f, cfg); err != nil {
		return nil, err
	}
	return cfg, nil
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := parseConfig("kafka.conf", []byte("[general]\n[main]\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Connections["main"]
	if c.Brokers != "localhost:9092" || c.LingerMs != 5 || c.Acks != "-1" || c.QueueFullTimeoutMs != 100 ||
		c.AutoOffsetReset != "latest" || !c.EnableAutoCommit || c.EmbeddedPort != -1 || cfg.General.PollIntervalMs != 100 {
		t.Errorf("defaults: %+v %+v", c, cfg.General)
	}
}

func TestConfigEmbeddedAndTemplates(t *testing.T) {
	cfg, err := parseConfig("kafka.conf", []byte(`
[base](!)
brokers = embedded:19092
linger_ms = 20
[a](base)
[b](base)
linger_ms = 1
[c]
brokers = embedded
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Connections["a"].LingerMs != 20 || cfg.Connections["b"].LingerMs != 1 {
		t.Errorf("templates not applied")
	}
	if p, used := cfg.EmbeddedPort(); !used || p != 19092 || cfg.Connections["c"].EmbeddedPort != 19092 {
		t.Errorf("embedded port %d %v", p, used)
	}
}

func TestConfigErrorsHaveFileLine(t *testing.T) {
	cases := []struct{ text, want string }{
		{"[main]\nlinger_ms = 1000000\n", "kafka.conf:2"},
		{"[main]\nacks = 2\n", "kafka.conf:2"},
		{"[main]\ncompression_codec = brotli\n", "kafka.conf:2"},
		{"[main]\nbrokers = localhost:9092\nenable_idempotence = yes\nacks = 1\n", "kafka.conf:4: [main] acks: enable_idempotence"},
		{"[main]\nrdkafka.bootstrap.servers = x:1\n", "kafka.conf:2: [main] rdkafka.bootstrap.servers: rdkafka.bootstrap.servers is set by the option brokers"},
		{"[main]\nrdkafka.no.such.property = 1\n", "kafka.conf:2: [main] rdkafka.no.such.property: librdkafka refuses"},
		{"[main]\nsasl_username = u\n", "kafka.conf:2: [main] sasl_username: sasl_username/sasl_password need"},
		{"[main]\nsecurity_protocol = sasl_ssl\n", "kafka.conf:2: [main] security_protocol: security_protocol sasl_ssl needs sasl_username"},
		{"[a]\nbrokers = embedded:1000\n[b]\nbrokers = embedded:2000\n", "kafka.conf:4: [b] brokers: embedded broker port 2000 differs"},
		{"[main]\nbrokers = embedded:70000\n", "kafka.conf:2"},
		{"[main]\nreconnect_backoff_ms = 500\nreconnect_backoff_max_ms = 100\n", "kafka.conf:3"},
		{"[main]\nno_such_option = 1\n", "kafka.conf:2"},
		{"[general]\nenabled = maybe\n", "kafka.conf:2"},
		{"[main]\ncompression_codec = gzip\ncompression_level = 12\n", "kafka.conf:3"},
	}
	for _, tc := range cases {
		_, err := parseConfig("kafka.conf", []byte(tc.text))
		if err == nil {
			t.Errorf("%q: no error", tc.text)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %q does not contain %q", tc.text, err, tc.want)
		}
	}
}

func TestConfigSecretsMasked(t *testing.T) {
	cfg, err := parseConfig("kafka.conf", []byte("[main]\nsecurity_protocol = sasl_ssl\nsasl_mechanisms = SCRAM-SHA-512\nsasl_username = u\nsasl_password = hunter2-secret\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range cfg.Connections["main"].settings() {
		if strings.Contains(kv[1], "hunter2") {
			t.Errorf("%s shows the secret", kv[0])
		}
	}
	c := &conn{}
	c.secrets = cfg.Connections["main"].secrets()
	if got := c.mask("auth failed for hunter2-secret"); strings.Contains(got, "hunter2") {
		t.Errorf("mask: %s", got)
	}
}
