package reskafka

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/internal/metrics"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

func readStatsDoc(t testing.TB, file string) []byte {
	t.Helper()
	doc, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return doc
}

// refDoc is a statistics document decoded by encoding/json, the reference
// the scanner is checked against.
type refDoc struct {
	Name    string `json:"name"`
	Type    string `json:"type"`
	Brokers map[string]struct {
		Name        string `json:"name"`
		NodeID      int32  `json:"nodeid"`
		State       string `json:"state"`
		OutbufCnt   int64  `json:"outbuf_cnt"`
		WaitrespCnt int64  `json:"waitresp_cnt"`
		TxErrs      int64  `json:"txerrs"`
		RxErrs      int64  `json:"rxerrs"`
		RTT         struct {
			Avg int64 `json:"avg"`
			P50 int64 `json:"p50"`
			P99 int64 `json:"p99"`
			Cnt int64 `json:"cnt"`
		} `json:"rtt"`
	} `json:"brokers"`
	Topics map[string]struct {
		Partitions map[string]struct {
			Partition   int32  `json:"partition"`
			Leader      int32  `json:"leader"`
			MsgqCnt     int64  `json:"msgq_cnt"`
			XmitMsgqCnt int64  `json:"xmit_msgq_cnt"`
			ConsumerLag int64  `json:"consumer_lag"`
			TxMsgs      int64  `json:"txmsgs"`
			FetchState  string `json:"fetch_state"`
		} `json:"partitions"`
	} `json:"topics"`
}

// refSnapshot is what parse must find in doc, by encoding/json.
func refSnapshot(t testing.TB, doc []byte) statsSnapshot {
	t.Helper()
	var d refDoc
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	sn := statsSnapshot{Client: d.Name, Type: d.Type}
	for _, b := range d.Brokers {
		if b.NodeID < 0 {
			continue
		}
		sn.Brokers = append(sn.Brokers, brokerStats{Name: b.Name, NodeID: b.NodeID, State: b.State, OutbufCnt: b.OutbufCnt,
			WaitrespCnt: b.WaitrespCnt, TxErrs: b.TxErrs, RxErrs: b.RxErrs, RTT: statsWindow(b.RTT)})
	}
	for topic, td := range d.Topics {
		for _, p := range td.Partitions {
			ps := partStats{Topic: topic, Partition: p.Partition, Leader: p.Leader, MsgqCnt: p.MsgqCnt, XmitMsgqCnt: p.XmitMsgqCnt,
				ConsumerLag: p.ConsumerLag, TxMsgs: p.TxMsgs, Fetching: p.FetchState != "none"}
			if ps.active() {
				sn.Parts = append(sn.Parts, ps)
			}
		}
	}
	sortSnapshot(&sn)
	return sn
}

func sortSnapshot(sn *statsSnapshot) {
	slices.SortFunc(sn.Brokers, func(a, b brokerStats) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(sn.Parts, func(a, b partStats) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
}

func parseDoc(t testing.TB, cs *clientStats, doc []byte) statsSnapshot {
	t.Helper()
	if ok, _ := cs.update(doc, time.Now()); !ok {
		t.Fatalf("document not understood")
	}
	sn, _ := cs.snapshot()
	sn.At = time.Time{}
	sortSnapshot(&sn)
	return sn
}

// The scanner reads the real documents of a 3-broker cluster (testdata)
// exactly as encoding/json does: the bootstrap and logical brokers and the
// internal partitions -1 are left out, every broker and every active
// partition is there with its figures.
func TestStatsParseRealDocuments(t *testing.T) {
	for _, tc := range []struct {
		file, typ string
		parts     int
	}{
		{statsProducerFile, "producer", 12},
		{statsConsumerFile, "consumer", 12},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			doc := readStatsDoc(t, tc.file)
			var cs clientStats
			got := parseDoc(t, &cs, doc)
			want := refSnapshot(t, doc)
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("parsed\n%+v\nwant\n%+v", got, want)
			}
			if got.Type != tc.typ || len(got.Brokers) != 3 || len(got.Parts) != tc.parts {
				t.Errorf("type %s, %d brokers, %d partitions", got.Type, len(got.Brokers), len(got.Parts))
			}
			for _, b := range got.Brokers {
				if b.State != "UP" || !strings.HasPrefix(b.Name, "127.0.0.1:") {
					t.Errorf("broker %+v", b)
				}
			}
			// A second document of the same client allocates nothing.
			if n := testing.AllocsPerRun(20, func() { cs.update(doc, time.Time{}) }); n != 0 {
				t.Errorf("%.1f allocations per document once the names are known", n)
			}
		})
	}
}

// A broker, a topic or a partition that disappears from the statistics
// disappears from the snapshot, the metrics and the interned names.
func TestStatsForgetWhatDisappears(t *testing.T) {
	doc := readStatsDoc(t, statsProducerFile)
	var d map[string]any
	if err := json.Unmarshal(doc, &d); err != nil {
		t.Fatal(err)
	}
	var cs clientStats
	first := parseDoc(t, &cs, doc)
	col := statsCollector{&cs}
	before := gatherCollector(t, col)
	if n := countMetrics(before, `topic="policy_updates"`); n != 6*2 {
		t.Fatalf("%d partition metrics of policy_updates, want 12", n)
	}
	brokers := d["brokers"].(map[string]any)
	gone := first.Brokers[0].Name
	delete(brokers, gone)
	delete(d["topics"].(map[string]any), "policy_updates")
	cdr := d["topics"].(map[string]any)["cdr"].(map[string]any)["partitions"].(map[string]any)
	delete(cdr, "5")
	smaller, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	second := parseDoc(t, &cs, smaller)
	if len(second.Brokers) != 2 || len(second.Parts) != 5 {
		t.Fatalf("after the smaller document: %d brokers, %d partitions; want 2, 5", len(second.Brokers), len(second.Parts))
	}
	after := gatherCollector(t, col)
	if n := countMetrics(after, `topic="policy_updates"`); n != 0 {
		t.Errorf("%d metrics of the vanished topic remain", n)
	}
	if n := countMetrics(after, `partition="5"`); n != 0 {
		t.Errorf("%d metrics of the vanished partition remain", n)
	}
	if n := countMetrics(after, `broker="`+gone+`"`); n != 0 {
		t.Errorf("%d metrics of the vanished broker remain", n)
	}
	if _, ok := cs.names.m["policy_updates"]; ok {
		t.Error("the vanished topic's name is still interned")
	}
	if _, ok := cs.names.m[gone]; ok {
		t.Error("the vanished broker's name is still interned")
	}
	// And it comes back with the full document.
	if third := parseDoc(t, &cs, doc); fmt.Sprint(third) != fmt.Sprint(first) {
		t.Errorf("full document after the smaller one: %+v", third)
	}
}

// Documents that are not what librdkafka writes are refused whole: the
// previous statistics stay, nothing panics.
func TestStatsInvalidDocuments(t *testing.T) {
	doc := readStatsDoc(t, statsProducerFile)
	var cs clientStats
	want := parseDoc(t, &cs, doc)
	for _, bad := range []string{
		"", "null", "[]", "{", `{"brokers":`, `{"brokers":{"a":{"name":"x"`, string(doc[:len(doc)/2]),
		`{"name":"x" "type":"y"}`, `{"name":"unterminated}`, `{"brokers":{"b":{"nodeid":-}}}`, `{"a":1,}`, "\x00",
	} {
		if ok, _ := cs.update([]byte(bad), time.Now()); ok {
			t.Errorf("%q accepted", bad)
		}
		got, _ := cs.snapshot()
		got.At = time.Time{}
		sortSnapshot(&got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("after %q the previous statistics changed", bad)
		}
	}
	// Unknown members, other value types where numbers and strings are
	// expected, escapes and numbers with fractions are read or skipped.
	odd := `{"name":"r\u0064kafka#producer-\"1\"","type":"producer","x":[1,{"y":"}"}],"brokers":{"h:1/1":{"name":"h:1\/1","nodeid":1.0,` +
		`"state":"UP","outbuf_cnt":"3","waitresp_cnt":2e0,"txerrs":null,"rxerrs":-4,"rtt":{"avg":1500,"p99":true,"cnt":2}}},` +
		`"topics":{"t\n1":{"partitions":{"0":{"partition":0,"msgq_cnt":7,"fetch_state":{"a":1}},"-1":{"partition":-1,"msgq_cnt":9}}}}}`
	got := parseDoc(t, &cs, []byte(odd))
	wantOdd := statsSnapshot{Client: `rdkafka#producer-"1"`, Type: "producer",
		Brokers: []brokerStats{{Name: "h:1/1", NodeID: 1, State: "UP", WaitrespCnt: 2, RxErrs: -4, RTT: statsWindow{Avg: 1500, Cnt: 2}}},
		Parts:   []partStats{{Topic: "t\n1", Partition: 0, Leader: -1, MsgqCnt: 7, ConsumerLag: -1}}}
	if fmt.Sprint(got) != fmt.Sprint(wantOdd) {
		t.Errorf("parsed\n%+v\nwant\n%+v", got, wantOdd)
	}
}

// FuzzStatsParse: any input either parses or is refused, never a panic or
// an endless loop; a document encoding/json accepts as an object is never
// refused. (The seeds are small: the real documents of testdata, 17 kB,
// make the fuzzer's minimisation crawl; TestStatsParseRealDocuments reads
// them.)
func FuzzStatsParse(f *testing.F) {
	f.Add([]byte(`{"name":"p#1","type":"producer","brokers":{"a:1/1":{"name":"a:1/1","nodeid":1,"state":"UP","outbuf_cnt":1,` +
		`"waitresp_cnt":2,"txerrs":3,"rxerrs":4,"rtt":{"min":1,"avg":2,"p50":2,"p99":3,"cnt":5},"req":{"Produce":3}}},` +
		`"topics":{"t":{"topic":"t","batchsize":{"avg":1},"partitions":{"0":{"partition":0,"leader":1,"msgq_cnt":1,` +
		`"xmit_msgq_cnt":2,"consumer_lag":-1,"txmsgs":9,"fetch_state":"none"},"-1":{"partition":-1}}}}}`))
	f.Add([]byte(`{"brokers":{"GroupCoordinator":{"name":"GroupCoordinator","nodeid":-1}},"topics":{"té":{"partitions":` +
		`{"3":{"partition":3,"consumer_lag":7,"fetch_state":"active"}}}},"cgrp":{"state":"up"}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var cs clientStats
		ok, _ := cs.update(doc, time.Now())
		var obj map[string]any
		if json.Unmarshal(doc, &obj) == nil && obj != nil && !ok {
			t.Errorf("valid document refused: %q", doc)
		}
	})
}

// statsCollector exposes one client's statistics metrics, to check them
// through a pedantic registry.
type statsCollector struct{ cs *clientStats }

func (s statsCollector) Describe(ch chan<- *prometheus.Desc) { descs.Describe(ch) }
func (s statsCollector) Collect(ch chan<- prometheus.Metric) {
	collectStats(metrics.Sink(ch), "main", statsClientProducer, s.cs)
}

func gatherCollector(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	return gatherRegistry(t, reg)
}

func countMetrics(vals map[string]float64, substr string) int {
	n := 0
	for k := range vals {
		if strings.Contains(k, substr) {
			n++
		}
	}
	return n
}

// The metrics of the real producer document: names, labels, units.
func TestStatsMetrics(t *testing.T) {
	var cs clientStats
	sn := parseDoc(t, &cs, readStatsDoc(t, statsProducerFile))
	vals := gatherCollector(t, statsCollector{&cs})
	b := sn.Brokers[0]
	// gather's names list the labels in alphabetical order.
	lb := fmt.Sprintf(`broker=%q,client="producer",connection="main"`, b.Name)
	for name, want := range map[string]float64{
		`switchboard_kafka_broker_up{` + lb + `,state="UP"}`:                                                                          1,
		`switchboard_kafka_broker_rtt_seconds{` + lb + `,quantile="0.5"}`:                                                             float64(b.RTT.P50) / 1e6,
		`switchboard_kafka_broker_rtt_seconds{` + lb + `,quantile="0.99"}`:                                                            float64(b.RTT.P99) / 1e6,
		`switchboard_kafka_broker_rtt_avg_seconds{` + lb + `}`:                                                                        float64(b.RTT.Avg) / 1e6,
		`switchboard_kafka_broker_outbuf_requests{` + lb + `}`:                                                                        float64(b.OutbufCnt),
		`switchboard_kafka_broker_waitresp_requests{` + lb + `}`:                                                                      float64(b.WaitrespCnt),
		`switchboard_kafka_broker_tx_errors_total{` + lb + `}`:                                                                        float64(b.TxErrs),
		`switchboard_kafka_broker_rx_errors_total{` + lb + `}`:                                                                        float64(b.RxErrs),
		`switchboard_kafka_partition_queue_messages{client="producer",connection="main",partition="2",queue="msgq",topic="cdr"}`:      float64(sn.Parts[2].MsgqCnt),
		`switchboard_kafka_partition_queue_messages{client="producer",connection="main",partition="2",queue="xmit_msgq",topic="cdr"}`: float64(sn.Parts[2].XmitMsgqCnt),
	} {
		if got, ok := vals[name]; !ok || got != want {
			t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
		}
	}
	if n := countMetrics(vals, "switchboard_kafka_partition_queue_messages{"); n != 24 {
		t.Errorf("%d partition queue metrics, want 24 (12 partitions x 2 queues)", n)
	}
	if n := countMetrics(vals, "switchboard_kafka_partition_consumer_lag_messages{"); n != 0 {
		t.Errorf("%d consumer lag metrics from a producer", n)
	}
	if n := countMetrics(vals, `partition="-1"`); n != 0 {
		t.Errorf("%d metrics of the internal partition -1", n)
	}
}

// BenchmarkStatsHandle handles one statistics document of a connection
// with 3 brokers and 2 topics of 6 partitions (real documents, testdata),
// as the poll goroutine does for each one: decode, publish, confirm the
// connection up.
func BenchmarkStatsHandle(b *testing.B) {
	for _, tc := range []struct{ name, file string }{{"producer", statsProducerFile}, {"consumer", statsConsumerFile}} {
		b.Run(tc.name, func(b *testing.B) {
			doc := readStatsDoc(b, tc.file)
			c := newConn(&Module{}, &Connection{Name: "bench"}, "")
			var cs clientStats
			c.handleStats(&cs, doc)
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				c.handleStats(&cs, doc)
			}
		})
	}
}

// BenchmarkStatsEncodingJSON decodes the same documents with encoding/json
// into structs with the same fields, the way res_kafka read statistics
// before, for comparison.
func BenchmarkStatsEncodingJSON(b *testing.B) {
	for _, tc := range []struct{ name, file string }{{"producer", statsProducerFile}, {"consumer", statsConsumerFile}} {
		b.Run(tc.name, func(b *testing.B) {
			doc := readStatsDoc(b, tc.file)
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			for b.Loop() {
				var d refDoc
				if err := json.Unmarshal(doc, &d); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Against the broker: a producer's and a subscription's statistics become
// metrics (per broker, per partition, the consumer's lag) and the tables of
// "kafka show connection".
func TestStatsLive(t *testing.T) {
	b := testBroker(t)
	th := startHost(t, fmt.Sprintf(`
[general]
[main]
brokers = %s
group_id = stats-%d
auto_offset_reset = earliest
statistics_interval_ms = 200
`, b.Bootstrap, time.Now().UnixNano()))
	topic := uniqueTopic(t)
	if err := th.m.EnsureTopic(context.Background(), "main", topic, 6, 1); err != nil {
		t.Fatal(err)
	}
	p, err := th.m.Producer("main")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	for i := range 600 {
		if err := p.Produce(topic, fmt.Appendf(nil, "k%d", i), []byte("v"), nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if left := p.Flush(30 * time.Second); left != 0 {
		t.Fatalf("%d undelivered", left)
	}
	sub, err := th.m.Subscribe("main", []string{topic}, func(context.Context, *Message) error { return nil }, SubscribeOptions{Name: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	testwait.UntilState(t, 60*time.Second, "statistics metrics of the producer and the consumer", func() (bool, string) {
		vals := gather(t, th.m)
		count := func(prefix, labels string) int {
			n := 0
			for k := range vals {
				if strings.HasPrefix(k, prefix+"{") && strings.Contains(k, labels) && strings.Contains(k, `connection="main"`) {
					n++
				}
			}
			return n
		}
		ok := count("switchboard_kafka_broker_up", `client="producer"`) == 1 &&
			count("switchboard_kafka_broker_up", `client="consumer:reader"`) == 1 &&
			count("switchboard_kafka_partition_queue_messages", `client="producer"`) == 12 &&
			count("switchboard_kafka_partition_consumer_lag_messages", `client="consumer:reader"`) == 6
		var keys []string
		for k := range vals {
			if strings.Contains(k, "broker_") || strings.Contains(k, "partition_") {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		return ok, strings.Join(keys, "\n")
	})
	testwait.UntilState(t, 30*time.Second, "the consumer's lag down to 0", func() (bool, string) {
		vals := gather(t, th.m)
		for k, v := range vals {
			if strings.HasPrefix(k, "switchboard_kafka_partition_consumer_lag_messages{") && v != 0 {
				return false, fmt.Sprintf("%s = %v", k, v)
			}
		}
		return true, ""
	})
	out := th.run("kafka show connection main")
	t.Logf("kafka show connection main:\n%s", out)
	for _, want := range []string{
		"Statistics:", "every 200 ms",
		"Statistics of the producer (", "Statistics of the consumer reader (",
		"RTT avg", "Consumer lag", topic + "  ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kafka show connection main lacks %q", want)
		}
	}
	if n := strings.Count(out, "  "+topic+" "); n != 12 {
		t.Errorf("%d partition rows of %s, want 12 (6 produced, 6 consumed)", n, topic)
	}
}
