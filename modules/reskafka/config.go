package reskafka

import (
	"encoding/base64"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/switchboard-dp/switchboard/conf"
)

// Name is the module's name.
const Name = "res_kafka"

// ConfigFile is the name of the module's configuration file.
const ConfigFile = "kafka.conf"

// General is the [general] section of kafka.conf.
type General struct {
	// Enabled = no makes the module decline.
	Enabled bool `conf:"enabled" default:"yes"`
	// PollIntervalMs is the period of the poll goroutine when it has nothing
	// to do (it also wakes at once for every event).
	PollIntervalMs int `conf:"poll_interval_ms" default:"100" min:"1" max:"10000"`
	// ShutdownFlushTimeoutMs bounds the flush of every producer at unload.
	ShutdownFlushTimeoutMs int `conf:"shutdown_flush_timeout_ms" default:"5000" min:"0" max:"600000"`
	// EmbeddedRetentionMB is how many MB of records the embedded broker
	// keeps in all (the newest; older ones are dropped).
	EmbeddedRetentionMB int `conf:"embedded_retention_mb" default:"256" min:"1" max:"1048576"`
}

// Connection is one named connection of kafka.conf: every section other
// than [general]. Names and defaults follow Asterisk's res_kafka.
type Connection struct {
	Type                  string `conf:"type" default:"connection" enum:"connection"`
	Brokers               string `conf:"brokers" default:"localhost:9092"`
	ClientID              string `conf:"client_id" default:"switchboard"`
	RequestTimeoutMs      int    `conf:"request_timeout_ms" default:"5000" min:"1" max:"900000"`
	MessageTimeoutMs      int    `conf:"message_timeout_ms" default:"300000" min:"0" max:"2147483647"`
	SocketTimeoutMs       int    `conf:"socket_timeout_ms" default:"10000" min:"10" max:"300000"`
	ReconnectBackoffMs    int    `conf:"reconnect_backoff_ms" default:"100" min:"0" max:"3600000"`
	ReconnectBackoffMaxMs int    `conf:"reconnect_backoff_max_ms" default:"10000" min:"0" max:"3600000"`
	SecurityProtocol      string `conf:"security_protocol" default:"plaintext" enum:"plaintext|ssl|sasl_plaintext|sasl_ssl"`
	SASLMechanisms        string `conf:"sasl_mechanisms" default:"PLAIN" enum:"PLAIN|SCRAM-SHA-256|SCRAM-SHA-512|OAUTHBEARER"`
	SASLUsername          string `conf:"sasl_username"`
	SASLPassword          string `conf:"sasl_password"`
	// SASLOAuthBearerMethod says where OAUTHBEARER tokens come from: oidc
	// fetches them from an OAuth 2 token endpoint (client credentials
	// grant); default makes them itself, which needs
	// SASLOAuthBearerUnsecureJWT (tests and development only).
	SASLOAuthBearerMethod string `conf:"sasl_oauthbearer_method" default:"default" enum:"default|oidc"`
	// SASLOAuthBearerTokenEndpointURL, ClientID, ClientSecret, Scope and
	// Extensions are the oidc method's token request (librdkafka's
	// sasl.oauthbearer.* properties); the client secret is masked wherever
	// res_kafka prints or logs.
	SASLOAuthBearerTokenEndpointURL string `conf:"sasl_oauthbearer_token_endpoint_url"`
	SASLOAuthBearerClientID         string `conf:"sasl_oauthbearer_client_id"`
	SASLOAuthBearerClientSecret     string `conf:"sasl_oauthbearer_client_secret"`
	SASLOAuthBearerScope            string `conf:"sasl_oauthbearer_scope"`
	SASLOAuthBearerExtensions       string `conf:"sasl_oauthbearer_extensions"`
	// SASLOAuthBearerUnsecureJWT makes librdkafka sign its own tokens with
	// alg "none" (enable.sasl.oauthbearer.unsecure.jwt), as described by
	// SASLOAuthBearerConfig ("principal=NAME scope=A,B ..."): only a broker
	// that accepts unsecured tokens takes them. Not for production.
	SASLOAuthBearerUnsecureJWT bool   `conf:"sasl_oauthbearer_unsecure_jwt" default:"no"`
	SASLOAuthBearerConfig      string `conf:"sasl_oauthbearer_config"`
	SSLCALocation              string `conf:"ssl_ca_location"`
	SSLCertificateLocation     string `conf:"ssl_certificate_location"`
	SSLKeyLocation             string `conf:"ssl_key_location"`
	// SSLKeyPassword decrypts an encrypted ssl_key_location (masked).
	SSLKeyPassword            string `conf:"ssl_key_password"`
	MessageMaxBytes           int    `conf:"message_max_bytes" default:"1000000" min:"1000" max:"1000000000"`
	CompressionCodec          string `conf:"compression_codec" default:"none" enum:"none|gzip|snappy|lz4|zstd"`
	CompressionLevel          int    `conf:"compression_level" default:"-1" min:"-1" max:"12"`
	LingerMs                  int    `conf:"linger_ms" default:"5" min:"0" max:"900000"`
	BatchNumMessages          int    `conf:"batch_num_messages" default:"10000" min:"1" max:"1000000"`
	BatchSize                 int    `conf:"batch_size" default:"1000000" min:"1" max:"2147483647"`
	QueueBufferingMaxMessages int    `conf:"queue_buffering_max_messages" default:"100000" min:"1" max:"2147483647"`
	QueueBufferingMaxKbytes   int    `conf:"queue_buffering_max_kbytes" default:"1048576" min:"1" max:"2147483647"`
	QueueFullTimeoutMs        int    `conf:"queue_full_timeout_ms" default:"100" min:"0" max:"60000"`
	Acks                      string `conf:"acks" default:"-1" enum:"-1|0|1|all"`
	Retries                   int    `conf:"retries" default:"2147483647" min:"0" max:"2147483647"`
	EnableIdempotence         bool   `conf:"enable_idempotence" default:"no"`
	// Partitioner picks a keyed message's partition, with librdkafka's names.
	// murmur2_random (the default) hashes keys as the Java client does, so a
	// key lands in the same partition whichever client produced it; messages
	// without a key go to a random partition.
	Partitioner          string `conf:"partitioner" default:"murmur2_random" enum:"murmur2_random|murmur2|consistent_random|consistent|fnv1a_random|fnv1a|random"`
	GroupID              string `conf:"group_id"`
	AutoOffsetReset      string `conf:"auto_offset_reset" default:"latest" enum:"earliest|latest|none"`
	EnableAutoCommit     bool   `conf:"enable_auto_commit" default:"yes"`
	AutoCommitIntervalMs int    `conf:"auto_commit_interval_ms" default:"5000" min:"0" max:"86400000"`
	SessionTimeoutMs     int    `conf:"session_timeout_ms" default:"45000" min:"1" max:"3600000"`
	MaxPollIntervalMs    int    `conf:"max_poll_interval_ms" default:"300000" min:"1" max:"86400000"`
	StatisticsIntervalMs int    `conf:"statistics_interval_ms" default:"15000" min:"0" max:"86400000"`
	HandlerQueue         int    `conf:"handler_queue" default:"1024" min:"1" max:"1000000"`
	Debug                string `conf:"debug"`
	// Rdkafka holds rdkafka.<property> = value pass-through settings.
	Rdkafka map[string]string `conf:"rdkafka.*"`

	// Name is the section name (not decoded).
	Name string `conf:"-"`
	// EmbeddedPort is the port asked for by brokers = embedded:PORT, 0 for
	// any; -1 when the connection does not use the embedded broker.
	EmbeddedPort int `conf:"-"`
	// where records the file:line of every key, for later errors.
	where map[string]string
}

// Config is the decoded kafka.conf.
type Config struct {
	Path        string
	Missing     bool // no kafka.conf: defaults
	General     General
	Connections map[string]*Connection
	Order       []string // connection names in file order
}

// managedProps are librdkafka properties the named options set; the
// rdkafka.* pass-through must not override them silently.
var managedProps = map[string]string{
	"bootstrap.servers": "brokers", "metadata.broker.list": "brokers", "client.id": "client_id",
	"request.timeout.ms": "request_timeout_ms", "message.timeout.ms": "message_timeout_ms",
	"socket.timeout.ms": "socket_timeout_ms", "reconnect.backoff.ms": "reconnect_backoff_ms",
	"reconnect.backoff.max.ms": "reconnect_backoff_max_ms", "security.protocol": "security_protocol",
	"sasl.mechanisms": "sasl_mechanisms", "sasl.mechanism": "sasl_mechanisms",
	"sasl.username": "sasl_username", "sasl.password": "sasl_password",
	"ssl.ca.location": "ssl_ca_location", "ssl.certificate.location": "ssl_certificate_location",
	"ssl.key.location": "ssl_key_location", "message.max.bytes": "message_max_bytes",
	"compression.codec": "compression_codec", "compression.type": "compression_codec",
	"compression.level": "compression_level", "linger.ms": "linger_ms", "queue.buffering.max.ms": "linger_ms",
	"batch.num.messages": "batch_num_messages", "batch.size": "batch_size",
	"queue.buffering.max.messages": "queue_buffering_max_messages",
	"queue.buffering.max.kbytes":   "queue_buffering_max_kbytes", "acks": "acks",
	"request.required.acks": "acks", "retries": "retries", "message.send.max.retries": "retries",
	"enable.idempotence": "enable_idempotence", "partitioner": "partitioner", "group.id": "group_id",
	"auto.offset.reset": "auto_offset_reset", "enable.auto.commit": "enable_auto_commit",
	"auto.commit.interval.ms": "auto_commit_interval_ms", "session.timeout.ms": "session_timeout_ms",
	"max.poll.interval.ms": "max_poll_interval_ms", "statistics.interval.ms": "statistics_interval_ms",
	"debug": "debug", "enable.auto.offset.store": "", "log.queue": "", "log_cb": "",
	"partition.assignment.strategy": "",
	// Client certificate and OAUTHBEARER (with librdkafka's aliases).
	"ssl.key.password":                                  "ssl_key_password",
	"sasl.oauthbearer.method":                           "sasl_oauthbearer_method",
	"sasl.oauthbearer.token.endpoint.url":               "sasl_oauthbearer_token_endpoint_url",
	"sasl.oauthbearer.client.id":                        "sasl_oauthbearer_client_id",
	"sasl.oauthbearer.client.credentials.client.id":     "sasl_oauthbearer_client_id",
	"sasl.oauthbearer.client.secret":                    "sasl_oauthbearer_client_secret",
	"sasl.oauthbearer.client.credentials.client.secret": "sasl_oauthbearer_client_secret",
	"sasl.oauthbearer.scope":                            "sasl_oauthbearer_scope",
	"sasl.oauthbearer.extensions":                       "sasl_oauthbearer_extensions",
	"enable.sasl.oauthbearer.unsecure.jwt":              "sasl_oauthbearer_unsecure_jwt",
	"sasl.oauthbearer.config":                           "sasl_oauthbearer_config",
}

var embeddedRE = regexp.MustCompile(`^embedded(?::(\d+))?$`)

// UnmarshalConf implements conf.Unmarshaler: kafka.conf is [general] and
// one connection per other section. Without a file (f nil) the defaults
// apply, there is no connection and Missing is set.
func (cfg *Config) UnmarshalConf(f *conf.File) error {
	*cfg = Config{Connections: map[string]*Connection{}}
	if f == nil {
		cfg.Missing = true
		return conf.Decode(&conf.Section{Name: "general"}, &cfg.General)
	}
	cfg.Path = f.Path
	var errs conf.Errors
	var other []error
	add := func(err error) {
		var ce conf.Errors
		var one *conf.Error
		switch {
		case errors.As(err, &ce):
			errs = append(errs, ce...)
		case errors.As(err, &one):
			errs = append(errs, one)
		default:
			other = append(other, err)
		}
	}
	gen := f.Section("general")
	if gen == nil {
		gen = &conf.Section{Name: "general", File: f.Path}
	}
	if err := conf.Decode(gen, &cfg.General); err != nil {
		add(err)
	}
	embeddedBy := ""
	embeddedPort := 0
	for _, s := range f.Sections {
		if s.Name == "general" {
			continue
		}
		c := &Connection{Name: s.Name, EmbeddedPort: -1}
		if err := conf.Decode(s, c); err != nil {
			add(err)
			continue
		}
		c.where = map[string]string{}
		for _, k := range s.Keys {
			c.where[strings.ToLower(k.Name)] = fmt.Sprintf("%s:%d", k.File, k.Line)
		}
		validateConnection(s, c, &errs)
		if c.EmbeddedPort >= 0 {
			if c.EmbeddedPort > 0 && embeddedPort > 0 && c.EmbeddedPort != embeddedPort {
				errs.Add(s, s.Key("brokers"), "embedded broker port %d differs from port %d asked for by [%s]; every connection shares one embedded broker", c.EmbeddedPort, embeddedPort, embeddedBy)
			} else if c.EmbeddedPort > 0 {
				embeddedPort, embeddedBy = c.EmbeddedPort, c.Name
			}
		}
		cfg.Connections[c.Name] = c
		cfg.Order = append(cfg.Order, c.Name)
	}
	if len(other) > 0 {
		return errors.Join(append(other, errs.Err())...)
	}
	if len(errs) > 0 {
		return errs
	}
	// Every connection using the embedded broker uses the one fixed port.
	for _, c := range cfg.Connections {
		if c.EmbeddedPort == 0 && embeddedPort > 0 {
			c.EmbeddedPort = embeddedPort
		}
	}
	return nil
}

// EmbeddedPort returns the port the embedded broker must use (0 = any) and
// whether any connection uses it.
func (c *Config) EmbeddedPort() (port int, used bool) {
	for _, cn := range c.Connections {
		if cn.EmbeddedPort >= 0 {
			used = true
			if cn.EmbeddedPort > 0 {
				port = cn.EmbeddedPort
			}
		}
	}
	return port, used
}

func validateConnection(s *conf.Section, c *Connection, errs *conf.Errors) {
	key := func(name string) *conf.Key { return s.Key(name) }
	b := strings.TrimSpace(c.Brokers)
	if b == "" {
		errs.Add(s, key("brokers"), "brokers must not be empty")
	} else if m := embeddedRE.FindStringSubmatch(strings.ToLower(b)); m != nil {
		c.EmbeddedPort = 0
		if m[1] != "" {
			p, err := strconv.Atoi(m[1])
			if err != nil || p < 1 || p > 65535 {
				errs.Add(s, key("brokers"), "embedded port %q out of range 1..65535", m[1])
			} else {
				c.EmbeddedPort = p
			}
		}
	} else {
		for _, hp := range strings.Split(b, ",") {
			hp = strings.TrimSpace(hp)
			if hp == "" || strings.ContainsAny(hp, " \t") {
				errs.Add(s, key("brokers"), "invalid broker address %q (want host:port[,host:port...] or embedded[:PORT])", hp)
				break
			}
		}
	}
	if c.ClientID == "" {
		errs.Add(s, key("client_id"), "client_id must not be empty")
	}
	sasl := strings.HasPrefix(c.SecurityProtocol, "sasl_")
	oauth := c.SASLMechanisms == "OAUTHBEARER"
	if (c.SASLUsername != "" || c.SASLPassword != "") && !sasl {
		k := key("sasl_username")
		if k == nil {
			k = key("sasl_password")
		}
		errs.Add(s, k, "sasl_username/sasl_password need security_protocol sasl_plaintext or sasl_ssl (it is %s)", c.SecurityProtocol)
	}
	if sasl && !oauth && c.SASLUsername == "" {
		errs.Add(s, key("security_protocol"), "security_protocol %s needs sasl_username", c.SecurityProtocol)
	}
	validateOAuthBearer(s, c, errs)
	validateSSLClient(s, c, errs)
	if c.ReconnectBackoffMaxMs < c.ReconnectBackoffMs {
		errs.Add(s, key("reconnect_backoff_max_ms"), "reconnect_backoff_max_ms (%d) is less than reconnect_backoff_ms (%d)", c.ReconnectBackoffMaxMs, c.ReconnectBackoffMs)
	}
	switch c.CompressionCodec {
	case "gzip":
		if c.CompressionLevel > 9 {
			errs.Add(s, key("compression_level"), "compression_level %d out of range -1..9 for gzip", c.CompressionLevel)
		}
	case "snappy", "none":
		if c.CompressionLevel > 0 {
			errs.Add(s, key("compression_level"), "compression_level must be -1 or 0 for %s", c.CompressionCodec)
		}
	}
	if c.EnableIdempotence && c.Acks != "-1" && c.Acks != "all" {
		k := key("acks")
		if k == nil {
			k = key("enable_idempotence")
		}
		errs.Add(s, k, "enable_idempotence = yes needs acks = -1 (it is %s)", c.Acks)
	}
	if c.Acks == "all" {
		c.Acks = "-1"
	}
	// rdkafka.* pass-through: never a managed or Go-client property.
	keys := make([]string, 0, len(c.Rdkafka))
	for k := range c.Rdkafka {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		if opt, ok := managedProps[lk]; ok {
			msg := fmt.Sprintf("rdkafka.%s is managed by res_kafka", k)
			if opt != "" {
				msg = fmt.Sprintf("rdkafka.%s is set by the option %s; use that instead", k, opt)
			}
			errs.Add(s, key("rdkafka."+k), "%s", msg)
			continue
		}
		if strings.HasPrefix(lk, "go.") {
			errs.Add(s, key("rdkafka."+k), "rdkafka.%s: Go client properties are managed by res_kafka", k)
		}
	}
	if len(*errs) == 0 {
		checkWithLibrdkafka(s, c, errs)
	}
}

// checkWithLibrdkafka lets librdkafka itself validate the pass-through
// properties (names, values, combinations), by creating a producer handle
// without brokers and destroying it at once. Nothing connects anywhere.
func checkWithLibrdkafka(s *conf.Section, c *Connection, errs *conf.Errors) {
	if len(c.Rdkafka) == 0 && c.Debug == "" {
		return
	}
	// Logs of this throw-away handle go to a private channel, drained and
	// dropped, never to stderr.
	logs := make(chan kafka.LogEvent, 64)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-logs:
			case <-stop:
				return
			}
		}
	}()
	cm := c.producerConfig("", logs)
	delete(cm, "bootstrap.servers")
	if c.SASLMechanisms == "OAUTHBEARER" {
		// Checked without SASL: an OAUTHBEARER handle would fetch a token
		// from the oidc endpoint as soon as it exists. (validateOAuthBearer
		// checked those options; the sasl.* pass-through goes unchecked.)
		cm["security.protocol"] = "plaintext"
		if c.SecurityProtocol == "sasl_ssl" {
			cm["security.protocol"] = "ssl"
		}
		for k := range cm {
			if strings.HasPrefix(k, "sasl.") || strings.HasPrefix(k, "enable.sasl.") {
				delete(cm, k)
			}
		}
	}
	p, err := kafka.NewProducer(&cm)
	if err != nil {
		k := (*conf.Key)(nil)
		msg := err.Error()
		for name := range c.Rdkafka {
			if strings.Contains(msg, `"`+name+`"`) {
				k = s.Key("rdkafka." + name)
				break
			}
		}
		if k == nil && strings.Contains(msg, "debug") {
			k = s.Key("debug")
		}
		errs.Add(s, k, "librdkafka refuses the configuration: %s", msg)
		return
	}
	p.Close()
}

// baseConfig holds the librdkafka properties common to every client of the
// connection. bootstrap is the resolved broker list (the embedded broker's
// address for brokers = embedded).
func (c *Connection) baseConfig(bootstrap string, logs chan kafka.LogEvent) kafka.ConfigMap {
	cm := kafka.ConfigMap{
		"bootstrap.servers":        bootstrap,
		"client.id":                c.ClientID,
		"socket.timeout.ms":        c.SocketTimeoutMs,
		"reconnect.backoff.ms":     c.ReconnectBackoffMs,
		"reconnect.backoff.max.ms": c.ReconnectBackoffMaxMs,
		"security.protocol":        c.SecurityProtocol,
		"statistics.interval.ms":   c.StatisticsIntervalMs,
	}
	if strings.HasPrefix(c.SecurityProtocol, "sasl_") {
		cm["sasl.mechanisms"] = c.SASLMechanisms
		if c.SASLMechanisms == "OAUTHBEARER" {
			c.oauthBearerConfig(cm)
		} else {
			cm["sasl.username"] = c.SASLUsername
			cm["sasl.password"] = c.SASLPassword
		}
	}
	if c.SSLCALocation != "" {
		cm["ssl.ca.location"] = c.SSLCALocation
	}
	if c.SSLCertificateLocation != "" {
		cm["ssl.certificate.location"] = c.SSLCertificateLocation
	}
	if c.SSLKeyLocation != "" {
		cm["ssl.key.location"] = c.SSLKeyLocation
	}
	if c.SSLKeyPassword != "" {
		cm["ssl.key.password"] = c.SSLKeyPassword
	}
	if c.Debug != "" {
		cm["debug"] = c.Debug
	}
	if logs != nil {
		cm["go.logs.channel.enable"] = true
		cm["go.logs.channel"] = logs
	}
	for k, v := range c.Rdkafka {
		cm[k] = v
	}
	return cm
}

// producerConfig is the librdkafka configuration of the connection's
// producer.
func (c *Connection) producerConfig(bootstrap string, logs chan kafka.LogEvent) kafka.ConfigMap {
	cm := c.baseConfig(bootstrap, logs)
	cm["request.timeout.ms"] = c.RequestTimeoutMs
	cm["message.timeout.ms"] = c.MessageTimeoutMs
	cm["message.max.bytes"] = c.MessageMaxBytes
	cm["compression.codec"] = c.CompressionCodec
	cm["compression.level"] = c.CompressionLevel
	cm["linger.ms"] = c.LingerMs
	cm["batch.num.messages"] = c.BatchNumMessages
	cm["batch.size"] = c.BatchSize
	cm["queue.buffering.max.messages"] = c.QueueBufferingMaxMessages
	cm["queue.buffering.max.kbytes"] = c.QueueBufferingMaxKbytes
	cm["acks"] = c.Acks
	cm["retries"] = c.Retries
	cm["enable.idempotence"] = c.EnableIdempotence
	cm["partitioner"] = c.Partitioner
	// Delivery reports carry only what Delivery needs: no copy of the
	// payload back into Go for every message.
	cm["go.delivery.report.fields"] = "none"
	return cm
}

// consumerConfig is the librdkafka configuration of one subscription's
// consumer.
func (c *Connection) consumerConfig(bootstrap string, logs chan kafka.LogEvent, o SubscribeOptions) kafka.ConfigMap {
	cm := c.baseConfig(bootstrap, logs)
	group := c.GroupID
	if o.GroupID != "" {
		group = o.GroupID
	}
	reset := c.AutoOffsetReset
	if o.AutoOffsetReset != "" {
		reset = o.AutoOffsetReset
	}
	cm["group.id"] = group
	cm["auto.offset.reset"] = reset
	cm["enable.auto.commit"] = c.EnableAutoCommit && !o.ManualCommit
	cm["auto.commit.interval.ms"] = c.AutoCommitIntervalMs
	// Offsets are stored only once the handler has returned, so an
	// automatic commit never covers a message still waiting for its handler.
	cm["enable.auto.offset.store"] = false
	cm["session.timeout.ms"] = c.SessionTimeoutMs
	cm["max.poll.interval.ms"] = c.MaxPollIntervalMs
	switch o.Assignor {
	case "":
	case "range", "roundrobin", "cooperative-sticky":
		cm["partition.assignment.strategy"] = o.Assignor
	}
	return cm
}

// Where returns "file:line" of a key of the connection, or "" if the key is
// not in the file.
func (c *Connection) Where(key string) string { return c.where[strings.ToLower(key)] }

// equal reports whether two connections have the same effective settings.
func (c *Connection) equal(o *Connection) bool {
	a, b := *c, *o
	a.where, b.where = nil, nil
	if len(a.Rdkafka) == 0 {
		a.Rdkafka = nil
	}
	if len(b.Rdkafka) == 0 {
		b.Rdkafka = nil
	}
	return reflect.DeepEqual(a, b)
}

// needsGroup reports whether a subscription with o can run on c.
func (c *Connection) groupFor(o SubscribeOptions) string {
	if o.GroupID != "" {
		return o.GroupID
	}
	return c.GroupID
}

// settings returns every effective setting as label/value pairs for the CLI,
// with secrets masked.
func (c *Connection) settings() [][2]string {
	mask := func(s string) string {
		if s == "" {
			return "(not set)"
		}
		return "********"
	}
	orNone := func(s string) string {
		if s == "" {
			return "(not set)"
		}
		return s
	}
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	out := [][2]string{
		{"Brokers", c.Brokers},
		{"Client ID", c.ClientID},
		{"Request timeout (ms)", strconv.Itoa(c.RequestTimeoutMs)},
		{"Message timeout (ms)", strconv.Itoa(c.MessageTimeoutMs)},
		{"Socket timeout (ms)", strconv.Itoa(c.SocketTimeoutMs)},
		{"Reconnect backoff (ms)", strconv.Itoa(c.ReconnectBackoffMs)},
		{"Reconnect backoff max (ms)", strconv.Itoa(c.ReconnectBackoffMaxMs)},
		{"Security protocol", c.SecurityProtocol},
		{"SASL mechanisms", c.SASLMechanisms},
		{"SASL username", orNone(c.SASLUsername)},
		{"SASL password", mask(c.SASLPassword)},
	}
	if c.SASLMechanisms == "OAUTHBEARER" {
		out = append(out, [][2]string{
			{"OAUTHBEARER method", c.SASLOAuthBearerMethod},
			{"OAUTHBEARER token endpoint", orNone(c.SASLOAuthBearerTokenEndpointURL)},
			{"OAUTHBEARER client ID", orNone(c.SASLOAuthBearerClientID)},
			{"OAUTHBEARER client secret", mask(c.SASLOAuthBearerClientSecret)},
			{"OAUTHBEARER scope", orNone(c.SASLOAuthBearerScope)},
			{"OAUTHBEARER extensions", orNone(c.SASLOAuthBearerExtensions)},
			{"OAUTHBEARER unsecured JWT", yes(c.SASLOAuthBearerUnsecureJWT) + unsecuredNote(c.SASLOAuthBearerUnsecureJWT)},
			{"OAUTHBEARER config", orNone(c.SASLOAuthBearerConfig)},
		}...)
	}
	out = append(out, [][2]string{
		{"SSL CA location", orNone(c.SSLCALocation)},
		{"SSL certificate location", orNone(c.SSLCertificateLocation)},
		{"SSL key location", orNone(c.SSLKeyLocation)},
		{"SSL key password", mask(c.SSLKeyPassword)},
		{"Message max bytes", strconv.Itoa(c.MessageMaxBytes)},
		{"Compression codec", c.CompressionCodec},
		{"Compression level", strconv.Itoa(c.CompressionLevel)},
		{"Linger (ms)", strconv.Itoa(c.LingerMs)},
		{"Batch num messages", strconv.Itoa(c.BatchNumMessages)},
		{"Batch size", strconv.Itoa(c.BatchSize)},
		{"Queue buffering max messages", strconv.Itoa(c.QueueBufferingMaxMessages)},
		{"Queue buffering max kbytes", strconv.Itoa(c.QueueBufferingMaxKbytes)},
		{"Queue full timeout (ms)", strconv.Itoa(c.QueueFullTimeoutMs)},
		{"Acks", c.Acks},
		{"Retries", strconv.Itoa(c.Retries)},
		{"Enable idempotence", yes(c.EnableIdempotence)},
		{"Partitioner", c.Partitioner},
		{"Group ID", orNone(c.GroupID)},
		{"Auto offset reset", c.AutoOffsetReset},
		{"Enable auto commit", yes(c.EnableAutoCommit)},
		{"Auto commit interval (ms)", strconv.Itoa(c.AutoCommitIntervalMs)},
		{"Session timeout (ms)", strconv.Itoa(c.SessionTimeoutMs)},
		{"Max poll interval (ms)", strconv.Itoa(c.MaxPollIntervalMs)},
		{"Statistics interval (ms)", strconv.Itoa(c.StatisticsIntervalMs)},
		{"Handler queue", strconv.Itoa(c.HandlerQueue)},
		{"Debug", orNone(c.Debug)},
	}...)
	keys := make([]string, 0, len(c.Rdkafka))
	for k := range c.Rdkafka {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := c.Rdkafka[k]
		if isSecretProp(k) {
			v = "********"
		}
		out = append(out, [2]string{"rdkafka." + k, v})
	}
	return out
}

// isSecretProp reports whether a librdkafka property holds a secret.
func isSecretProp(k string) bool {
	k = strings.ToLower(k)
	return strings.Contains(k, "password") || strings.Contains(k, "passphrase") || strings.Contains(k, "secret") ||
		strings.Contains(k, "token") || strings.HasSuffix(k, ".pem") || strings.Contains(k, "key.pem")
}

// secrets returns the secret values of the connection, to be masked in any
// text the module prints or logs.
func (c *Connection) secrets() []string {
	var out []string
	for _, v := range []string{c.SASLPassword, c.SASLOAuthBearerClientSecret, c.SSLKeyPassword} {
		if v != "" {
			out = append(out, v)
		}
	}
	if c.SASLOAuthBearerClientSecret != "" {
		// The oidc token request carries the secret as HTTP Basic
		// credentials: base64 of "client_id:client_secret".
		out = append(out, base64.StdEncoding.EncodeToString([]byte(c.SASLOAuthBearerClientID+":"+c.SASLOAuthBearerClientSecret)))
	}
	for k, v := range c.Rdkafka {
		if isSecretProp(k) && v != "" {
			out = append(out, v)
		}
	}
	return out
}
