package dnsfirewall

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/switchboard-dp/switchboard/modules/dataplane"
)

// SocketStatus is one bound socket.
type SocketStatus struct {
	Proto  string // "udp" or "tcp"
	Addr   netip.AddrPort
	Worker int // the UDP socket's worker; -1 for TCP
}

// UpstreamStatus is one upstream's health and counters.
type UpstreamStatus struct {
	Addr                                  string
	Up                                    bool
	Sent, Answered, Timeouts, TCP, Errors uint64
	// Latency is the moving average of the answer time.
	Latency time.Duration
}

// Status is a snapshot of the firewall.
type Status struct {
	Sockets []SocketStatus
	// Queries counts messages received; QPS is their rate.
	Queries uint64
	QPS     float64
	// Kinds counts what became of them, indexed like kindNames.
	Kinds [numKinds]uint64
	// FormErrs counts FORMERR answers by reason.
	FormErrs   map[string]uint64
	ReadErrors uint64
	// Decisions are the decision paths' totals.
	Decisions dataplane.Counters
	// Waiting is the number of forwarded queries waiting for an answer.
	Waiting   int
	Upstreams []UpstreamStatus
	Uptime    time.Duration
}

func (s *Status) add(c *counters) {
	s.Queries += c.queries.Load()
	for k := range s.Kinds {
		s.Kinds[k] += c.kinds[k].Load()
	}
	c.formErrs.Range(func(k, v any) bool {
		s.FormErrs[k.(string)] += v.(*atomic.Uint64).Load()
		return true
	})
	s.ReadErrors += c.readErrs.Load()
}

// Status returns the firewall's counters and upstream health.
func (f *Firewall) Status() Status {
	s := Status{Sockets: f.sockets, FormErrs: map[string]uint64{}, Uptime: time.Since(f.started)}
	for _, w := range f.workers {
		s.add(&w.c)
		s.Decisions.Add(w.path.Counters())
		s.Waiting += int(w.inflight.Load())
	}
	if f.tcpSide != nil {
		s.add(&f.tcpSide.c)
		s.Decisions.Add(f.tcpSide.path.Counters())
	}
	s.QPS = f.rate.Sample(s.Queries)
	st := f.set.Load()
	now := time.Now().UnixNano()
	for _, u := range st.upstreams {
		s.Upstreams = append(s.Upstreams, UpstreamStatus{
			Addr: u.addr.String(), Up: u.up(now, st),
			Sent: u.sent.Load(), Answered: u.answered.Load(), Timeouts: u.timeouts.Load(), TCP: u.tcp.Load(), Errors: u.errors.Load(),
			Latency: time.Duration(u.latency.Load()),
		})
	}
	return s
}
