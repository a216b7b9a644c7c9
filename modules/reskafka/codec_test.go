package reskafka

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// TestCompressionCodecsAndIdempotence produces through one connection per
// codec (and one idempotent) and reads everything back.
func TestCompressionCodecsAndIdempotence(t *testing.T) {
	b := testBroker(t)
	codecs := []string{"none", "gzip", "snappy", "lz4", "zstd"}
	var conf strings.Builder
	group := fmt.Sprintf("codec-%d", time.Now().UnixNano())
	for _, c := range codecs {
		fmt.Fprintf(&conf, "[%s]\nbrokers = %s\ncompression_codec = %s\nlinger_ms = 2\ngroup_id = %s\nauto_offset_reset = earliest\n", c, b.Bootstrap, c, group)
	}
	fmt.Fprintf(&conf, "[idem]\nbrokers = %s\nenable_idempotence = yes\nacks = -1\nlinger_ms = 2\n", b.Bootstrap)
	th := startHost(t, conf.String())
	topic := uniqueTopic(t)
	if err := th.m.EnsureTopic(context.Background(), "none", topic, 2, 1); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := map[string]int{}
	sub, err := th.m.Subscribe("none", []string{topic}, func(_ context.Context, m *Message) error {
		mu.Lock()
		got[string(m.Value)]++
		mu.Unlock()
		return nil
	}, SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const per = 300
	payload := strings.Repeat("compressible payload ", 20)
	for _, c := range append(codecs, "idem") {
		p, err := th.m.Producer(c)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < per; i++ {
			if err := p.Produce(topic, []byte(c), []byte(fmt.Sprintf("%s-%d-%s", c, i, payload)), nil, nil); err != nil {
				t.Fatal(err)
			}
		}
		if left := p.Flush(20 * time.Second); left != 0 {
			t.Fatalf("%s: %d undelivered", c, left)
		}
		st, _ := th.m.Status(c)
		if st.Delivered != per || st.Failed != 0 {
			t.Errorf("%s: %+v", c, st)
		}
	}
	total := per * (len(codecs) + 1)
	testwait.Until(t, 60*time.Second, "all codecs consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == total
	})
	mu.Lock()
	defer mu.Unlock()
	for v, n := range got {
		if n != 1 {
			t.Errorf("%.20s seen %d times", v, n)
		}
	}
}
