//go:build faults

package faults

import (
	"fmt"
	"testing"
	"time"
)

// TestBrokerBounce: a 3-node cluster, the CDR topic with replication factor
// 3 and min.insync.replicas 2, acks=all + idempotence; while switchboard
// exports CDRs at a steady rate, the leader of partition 0 is killed
// (kill -9) and restarted, 5 times. Every CDR is read back exactly once.
func TestBrokerBounce(t *testing.T) {
	c := sharedCluster(t)
	topic := "faults-bounce"
	createTopic(t, c.bootstrap(), topic, 3, 3, map[string]string{"min.insync.replicas": "2"})
	sb := newInstance(t, "bounce", map[string]string{
		"modules.conf":   modulesConf("res_kafka", "cdr", "cdr_kafka"),
		"kafka.conf":     kafkaConf(c.bootstrap()),
		"cdr_kafka.conf": cdrKafkaConf(topic, "on_queue_full = spool"),
	})
	sb.startReady()
	const first, rate, bounces = 1, 300, 5
	l := startLoad(sb, first, rate)
	time.Sleep(3 * time.Second) // steady export before the first bounce
	var killed []int
	for i := 0; i < bounces; i++ {
		leader := leaderOf(t, c.bootstrap(), topic, 0)
		killed = append(killed, leader)
		c.stopNode(t, leader)
		time.Sleep(3 * time.Second) // the leader stays dead while CDRs keep coming
		c.startNode(t, leader)
		time.Sleep(2 * time.Second) // let the restarted node catch up before the next kill
	}
	posted := l.finish()
	status := sb.waitDrained(3 * time.Minute)
	tl, _ := readBack(t, c.broker(), topic, first, posted, 2*time.Minute)
	report(t, "broker-bounce-x5", tl.sent, tl.received, tl.lost, tl.dup,
		fmt.Sprintf("3 nodes rf3 minISR2 acks=all idempotent; killed leaders %v", killed))
	if tl.lost != 0 || tl.dup != 0 {
		t.Errorf("lost %d (e.g. %v), duplicated %d\n%s", tl.lost, tl.missing(first, posted), tl.dup, status)
	}
	if len(l.failures) > 0 {
		t.Errorf("cdr test post failed during the bounces: %v", l.failures)
	}
}
