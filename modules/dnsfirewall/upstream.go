package dnsfirewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"time"
)

// upstream is one resolver allowed queries are forwarded to, with its
// health: after down_after answers missed in a row, with no answer from it
// for a whole timeout, it is down, and only one query per probe_interval is
// sent to it until one is answered. (Under load a few queries time out now
// and then while hundreds are answered; those do not take it down.)
type upstream struct {
	addr  netip.AddrPort
	uaddr *net.UDPAddr

	fails      atomic.Int32 // timeouts in a row
	lastAnswer atomic.Int64 // unix ns of the last answer
	lastProbe  atomic.Int64 // unix ns of the last query sent while down

	sent     atomic.Uint64
	answered atomic.Uint64
	timeouts atomic.Uint64
	tcp      atomic.Uint64 // exchanges over TCP
	errors   atomic.Uint64 // send or TCP failures
	latency  atomic.Int64  // moving average of the answer time, ns
}

func newUpstream(ap netip.AddrPort) *upstream {
	return &upstream{addr: ap, uaddr: net.UDPAddrFromAddrPort(ap)}
}

// up reports whether the upstream is in service at now (unix ns).
func (u *upstream) up(now int64, s *settings) bool {
	return u.fails.Load() < s.downAfter || now-u.lastAnswer.Load() < int64(s.timeout)
}

// usable reports whether a query may go to u now: it is up, or it is down
// and its probe is due (the caller's query is the probe).
func (u *upstream) usable(now int64, s *settings) bool {
	if u.up(now, s) {
		return true
	}
	last := u.lastProbe.Load()
	return now-last >= int64(s.probe) && u.lastProbe.CompareAndSwap(last, now)
}

// answer records an answer at now to a query sent at start (unix ns).
func (u *upstream) answer(start, now int64) {
	d := now - start
	u.answered.Add(1)
	u.fails.Store(0)
	u.lastAnswer.Store(now)
	old := u.latency.Load()
	if old == 0 {
		u.latency.Store(d)
		return
	}
	u.latency.Store(old + (d-old)/16)
}

// missed records a timeout.
func (u *upstream) missed() {
	u.timeouts.Add(1)
	u.fails.Add(1)
}

// settings are what a reload swaps while the sockets stay: upstreams and
// answers.
type settings struct {
	answers    Answers
	upstreams  []*upstream
	roundrobin bool
	timeout    time.Duration
	retries    int
	downAfter  int32
	probe      time.Duration
	rr         atomic.Uint32
}

// pick returns the upstream the try-th attempt of a query goes to, skipping
// prev (the upstream of the previous attempt), or nil when none is usable.
func (s *settings) pick(now int64, prev *upstream) *upstream {
	n := len(s.upstreams)
	start := 0
	if s.roundrobin {
		start = int(s.rr.Add(1)) % n
	}
	for i := 0; i < n; i++ {
		u := s.upstreams[(start+i)%n]
		if u != prev && u.usable(now, s) {
			return u
		}
	}
	return nil
}

// find returns the upstream at ap.
func (s *settings) find(ap netip.AddrPort) *upstream {
	for _, u := range s.upstreams {
		if u.addr == ap {
			return u
		}
	}
	return nil
}

var errNoUpstream = errors.New("no upstream in service")

// exchange sends msg (a query with the client's id) to the upstreams, one
// after the other as they fail, over UDP and, when the answer is truncated,
// over TCP; it returns the answer with msg's id. TCP clients' queries take
// this path; UDP clients' queries go through the worker's shared socket.
func (s *settings) exchange(msg []byte) ([]byte, error) {
	var prev *upstream
	var lastErr error = errNoUpstream
	for try := 0; try <= s.retries; try++ {
		now := time.Now()
		u := s.pick(now.UnixNano(), prev)
		if u == nil {
			break
		}
		prev = u
		u.sent.Add(1)
		resp, err := exchangeUDP(u, msg, s.timeout)
		if err == nil && len(resp) >= 12 && binary.BigEndian.Uint16(resp[2:])&flagTC != 0 {
			u.tcp.Add(1)
			resp, err = exchangeTCP(u, msg, s.timeout)
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				u.missed()
			} else {
				u.errors.Add(1)
				u.fails.Add(1)
			}
			lastErr = fmt.Errorf("upstream %s: %w", u.addr, err)
			continue
		}
		u.answer(now.UnixNano(), time.Now().UnixNano())
		return resp, nil
	}
	return nil, lastErr
}

func exchangeUDP(u *upstream, msg []byte, timeout time.Duration) ([]byte, error) {
	c, err := net.DialUDP("udp", nil, u.uaddr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	id := binary.BigEndian.Uint16(msg)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		if n >= 12 && binary.BigEndian.Uint16(buf) == id && sameQuestion(msg, buf[:n]) {
			return buf[:n:n], nil
		}
	}
}

func exchangeTCP(u *upstream, msg []byte, timeout time.Duration) ([]byte, error) {
	c, err := net.DialTimeout("tcp", u.addr.String(), timeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	out := make([]byte, 2+len(msg))
	binary.BigEndian.PutUint16(out, uint16(len(msg)))
	copy(out[2:], msg)
	if _, err := c.Write(out); err != nil {
		return nil, err
	}
	return readTCPMessage(c)
}

// readTCPMessage reads one length-prefixed DNS message.
func readTCPMessage(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// sameQuestion reports whether the answer resp carries the question of the
// query q, byte for byte (the case of the name included).
func sameQuestion(q, resp []byte) bool {
	if len(q) < 12 || len(resp) < 12 {
		return false
	}
	end, ok := skipName(q, 12)
	if !ok || end+4 > len(q) || end+4 > len(resp) {
		return false
	}
	return string(q[12:end+4]) == string(resp[12:end+4])
}
