package decision

import (
	"encoding"
	"encoding/json"
	"testing"
)

var (
	_ encoding.TextAppender    = Allow
	_ encoding.TextMarshaler   = Allow
	_ encoding.TextUnmarshaler = (*Action)(nil)
)

// The text forms are the wire, configuration and label text: they must not
// change.
func TestNames(t *testing.T) {
	for a, want := range map[Action]string{Allow: "allow", Block: "block", Sinkhole: "sinkhole", 3: "action(3)", 255: "action(255)"} {
		if got := a.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", uint8(a), got, want)
		}
		b, err := a.AppendText([]byte("x"))
		if err != nil || string(b) != "x"+want {
			t.Errorf("%d.AppendText = %q, %v", uint8(a), b, err)
		}
		m, err := a.MarshalText()
		if err != nil || string(m) != want {
			t.Errorf("%d.MarshalText = %q, %v", uint8(a), m, err)
		}
		if a.Valid() != (a < NumActions) {
			t.Errorf("%d.Valid() = %v", uint8(a), a.Valid())
		}
	}
}

func TestParse(t *testing.T) {
	for a := Action(0); a < NumActions; a++ {
		got, err := Parse(a.String())
		if err != nil || got != a {
			t.Errorf("Parse(%q) = %v, %v", a.String(), got, err)
		}
	}
	for _, s := range []string{"", "Allow", "deny", "action(3)", " allow"} {
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
	_, err := Parse("deny")
	if want := `unknown action "deny" (want allow, block or sinkhole)`; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestJSON(t *testing.T) {
	type rec struct {
		Action Action `json:"action"`
	}
	b, err := json.Marshal(rec{Sinkhole})
	if err != nil || string(b) != `{"action":"sinkhole"}` {
		t.Fatalf("marshal: %s, %v", b, err)
	}
	var r rec
	if err := json.Unmarshal([]byte(`{"action":"block"}`), &r); err != nil || r.Action != Block {
		t.Fatalf("unmarshal: %v, %v", r.Action, err)
	}
	if err := json.Unmarshal([]byte(`{"action":"deny"}`), &r); err == nil {
		t.Fatal("unmarshal accepted deny")
	}
}

func TestAppendTextNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 64)
	n := testing.AllocsPerRun(1000, func() {
		buf, _ = Sinkhole.AppendText(buf[:0])
		buf, _ = Action(200).AppendText(buf)
	})
	if n != 0 {
		t.Fatalf("AppendText allocates %v times", n)
	}
}

func TestActionSet(t *testing.T) {
	if AllActions != SetOf(Allow, Block, Sinkhole) || AllActions.String() != "allow,block,sinkhole" {
		t.Fatalf("AllActions %08b %q", AllActions, AllActions)
	}
	s := SetOf(Sinkhole, Block)
	if s.Has(Allow) || !s.Has(Block) || !s.Has(Sinkhole) || s.Has(3) || s.Has(200) {
		t.Fatalf("Has wrong for %08b", s)
	}
	if s.String() != "block,sinkhole" || ActionSet(0).String() != "none" || SetOf().String() != "none" {
		t.Fatalf("String: %q %q", s, ActionSet(0))
	}
	var m ActionSet
	m |= 1 << Block // the bit layout: 1<<a
	if m != SetOf(Block) {
		t.Fatalf("bit layout %08b", m)
	}
}
