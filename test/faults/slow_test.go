//go:build faults

package faults

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestSlowConsumerHandler runs res_kafka's own slow-handler test
// (modules/reskafka TestSlowHandlerDelaysNothingElse: one subscription's
// handler blocks; 500 delivery reports of a producer and 500 messages of
// another subscription on the same connection must still arrive, and the
// slow subscription pauses at its bound) against the 3-node cluster, and
// reports its numbers here.
func TestSlowConsumerHandler(t *testing.T) {
	c := sharedCluster(t)
	cmd := exec.Command("go", "test", "-count=1", "-v", "-run", "^TestSlowHandlerDelaysNothingElse$", "./modules/reskafka/")
	cmd.Dir = repoRoot
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KAFKA_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "KAFKA_BOOTSTRAP="+c.bootstrap(), "KAFKA_VERSION="+c.env["KAFKA_VERSION"])
	out, err := cmd.CombinedOutput()
	m := regexp.MustCompile(`500 delivery reports in (\S+), other subscription consumed 500 in (\S+); slow queue (\d+)/(\d+), paused (\w+)`).FindStringSubmatch(string(out))
	if err != nil || m == nil {
		t.Fatalf("res_kafka slow-handler test: %v\n%s", err, out)
	}
	report(t, "slow-consumer-handler", 1000, 1000, 0, 0,
		"handler blocked; 500 delivery reports in "+m[1]+", other subscription's 500 msgs in "+m[2]+"; slow queue "+m[3]+"/"+m[4]+", paused "+m[5])
}
