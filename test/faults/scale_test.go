//go:build faults

package faults

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
)

// TestReloadUnderLoad: "core reload" with a changed cdr_kafka.conf and
// "module reload res_kafka" with a changed kafka.conf while CDRs flow:
// nothing lost.
func TestReloadUnderLoad(t *testing.T) {
	c := sharedCluster(t)
	topic := "faults-reload"
	createTopic(t, c.bootstrap(), topic, 3, 3, map[string]string{"min.insync.replicas": "2"})
	sb := newInstance(t, "reload", map[string]string{
		"modules.conf":   modulesConf("res_kafka", "cdr", "cdr_kafka"),
		"kafka.conf":     kafkaConf(c.bootstrap()),
		"cdr_kafka.conf": cdrKafkaConf(topic, "on_queue_full = spool"),
	})
	sb.startReady()
	const first, rate = 1, 1000
	l := startLoad(sb, first, rate)
	time.Sleep(3 * time.Second)

	// 1. core reload with new batching settings.
	sb.writeFiles(map[string]string{"cdr_kafka.conf": fmt.Sprintf(
		"[general]\nconnection = cdr\ntopic = %s\nkey = ip_text\nbatch_max = 100\nflush_ms = 20\non_queue_full = spool\n", topic)})
	sb.must("core reload")
	time.Sleep(3 * time.Second)
	if st := sb.must("cdr show status"); !regexp.MustCompile(`batch_max / flush_ms\s+100 / 20`).MatchString(st) {
		t.Errorf("core reload did not apply batch_max/flush_ms:\n%s", st)
	}
	// 2. module reload res_kafka with a changed connection.
	sb.writeFiles(map[string]string{"kafka.conf": kafkaConf(c.bootstrap(), "linger_ms = 20", "compression_codec = lz4")})
	sb.must("module reload res_kafka")
	time.Sleep(3 * time.Second)
	if conn := sb.must("kafka show connection cdr"); !strings.Contains(conn, "lz4") {
		t.Errorf("module reload res_kafka did not apply compression_codec:\n%s", conn)
	}
	// 3. both back, in one core reload.
	sb.writeFiles(map[string]string{"kafka.conf": kafkaConf(c.bootstrap()), "cdr_kafka.conf": cdrKafkaConf(topic, "on_queue_full = spool")})
	sb.must("core reload")
	time.Sleep(3 * time.Second)
	posted := l.finish()
	status := sb.waitDrained(2 * time.Minute)
	tl, _ := readBack(t, c.broker(), topic, first, posted, time.Minute)
	report(t, "reload-under-load", tl.sent, tl.received, tl.lost, tl.dup,
		"core reload (cdr_kafka batching) + module reload res_kafka (linger, lz4) + core reload back, at 1000/s")
	if tl.lost != 0 || tl.dup != 0 {
		t.Errorf("lost %d (e.g. %v) duplicated %d\n%s", tl.lost, tl.missing(first, posted), tl.dup, status)
	}
	if len(l.failures) > 0 {
		t.Errorf("cdr test post failed during the reloads: %v", l.failures)
	}
}

// TestScaleOutTwoInstances: two switchboard instances on one cluster. Each
// receives the whole policy (its own consumer group); both export CDRs into
// one topic keyed by subscriber IP: each subscriber's CDRs are in one
// partition, in order.
func TestScaleOutTwoInstances(t *testing.T) {
	c := sharedCluster(t)
	b := c.broker()
	ptopic, ctopic := "faults-scale-policy", "faults-scale-cdr"
	createTopic(t, c.bootstrap(), ptopic, 3, 3, map[string]string{"min.insync.replicas": "2"})
	createTopic(t, c.bootstrap(), ctopic, 6, 3, map[string]string{"min.insync.replicas": "2"})
	f := makeFeed()
	for _, g := range append([]string{"malicious"}, f.groups...) {
		kafkatest.KcatProduce(t, b, ptopic, f.msgs[g], g)
	}
	files := func() map[string]string {
		m := policyFiles(c.bootstrap(), ptopic)
		m["modules.conf"] = modulesConf("res_kafka", "cdr", "cdr_kafka", "res_policy", "policy_sync")
		m["cdr_kafka.conf"] = cdrKafkaConf(ctopic, "on_queue_full = spool")
		return m
	}
	inst := []*instance{newInstance(t, "scale-a", files()), newInstance(t, "scale-b", files())}
	var views []string
	var groups []string
	groupRE := regexp.MustCompile(`switchboard-policy-[^\s]+`)
	for _, s := range inst {
		s.startReady()
	}
	for _, s := range inst {
		waitSynced(s, f, 3*time.Minute)
		views = append(views, policyView(s, f))
		groups = append(groups, groupRE.FindString(s.must("policy show sync")))
	}
	if n, d := lineDiff(views[0], views[1], 20); n > 0 {
		t.Errorf("the two instances hold different policies (%d lines; - a, + b):\n%s", n, d)
	}
	if groups[0] == "" || groups[0] == groups[1] {
		t.Errorf("consumer groups %q: want two distinct groups", groups)
	}

	const n = 10000
	starts := []uint64{1, 1_000_001}
	var wg sync.WaitGroup
	for i, s := range inst {
		wg.Add(1)
		go func(s *instance, start uint64) {
			defer wg.Done()
			s.must(fmt.Sprintf("cdr test post %d rate 2000 start %d subscribers 64", n, start))
		}(s, starts[i])
	}
	wg.Wait()
	for _, s := range inst {
		s.waitDrained(2 * time.Minute)
	}
	var msgs []kafkatest.KcatMessage
	var tls []tally
	deadline := time.Now().Add(time.Minute)
	for {
		msgs = kafkatest.KcatConsume(t, b, ctopic, 0, 2*time.Minute)
		tls = []tally{account(msgs, starts[0], n), account(msgs, starts[1], n)}
		if tls[0].lost+tls[1].lost == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	// Per key: one partition; per key and instance: seq increases with offset.
	type kp struct {
		key  string
		inst int
	}
	parts := map[string]map[int32]bool{}
	last := map[kp]uint64{}
	sort.SliceStable(msgs, func(i, j int) bool {
		if msgs[i].Partition != msgs[j].Partition {
			return msgs[i].Partition < msgs[j].Partition
		}
		return msgs[i].Offset < msgs[j].Offset
	})
	disorder, usedParts := 0, map[int32]bool{}
	for _, m := range msgs {
		sm := seqRE.FindSubmatch(m.Value)
		if sm == nil {
			continue
		}
		seq, _ := strconv.ParseUint(string(sm[1]), 10, 64)
		k := string(m.Key)
		if parts[k] == nil {
			parts[k] = map[int32]bool{}
		}
		parts[k][m.Partition] = true
		usedParts[m.Partition] = true
		id := kp{k, 0}
		if seq >= starts[1] {
			id.inst = 1
		}
		if seq <= last[id] {
			disorder++
		}
		last[id] = seq
	}
	split := 0
	for _, ps := range parts {
		if len(ps) != 1 {
			split++
		}
	}
	sent, recv, lost, dup := 0, 0, 0, 0
	for _, tl := range tls {
		sent, recv, lost, dup = sent+tl.sent, recv+tl.received, lost+tl.lost, dup+tl.dup
	}
	report(t, "scale-out-2-instances", sent, recv, lost, dup,
		fmt.Sprintf("policy identical in both (groups %s, %s); %d keys over %d partitions, %d keys split, %d out of order",
			groups[0], groups[1], len(parts), len(usedParts), split, disorder))
	if lost != 0 || dup != 0 || split != 0 || disorder != 0 || len(parts) != 64 {
		t.Errorf("lost %d dup %d keys split %d out of order %d keys %d", lost, dup, split, disorder, len(parts))
	}
}
