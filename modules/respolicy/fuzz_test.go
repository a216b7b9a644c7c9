package respolicy

import (
	"slices"
	"testing"
)

var fuzzSeeds = []string{
	`{"type":"BEGIN_SYNC","group_id":"enterprise_a"}`,
	`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"blocked.com","action":"blacklist","category":2}`,
	`{"type":"ADD_DOMAIN","group_id":"enterprise_a","domain":"Google.COM.","action":"whitelist","category":1}`,
	`{"type":"REMOVE_DOMAIN","group_id":"enterprise_a","domain":"x.com"}`,
	`{"type":"SYNC_COMPLETE","group_id":"enterprise_a"}`,
	`{"type":"ADD_MALICIOUS","domain":"c2.evil.net","category":4,"confidence":98}`,
	`{"type":"ADD_MALICIOUS","domain":"*.evil.net","confidence":101}`,
	`{"type":"ADD_DOMAIN","group_id":"g","domain":"a..b","action":"blacklist"}`,
	`{"type":"ADD_DOMAIN","group_id":"g","domain":"ok.com","action":"greylist"}`,
	`{"type":"ADD_DOMAIN","group_id":"g","domain":"ok.com","action":"blacklist","category":-3}`,
	`{"type":"ADD_PATTERN","group_id":"g","pattern":"^ad[sxv]?[0-9]*\\.","action":"blacklist","category":2}`,
	`{"type":"ADD_PATTERN","pattern":"(^|\\.)track(ing)?[0-9]*\\.","action":"malicious","confidence":60}`,
	`{"type":"ADD_PATTERN","pattern":"*.ads.*","syntax":"wildcard","action":"whitelist"}`,
	`{"type":"ADD_PATTERN","pattern":"(a)\\1","action":"blacklist"}`,
	`{"type":"ADD_PATTERN","pattern":".*","action":"blacklist"}`,
	`{"type":"REMOVE_PATTERN","group_id":"g","pattern":"x","syntax":"wildcard"}`,
	`{"type":"NOPE"}`,
	`{"group_id":"g"}`,
	`{"type":"BEGIN_SYNC","group_id":""}`,
	`{"type":7}`,
	`[]`,
	`{`,
	``,
	`null`,
	"{\"type\":\"BEGIN_SYNC\",\"group_id\":\"a b\"}",
	`{"type":"ADD_DOMAIN","group_id":"g","domain":"ok.com","action":"blacklist","category":4294967296}`,
}

// FuzzParseMessage: every input is either a valid message that survives a
// round trip through its wire form, or a *RejectError with a known reason;
// applied to a store, it moves exactly one counter: messages by type, or
// rejected by its reason.
func FuzzParseMessage(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := NewStore(StoreConfig{})
		src := "fuzz"
		msg, err := ParseMessage(data)
		if err != nil {
			reason := RejectReason(err)
			if !slices.Contains(RejectReasons, reason) {
				t.Fatalf("%q: error %v has no known reason", data, err)
			}
			s.CountReject(src, reason)
		} else {
			if !slices.Contains(MessageTypes, msg.Type) {
				t.Fatalf("%q: type %q accepted", data, msg.Type)
			}
			wire, merr := msg.MarshalJSON()
			if merr != nil {
				t.Fatal(merr)
			}
			back, perr := ParseMessage(wire)
			if perr != nil || back != msg {
				t.Fatalf("%q: round trip %s -> %+v, %v (want %+v)", data, wire, back, perr, msg)
			}
			err = s.Apply(src, msg)
		}
		c := s.Counters()
		total := uint64(0)
		for _, n := range c.Messages[src] {
			total += n
		}
		for _, n := range c.Rejected[src] {
			total += n
		}
		if total != 1 {
			t.Fatalf("%q: counters moved by %d: %+v", data, total, c)
		}
		if err != nil && c.Rejected[src][RejectReason(err)] != 1 {
			t.Fatalf("%q: reason %s not counted: %+v", data, RejectReason(err), c)
		}
	})
}
