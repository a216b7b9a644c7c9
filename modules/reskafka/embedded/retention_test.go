package embedded

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// rss returns the process's resident memory in bytes.
func rss(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		t.Fatal(err)
	}
	pages, err := strconv.ParseInt(strings.Fields(string(data))[1], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return pages * int64(os.Getpagesize())
}

func settled(t *testing.T) int64 {
	runtime.GC()
	runtime.GC()
	debug.FreeOSMemory()
	return rss(t)
}

// TestRetentionBoundsMemory: 3,000,000 CDR-sized records (about 1 GB,
// uncompressed) through the embedded broker with a 32 MB budget leave
// resident memory within the budget plus a fixed allowance, the broker says
// what it dropped, and kcat still reads the newest records. (With -race,
// whose shadow memory swamps the figure, 300,000 records and no memory
// bound.)
func TestRetentionBoundsMemory(t *testing.T) {
	if _, err := exec.LookPath("kcat"); err != nil {
		t.Fatal("kcat is not installed (apt-get install kcat)")
	}
	const budget = 32 << 20
	const allowance = 128 << 20
	n := 3000000
	if raceOn {
		n = 300000
	}
	b, err := Start(0, budget)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	before := settled(t)
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic("dp_cdr"),
		kgo.AllowAutoTopicCreation(), kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchCompression(kgo.NoCompression()))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < n; i++ {
		// About 330 bytes, as a CDR with its id and category.
		v := fmt.Sprintf(`{"ts":%d,"ip":"10.0.%d.%d","subscriber_id":"subscriber-%d","domain":"%x.example","qtype":1,"action":"block","group":3,"category":"0x%08x","id":"%016x-%d","pad":"%0200d","seq":%d}`,
			1717430400000+i, i>>8&255, i&255, i, i*2654435761, i, uint64(i)*0x9e3779b97f4a7c15, i, i, i)
		cl.Produce(ctx, &kgo.Record{Key: []byte(strconv.Itoa(i & 1023)), Value: []byte(v)}, func(_ *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce: %v", err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	// The trimmer runs behind the producer: one more eighth of the budget
	// wakes it (as traffic would); then the figures settle.
	budgetNow, kept, trimmed := b.Retention()
	after := settled(t)
	t.Logf("resident memory %d MB before, %d MB after %d records; budget %d MB, kept %.1f MB, %d records dropped",
		before>>20, after>>20, n, budgetNow>>20, float64(kept)/(1<<20), trimmed)
	if trimmed < int64(n)/2 {
		t.Errorf("only %d records dropped", trimmed)
	}
	if kept > budget+budget/4 {
		t.Errorf("%d bytes kept, budget %d", kept, budget)
	}
	if raceOn {
		t.Log("built with -race: resident memory not checked (make test-go runs this test without -race too)")
	} else if after-before > budget+allowance {
		t.Errorf("resident memory grew by %d MB: more than the %d MB budget plus %d MB", (after-before)>>20, budget>>20, allowance>>20)
	}
	// kcat reads the newest record of the topic's last-written partition.
	out, err := exec.Command("kcat", "-C", "-b", b.Addr(), "-t", "dp_cdr", "-o", "-1", "-e", "-q", "-f", "%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	if !strings.Contains(string(out), fmt.Sprintf(`"seq":%d}`, n-1)) {
		t.Errorf("kcat did not read the newest record (seq %d):\n%s", n-1, out)
	}
}
