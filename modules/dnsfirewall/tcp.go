package dnsfirewall

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/switchboard-dp/switchboard/modules/dataplane"
	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
)

// tcpSide is what the TCP connections of every address share: one decision
// path behind a mutex (TCP carries a small share of DNS) and its counters.
type tcpSide struct {
	f     *Firewall
	mu    sync.Mutex
	path  *dataplane.Path
	dec   *dnsdecode.Decoder
	dr    dnsdecode.Result
	qs    [1]dataplane.Query
	res   [1]dataplane.Result
	c     counters
	conns sync.WaitGroup
	open  chan struct{} // one token per open connection
}

func newTCPSide(f *Firewall) *tcpSide {
	var post dataplane.Poster
	if f.opts.NewPoster != nil {
		post = f.opts.NewPoster()
	}
	return &tcpSide{f: f, path: dataplane.NewPath(f.opts.Shared, f.opts.NewDecider(), post),
		dec: dnsdecode.NewMessageDecoder(), open: make(chan struct{}, f.opts.TCPMaxConns)}
}

// tcpServer accepts the TCP connections of one address.
type tcpServer struct {
	f     *Firewall
	l     net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (t *tcpServer) close() {
	t.l.Close()
	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
}

func (t *tcpServer) accept() {
	defer t.f.wg.Done()
	side := t.f.tcpSide
	for {
		c, err := t.l.Accept()
		if err != nil {
			if t.f.closed.Load() || errors.Is(err, net.ErrClosed) {
				side.conns.Wait()
				return
			}
			side.c.readErrs.Add(1)
			t.f.lim.Warn("dns_firewall: accept", "socket", t.l.Addr().String(), "err", err)
			time.Sleep(10 * time.Millisecond) // out of descriptors: let some close
			continue
		}
		select {
		case side.open <- struct{}{}:
		default:
			side.c.count(kDropTCPConns)
			t.f.lim.Warn("dns_firewall: too many TCP connections; closing the new one", "tcp_max_connections", cap(side.open))
			c.Close()
			continue
		}
		t.mu.Lock()
		t.conns[c] = struct{}{}
		t.mu.Unlock()
		side.conns.Add(1)
		go func() {
			defer func() {
				c.Close()
				t.mu.Lock()
				delete(t.conns, c)
				t.mu.Unlock()
				<-side.open
				side.conns.Done()
			}()
			side.serve(c)
		}()
	}
}

// serve answers the queries of one connection in order until the client
// closes it, it idles past tcp_idle_timeout or a message is unreadable.
func (s *tcpSide) serve(c net.Conn) {
	ip := netip.Addr{}
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		ip = a.AddrPort().Addr().Unmap()
	}
	out := make([]byte, 2, 1024)
	for {
		c.SetReadDeadline(time.Now().Add(s.f.opts.TCPIdle))
		msg, err := readTCPMessage(c)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					s.c.count(kDropShort)
				}
			}
			return
		}
		s.c.queries.Add(1)
		resp := s.answer(msg, ip, out[2:2])
		if resp == nil {
			continue
		}
		if len(resp) > 65535 {
			s.c.count(kDropWrite)
			continue
		}
		frame := append(binary.BigEndian.AppendUint16(out[:0], uint16(len(resp))), resp...)
		c.SetWriteDeadline(time.Now().Add(s.f.opts.TCPIdle))
		if _, err := c.Write(frame); err != nil {
			s.c.count(kDropWrite)
			return
		}
	}
}

// answer decides one query from ip and returns the answer (nil: none).
func (s *tcpSide) answer(msg []byte, ip netip.Addr, dst []byte) []byte {
	now := time.Now()
	st := s.f.set.Load()
	s.mu.Lock()
	var q query
	v, reason := parse(s.dec, &s.dr, msg, &q)
	switch v {
	case vDrop:
		s.mu.Unlock()
		if reason == "short" {
			s.c.count(kDropShort)
		} else {
			s.c.count(kDropResponse)
		}
		return nil
	case vFormErr:
		s.mu.Unlock()
		s.c.formErr(reason)
		return rcodeOnly(dst, msg, &q, rcodeFormErr)
	case vNotImp:
		s.mu.Unlock()
		s.c.count(kNotImp)
		return rcodeOnly(dst, msg, &q, rcodeNotImp)
	}
	sub, k, ok := s.f.admit(s.f.opts.Shared.Subscribers().Load(), ip, now.UnixNano())
	if !ok {
		s.mu.Unlock()
		s.c.count(k)
		if k == kRefused {
			return rcodeOnly(dst, msg, &q, rcodeRefused)
		}
		return nil
	}
	s.qs[0] = dataplane.Query{TS: now.UnixMilli(), IP: ip, Name: q.name, QType: q.qtype, Subscriber: sub}
	s.path.Decide(s.qs[:], s.res[:])
	s.qs[0].Name = nil
	d := s.res[0].Decision
	s.mu.Unlock()
	b, k := respond(dst, msg, &q, d, &st.answers)
	if b != nil {
		s.c.count(k)
		return b
	}
	resp, err := st.exchange(msg)
	if err != nil {
		s.c.count(kServFail)
		s.f.lim.Warn("dns_firewall: forwarding a TCP query failed; answering SERVFAIL", "err", err)
		return rcodeOnly(dst, msg, &q, rcodeServFail)
	}
	s.c.count(kForwarded)
	return resp
}
