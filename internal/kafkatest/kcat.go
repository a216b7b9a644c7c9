package kafkatest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// KcatMessage is one message read by kcat.
type KcatMessage struct {
	Partition int32
	Offset    int64
	// Key and Value are the raw bytes (binary safe); nil when the message had a
	// NULL key or value.
	Key, Value []byte
	// Headers are kcat's "name=value,..." rendering parsed back (not binary safe).
	Headers map[string]string
}

// kcat's output format: a text line with partition, offset, key length, value length
// and headers, then the raw key and value bytes (lengths -1 for NULL), then a newline.
const kcatFormat = "%p %o %K %S %h\n%k%s\n"

// kcatCmd prepares a kcat command for b, over SASL_SSL when sasl is set.
func kcatCmd(ctx context.Context, t testing.TB, b *Broker, sasl bool, args ...string) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kafkatest: kcat is not on PATH (Debian package kcat)")
		}
		t.Skip("kafkatest: kcat is not on PATH (apt-get install kcat)")
	}
	var all []string
	env := os.Environ()
	if sasl {
		if !b.HasSASL() {
			t.Skipf("kafkatest: %s has no SASL_SSL listener (the embedded broker has none; run make test)", b)
		}
		all = append(all, "-b", b.SASLBootstrap,
			"-X", "security.protocol=SASL_SSL",
			"-X", "sasl.mechanisms="+b.SASLMechanism,
			"-X", "sasl.username="+b.SASLUsername,
			"-X", "sasl.password="+b.SASLPassword,
			"-X", "ssl.ca.location="+b.CALocation)
		if b.KcatLibraryPath != "" {
			env = append(env, "LD_LIBRARY_PATH="+b.KcatLibraryPath+prefixColon(os.Getenv("LD_LIBRARY_PATH")))
		}
	} else {
		all = append(all, "-b", b.Bootstrap)
	}
	cmd := exec.CommandContext(ctx, path, append(all, args...)...)
	cmd.Env = env
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func prefixColon(s string) string {
	if s == "" {
		return ""
	}
	return ":" + s
}

// KcatConsume reads topic from the beginning with kcat over PLAINTEXT until it has at
// least want messages or timeout passes (then the test fails). It returns every
// message kcat read in its last pass.
func KcatConsume(t testing.TB, b *Broker, topic string, want int, timeout time.Duration) []KcatMessage {
	t.Helper()
	return kcatConsume(t, b, false, topic, want, timeout)
}

// KcatConsumeSASL is KcatConsume over the SASL_SSL listener with the test user.
func KcatConsumeSASL(t testing.TB, b *Broker, topic string, want int, timeout time.Duration) []KcatMessage {
	t.Helper()
	return kcatConsume(t, b, true, topic, want, timeout)
}

// KcatConsumeFirst is KcatConsume for a topic that is still being written: each
// kcat pass stops after want messages (kcat -c) instead of waiting for the end of
// every partition, which a producer writing as fast as kcat reads can keep it from
// reaching (such a pass would run until timeout). It returns the first want
// messages kcat read (fewer only if the topic ended first).
func KcatConsumeFirst(t testing.TB, b *Broker, topic string, want int, timeout time.Duration) []KcatMessage {
	t.Helper()
	return kcatConsume(t, b, false, topic, want, timeout, "-c", strconv.Itoa(want))
}

// kcatConsume runs kcat passes over topic until one reads at least want messages;
// extra are more kcat arguments.
func kcatConsume(t testing.TB, b *Broker, sasl bool, topic string, want int, timeout time.Duration, extra ...string) []KcatMessage {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var (
		msgs    []KcatMessage
		lastErr error
	)
	for {
		remaining := time.Until(deadline)
		if remaining <= 0 {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), remaining)
		args := append([]string{"-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", kcatFormat}, extra...)
		cmd := kcatCmd(ctx, t, b, sasl, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		cancel()
		if err == nil {
			msgs, err = parseKcat(out)
		}
		if err != nil {
			lastErr = fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
		} else if len(msgs) >= want {
			return msgs
		}
		select {
		case <-time.After(300 * time.Millisecond): // poll interval between kcat passes
		case <-time.After(time.Until(deadline)):
		}
	}
	t.Fatalf("kafkatest: kcat read %d messages from %q within %s, want %d (last error: %v)", len(msgs), topic, timeout, want, lastErr)
	return nil
}

// parseKcat parses output written with kcatFormat.
func parseKcat(out []byte) ([]KcatMessage, error) {
	r := bufio.NewReader(bytes.NewReader(out))
	var msgs []KcatMessage
	for {
		line, err := r.ReadString('\n')
		if err == io.EOF && line == "" {
			return msgs, nil
		}
		if err != nil {
			return msgs, fmt.Errorf("kcat output: truncated header line %q", line)
		}
		f := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 5)
		if len(f) < 4 {
			return msgs, fmt.Errorf("kcat output: malformed header line %q", line)
		}
		var m KcatMessage
		p, err1 := strconv.ParseInt(f[0], 10, 32)
		o, err2 := strconv.ParseInt(f[1], 10, 64)
		kl, err3 := strconv.Atoi(f[2])
		vl, err4 := strconv.Atoi(f[3])
		if err := errors.Join(err1, err2, err3, err4); err != nil {
			return msgs, fmt.Errorf("kcat output: header line %q: %w", line, err)
		}
		m.Partition, m.Offset = int32(p), o
		if len(f) == 5 && f[4] != "" {
			m.Headers = map[string]string{}
			for _, kv := range strings.Split(f[4], ",") {
				k, v, _ := strings.Cut(kv, "=")
				m.Headers[k] = v
			}
		}
		if m.Key, err = readN(r, kl); err != nil {
			return msgs, fmt.Errorf("kcat output: key of offset %d: %w", o, err)
		}
		if m.Value, err = readN(r, vl); err != nil {
			return msgs, fmt.Errorf("kcat output: value of offset %d: %w", o, err)
		}
		if nl, err := r.ReadByte(); err != nil || nl != '\n' {
			return msgs, fmt.Errorf("kcat output: missing record terminator after offset %d", o)
		}
		msgs = append(msgs, m)
	}
}

func readN(r io.Reader, n int) ([]byte, error) {
	if n < 0 {
		return nil, nil
	}
	b := make([]byte, n)
	_, err := io.ReadFull(r, b)
	return b, err
}

// KcatProduce produces each line as one message to topic with kcat over PLAINTEXT,
// all with key (no key when empty), and waits until kcat has delivered them.
func KcatProduce(t testing.TB, b *Broker, topic string, lines []string, key string) {
	t.Helper()
	kcatProduce(t, b, false, topic, lines, key)
}

// KcatProduceSASL is KcatProduce over the SASL_SSL listener with the test user.
func KcatProduceSASL(t testing.TB, b *Broker, topic string, lines []string, key string) {
	t.Helper()
	kcatProduce(t, b, true, topic, lines, key)
}

func kcatProduce(t testing.TB, b *Broker, sasl bool, topic string, lines []string, key string) {
	t.Helper()
	for _, l := range lines {
		if strings.ContainsAny(l, "\n") {
			t.Fatalf("kafkatest: KcatProduce line %q contains a newline", l)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := []string{"-P", "-t", topic, "-X", "message.timeout.ms=30000"}
	if key != "" {
		args = append(args, "-k", key)
	}
	cmd := kcatCmd(ctx, t, b, sasl, args...)
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kafkatest: kcat produce %d messages to %q: %v\n%s", len(lines), topic, err, out)
	}
	// kcat exits 0 even when some deliveries failed; it reports them on stderr.
	if bytes.Contains(out, []byte("ERROR")) || bytes.Contains(out, []byte("Delivery failed")) {
		t.Fatalf("kafkatest: kcat produce to %q reported errors:\n%s", topic, out)
	}
}
