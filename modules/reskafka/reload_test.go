package reskafka

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// TestReloadUnderLoadLosesNothing produces a steady few thousand messages a
// second while kafka.conf changes twice (the producer is rebuilt each time)
// and a connection is added and removed; kcat must read every sequence
// number exactly once.
func TestReloadUnderLoadLosesNothing(t *testing.T) {
	b := testBroker(t)
	confText := func(linger int, extra string) string {
		return fmt.Sprintf("[main]\nbrokers = %s\nlinger_ms = %d\n%s", b.Bootstrap, linger, extra)
	}
	th := startHost(t, confText(5, ""))
	topic := uniqueTopic(t)
	if err := th.m.EnsureTopic(context.Background(), "main", topic, 3, 1); err != nil {
		t.Fatal(err)
	}
	p, err := th.m.Producer("main")
	if err != nil {
		t.Fatal(err)
	}
	var sent, failed atomic.Int64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		seq := 0
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for i := 0; i < 4; i++ { // ~4000 messages/s
				err := p.Produce(topic, nil, []byte(strconv.Itoa(seq)), nil, func(d Delivery) {
					if d.Err != nil {
						failed.Add(1)
					}
				})
				if err != nil {
					t.Errorf("produce %d: %v", seq, err)
					return
				}
				seq++
				sent.Add(1)
			}
		}
	}()
	waitSent := func(n int64) {
		testwait.Until(t, 30*time.Second, fmt.Sprintf("%d sent", n), func() bool { return sent.Load() >= n })
	}
	waitSent(2000)
	th.writeConf(confText(20, "[other]\nbrokers = "+b.Bootstrap+"\n"))
	if err := th.h.Reload("res_kafka"); err != nil {
		t.Fatal(err)
	}
	waitSent(sent.Load() + 2000)
	th.writeConf(confText(1, "compression_codec = lz4\n"))
	if err := th.h.Reload("res_kafka"); err != nil {
		t.Fatal(err)
	}
	// An invalid file keeps the running configuration.
	th.writeConf(confText(1, "linger_ms = -5\n"))
	if err := th.h.Reload("res_kafka"); err == nil {
		t.Error("invalid kafka.conf accepted on reload")
	}
	waitSent(sent.Load() + 2000)
	close(stop)
	<-done
	if left := p.Flush(30 * time.Second); left != 0 {
		t.Fatalf("%d undelivered", left)
	}
	if _, err := th.m.conn("other"); err == nil {
		t.Error("removed connection still configured")
	}
	st, _ := th.m.Status("main")
	if st.Rebuilds != 2 {
		t.Errorf("rebuilds %d, want 2", st.Rebuilds)
	}
	n := sent.Load()
	vals := kafkatest.KcatConsume(t, b, topic, int(n), 60*time.Second)
	seen := make([]int, n)
	for _, m := range vals {
		v := string(m.Value)
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 || int64(i) >= n {
			t.Fatalf("bad value %q", v)
		}
		seen[i]++
	}
	lost, dup := 0, 0
	for _, c := range seen {
		if c == 0 {
			lost++
		} else if c > 1 {
			dup++
		}
	}
	t.Logf("sent %d, kcat read %d, lost %d, duplicated %d, delivery failures %d", n, len(vals), lost, dup, failed.Load())
	if lost != 0 || dup != 0 || failed.Load() != 0 {
		t.Errorf("lost %d, duplicated %d, failed %d", lost, dup, failed.Load())
	}
}
