package reskafka

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

func TestGroupRebalanceExactlyOnceRange(t *testing.T) { testGroupRebalance(t, "range", "EAGER") }

func TestGroupRebalanceExactlyOnceCooperative(t *testing.T) {
	testGroupRebalance(t, "cooperative-sticky", "COOPERATIVE")
}

// testGroupRebalance: member A consumes alone, member B joins in the middle
// of a steady produce (a rebalance), then A leaves (another one); every
// message must be handled exactly once in total.
func testGroupRebalance(t *testing.T, assignor, protocol string) {
	b := testBroker(t)
	th := startHost(t, fmt.Sprintf(`
[main]
brokers = %s
group_id = grp-%s-%d
auto_offset_reset = earliest
auto_commit_interval_ms = 200
session_timeout_ms = 6000
linger_ms = 1
handler_queue = 16
`, b.Bootstrap, assignor, time.Now().UnixNano()))
	topic := uniqueTopic(t)
	if err := th.m.EnsureTopic(context.Background(), "main", topic, 4, 1); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[int]int{}
	perMember := map[string]int{}
	handler := func(member string) Handler {
		return func(_ context.Context, msg *Message) error {
			seq, err := strconv.Atoi(string(msg.Value))
			if err != nil {
				return err
			}
			time.Sleep(100 * time.Microsecond) // a handler with some work to do
			mu.Lock()
			seen[seq]++
			perMember[member]++
			mu.Unlock()
			return nil
		}
	}
	opts := SubscribeOptions{Assignor: assignor}
	a, err := th.m.Subscribe("main", []string{topic}, handler("a"), opts)
	if err != nil {
		t.Fatal(err)
	}
	p, err := th.m.Producer("main")
	if err != nil {
		t.Fatal(err)
	}
	const n = 6000
	produce := func(from, to int) {
		for i := from; i < to; i++ {
			if err := p.Produce(topic, []byte(strconv.Itoa(i%97)), []byte(strconv.Itoa(i)), nil, nil); err != nil {
				t.Error(err)
				return
			}
			if i%200 == 0 {
				time.Sleep(10 * time.Millisecond) // steady rate, not a burst
			}
		}
	}
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}
	produce(0, n/3)
	testwait.Until(t, 60*time.Second, "member a consuming", func() bool { return count() > 100 })
	bsub, err := th.m.Subscribe("main", []string{topic}, handler("b"), opts)
	if err != nil {
		t.Fatal(err)
	}
	produce(n/3, 2*n/3)
	testwait.Until(t, 60*time.Second, "member b assigned", func() bool { return len(bsub.Status().Partitions) > 0 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	produce(2*n/3, n)
	if left := p.Flush(30 * time.Second); left != 0 {
		t.Fatalf("%d undelivered", left)
	}
	testwait.Until(t, 90*time.Second, "every message handled", func() bool { return count() == n })
	// Give late duplicates a chance to show up before judging.
	testwait.Until(t, 30*time.Second, "b owns all partitions", func() bool { return len(bsub.Status().Partitions) == 4 })
	st := bsub.Status()
	if st.Protocol != protocol {
		t.Errorf("protocol %q, want %q", st.Protocol, protocol)
	}
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for seq, c := range seen {
		if c != 1 {
			dups++
			if dups < 10 {
				t.Errorf("message %d handled %d times", seq, c)
			}
		}
	}
	t.Logf("%s: handled by a %d, by b %d, duplicates %d, b discarded on revocation %d, rebalances a %d b %d",
		assignor, perMember["a"], perMember["b"], dups, st.Discarded, a.rebalances.Load(), st.Rebalances)
	if perMember["a"] == 0 || perMember["b"] == 0 {
		t.Errorf("both members should have handled messages: %v", perMember)
	}
}
