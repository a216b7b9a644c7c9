package cdr_test

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// lineBackend writes each CDR as one JSON line to a strings.Builder: a
// synchronous destination, so Flush counts its records delivered at once.
type lineBackend struct {
	st  *cdr.Stats
	mu  sync.Mutex
	out strings.Builder
}

func (b *lineBackend) Name() string                    { return "lines" }
func (b *lineBackend) Attach(r *cdr.Registration)      { b.st = r.Stats() }
func (b *lineBackend) FlushAfter() time.Duration       { return 100 * time.Millisecond }
func (b *lineBackend) NewBatcher() cdr.Batcher         { return &lineBatch{b: b} }
func (b *lineBackend) WriteStatus(w func(l, v string)) { w("Destination", "a strings.Builder") }

// lineBatch encodes records as they are added, so it keeps nothing of them.
type lineBatch struct {
	b   *lineBackend
	buf []byte
	n   int
}

func (l *lineBatch) Add(r *cdr.Record) bool {
	l.buf = append(cdr.AppendJSON(l.buf, r), '\n')
	l.n++
	return l.n >= 2 // full at two records
}

func (l *lineBatch) Len() int { return l.n }

func (l *lineBatch) Flush() {
	l.b.mu.Lock()
	l.b.out.Write(l.buf)
	l.b.mu.Unlock()
	l.b.st.AddDelivered(uint64(l.n)) // every record of the batch, once
	l.buf, l.n = l.buf[:0], 0
}

// A backend that writes JSON lines, registered with an engine, three
// records posted, the engine closed (which hands over the last batch), and
// the counters that "cdr show status" prints.
func Example_backend() {
	e := cdr.NewEngine()
	b := &lineBackend{}
	reg, err := e.Register(b)
	if err != nil {
		panic(err)
	}
	p := e.NewPoster()
	for i, name := range []string{"a.example", "blocked.example", "c.example"} {
		act := decision.Allow
		if i == 1 {
			act = decision.Block
		}
		p.Post(&cdr.Record{TS: 1717430400000 + int64(i), IP: netip.MustParseAddr("192.0.2.7"),
			SubscriberID: "subscriber-7", Domain: []byte(name), QType: 1, Action: act, Group: 3, Category: 2})
	}
	p.Close()
	reg.Unregister()
	// Each record got an ID from Post: the engine's random instance (shown
	// here as <instance>) and a number.
	fmt.Print(strings.ReplaceAll(b.out.String(), fmt.Sprintf("%016x", e.Instance()), "<instance>"))
	s := reg.Snapshot()
	fmt.Printf("posted %d, delivered %d, queued %d, balanced %v\n", s.Posted, s.Delivered, s.Queued, s.Balanced())
	// Output:
	// {"ts":1717430400000,"ip":"192.0.2.7","subscriber_id":"subscriber-7","domain":"a.example","qtype":1,"action":"allow","group":3,"category":"0x00000002","id":"<instance>-1"}
	// {"ts":1717430400001,"ip":"192.0.2.7","subscriber_id":"subscriber-7","domain":"blocked.example","qtype":1,"action":"block","group":3,"category":"0x00000002","id":"<instance>-2"}
	// {"ts":1717430400002,"ip":"192.0.2.7","subscriber_id":"subscriber-7","domain":"c.example","qtype":1,"action":"allow","group":3,"category":"0x00000002","id":"<instance>-3"}
	// posted 3, delivered 3, queued 0, balanced true
}
