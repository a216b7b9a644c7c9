package kafkatest

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// JavaProduce produces lines, each "key<TAB>value", to topic on b with
// Kafka's own console producer: the Java client from the kafka-tools jars of
// the broker's version (scripts/kafka.sh fetch-tools resolves them from
// Maven Central once, into the same cache as the broker's jars). It fails the
// test when Java or the jars are missing, or the producer fails.
func JavaProduce(t testing.TB, b *Broker, topic string, lines []string) {
	t.Helper()
	java, err := exec.LookPath("java")
	if err != nil {
		t.Fatal("kafkatest: java is not on PATH (the real broker needs it too)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := KafkaSh(ctx, nil, "fetch-tools")
	if err != nil {
		t.Fatalf("kafkatest: %v", err)
	}
	tools := LastLine(out)
	cmd := exec.CommandContext(ctx, java, "-cp", filepath.Join(tools, "*"),
		"org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", b.Bootstrap, "--topic", topic,
		"--property", "parse.key=true", "--property", "key.separator=\t",
		"--producer-property", "acks=all", "--producer-property", "linger.ms=0")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kafkatest: Kafka's console producer: %v\n%s", err, out)
	}
}
