package respolicy

import (
	"encoding/json"
	"strings"
	"testing"
)

// The wire names are the feed's "type" values, the CLI's column heads and
// the metrics' type labels: they must not change.
func TestMessageTypeNames(t *testing.T) {
	want := []string{"BEGIN_SYNC", "ADD_DOMAIN", "REMOVE_DOMAIN", "SYNC_COMPLETE", "ADD_MALICIOUS", "ADD_PATTERN", "REMOVE_PATTERN"}
	if len(MessageTypes) != len(want) {
		t.Fatalf("MessageTypes %v", MessageTypes)
	}
	for i, typ := range MessageTypes {
		if typ.String() != want[i] || !typ.Valid() {
			t.Errorf("MessageTypes[%d] = %v (valid %v), want %s", i, typ, typ.Valid(), want[i])
		}
		got, err := ParseMessageType(want[i])
		if err != nil || got != typ {
			t.Errorf("ParseMessageType(%q) = %v, %v", want[i], got, err)
		}
	}
	for _, typ := range []MessageType{0, TypeRemovePattern + 1, 255} {
		if typ.Valid() || typ.String() == "" || strings.Contains(strings.Join(want, " "), typ.String()) {
			t.Errorf("%d: valid %v, String %q", uint8(typ), typ.Valid(), typ.String())
		}
	}
}

// Unknown types are rejected with reason unknown_type and the raw type
// quoted (truncated when long), by ParseMessageType and ParseMessage alike.
func TestUnknownMessageType(t *testing.T) {
	long := strings.Repeat("X", 70)
	for s, want := range map[string]string{
		"NOPE":           `unknown_type: type "NOPE"`,
		"begin_sync":     `unknown_type: type "begin_sync"`,
		"":               `unknown_type: type ""`,
		"MessageType(1)": `unknown_type: type "MessageType(1)"`,
		long:             `unknown_type: type "` + long[:64] + `..."`,
	} {
		if _, err := ParseMessageType(s); err == nil || err.Error() != want || RejectReason(err) != ReasonUnknownType {
			t.Errorf("ParseMessageType(%q): %v, want %s", s, err, want)
		}
		line, _ := json.Marshal(map[string]string{"type": s, "group_id": "g"})
		if _, err := ParseMessage(line); err == nil || err.Error() != want {
			t.Errorf("ParseMessage(%s): %v, want %s", line, err, want)
		}
	}
	s := NewStore(StoreConfig{})
	err := s.Apply("api", Message{Group: "g"})
	if RejectReason(err) != ReasonUnknownType || s.Counters().Rejected["api"][ReasonUnknownType] != 1 {
		t.Fatalf("zero type: %v, counters %+v", err, s.Counters())
	}
}

// MarshalJSON writes the type by its wire name.
func TestMessageWireType(t *testing.T) {
	for _, typ := range MessageTypes {
		m := Message{Type: typ, Group: "g", Domain: "a.example", List: ListBlacklist}
		switch typ {
		case TypeAddMalicious:
			m.Group, m.List = "", ListMalicious
		case TypeAddPattern, TypeRemovePattern:
			m.Domain, m.Pattern = "", `^a\.`
		}
		b, err := json.Marshal(m)
		if err != nil || !strings.HasPrefix(string(b), `{"type":"`+typ.String()+`"`) {
			t.Fatalf("%v: %s, %v", typ, b, err)
		}
		back, err := ParseMessage(b)
		if err != nil || back.Type != typ {
			t.Fatalf("%v: %s parsed as %+v, %v", typ, b, back, err)
		}
	}
}
