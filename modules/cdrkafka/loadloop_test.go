package cdrkafka

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
)

// Loading and unloading the backend while CDRs are posted steadily, with
// batch_max = 1 so every record is handed over at once: a record never
// reaches the backend before its counters exist, and the counters always
// add up ("cdr show status" invariant ok after every round).
func TestLoadUnloadUnderLoad(t *testing.T) {
	b := kafkatest.Shared(t)
	r := startRig(t, kafkaConf(b.Bootstrap, ""), "[general]\nconnection = cdr\nbatch_max = 1\ntopic = "+kafkatest.UniqueTopic(t, "cdrloop")+"\n", "")
	defer r.stop()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				r.eng.PostSynthetic(ctx, 200, 20000, 0, 16)
			}
		}()
	}
	for i := 0; i < 50; i++ {
		if err := r.h.Unload(Name, false); err != nil {
			t.Fatalf("round %d: unload: %v", i, err)
		}
		if err := r.h.Load(Name); err != nil {
			t.Fatalf("round %d: load: %v", i, err)
		}
		time.Sleep(10 * time.Millisecond) // traffic through the loaded backend between rounds
		r.status()                        // fails the test unless the invariant holds
	}
	cancel()
	wg.Wait()
	r.waitStatus("every CDR accounted", 60*time.Second, func(s map[string]uint64) bool {
		return s["queued"] == 0
	})
}
