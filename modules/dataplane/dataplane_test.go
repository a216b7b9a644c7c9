package dataplane

import (
	"net/netip"
	"testing"

	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/dataplane/subscribers"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// nameDecider decides by name: "b.example" block, "s.example" sinkhole,
// "x.example" an invalid action, anything else allow; the group id is the
// length of the group name.
type nameDecider struct{ closed bool }

func (d *nameDecider) DecideBurst(groups []string, q [][]byte, out []Decision) {
	for i := range q {
		out[i] = Decision{Group: uint32(len(groups[i]))}
		switch string(q[i]) {
		case "b.example":
			out[i].Action, out[i].Category = decision.Block, 4
		case "s.example":
			out[i].Action = decision.Sinkhole
		case "x.example":
			out[i].Action = 200
		}
	}
}

func (d *nameDecider) Close() { d.closed = true }

type recPoster struct {
	recs   []cdr.Record
	closed bool
}

func (p *recPoster) Post(r *cdr.Record) { p.recs = append(p.recs, *r) }
func (p *recPoster) Close()             { p.closed = true }

func TestPathDecidesPostsAndCounts(t *testing.T) {
	sub := &subscribers.Subscriber{ID: "sub-1", Group: "enterprise"}
	tab, err := subscribers.Build(&subscribers.Subscriber{ID: "unknown", Group: "default"},
		[]subscribers.Entry{{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Subscriber: sub}})
	if err != nil {
		t.Fatal(err)
	}
	sh := NewShared(subscribers.NewHolder(tab), decision.SetOf(decision.Block, decision.Sinkhole))
	dec, post := &nameDecider{}, &recPoster{}
	p := NewPath(sh, dec, post)
	in, out := netip.MustParseAddr("10.1.2.3"), netip.MustParseAddr("192.0.2.9")
	qs := []Query{
		{TS: 1, IP: in, Name: []byte("b.example"), QType: 1},
		{TS: 2, IP: out, Name: []byte("s.example"), QType: 28},
		{TS: 3, IP: in, Name: []byte("a.example"), QType: 1},
		{TS: 4, IP: in, Name: []byte("x.example"), QType: 1},
	}
	res := make([]Result, len(qs))
	p.Decide(qs, res)

	want := []struct {
		act     decision.Action
		sub     string
		covered bool
		group   uint32
	}{
		{decision.Block, "sub-1", true, 10},
		{decision.Sinkhole, "unknown", false, 7},
		{decision.Allow, "sub-1", true, 10},
		{decision.Allow, "sub-1", true, 10},
	}
	for i, w := range want {
		r := res[i]
		if r.Action != w.act || r.Subscriber.ID != w.sub || (tab.Lookup(qs[i].IP) != tab.Default()) != w.covered || r.Group != w.group {
			t.Errorf("query %d: got %v %s covered=%v group=%d, want %v %s covered=%v group=%d",
				i, r.Action, r.Subscriber.ID, tab.Lookup(qs[i].IP) != tab.Default(), r.Group, w.act, w.sub, w.covered, w.group)
		}
	}
	if len(post.recs) != 2 {
		t.Fatalf("posted %d CDRs, want 2 (block and sinkhole only)", len(post.recs))
	}
	if r := post.recs[0]; r.TS != 1 || r.SubscriberID != "sub-1" || string(r.Domain) != "b.example" || r.Action != decision.Block || r.Category != 4 || r.IP != in {
		t.Errorf("first CDR %+v", r)
	}
	if r := post.recs[1]; r.QType != 28 || r.SubscriberID != "unknown" || r.Action != decision.Sinkhole {
		t.Errorf("second CDR %+v", r)
	}
	c := p.Counters()
	if c.Decided != [decision.NumActions]uint64{2, 1, 1} || c.CDRs != 2 || c.CDRSkipped != [decision.NumActions]uint64{2, 0, 0} {
		t.Errorf("counters %+v", c)
	}

	sh.SetCDRActions(decision.AllActions)
	p.Decide(qs[2:3], res)
	if len(post.recs) != 3 {
		t.Errorf("after SetCDRActions(all) an allow decision posted %d CDRs in all, want 3", len(post.recs))
	}
	p.Close()
	if !dec.closed || !post.closed {
		t.Error("Close did not close the decider and the poster")
	}
}

func TestPathWithoutPosterCountsSkipped(t *testing.T) {
	p := NewPath(NewShared(nil, 0), &nameDecider{}, nil)
	res := make([]Result, 1)
	p.Decide([]Query{{IP: netip.MustParseAddr("::1"), Name: []byte("b.example")}}, res)
	if c := p.Counters(); c.CDRSkipped[decision.Block] != 1 || c.CDRs != 0 {
		t.Errorf("counters %+v", c)
	}
	if res[0].Subscriber.ID != "unknown" {
		t.Errorf("result %+v", res[0])
	}
	// A subscriber the caller looked up is used as given.
	given := &subscribers.Subscriber{ID: "given", Group: "g"}
	p.Decide([]Query{{IP: netip.MustParseAddr("::1"), Name: []byte("a.example"), Subscriber: given}}, res)
	if res[0].Subscriber != given {
		t.Errorf("result %+v", res[0])
	}
}
