package kafkatest

import (
	"os"
	"testing"
	"time"
)

// realFixtureTests gates the tests that start private real brokers: they run under
// make test (KAFKA_BOOTSTRAP set) or with SWITCHBOARD_KAFKA_FIXTURE_TESTS=1, not with -short.
func realFixtureTests(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts private Kafka brokers; skipped with -short")
	}
	if os.Getenv("KAFKA_BOOTSTRAP") == "" && os.Getenv("SWITCHBOARD_KAFKA_FIXTURE_TESTS") != "1" {
		t.Skip("starts private Kafka brokers: runs under make test or with SWITCHBOARD_KAFKA_FIXTURE_TESTS=1")
	}
}

// TestDedicatedStopStart proves a dedicated broker keeps its data and ports across
// Stop/Start.
func TestDedicatedStopStart(t *testing.T) {
	realFixtureTests(t)
	d := Dedicated(t)
	b := d.Broker()
	if !b.Real || b.Bootstrap == "" || b.SASLBootstrap == "" || b.Bootstrap == os.Getenv("KAFKA_BOOTSTRAP") {
		t.Fatalf("unexpected dedicated broker %+v", b)
	}
	topic := UniqueTopic(t, "dedicated")
	CreateTopic(t, b.Bootstrap, topic, 1, 1)
	produceOne(t, b.ConfigMap(), topic, "before", "outage")
	d.Stop()
	d.Start()
	KcatProduce(t, b, topic, []string{"after-restart"}, "after")
	msgs := KcatConsume(t, b, topic, 2, 60*time.Second)
	if string(msgs[0].Key) != "before" || string(msgs[1].Value) != "after-restart" {
		t.Errorf("after restart read %q=%q, %q=%q", msgs[0].Key, msgs[0].Value, msgs[1].Key, msgs[1].Value)
	}
	KcatConsumeSASL(t, b, topic, 2, 30*time.Second)
}

// TestClusterNodeBounce proves the 3-node cluster serves rf=3 topics while one node
// is down and takes the node back.
func TestClusterNodeBounce(t *testing.T) {
	realFixtureTests(t)
	c := Cluster(t)
	b := &Broker{Bootstrap: c.Bootstrap(), Real: true}
	topic := UniqueTopic(t, "cluster")
	CreateTopic(t, c.Bootstrap(), topic, 3, 3)
	produceOne(t, b.ConfigMap(), topic, "k", "all nodes up")
	c.StopNode(2)
	cfg := b.ConfigMap()
	_ = cfg.SetKey("acks", "all")
	produceOne(t, cfg, topic, "k", "node 2 down")
	c.StartNode(2)
	one := &Broker{Bootstrap: c.NodeBootstrap(2), Real: true}
	KcatConsume(t, one, topic, 2, 60*time.Second)
}
