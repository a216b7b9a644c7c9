package reskafka

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/switchboard-dp/switchboard/internal/metrics"
)

// librdkafka statistics (statistics_interval_ms; field names as in
// librdkafka's STATISTICS.md). Every client (a connection's producer, each
// subscription's consumer) keeps the latest document it received, reduced
// to what the metrics and "kafka show connection" use: per broker its
// state, round-trip times, outstanding requests and error totals; per
// partition with activity its queues and consumer lag. A document is
// decoded by a small scanner that reads those fields where they are and
// skips everything else, into two snapshots per client that take turns (the
// one being filled, the one published), with the names it finds interned:
// handling one document allocates nothing once the names are known. What a
// new document no longer lists (a broker, a topic, a partition) is gone
// from the snapshot, hence from the metrics.

// statsWindow is one of librdkafka's rolling windows (microseconds) over
// the last statistics interval.
type statsWindow struct {
	Avg, P50, P99 int64
	Cnt           int64 // samples in the window; 0: the others mean nothing
}

// brokerStats is one broker of a statistics document.
type brokerStats struct {
	Name        string // "host:port/nodeid"
	NodeID      int32
	State       string // INIT, DOWN, CONNECT, AUTH, APIVERSION_QUERY, UP, ...
	OutbufCnt   int64  // requests waiting to be sent
	WaitrespCnt int64  // requests sent, waiting for their response
	TxErrs      int64  // transmission errors (total)
	RxErrs      int64  // receive errors (total)
	RTT         statsWindow
}

// partStats is one partition of a statistics document.
type partStats struct {
	Topic       string
	Partition   int32
	Leader      int32 // broker id, -1 unknown
	MsgqCnt     int64 // messages in the partition's queue
	XmitMsgqCnt int64 // messages in the leader's transmit queue
	ConsumerLag int64 // -1: unknown (not consumed by this client)
	TxMsgs      int64 // messages produced (total)
	Fetching    bool  // fetch_state is not "none": the client consumes it
}

// active reports whether the partition is worth showing: a real partition
// (not librdkafka's internal -1) that the client produced to, has messages
// queued for, or consumes.
func (p *partStats) active() bool {
	return p.Partition >= 0 && (p.TxMsgs > 0 || p.MsgqCnt > 0 || p.XmitMsgqCnt > 0 || p.Fetching || p.ConsumerLag >= 0)
}

// statsSnapshot is what one statistics document of a client says.
type statsSnapshot struct {
	Client  string    // librdkafka instance name
	Type    string    // "producer" or "consumer"
	At      time.Time // when it was handled
	Brokers []brokerStats
	Parts   []partStats
}

// parse reads a document into sn, reusing its slices; s.bad says whether
// it failed.
func (sn *statsSnapshot) parse(s *jsonScan, in *interner) {
	sn.Client, sn.Type = "", ""
	sn.Brokers, sn.Parts = sn.Brokers[:0], sn.Parts[:0]
	if s.peek() != '{' {
		s.fail()
		return
	}
	s.object()
	for s.member() {
		switch string(s.key) {
		case "name":
			sn.Client = in.str(s.str())
		case "type":
			sn.Type = in.str(s.str())
		case "brokers":
			sn.parseBrokers(s, in)
		case "topics":
			sn.parseTopics(s, in)
		default:
			s.skip()
		}
	}
}

// parseBrokers reads "brokers": {"<name>": {...}, ...}. Bootstrap and
// logical brokers (nodeid -1) are left out.
func (sn *statsSnapshot) parseBrokers(s *jsonScan, in *interner) {
	if !s.object() {
		return
	}
	for s.member() {
		if !s.object() {
			continue
		}
		sn.Brokers = append(sn.Brokers, brokerStats{NodeID: -1})
		b := &sn.Brokers[len(sn.Brokers)-1]
		for s.member() {
			switch string(s.key) {
			case "name":
				b.Name = in.str(s.str())
			case "nodeid":
				b.NodeID = int32(s.int())
			case "state":
				b.State = in.str(s.str())
			case "outbuf_cnt":
				b.OutbufCnt = s.int()
			case "waitresp_cnt":
				b.WaitrespCnt = s.int()
			case "txerrs":
				b.TxErrs = s.int()
			case "rxerrs":
				b.RxErrs = s.int()
			case "rtt":
				b.RTT.parse(s)
			default:
				s.skip()
			}
		}
		if b.NodeID < 0 || b.Name == "" {
			sn.Brokers = sn.Brokers[:len(sn.Brokers)-1]
		}
	}
}

// parseTopics reads "topics": {"<topic>": {"partitions": {"<n>": {...}}}}.
// Partitions without activity are left out.
func (sn *statsSnapshot) parseTopics(s *jsonScan, in *interner) {
	if !s.object() {
		return
	}
	for s.member() {
		topic := in.str(s.key)
		if !s.object() {
			continue
		}
		for s.member() {
			if string(s.key) != "partitions" {
				s.skip()
				continue
			}
			if !s.object() {
				continue
			}
			for s.member() {
				if !s.object() {
					continue
				}
				sn.Parts = append(sn.Parts, partStats{Topic: topic, Partition: -1, Leader: -1, ConsumerLag: -1})
				p := &sn.Parts[len(sn.Parts)-1]
				for s.member() {
					switch string(s.key) {
					case "partition":
						p.Partition = int32(s.int())
					case "leader":
						p.Leader = int32(s.int())
					case "msgq_cnt":
						p.MsgqCnt = s.int()
					case "xmit_msgq_cnt":
						p.XmitMsgqCnt = s.int()
					case "consumer_lag":
						p.ConsumerLag = s.int()
					case "txmsgs":
						p.TxMsgs = s.int()
					case "fetch_state":
						fs := s.str()
						p.Fetching = len(fs) > 0 && string(fs) != "none"
					default:
						s.skip()
					}
				}
				if !p.active() {
					sn.Parts = sn.Parts[:len(sn.Parts)-1]
				}
			}
		}
	}
}

// parse reads a window object; fields not read stay 0.
func (w *statsWindow) parse(s *jsonScan) {
	*w = statsWindow{}
	if !s.object() {
		return
	}
	for s.member() {
		switch string(s.key) {
		case "avg":
			w.Avg = s.int()
		case "p50":
			w.P50 = s.int()
		case "p99":
			w.P99 = s.int()
		case "cnt":
			w.Cnt = s.int()
		default:
			s.skip()
		}
	}
}

// clientStats keeps one client's latest statistics.
type clientStats struct {
	pmu   sync.Mutex // one update at a time; guards the fields up to mu
	scan  jsonScan
	names interner
	spare *statsSnapshot // filled by the next update

	mu  sync.Mutex
	cur *statsSnapshot // latest; nil before the first document
}

// update decodes doc (which it does not keep) and publishes it as the
// latest statistics. It reports whether doc was understood (if not, the
// previous statistics stay) and whether a broker is UP in it.
func (cs *clientStats) update(doc []byte, now time.Time) (ok, up bool) {
	cs.pmu.Lock()
	defer cs.pmu.Unlock()
	sn := cs.spare
	if sn == nil {
		sn = new(statsSnapshot)
	}
	cs.scan.reset(doc)
	sn.parse(&cs.scan, &cs.names)
	bad := cs.scan.bad
	cs.scan.reset(nil)
	if bad {
		cs.spare = sn
		return false, false
	}
	cs.names.sweep()
	sn.At = now
	for i := range sn.Brokers {
		up = up || sn.Brokers[i].State == "UP"
	}
	cs.mu.Lock()
	cs.spare, cs.cur = cs.cur, sn
	cs.mu.Unlock()
	return true, up
}

// clear forgets the statistics (the client was replaced).
func (cs *clientStats) clear() {
	cs.pmu.Lock()
	defer cs.pmu.Unlock()
	cs.mu.Lock()
	cs.cur = nil
	cs.mu.Unlock()
}

// snapshot returns a copy of the latest statistics; false before the first
// document.
func (cs *clientStats) snapshot() (statsSnapshot, bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.cur == nil {
		return statsSnapshot{}, false
	}
	sn := *cs.cur
	sn.Brokers = slices.Clone(sn.Brokers)
	sn.Parts = slices.Clone(sn.Parts)
	return sn, true
}

// handleStats handles one statistics document of a client of the
// connection: it becomes the client's latest, and a broker UP in it
// confirms the connection up.
func (c *conn) handleStats(cs *clientStats, doc []byte) {
	ok, up := cs.update(doc, time.Now())
	if !ok {
		c.statsInvalid.Add(1)
		c.m.lim.Warn("stats:"+c.name, "kafka statistics document not understood; the previous one is kept",
			"connection", c.name, "invalid", c.statsInvalid.Load())
		return
	}
	if up {
		c.confirmUp()
	}
}

// handleStatsString is handleStats for a document in a Go string (from
// confluent-kafka-go), read in place.
func (c *conn) handleStatsString(cs *clientStats, doc string) {
	c.handleStats(cs, unsafe.Slice(unsafe.StringData(doc), len(doc)))
}

// Client label values of the statistics metrics: the connection's producer,
// or a subscription's consumer by the subscription's name.
const statsClientProducer = "producer"

func statsClientConsumer(subscription string) string { return "consumer:" + subscription }

// collectStats sends the metrics of one client's latest statistics.
func collectStats(out metrics.Sink, conn, client string, cs *clientStats) {
	sn, ok := cs.snapshot()
	if !ok {
		return
	}
	for i := range sn.Brokers {
		b := &sn.Brokers[i]
		out.GaugeBool(descBrokerUp, b.State == "UP", conn, client, b.Name, b.State)
		if b.RTT.Cnt > 0 {
			out.Gauge(descBrokerRTT, usSeconds(b.RTT.P50), conn, client, b.Name, "0.5")
			out.Gauge(descBrokerRTT, usSeconds(b.RTT.P99), conn, client, b.Name, "0.99")
			out.Gauge(descBrokerRTTAvg, usSeconds(b.RTT.Avg), conn, client, b.Name)
		}
		out.Gauge(descBrokerOutbuf, float64(b.OutbufCnt), conn, client, b.Name)
		out.Gauge(descBrokerWaitresp, float64(b.WaitrespCnt), conn, client, b.Name)
		out.CounterInt(descBrokerTxErrs, b.TxErrs, conn, client, b.Name)
		out.CounterInt(descBrokerRxErrs, b.RxErrs, conn, client, b.Name)
	}
	for i := range sn.Parts {
		p := &sn.Parts[i]
		part := strconv.Itoa(int(p.Partition))
		out.Gauge(descPartQueue, float64(p.MsgqCnt), conn, client, p.Topic, part, "msgq")
		out.Gauge(descPartQueue, float64(p.XmitMsgqCnt), conn, client, p.Topic, part, "xmit_msgq")
		if p.ConsumerLag >= 0 {
			out.Gauge(descPartLag, float64(p.ConsumerLag), conn, client, p.Topic, part)
		}
	}
}

func usSeconds(us int64) float64 { return float64(us) / 1e6 }

// writeStats prints one client's latest statistics for "kafka show
// connection": a table of brokers and one of partitions.
func writeStats(w io.Writer, what string, cs *clientStats) error {
	sn, ok := cs.snapshot()
	if !ok {
		_, err := fmt.Fprintf(w, "Statistics of the %s: (none yet)\n", what)
		return err
	}
	slices.SortFunc(sn.Brokers, func(a, b brokerStats) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(sn.Parts, func(a, b partStats) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
	fmt.Fprintf(w, "Statistics of the %s (%s, at %s):\n", what, sn.Client, sn.At.Format(time.TimeOnly))
	ms := func(us int64, cnt int64) string {
		if cnt == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f ms", float64(us)/1000)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  Broker\tState\tRTT avg\tRTT p99\tOutbuf\tWaitresp\tTx errors\tRx errors")
	for _, b := range sn.Brokers {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\n", b.Name, b.State, ms(b.RTT.Avg, b.RTT.Cnt), ms(b.RTT.P99, b.RTT.Cnt),
			b.OutbufCnt, b.WaitrespCnt, b.TxErrs, b.RxErrs)
	}
	if err := tw.Flush(); err != nil || len(sn.Parts) == 0 {
		return err
	}
	// The partition table has columns of its own.
	fmt.Fprintln(tw, "  Topic\tPartition\tLeader\tQueued\tIn transmit\tConsumer lag")
	for _, p := range sn.Parts {
		lag := "-"
		if p.ConsumerLag >= 0 {
			lag = strconv.FormatInt(p.ConsumerLag, 10)
		}
		fmt.Fprintf(tw, "  %s\t%d\t%d\t%d\t%d\t%s\n", p.Topic, p.Partition, p.Leader, p.MsgqCnt, p.XmitMsgqCnt, lag)
	}
	return tw.Flush()
}

// interner hands out one string per distinct name (broker, topic, state)
// so that a document whose names are known allocates none; names no
// document used since the last sweep are forgotten.
type interner struct {
	gen uint32
	m   map[string]internEntry
}

type internEntry struct {
	s   string
	gen uint32
}

// str returns b as a string, the same string for the same bytes.
func (in *interner) str(b []byte) string {
	if e, ok := in.m[string(b)]; ok {
		if e.gen != in.gen {
			e.gen = in.gen
			in.m[e.s] = e
		}
		return e.s
	}
	if in.m == nil {
		in.m = map[string]internEntry{}
	}
	s := string(b)
	in.m[s] = internEntry{s: s, gen: in.gen}
	return s
}

// sweep forgets the names not used since the last sweep.
func (in *interner) sweep() {
	for k, e := range in.m {
		if e.gen != in.gen {
			delete(in.m, k)
		}
	}
	in.gen++
}

// jsonScan walks a JSON document without building it: the caller reads the
// members it wants (object, member, str, int) and skips the others (skip).
// Malformed input sets bad and ends the walk; nothing allocates except the
// unescaping of a string with escapes, into a reused buffer.
type jsonScan struct {
	d     []byte
	i     int
	bad   bool
	first bool   // an object was just entered: its first member needs no comma
	key   []byte // the current member's key (valid until the next str)
	esc   []byte // unescaped strings
}

func (s *jsonScan) reset(d []byte) { s.d, s.i, s.bad, s.first, s.key = d, 0, false, false, nil }

// fail marks the document malformed and ends the walk.
func (s *jsonScan) fail() { s.bad, s.i = true, len(s.d) }

// peek returns the next byte after white space, 0 at the end.
func (s *jsonScan) peek() byte {
	for s.i < len(s.d) {
		switch c := s.d[s.i]; c {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return c
		}
	}
	return 0
}

// object enters the object that is the next value and reports true, or
// skips a value of another kind and reports false.
func (s *jsonScan) object() bool {
	if s.peek() == '{' {
		s.i++
		s.first = true
		return true
	}
	s.skip()
	return false
}

// member moves to the next member of the object being read: true with its
// key in s.key and the scanner at its value (which the caller must read or
// skip), false at the end of the object (consumed) or of the input.
func (s *jsonScan) member() bool {
	switch c := s.peek(); {
	case c == '}':
		s.i++
		s.first = false // what follows belongs to the enclosing value
		return false
	case c == ',' && !s.first:
		s.i++
	case c == '"' && s.first:
	default:
		s.fail()
		return false
	}
	s.first = false
	if s.peek() != '"' {
		s.fail()
		return false
	}
	s.key = s.str()
	if s.bad || s.peek() != ':' {
		s.fail()
		return false
	}
	s.i++
	return true
}

// str reads a string value (valid until the next str); a value of another
// kind is skipped and reads as empty.
func (s *jsonScan) str() []byte {
	if s.peek() != '"' {
		s.skip()
		return nil
	}
	start := s.i + 1
	for j := start; j < len(s.d); j++ {
		switch s.d[j] {
		case '"':
			s.i = j + 1
			return s.d[start:j]
		case '\\':
			return s.unescape(start)
		}
	}
	s.fail()
	return nil
}

// unescape reads the string starting at start, which has escapes.
func (s *jsonScan) unescape(start int) []byte {
	out := s.esc[:0]
	for j := start; j < len(s.d); {
		c := s.d[j]
		switch {
		case c == '"':
			s.i, s.esc = j+1, out
			return out
		case c != '\\':
			out = append(out, c)
			j++
			continue
		case j+1 >= len(s.d):
			s.fail()
			return nil
		}
		switch e := s.d[j+1]; e {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if j+6 > len(s.d) {
				s.fail()
				return nil
			}
			r, err := strconv.ParseUint(string(s.d[j+2:j+6]), 16, 32)
			if err != nil {
				s.fail()
				return nil
			}
			out = utf8.AppendRune(out, rune(r)) // a lone surrogate becomes U+FFFD
			j += 4
		default:
			out = append(out, e)
		}
		j += 2
	}
	s.fail()
	return nil
}

// int reads an integer value (a fraction or exponent is dropped); a value
// of another kind is skipped and reads as 0.
func (s *jsonScan) int() int64 {
	c := s.peek()
	if c != '-' && (c < '0' || c > '9') {
		s.skip()
		return 0
	}
	neg := c == '-'
	if neg {
		s.i++
	}
	var v int64
	digits := 0
	for ; s.i < len(s.d) && s.d[s.i] >= '0' && s.d[s.i] <= '9'; s.i++ {
		v = v*10 + int64(s.d[s.i]-'0')
		digits++
	}
	if digits == 0 {
		s.fail()
		return 0
	}
	for s.i < len(s.d) && isNumberByte(s.d[s.i]) {
		s.i++
	}
	if neg {
		v = -v
	}
	return v
}

func isNumberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// skip passes over the next value, whatever it is.
func (s *jsonScan) skip() {
	switch s.peek() {
	case 0:
		s.fail()
	case '"':
		s.skipString()
	case '{', '[':
		depth := 0
		for s.i < len(s.d) {
			switch s.d[s.i] {
			case '"':
				s.skipString()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return
				}
			}
			s.i++
		}
		s.fail()
	case '}', ']', ',', ':':
		s.fail()
	default: // number, true, false, null
		for s.i < len(s.d) {
			switch s.d[s.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			s.i++
		}
	}
}

// skipString passes over the string at s.i.
func (s *jsonScan) skipString() {
	for j := s.i + 1; j < len(s.d); j++ {
		switch s.d[j] {
		case '\\':
			j++
		case '"':
			s.i = j + 1
			return
		}
	}
	s.fail()
}
