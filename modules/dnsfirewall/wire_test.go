package dnsfirewall

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
)

func fuzzAnswers() []*Answers {
	var out []*Answers
	for _, k := range []blockKind{blockNXDomain, blockRefused, blockNoData, blockAddress} {
		c := Config{Block: Block{Answer: "nxdomain", A: "192.0.2.9", AAAA: "2001:db8::9", SOA: true,
			SOAName: "a.invalid.", SOAMail: "b.invalid."}, Sinkhole: Sinkhole{A: "192.0.2.1", AAAA: "::1",
			Category: []string{"0x4 192.0.2.4 2001:db8::4"}}}
		if err := c.Validate(nil); err != nil {
			panic(err)
		}
		c.Answers.BlockKind = k
		out = append(out, &c.Answers)
	}
	return out
}

// checkAnswer decodes an answer the firewall built for msg: a response
// with the query's id and, when the query's question was readable, that
// question; counts that match the records present.
func checkAnswer(t *testing.T, what string, msg, resp []byte, q *query) {
	t.Helper()
	if len(resp) > 1024 {
		t.Fatalf("%s: %d-byte answer", what, len(resp))
	}
	var r dnsdecode.Result
	dnsdecode.NewMessageDecoder().DecodeDNS(resp, &r)
	if r.Kind != dnsdecode.Response || r.ID != q.id {
		t.Fatalf("%s: answer %x decodes as %v/%v id %x, want a response with id %x", what, resp, r.Kind, r.Reason, r.ID, q.id)
	}
	if q.qend > 12 {
		if r.QDCount != 1 || string(resp[12:r.QEnd]) != string(msg[12:q.qend]) {
			t.Fatalf("%s: question not echoed: %x vs %x", what, resp, msg[12:q.qend])
		}
	}
	off := int(r.QEnd)
	if r.QDCount == 0 {
		off = 12
	}
	for i := 0; i < int(r.ANCount+r.NSCount+r.ARCount); i++ {
		end, ok := skipName(resp, off)
		if !ok || end+10 > len(resp) {
			t.Fatalf("%s: record %d unreadable in %x", what, i, resp)
		}
		off = end + 10 + int(binary.BigEndian.Uint16(resp[end+8:]))
	}
	if off != len(resp) {
		t.Fatalf("%s: records end at %d of %d bytes", what, off, len(resp))
	}
}

// FuzzQuery feeds any bytes to the query path: parse never panics, and
// every answer built from what it accepted is a well-formed response to it.
// The seed corpus is testdata/fuzz/FuzzQuery.
func FuzzQuery(f *testing.F) {
	f.Add(rawQuery(7, "blocked.example"))
	f.Add(append(rawQuery(8, "x.example"), 0, 0, 41, 4, 0xd0, 0, 0, 0x80, 0, 0, 0)) // with OPT, DO set
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	answers := fuzzAnswers()
	dec := dnsdecode.NewMessageDecoder()
	f.Fuzz(func(t *testing.T, msg []byte) {
		var q query
		var r dnsdecode.Result
		v, _ := parse(dec, &r, msg, &q)
		dst := make([]byte, 0, 1024)
		switch v {
		case vDrop:
			return
		case vFormErr, vNotImp:
			checkAnswer(t, "rcode", msg, rcodeOnly(dst, msg, &q, rcodeFormErr), &q)
			return
		}
		for _, a := range answers {
			checkAnswer(t, "block", msg, blockAnswer(dst, msg, &q, a), &q)
			checkAnswer(t, "sinkhole", msg, sinkholeAnswer(dst, msg, &q, a, 4), &q)
		}
		checkAnswer(t, "servfail", msg, rcodeOnly(dst, msg, &q, rcodeServFail), &q)
		hq := headerOnly(msg)
		checkAnswer(t, "servfail later", msg, rcodeOnly(dst, msg, &hq, rcodeServFail), &hq)
	})
}

// TestFuzzCorpusKept: the seed corpus is in the repository.
func TestFuzzCorpusKept(t *testing.T) {
	ents, err := os.ReadDir(filepath.Join("testdata", "fuzz", "FuzzQuery"))
	if err != nil || len(ents) < 5 {
		t.Fatalf("testdata/fuzz/FuzzQuery: %d files, %v", len(ents), err)
	}
}

// TestUpstreamHealth: timeouts in a row take an upstream down only when it
// has not answered for a whole timeout; while down it gets one probe per
// probe interval; an answer brings it back.
func TestUpstreamHealth(t *testing.T) {
	s := &settings{downAfter: 3, timeout: time.Second, probe: time.Second}
	u := newUpstream(netip.MustParseAddrPort("127.0.0.1:53"))
	s.upstreams = []*upstream{u}
	now := time.Now().UnixNano()
	u.answer(now-1000, now)
	for range 5 {
		u.missed()
	}
	if !u.up(now+int64(500*time.Millisecond), s) {
		t.Error("down after timeouts although it answered 0.5 s ago")
	}
	later := now + int64(2*time.Second)
	if u.up(later, s) {
		t.Error("up after 5 timeouts and no answer for 2 s")
	}
	if s.pick(later, nil) != u {
		t.Error("the first query after the probe interval is not sent as a probe")
	}
	if s.pick(later+1, nil) != nil {
		t.Error("a second query within the probe interval went to a down upstream")
	}
	u.answer(later, later+1000)
	if !u.up(later+2000, s) || s.pick(later+2000, nil) != u {
		t.Error("not back in service after an answer")
	}
}
