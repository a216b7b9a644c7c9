// Package kafkatest gives tests a Kafka broker to talk to.
//
// Shared returns the broker the test run uses: the real Apache Kafka broker started by
// `make test` (scripts/kafka.sh up; its address arrives in KAFKA_BOOTSTRAP and friends),
// or, when that is unset outside CI, an in-process embedded broker (kfake) started once
// per test binary. With CI=true and no KAFKA_BOOTSTRAP it fails loudly instead of
// silently falling back.
//
// Dedicated and Cluster start private real brokers (one node, or a 3-node KRaft
// cluster) for tests that stop and restart brokers. The Kcat helpers drive the
// independent C client kcat to check what the code under test produced and to feed
// what it consumes.
package kafkatest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/switchboard-dp/switchboard/modules/reskafka/embedded"
)

// Broker describes a Kafka broker reachable by tests.
type Broker struct {
	// Bootstrap is the PLAINTEXT bootstrap address (host:port).
	Bootstrap string
	// SASLBootstrap is the SASL_SSL bootstrap address (localhost:port); empty for the
	// embedded broker, which has no SASL_SSL listener.
	SASLBootstrap string
	// SASLUsername and SASLPassword are the SCRAM test user's credentials.
	SASLUsername, SASLPassword string
	// SASLMechanism is the SASL mechanism (SCRAM-SHA-512).
	SASLMechanism string
	// CALocation is the PEM file of the CA that signed the broker's certificate.
	CALocation string
	// Real is true for Apache Kafka, false for the embedded in-process broker.
	Real bool
	// Version is the Apache Kafka version, or "embedded (kfake)".
	Version string
	// KcatLibraryPath, when set, is prepended to LD_LIBRARY_PATH for kcat over SASL:
	// Debian's kcat links a librdkafka too old for SCRAM with Kafka 4.x (see
	// scripts/kafka.sh kcat-lib).
	KcatLibraryPath string

	// OAuthBootstrap is the SASL_PLAINTEXT listener taking OAUTHBEARER tokens with
	// Kafka's unsecured-JWT validator (127.0.0.1:port); empty for the embedded
	// broker. Every token must carry the scope OAuthScope; a session ends when its
	// token expires unless the client re-authenticates with a fresh one.
	OAuthBootstrap, OAuthScope string

	// MTLSBootstrap is the SSL listener requiring a client certificate signed by
	// the CA of CALocation (localhost:port); empty for the embedded broker.
	MTLSBootstrap string
	// ClientCert and ClientKey are a client certificate of that CA and its
	// (unencrypted) private key; ClientKeyEncrypted is the same key encrypted
	// with ClientKeyPassword.
	ClientCert, ClientKey, ClientKeyEncrypted, ClientKeyPassword string
	// ExpiredClientCert is a certificate of the same CA for ClientKey that
	// expired in 2020.
	ExpiredClientCert string
	// ForeignClientCert and ForeignClientKey are a client certificate of a CA the
	// broker does not trust, and its key.
	ForeignClientCert, ForeignClientKey string
}

// HasSASL reports whether the broker has a SASL_SSL listener.
func (b *Broker) HasSASL() bool { return b.SASLBootstrap != "" }

// HasOAuth reports whether the broker has the OAUTHBEARER listener.
func (b *Broker) HasOAuth() bool { return b.OAuthBootstrap != "" }

// HasMTLS reports whether the broker has the listener requiring client
// certificates.
func (b *Broker) HasMTLS() bool { return b.MTLSBootstrap != "" && b.ClientCert != "" }

// ConfigMap returns a librdkafka configuration for the PLAINTEXT listener.
func (b *Broker) ConfigMap() *kafka.ConfigMap {
	return &kafka.ConfigMap{"bootstrap.servers": b.Bootstrap}
}

// SASLConfigMap returns a librdkafka configuration for the SASL_SSL listener with the
// test user's credentials.
func (b *Broker) SASLConfigMap() *kafka.ConfigMap {
	return &kafka.ConfigMap{
		"bootstrap.servers": b.SASLBootstrap,
		"security.protocol": "SASL_SSL",
		"sasl.mechanisms":   b.SASLMechanism,
		"sasl.username":     b.SASLUsername,
		"sasl.password":     b.SASLPassword,
		"ssl.ca.location":   b.CALocation,
	}
}

func (b *Broker) String() string {
	kind := "embedded"
	if b.Real {
		kind = "Apache Kafka " + b.Version
	}
	s := fmt.Sprintf("%s at %s", kind, b.Bootstrap)
	if b.HasSASL() {
		s += fmt.Sprintf(" (SASL_SSL %s at %s)", b.SASLMechanism, b.SASLBootstrap)
	}
	if b.HasOAuth() {
		s += fmt.Sprintf(" (OAUTHBEARER at %s)", b.OAuthBootstrap)
	}
	if b.HasMTLS() {
		s += fmt.Sprintf(" (mTLS at %s)", b.MTLSBootstrap)
	}
	return s
}

// brokerFromEnv builds a Broker from KAFKA_* variables read through get.
func brokerFromEnv(get func(string) string) *Broker {
	return &Broker{
		Bootstrap:       get("KAFKA_BOOTSTRAP"),
		SASLBootstrap:   get("KAFKA_SASL_BOOTSTRAP"),
		SASLUsername:    get("KAFKA_SASL_USERNAME"),
		SASLPassword:    get("KAFKA_SASL_PASSWORD"),
		SASLMechanism:   get("KAFKA_SASL_MECHANISM"),
		CALocation:      get("KAFKA_CA_LOCATION"),
		Version:         get("KAFKA_VERSION"),
		KcatLibraryPath: get("KAFKA_KCAT_LIBRARY_PATH"),
		Real:            true,

		OAuthBootstrap:     get("KAFKA_OAUTH_BOOTSTRAP"),
		OAuthScope:         get("KAFKA_OAUTH_SCOPE"),
		MTLSBootstrap:      get("KAFKA_MTLS_BOOTSTRAP"),
		ClientCert:         get("KAFKA_CLIENT_CERT"),
		ClientKey:          get("KAFKA_CLIENT_KEY"),
		ClientKeyEncrypted: get("KAFKA_CLIENT_KEY_ENCRYPTED"),
		ClientKeyPassword:  get("KAFKA_CLIENT_KEY_PASSWORD"),
		ExpiredClientCert:  get("KAFKA_EXPIRED_CLIENT_CERT"),
		ForeignClientCert:  get("KAFKA_FOREIGN_CLIENT_CERT"),
		ForeignClientKey:   get("KAFKA_FOREIGN_CLIENT_KEY"),
	}
}

// BrokerFromEnv builds a Broker from an env file of scripts/kafka.sh up, as
// read by ReadEnvFile.
func BrokerFromEnv(env map[string]string) *Broker {
	return brokerFromEnv(func(k string) string { return env[k] })
}

var (
	embeddedOnce   sync.Once
	embeddedBroker *Broker
	embeddedErr    error
)

// Shared returns the broker this test run uses. With KAFKA_BOOTSTRAP set (make test)
// it is the real broker described by the KAFKA_* variables. Without it, CI=true fails
// the test; otherwise an embedded broker is started once per test binary and shared.
func Shared(t testing.TB) *Broker {
	t.Helper()
	if os.Getenv("KAFKA_BOOTSTRAP") != "" {
		b := brokerFromEnv(os.Getenv)
		t.Logf("kafkatest: using real broker: %s", b)
		return b
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("kafkatest: CI=true but KAFKA_BOOTSTRAP is unset: run via make test " +
			"(it starts the real Apache Kafka broker with scripts/kafka.sh up)")
	}
	embeddedOnce.Do(func() {
		eb, err := embedded.Start(0, 0)
		if err != nil {
			embeddedErr = fmt.Errorf("start embedded broker: %w", err)
			return
		}
		// Never closed: it lives as long as the test binary.
		embeddedBroker = &Broker{Bootstrap: eb.Addr(), Version: "embedded (kfake)"}
	})
	if embeddedErr != nil {
		t.Fatalf("kafkatest: KAFKA_BOOTSTRAP unset and %v", embeddedErr)
	}
	t.Logf("kafkatest: KAFKA_BOOTSTRAP unset: using the embedded in-process broker at %s (not Apache Kafka; run make test for the real one)", embeddedBroker.Bootstrap)
	return embeddedBroker
}

// RepoRoot returns the repository root: the first directory at or above the working
// directory holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("getwd: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found above the working directory")
		}
		dir = parent
	}
}

// ReadEnvFile parses a KEY=value file as written by scripts/kafka.sh.
func ReadEnvFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("env file %s: malformed line %q", path, line)
		}
		env[strings.TrimPrefix(k, "export ")] = v
	}
	return env, sc.Err()
}

// requireJava skips the test when Java is missing (failing it under CI=true).
func requireJava(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("java"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kafkatest: CI=true but java is not on PATH: a real broker cannot be started")
		}
		t.Skip("kafkatest: java not on PATH: cannot start a real Kafka broker")
	}
}

// KafkaSh runs scripts/kafka.sh with args and extra environment and returns
// its stdout. The variables that name an instance (ports, user, instance and
// cluster dirs) are never inherited, so a test's broker is its own.
func KafkaSh(ctx context.Context, extraEnv []string, args ...string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "bash", append([]string{filepath.Join(root, "scripts", "kafka.sh")}, args...)...)
	cmd.Dir = root
	// Ports, user and instance come from the caller only, never from a shared
	// instance's variables inherited from make test.
	env := []string{}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "KAFKA_PORT", "KAFKA_SASL_PORT", "KAFKA_CONTROLLER_PORT", "KAFKA_OAUTH_PORT",
			"KAFKA_MTLS_PORT", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_INSTANCE_DIR",
			"KAFKA_CLUSTER_DIR":
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("scripts/kafka.sh %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// LastLine returns the last non-empty line of s (kafka.sh prints the env
// file's path there).
func LastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// DedicatedBroker is a private single-node Apache Kafka broker (the listeners of Broker)
// started for one test, which may stop and restart it.
type DedicatedBroker struct {
	t      testing.TB
	dir    string
	broker *Broker
}

// Dedicated starts a private real broker with its own instance directory and free
// ports via scripts/kafka.sh up; it is stopped and removed when the test ends. Without
// Java it skips the test (fails it under CI=true).
func Dedicated(t testing.TB) *DedicatedBroker {
	t.Helper()
	requireJava(t)
	dir := filepath.Join(t.TempDir(), "kafka")
	d := &DedicatedBroker{t: t, dir: dir}
	extra := []string{"KAFKA_INSTANCE_DIR=" + dir, "KAFKA_HEAP=384m"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := KafkaSh(ctx, extra, "down"); err != nil {
			t.Errorf("kafkatest: stopping dedicated broker: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := KafkaSh(ctx, extra, "up")
	if err != nil {
		t.Fatalf("kafkatest: starting dedicated broker: %v", err)
	}
	env, err := ReadEnvFile(LastLine(out))
	if err != nil {
		t.Fatalf("kafkatest: dedicated broker: %v", err)
	}
	d.broker = brokerFromEnv(func(k string) string { return env[k] })
	t.Logf("kafkatest: dedicated broker ready in %s: %s", time.Since(start).Round(time.Millisecond), d.broker)
	return d
}

// Broker returns the dedicated broker's addresses and credentials.
func (d *DedicatedBroker) Broker() *Broker { return d.broker }

// Stop kills the broker (kill -9), keeping its data and ports, to simulate an outage.
func (d *DedicatedBroker) Stop() {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := KafkaSh(ctx, []string{"KAFKA_INSTANCE_DIR=" + d.dir, "KAFKA_HEAP=384m"}, "stop-broker"); err != nil {
		d.t.Fatalf("kafkatest: stop dedicated broker: %v", err)
	}
}

// Start restarts a stopped broker on the same data and ports and waits until it
// answers metadata requests.
func (d *DedicatedBroker) Start() {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := KafkaSh(ctx, []string{"KAFKA_INSTANCE_DIR=" + d.dir, "KAFKA_HEAP=384m"}, "start-broker"); err != nil {
		d.t.Fatalf("kafkatest: restart dedicated broker: %v", err)
	}
}

// ClusterHandle is a private 3-node Apache Kafka KRaft cluster (PLAINTEXT) started
// for one test.
type ClusterHandle struct {
	t         testing.TB
	dir       string
	bootstrap string
	env       map[string]string
}

// Cluster starts a private 3-node KRaft cluster on loopback via scripts/kafka.sh
// cluster-up; it is stopped and removed when the test ends. Without Java it skips the
// test (fails it under CI=true).
func Cluster(t testing.TB) *ClusterHandle {
	t.Helper()
	requireJava(t)
	dir := filepath.Join(t.TempDir(), "cluster")
	extra := []string{"KAFKA_CLUSTER_DIR=" + dir}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if _, err := KafkaSh(ctx, extra, "cluster-down"); err != nil {
			t.Errorf("kafkatest: stopping cluster: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := KafkaSh(ctx, extra, "cluster-up")
	if err != nil {
		t.Fatalf("kafkatest: starting cluster: %v", err)
	}
	env, err := ReadEnvFile(LastLine(out))
	if err != nil {
		t.Fatalf("kafkatest: cluster: %v", err)
	}
	c := &ClusterHandle{t: t, dir: dir, bootstrap: env["KAFKA_CLUSTER_BOOTSTRAP"], env: env}
	t.Logf("kafkatest: 3-node Apache Kafka %s cluster ready in %s at %s", env["KAFKA_VERSION"], time.Since(start).Round(time.Millisecond), c.bootstrap)
	return c
}

// Bootstrap returns the comma-separated bootstrap list of all three nodes.
func (c *ClusterHandle) Bootstrap() string { return c.bootstrap }

// NodeBootstrap returns node n's (1..3) own PLAINTEXT address.
func (c *ClusterHandle) NodeBootstrap(n int) string {
	return c.env[fmt.Sprintf("KAFKA_NODE%d_BOOTSTRAP", n)]
}

// StopNode kills node n (1..3) with kill -9.
func (c *ClusterHandle) StopNode(n int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := KafkaSh(ctx, []string{"KAFKA_CLUSTER_DIR=" + c.dir}, "node-stop", fmt.Sprint(n)); err != nil {
		c.t.Fatalf("kafkatest: stop node %d: %v", n, err)
	}
}

// StartNode restarts node n (1..3) and waits until the cluster lists it again.
func (c *ClusterHandle) StartNode(n int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := KafkaSh(ctx, []string{"KAFKA_CLUSTER_DIR=" + c.dir}, "node-start", fmt.Sprint(n)); err != nil {
		c.t.Fatalf("kafkatest: start node %d: %v", n, err)
	}
}

// CreateTopic creates topic with the given partitions and replication factor through
// the AdminClient (an existing topic is accepted) and waits until every partition has
// a leader.
func CreateTopic(t testing.TB, bootstrap string, topic string, partitions, rf int) {
	t.Helper()
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatalf("kafkatest: admin client for %s: %v", bootstrap, err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		res, err := a.CreateTopics(ctx, []kafka.TopicSpecification{{
			Topic: topic, NumPartitions: partitions, ReplicationFactor: rf,
		}}, kafka.SetAdminOperationTimeout(30*time.Second))
		if err == nil && len(res) == 1 {
			code := res[0].Error.Code()
			if code == kafka.ErrNoError || code == kafka.ErrTopicAlreadyExists {
				break
			}
			err = res[0].Error
		}
		if ctx.Err() != nil {
			t.Fatalf("kafkatest: create topic %q (%d partitions, rf %d) on %s: %v", topic, partitions, rf, bootstrap, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond): // retry interval while the cluster settles
		}
	}
	for {
		md, err := a.GetMetadata(&topic, false, 5000)
		if err == nil {
			if tm, ok := md.Topics[topic]; ok && tm.Error.Code() == kafka.ErrNoError && len(tm.Partitions) == partitions {
				ready := true
				for _, p := range tm.Partitions {
					if p.Leader < 0 || p.Error.Code() != kafka.ErrNoError {
						ready = false
					}
				}
				if ready {
					return
				}
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("kafkatest: topic %q not ready on %s within 60s (last error: %v)", topic, bootstrap, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var topicSeq atomic.Int64

var unsafeTopicChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// UniqueTopic returns a topic name unique to this test run: prefix, test name, a
// sequence number and a timestamp, restricted to Kafka's legal characters.
func UniqueTopic(t testing.TB, prefix string) string {
	t.Helper()
	name := unsafeTopicChars.ReplaceAllString(prefix+"-"+t.Name(), "_")
	if len(name) > 180 {
		name = name[:180]
	}
	return fmt.Sprintf("%s-%d-%d", name, topicSeq.Add(1), time.Now().UnixNano())
}
