package cdrkafka

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/syncbuf"
	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/cdr/spool"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// hostRig runs res_kafka + cdr + cdr_kafka in a core.Host.
type hostRig struct {
	t       testing.TB
	h       *core.Host
	eng     *cdr.Engine
	mod     *Module
	logs    *syncbuf.Buffer
	cfgDir  string
	dataDir string
}

// kafkaConf returns a kafka.conf with one connection [cdr] to bootstrap.
func kafkaConf(bootstrap string, extra string) string {
	return kafkaConfAcks(bootstrap, "acks = 1\n"+extra)
}

// kafkaConfOrdered is kafkaConf with the settings docs/DEPLOYMENT.md asks
// for when one subscriber's CDRs must stay in order: without idempotence
// librdkafka may reorder a partition's messages when it retries a request
// while a later one is in flight.
func kafkaConfOrdered(bootstrap string) string {
	return kafkaConfAcks(bootstrap, "acks = -1\nenable_idempotence = yes\n")
}

func kafkaConfAcks(bootstrap, acks string) string {
	return fmt.Sprintf("[general]\nshutdown_flush_timeout_ms = 1000\n\n[cdr]\nbrokers = %s\nlinger_ms = 5\ncompression_codec = snappy\nqueue_buffering_max_messages = 100000\nmessage_timeout_ms = 120000\n%s", bootstrap, acks)
}

func startRig(t *testing.T, kafkaConfText, cdrConf, dataDir string) *hostRig {
	t.Helper()
	return startRigTB(t, kafkaConfText, cdrConf, dataDir)
}

func startRigTB(t testing.TB, kafkaConfText, cdrConf, dataDir string) *hostRig {
	t.Helper()
	dir := t.TempDir()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	os.WriteFile(filepath.Join(dir, "kafka.conf"), []byte(kafkaConfText), 0o600)
	os.WriteFile(filepath.Join(dir, ConfigFile), []byte(cdrConf), 0o600)
	os.WriteFile(filepath.Join(dir, "modules.conf"), []byte("[modules]\nautoload = yes\n"), 0o600)
	logs := &syncbuf.Buffer{}
	reg := core.NewRegistry()
	if err := reg.Register(reskafka.Info(), cdr.Info(), Info()); err != nil {
		t.Fatal(err)
	}
	h := core.New(core.Options{Registry: reg, ConfigDir: dir, DataDir: dataDir,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err := h.Start(context.Background()); err != nil {
		t.Fatalf("start: %v\n%s", err, logs)
	}
	r := &hostRig{t: t, h: h, logs: logs, cfgDir: dir, dataDir: dataDir}
	e, ok := h.Instance(cdr.Name)
	m, ok2 := h.Instance(Name)
	if !ok || !ok2 {
		t.Fatalf("modules not running:\n%s", logs)
	}
	r.eng, r.mod = e.(*cdr.Engine), m.(*Module)
	return r
}

func (r *hostRig) stop() { r.h.Stop(core.StopGracefully) }

func (r *hostRig) cli(line string) string {
	r.t.Helper()
	var b bytes.Buffer
	if err := r.h.Run(context.Background(), line, &b); err != nil {
		r.t.Fatalf("%s: %v", line, err)
	}
	return b.String()
}

var rowRE = regexp.MustCompile(`(?m)^  ([a-z -]+?)\s{2,}(\d+)`)

// status parses the counters of "cdr show status" for the kafka backend and
// checks the invariant line.
func (r *hostRig) status() map[string]uint64 {
	r.t.Helper()
	return r.parseStatus(r.cli("cdr show status"))
}

// parseStatus parses the output of "cdr show status" as status does.
func (r *hostRig) parseStatus(out string) map[string]uint64 {
	r.t.Helper()
	if !strings.Contains(out, ": ok") || strings.Contains(out, "VIOLATED") {
		r.t.Fatalf("invariant not ok:\n%s", out)
	}
	m := map[string]uint64{}
	for _, g := range rowRE.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseUint(g[2], 10, 64)
		m[strings.TrimSpace(g[1])] = v
	}
	return m
}

func (r *hostRig) waitStatus(what string, timeout time.Duration, cond func(map[string]uint64) bool) map[string]uint64 {
	r.t.Helper()
	var s map[string]uint64
	testwait.UntilState(r.t, timeout, what, func() (bool, string) {
		out := r.cli("cdr show status")
		s = r.parseStatus(out)
		if cond(s) {
			return true, ""
		}
		return false, fmt.Sprintf("%v\n%s\nlogs:\n%s", s, out, tail(r.logs.String(), 3000))
	})
	return s
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// kcatMsg is one message read back with kcat.
type kcatMsg struct {
	partition int
	offset    int64
	key       []byte
	value     []byte
}

// kcatRead reads every message of topic with kcat (the independent C
// client), binary-safe: the format carries key and value lengths.
func kcatRead(t *testing.T, b *kafkatest.Broker, topic string, want int, timeout time.Duration) []kcatMsg {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var msgs []kcatMsg
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, "kcat", "-C", "-b", b.Bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
			"-f", "%p %o %K %S\n%k%s")
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		err := cmd.Run()
		cancel()
		if err != nil {
			t.Fatalf("kcat: %v\n%s", err, stderr.String())
		}
		msgs = parseKcat(t, out.Bytes())
		if len(msgs) >= want || time.Now().After(deadline) {
			return msgs
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func parseKcat(t *testing.T, data []byte) []kcatMsg {
	t.Helper()
	rd := bufio.NewReader(bytes.NewReader(data))
	var msgs []kcatMsg
	for {
		hdr, err := rd.ReadString('\n')
		if err == io.EOF {
			return msgs
		}
		var m kcatMsg
		var kl, vl int
		if _, err := fmt.Sscanf(hdr, "%d %d %d %d", &m.partition, &m.offset, &kl, &vl); err != nil {
			t.Fatalf("kcat header %q: %v", hdr, err)
		}
		kl, vl = max(kl, 0), max(vl, 0)
		m.key, m.value = make([]byte, kl), make([]byte, vl)
		if _, err := io.ReadFull(rd, m.key); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(rd, m.value); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
}

func subscriberRecord(sub, seq int) *cdr.Record {
	return &cdr.Record{TS: time.Now().UnixMilli(), IP: netip.AddrFrom4([4]byte{10, 1, byte(sub >> 8), byte(sub)}),
		SubscriberID: fmt.Sprintf("subscriber-%d", sub), Domain: []byte(fmt.Sprintf("host%d.example.com", seq%7)),
		QType: 1, Action: decision.Block, Group: uint32(sub % 4), Category: 0x10, Seq: uint64(seq)}
}

var wireKeys = []string{"ts", "ip", "subscriber_id", "domain", "qtype", "action", "group", "category", "id", "seq"}

// TestKafkaWireFormatKeysOrder: kcat reads valid JSON with exactly the
// fields of the wire format, keys in the configured form, and every
// subscriber's CDRs in one partition, in order. Also: at 10 CDRs/s no CDR
// waits longer than flush_ms (+ the scheduling delay measured meanwhile).
func TestKafkaWireFormatKeysOrder(t *testing.T) {
	b := kafkatest.Shared(t)
	for _, form := range []string{"ip_binary", "ip_text"} {
		t.Run(form, func(t *testing.T) {
			topic := kafkatest.UniqueTopic(t, "cdr")
			kafkatest.CreateTopic(t, b.Bootstrap, topic, 3, 1)
			r := startRig(t, kafkaConfOrdered(b.Bootstrap), fmt.Sprintf("[general]\nconnection = cdr\ntopic = %s\nkey = %s\nbatch_max = 16\nflush_ms = 100\n", topic, form), "")
			defer r.stop()
			const subs, per = 12, 40
			// Two workers, each owning some subscribers.
			var wg sync.WaitGroup
			for w := range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					p := r.eng.NewPoster()
					defer p.Close()
					for i := range per {
						for s := w; s < subs; s += 2 {
							p.Post(subscriberRecord(s, s*1000+i+1))
						}
					}
				}()
			}
			wg.Wait()
			// Low rate: 10 CDRs/s for 2 s through one poster.
			p := r.eng.NewPoster()
			stopJ := schedJitter()
			tk := time.NewTicker(100 * time.Millisecond)
			for i := range 20 {
				<-tk.C
				p.Post(subscriberRecord(99, 99000+i+1))
			}
			tk.Stop()
			total := subs*per + 20
			r.waitStatus("all delivered", 60*time.Second, func(s map[string]uint64) bool { return s["delivered"] == uint64(total) })
			worst := stopJ()
			snap := r.mod.reg.Snapshot()
			if snap.WaitMax > 100*time.Millisecond+worst+5*time.Millisecond {
				t.Errorf("a CDR waited %v before hand-over (flush_ms 100, scheduling delay %v)", snap.WaitMax, worst)
			}
			t.Logf("hand-over wait max %v (scheduling delay seen %v)", snap.WaitMax, worst)
			p.Close()

			msgs := kcatRead(t, b, topic, total, 30*time.Second)
			if len(msgs) != total {
				t.Fatalf("kcat read %d messages, want %d", len(msgs), total)
			}
			partOf := map[string]int{}
			lastSeq := map[string]uint64{}
			for _, m := range msgs {
				var obj map[string]json.RawMessage
				if err := json.Unmarshal(m.value, &obj); err != nil {
					t.Fatalf("not JSON: %q", m.value)
				}
				if len(obj) != len(wireKeys) {
					t.Fatalf("fields %v", obj)
				}
				for i, k := range wireKeys {
					if _, ok := obj[k]; !ok {
						t.Fatalf("field %s missing in %s", k, m.value)
					}
					if i > 0 && bytes.Index(m.value, []byte(`"`+k+`":`)) < bytes.Index(m.value, []byte(`"`+wireKeys[i-1]+`":`)) {
						t.Fatalf("field order in %s", m.value)
					}
				}
				var w struct {
					IP       string `json:"ip"`
					Category string `json:"category"`
					Seq      uint64 `json:"seq"`
				}
				json.Unmarshal(m.value, &w)
				ip := netip.MustParseAddr(w.IP)
				var wantKey []byte
				if form == "ip_binary" {
					a := ip.As4()
					wantKey = a[:]
				} else {
					wantKey = []byte(ip.String())
				}
				if !bytes.Equal(m.key, wantKey) {
					t.Fatalf("key %q for ip %s (%s)", m.key, w.IP, form)
				}
				if w.Category != "0x00000010" {
					t.Fatalf("category %q", w.Category)
				}
				k := string(m.key)
				if p, ok := partOf[k]; ok && p != m.partition {
					t.Fatalf("subscriber %s in partitions %d and %d", w.IP, p, m.partition)
				}
				partOf[k] = m.partition
			}
			// Order: per partition, offsets ascending; per subscriber, seq ascending.
			sortByPartitionOffset(msgs)
			for _, m := range msgs {
				var w struct{ Seq uint64 }
				json.Unmarshal(m.value, &w)
				k := string(m.key)
				if w.Seq <= lastSeq[k] {
					t.Fatalf("subscriber %q out of order: seq %d after %d", k, w.Seq, lastSeq[k])
				}
				lastSeq[k] = w.Seq
			}
			parts := map[int]bool{}
			for _, p := range partOf {
				parts[p] = true
			}
			t.Logf("%d messages, %d subscribers over %d partitions", len(msgs), len(partOf), len(parts))
		})
	}
}

func sortByPartitionOffset(msgs []kcatMsg) {
	// insertion sort is fine for a few hundred
	for i := 1; i < len(msgs); i++ {
		for j := i; j > 0 && (msgs[j].partition < msgs[j-1].partition ||
			msgs[j].partition == msgs[j-1].partition && msgs[j].offset < msgs[j-1].offset); j-- {
			msgs[j], msgs[j-1] = msgs[j-1], msgs[j]
		}
	}
}

// schedJitter measures how late a 5 ms ticker fires meanwhile.
func schedJitter() func() time.Duration {
	done := make(chan struct{})
	res := make(chan time.Duration)
	go func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		last, worst := time.Now(), time.Duration(0)
		for {
			select {
			case <-done:
				res <- worst
				return
			case <-t.C:
				n := time.Now()
				worst = max(worst, n.Sub(last)-5*time.Millisecond)
				last = n
			}
		}
	}()
	return func() time.Duration { close(done); return <-res }
}

// TestKafkaDropModeUnreachable: no broker, a producer queue of 10 messages:
// drops are counted exactly and the invariant holds every time the CLI is
// asked.
func TestKafkaDropModeUnreachable(t *testing.T) {
	kc := kafkaConf("127.0.0.1:1", "queue_full_timeout_ms = 10\n")
	kc = strings.Replace(kc, "queue_buffering_max_messages = 100000", "queue_buffering_max_messages = 10", 1)
	r := startRig(t, kc, "[general]\nconnection = cdr\ntopic = dp_cdr\nbatch_max = 5\nflush_ms = 50\non_queue_full = drop\nshutdown_flush_ms = 100\n", "")
	defer r.stop()
	p := r.eng.NewPoster()
	for i := range 100 {
		p.Post(subscriberRecord(i%5, i+1))
		r.status() // checks the invariant line
	}
	p.Close()
	s := r.status()
	if s["posted"] != 100 || s["dropped"] != 90 || s["inflight"] != 10 || s["delivered"] != 0 || s["batched"] != 0 {
		t.Fatalf("counters %v\n%s", s, r.cli("cdr show status"))
	}
	if !strings.Contains(r.cli("cdr show status"), "queue_full=90") {
		t.Fatalf("drop reason missing:\n%s", r.cli("cdr show status"))
	}
}

// TestKafkaSpoolBrokerDown: broker stopped, 10,000 CDRs posted in spool
// mode, switchboard stopped (undelivered CDRs go to the spool), broker and
// switchboard started again: all 10,000 arrive, none twice.
func TestKafkaSpoolBrokerDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a dedicated broker")
	}
	d := kafkatest.Dedicated(t)
	b := d.Broker()
	topic := kafkatest.UniqueTopic(t, "cdrspool")
	kafkatest.CreateTopic(t, b.Bootstrap, topic, 3, 1)
	d.Stop()

	dataDir := t.TempDir()
	cdrConf := fmt.Sprintf("[general]\nconnection = cdr\ntopic = %s\nbatch_max = 256\nflush_ms = 100\non_queue_full = spool\nshutdown_flush_ms = 1000\n", topic)
	kc := kafkaConf(b.Bootstrap, "reconnect_backoff_max_ms = 1000\n")
	r := startRig(t, kc, cdrConf, dataDir)
	const n = 10000
	p := r.eng.NewPoster()
	for i := range n {
		p.Post(subscriberRecord(i%50, i+1))
		if i%1000 == 0 {
			r.status()
		}
	}
	p.Close()
	s := r.status()
	if s["posted"] != n || s["dropped"] != 0 || s["failed"] != 0 {
		t.Fatalf("while the broker is down: %v", s)
	}
	r.stop()
	snap := r.mod.reg.Snapshot()
	if snap.Spooled != n || snap.Delivered != 0 || !snap.Balanced() || snap.Inflight != 0 {
		t.Fatalf("after stop: %+v", snap)
	}
	t.Logf("first run: %d spooled; spool dir %v", snap.Spooled, lsDir(filepath.Join(dataDir, "cdr_kafka")))

	d.Start()
	r2 := startRig(t, kc, cdrConf, dataDir)
	defer r2.stop()
	s = r2.waitStatus("spool replayed", 120*time.Second, func(s map[string]uint64) bool { return s["delivered"] == n })
	if s["loaded"] != n || s["replayed"] != n || s["queued"] != 0 {
		t.Fatalf("second run: %v", s)
	}
	msgs := kcatRead(t, b, topic, n, 60*time.Second)
	seen := map[uint64]int{}
	for _, m := range msgs {
		var w struct{ Seq uint64 }
		if err := json.Unmarshal(m.value, &w); err != nil {
			t.Fatalf("bad JSON %q", m.value)
		}
		seen[w.Seq]++
	}
	dups := 0
	for _, c := range seen {
		if c > 1 {
			dups++
		}
	}
	if len(msgs) != n || len(seen) != n || dups != 0 {
		t.Fatalf("kcat: %d messages, %d unique seqs, %d duplicated (want %d, %d, 0)", len(msgs), len(seen), dups, n, n)
	}
	// The spool is removed once delivered.
	r2.waitStatus("spool files removed", 10*time.Second, func(map[string]uint64) bool {
		return len(lsDir(filepath.Join(dataDir, "cdr_kafka"))) == 0
	})
}

func lsDir(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestKafkaCorruptSpoolTail: a spool left with a torn last frame (a crash
// mid-write) and a flipped byte: the intact records are delivered, the
// corrupt bytes are reported in the CLI, nothing else is lost.
func TestKafkaCorruptSpoolTail(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := kafkatest.UniqueTopic(t, "cdrcorrupt")
	kafkatest.CreateTopic(t, b.Bootstrap, topic, 1, 1)
	dataDir := t.TempDir()
	sp, _, _, err := spool.Open(spool.Options{Dir: filepath.Join(dataDir, "cdr_kafka")})
	if err != nil {
		t.Fatal(err)
	}
	var recs []spool.Record
	for i := range 100 {
		rec := subscriberRecord(1, i+1)
		recs = append(recs, spool.Record{Key: cdr.AppendKeyBinary(nil, rec.IP), Value: cdr.AppendJSON(nil, rec)})
	}
	if _, err := sp.Append(recs); err != nil {
		t.Fatal(err)
	}
	sp.Close()
	files, _ := filepath.Glob(filepath.Join(dataDir, "cdr_kafka", "spool-*.log"))
	data, _ := os.ReadFile(files[0])
	// The segment format (package spool): an 8-byte magic, then frames of
	// an 8-byte header (length, CRC) and the payload.
	const magicLen, frameHeader = 8, 8
	torn := append([]byte(nil), data[magicLen:magicLen+frameHeader+2]...) // a frame header and 2 bytes of its payload
	data[magicLen+frameHeader+5] ^= 0x55                                  // corrupt the first record
	data = append(data, torn...)                                          // torn tail
	os.WriteFile(files[0], data, 0o640)

	r := startRig(t, kafkaConf(b.Bootstrap, ""), fmt.Sprintf("[general]\nconnection = cdr\ntopic = %s\non_queue_full = spool\n", topic), dataDir)
	defer r.stop()
	r.waitStatus("intact records delivered", 60*time.Second, func(s map[string]uint64) bool { return s["delivered"] == 99 })
	out := r.cli("cdr show status")
	if !strings.Contains(out, "2 regions") {
		t.Fatalf("corruption not reported:\n%s", out)
	}
	if !strings.Contains(r.logs.String(), "corrupt spool region skipped") {
		t.Fatal("corruption not logged")
	}
	msgs := kcatRead(t, b, topic, 99, 30*time.Second)
	if len(msgs) != 99 {
		t.Fatalf("kcat read %d, want 99", len(msgs))
	}
}

// TestKafkaReloadTopic: a reload that changes topic and key while a worker
// posts loses nothing: every CDR lands on the old or the new topic.
func TestKafkaReloadTopic(t *testing.T) {
	b := kafkatest.Shared(t)
	t1, t2 := kafkatest.UniqueTopic(t, "cdrreload1"), kafkatest.UniqueTopic(t, "cdrreload2")
	kafkatest.CreateTopic(t, b.Bootstrap, t1, 1, 1)
	kafkatest.CreateTopic(t, b.Bootstrap, t2, 1, 1)
	r := startRig(t, kafkaConf(b.Bootstrap, ""), fmt.Sprintf("[general]\nconnection = cdr\ntopic = %s\nbatch_max = 8\n", t1), "")
	defer r.stop()
	done := make(chan struct{})
	const n = 3000
	go func() {
		defer close(done)
		p := r.eng.NewPoster()
		defer p.Close()
		for i := range n {
			p.Post(subscriberRecord(i%9, i+1))
			if i%10 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	r.waitStatus("some delivered to the old topic", 30*time.Second, func(s map[string]uint64) bool { return s["delivered"] >= 200 })
	os.WriteFile(filepath.Join(r.cfgDir, ConfigFile), []byte(fmt.Sprintf("[general]\nconnection = cdr\ntopic = %s\nkey = ip_text\nbatch_max = 8\n", t2)), 0o600)
	if err := r.h.Reload(Name); err != nil {
		t.Fatal(err)
	}
	// An invalid change is refused and keeps the running configuration.
	os.WriteFile(filepath.Join(r.cfgDir, ConfigFile), []byte("[general]\non_queue_full = spool\n"), 0o600)
	if err := r.h.Reload(Name); err == nil {
		t.Fatal("on_queue_full change accepted by reload")
	}
	<-done
	r.waitStatus("all delivered", 60*time.Second, func(s map[string]uint64) bool { return s["delivered"] == n })
	m1 := kcatRead(t, b, t1, 0, 0)
	m2 := kcatRead(t, b, t2, n-len(m1), 30*time.Second)
	if len(m1)+len(m2) != n || len(m1) == 0 || len(m2) == 0 {
		t.Fatalf("old topic %d + new topic %d != %d", len(m1), len(m2), n)
	}
	t.Logf("%d on the old topic, %d on the new", len(m1), len(m2))
}
