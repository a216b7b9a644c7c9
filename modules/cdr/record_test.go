package cdr

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

func sample() *Record {
	return &Record{
		TS:           1717430400123,
		IP:           netip.MustParseAddr("192.168.1.42"),
		SubscriberID: "subscriber-42",
		Domain:       []byte("malware.ru"),
		QType:        1,
		Action:       decision.Sinkhole,
		Group:        3,
		Category:     1,
	}
}

func TestAppendJSONWireFormat(t *testing.T) {
	got := string(AppendJSON(nil, sample()))
	want := `{"ts":1717430400123,"ip":"192.168.1.42","subscriber_id":"subscriber-42","domain":"malware.ru","qtype":1,"action":"sinkhole","group":3,"category":"0x00000001"}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	r := sample()
	r.Seq = 77
	r.Category = 0xdeadbeef
	r.IP = netip.MustParseAddr("2001:db8::1")
	got = string(AppendJSON(nil, r))
	want = `{"ts":1717430400123,"ip":"2001:db8::1","subscriber_id":"subscriber-42","domain":"malware.ru","qtype":1,"action":"sinkhole","group":3,"category":"0xdeadbeef","seq":77}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	r.IP = netip.MustParseAddr("fe80::1%eth\"0")
	if !json.Valid(AppendJSON(nil, r)) {
		t.Fatalf("zone: invalid JSON %s", AppendJSON(nil, r))
	}
	r.IP = netip.Addr{}
	if got := string(AppendJSON(nil, r)); !strings.Contains(got, `"ip":""`) {
		t.Fatalf("invalid addr: %s", got)
	}
}

// The "action" field carries exactly the action names.
func TestAppendJSONAction(t *testing.T) {
	for a, want := range map[decision.Action]string{decision.Allow: "allow", decision.Block: "block", decision.Sinkhole: "sinkhole", 9: "action(9)"} {
		r := sample()
		r.Action = a
		if got := string(AppendJSON(nil, r)); !strings.Contains(got, `,"action":"`+want+`","group":`) {
			t.Errorf("%d: %s", uint8(a), got)
		}
		checkRoundTrip(t, r)
	}
}

func TestAppendJSONEscapes(t *testing.T) {
	for _, d := range []string{"a\"b", "a\\b", "\x00\x01\x1f\x7f", "\n\r\t", "\xff\xfe", "é.example", "\u2028\u2029", "ok\xc3", "<&>"} {
		r := sample()
		r.Domain = []byte(d)
		r.SubscriberID = d
		checkRoundTrip(t, r)
	}
}

// wire is the decoded form of the wire format.
type wire struct {
	TS           int64  `json:"ts"`
	IP           string `json:"ip"`
	SubscriberID string `json:"subscriber_id"`
	Domain       string `json:"domain"`
	QType        uint16 `json:"qtype"`
	Action       string `json:"action"`
	Group        uint32 `json:"group"`
	Category     string `json:"category"`
	Seq          uint64 `json:"seq"`
}

// want returns s as encoding/json would carry it: each byte that is not
// part of valid UTF-8 becomes U+FFFD.
func wantString(s []byte) string {
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		b.WriteRune(r)
		s = s[n:]
	}
	return b.String()
}

func checkRoundTrip(t testing.TB, r *Record) {
	t.Helper()
	out := AppendJSON(nil, r)
	if !json.Valid(out) {
		t.Fatalf("invalid JSON for domain %q: %s", r.Domain, out)
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		t.Fatalf("decode %s: %v", out, err)
	}
	if w.Domain != wantString(r.Domain) {
		t.Fatalf("domain %q came back as %q", r.Domain, w.Domain)
	}
	if w.SubscriberID != wantString([]byte(r.SubscriberID)) {
		t.Fatalf("subscriber %q came back as %q", r.SubscriberID, w.SubscriberID)
	}
	// Same result as encoding/json.
	std, _ := json.Marshal(string(r.Domain))
	var s string
	if err := json.Unmarshal(std, &s); err != nil || s != w.Domain {
		t.Fatalf("encoding/json gives %q, we give %q", s, w.Domain)
	}
	if w.TS != r.TS || w.QType != r.QType || w.Group != r.Group || w.Seq != r.Seq || w.Action != r.Action.String() {
		t.Fatalf("fields differ: %+v vs %+v", w, r)
	}
	// Field order.
	keys := []string{`"ts":`, `"ip":`, `"subscriber_id":`, `"domain":`, `"qtype":`, `"action":`, `"group":`, `"category":`}
	last := -1
	for _, k := range keys {
		i := bytes.Index(out, []byte(k))
		if i <= last {
			t.Fatalf("field %s out of order in %s", k, out)
		}
		last = i
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add([]byte("malware.ru"), "subscriber-42", uint32(1), uint64(0))
	f.Add([]byte("a\"b\\c\x00\xff"), "x\ny", uint32(0xffffffff), uint64(1))
	f.Add([]byte("\u2028é"), "", uint32(0), uint64(1<<63))
	f.Fuzz(func(t *testing.T, domain []byte, sub string, cat uint32, seq uint64) {
		r := sample()
		r.Domain, r.SubscriberID, r.Category, r.Seq = domain, sub, cat, seq
		r.Action = decision.Action(seq) // every value, including ones that are not actions
		checkRoundTrip(t, r)
	})
}

func TestAppendJSONNoAlloc(t *testing.T) {
	r := sample()
	buf := make([]byte, 0, 512)
	n := testing.AllocsPerRun(1000, func() { buf = AppendJSON(buf[:0], r) })
	if n != 0 {
		t.Fatalf("AppendJSON allocates %v times", n)
	}
}

func TestKeys(t *testing.T) {
	if got := AppendKeyBinary(nil, netip.MustParseAddr("192.168.1.42")); !bytes.Equal(got, []byte{192, 168, 1, 42}) {
		t.Fatalf("v4 key %v", got)
	}
	if got := AppendKeyBinary(nil, netip.MustParseAddr("::ffff:10.0.0.1")); !bytes.Equal(got, []byte{10, 0, 0, 1}) {
		t.Fatalf("mapped key %v", got)
	}
	if got := AppendKeyBinary(nil, netip.MustParseAddr("2001:db8::1")); len(got) != 16 {
		t.Fatalf("v6 key %v", got)
	}
	if got := string(AppendKeyText(nil, netip.MustParseAddr("::ffff:10.0.0.1"))); got != "10.0.0.1" {
		t.Fatalf("text key %q", got)
	}
}

func BenchmarkAppendJSON(b *testing.B) {
	r := sample()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendJSON(buf[:0], r)
	}
	b.SetBytes(int64(len(buf)))
}

func TestIDText(t *testing.T) {
	r := sample()
	r.ID = ID{Instance: 0x9f3a0c1b2d4e5f60, N: 42}
	r.Seq = 7
	want := `,"category":"0x00000001","id":"9f3a0c1b2d4e5f60-42","seq":7}`
	if got := string(AppendJSON(nil, r)); !strings.HasSuffix(got, want) {
		t.Fatalf("got %s, want it to end in %s", got, want)
	}
	if s := (ID{Instance: 1, N: 2}).String(); s != "0000000000000001-2" {
		t.Fatalf("String %q", s)
	}
	buf := make([]byte, 0, 512)
	if n := testing.AllocsPerRun(1000, func() { buf = AppendJSON(buf[:0], r) }); n != 0 {
		t.Fatalf("AppendJSON with an ID allocates %v times", n)
	}
}

// Post numbers records uniquely across Posters and keeps one ID per record
// for every backend.
func TestPostGivesUniqueIDs(t *testing.T) {
	e := NewEngine()
	a, b := &fakeBackend{name: "a", max: 1, age: time.Hour}, &fakeBackend{name: "b", max: 1, age: time.Hour}
	e.Register(a)
	e.Register(b)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := e.NewPoster()
			defer p.Close()
			for i := 0; i < 3*idBlock; i++ {
				p.Post(sample())
			}
		}()
	}
	wg.Wait()
	ids := map[string]bool{}
	for _, line := range a.records() {
		m := regexp.MustCompile(`"id":"([0-9a-f]{16})-(\d+)"`).FindStringSubmatch(line)
		if m == nil || m[1] != fmt.Sprintf("%016x", e.Instance()) {
			t.Fatalf("record without the engine's ID: %s", line)
		}
		if ids[m[0]] {
			t.Fatalf("ID %s given twice", m[0])
		}
		ids[m[0]] = true
	}
	if len(ids) != 4*3*idBlock {
		t.Fatalf("%d IDs for %d records", len(ids), 4*3*idBlock)
	}
	// Both backends saw the same records with the same IDs.
	sa, sb := a.records(), b.records()
	sort.Strings(sa)
	sort.Strings(sb)
	if strings.Join(sa, "\n") != strings.Join(sb, "\n") {
		t.Fatal("the two backends got different IDs")
	}
}
