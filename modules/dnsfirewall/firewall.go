package dnsfirewall

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/switchboard-dp/switchboard/internal/lograte"
	"github.com/switchboard-dp/switchboard/modules/dataplane"
	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
	"github.com/switchboard-dp/switchboard/modules/dataplane/subscribers"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// Options configure a Firewall.
type Options struct {
	// Addrs are the addresses to serve on (UDP, and TCP when TCP is set).
	Addrs []netip.AddrPort
	// Workers is the number of UDP sockets per address, one goroutine and
	// one decision path each (default runtime.NumCPU()).
	Workers int
	// TCP serves TCP on the same addresses.
	TCP bool
	// Batch is how many datagrams one read takes (recvmmsg).
	Batch int
	// Unknown is what a source outside the subscriber prefixes gets:
	// "refuse" (REFUSED), "drop" or "allow" (decided as the default
	// subscriber).
	Unknown string
	// RateLimit is the queries/s each client address may send (0: no
	// limit), with RateBurst queries of burst.
	RateLimit, RateBurst int
	// TCPIdle closes a TCP connection with no query for that long.
	TCPIdle time.Duration
	// TCPMaxConns bounds the open TCP connections.
	TCPMaxConns int
	// MaxInflight bounds the forwarded queries waiting per worker (at most
	// 4096).
	MaxInflight int
	// Shared is the subscriber table and CDR actions of the decision paths.
	Shared *dataplane.Shared
	// NewDecider and NewPoster give each decision path its decider and CDR
	// poster (NewPoster nil: no CDRs).
	NewDecider func() dataplane.Decider
	NewPoster  func() dataplane.Poster
	// Logger logs (default slog.Default()).
	Logger *slog.Logger
}

// Firewall serves DNS: it decides every query on a decision path, answers
// blocked and sinkholed ones itself and forwards the rest.
type Firewall struct {
	opts    Options
	log     *slog.Logger
	lim     *lograte.Limiter
	rl      *limiter
	set     atomic.Pointer[settings]
	workers []*udpWorker
	tcp     []*tcpServer
	tcpSide *tcpSide
	wg      sync.WaitGroup
	closed  atomic.Bool
	started time.Time
	rate    dataplane.RateMeter
	sockets []SocketStatus
}

// New opens the sockets and starts serving with the settings of cfg.
func New(opts Options, s *settings) (*Firewall, error) {
	if opts.NewDecider == nil || opts.Shared == nil {
		return nil, errors.New("dnsfirewall: NewDecider and Shared are required")
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.NumCPU()
	}
	if opts.Batch <= 0 {
		opts.Batch = 32
	}
	if opts.MaxInflight <= 0 || opts.MaxInflight > 4096 {
		opts.MaxInflight = 4096
	}
	if opts.TCPIdle <= 0 {
		opts.TCPIdle = 10 * time.Second
	}
	if opts.TCPMaxConns <= 0 {
		opts.TCPMaxConns = 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	f := &Firewall{opts: opts, log: opts.Logger, lim: lograte.New(opts.Logger, 10*time.Second),
		rl: newLimiter(opts.RateLimit, opts.RateBurst), started: time.Now()}
	f.rate.Start = f.started
	f.set.Store(s)
	if err := f.listen(); err != nil {
		f.closeSockets()
		return nil, err
	}
	for _, w := range f.workers {
		f.wg.Add(2)
		go w.readClients()
		go w.readUpstream()
	}
	for _, t := range f.tcp {
		f.wg.Add(1)
		go t.accept()
	}
	return f, nil
}

// socketBuffer is the receive and send buffer the firewall asks for on its
// UDP sockets (the kernel caps it at net.core.rmem_max / wmem_max): the
// default 208 KiB overflows under a burst while a worker is descheduled.
const socketBuffer = 4 << 20

func setBuffers(c *net.UDPConn) {
	c.SetReadBuffer(socketBuffer)
	c.SetWriteBuffer(socketBuffer)
}

// reusePort sets SO_REUSEPORT so each worker has its own socket on one
// address and the kernel spreads clients across them.
func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

func (f *Firewall) listen() error {
	lc := net.ListenConfig{Control: reusePort}
	ctx := context.Background()
	for _, ap := range f.opts.Addrs {
		port := ap.Port()
		for i := 0; i < f.opts.Workers; i++ {
			a := netip.AddrPortFrom(ap.Addr(), port)
			pc, err := lc.ListenPacket(ctx, "udp", a.String())
			if err != nil {
				return fmt.Errorf("listen udp %s: %w", a, err)
			}
			conn := pc.(*net.UDPConn)
			setBuffers(conn)
			if port == 0 { // the first socket picks the port, the others share it
				port = conn.LocalAddr().(*net.UDPAddr).AddrPort().Port()
			}
			w, err := newUDPWorker(f, conn, len(f.workers))
			if err != nil {
				conn.Close()
				return err
			}
			f.workers = append(f.workers, w)
			f.sockets = append(f.sockets, SocketStatus{Proto: "udp", Addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), Worker: w.id})
		}
		if f.opts.TCP {
			l, err := lc.Listen(ctx, "tcp", netip.AddrPortFrom(ap.Addr(), port).String())
			if err != nil {
				return fmt.Errorf("listen tcp %s: %w", netip.AddrPortFrom(ap.Addr(), port), err)
			}
			if f.tcpSide == nil {
				f.tcpSide = newTCPSide(f)
			}
			f.tcp = append(f.tcp, &tcpServer{f: f, l: l, conns: map[net.Conn]struct{}{}})
			f.sockets = append(f.sockets, SocketStatus{Proto: "tcp", Addr: l.Addr().(*net.TCPAddr).AddrPort(), Worker: -1})
		}
	}
	return nil
}

func (f *Firewall) closeSockets() {
	for _, w := range f.workers {
		w.conn.Close()
		w.up.Close()
	}
	for _, t := range f.tcp {
		t.close()
	}
}

// Close stops serving: the sockets close, queries waiting for an upstream
// are dropped (counted), and the decision paths close (which hands their
// CDR batches to the CDR backends).
func (f *Firewall) Close(ctx context.Context) error {
	if f.closed.Swap(true) {
		return nil
	}
	f.closeSockets()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("dnsfirewall: stopping: %w", ctx.Err())
	}
	for _, w := range f.workers {
		w.path.Close()
	}
	if f.tcpSide != nil {
		f.tcpSide.path.Close()
	}
	return nil
}

// Swap installs new upstreams and answers; sockets and queries in flight
// are kept. Upstreams at an address that stays keep their health and
// counters.
func (f *Firewall) Swap(s *settings) {
	old := f.set.Load()
	for i, u := range s.upstreams {
		if o := old.find(u.addr); o != nil {
			s.upstreams[i] = o
		}
	}
	f.set.Store(s)
}

// Addrs returns the bound sockets.
func (f *Firewall) Addrs() []SocketStatus { return f.sockets }

// admit applies the rate limit and the subscriber check to a query from
// ip, with tab the subscriber table of the burst. It returns the query's
// subscriber, or the kind of a query that is not decided and false.
func (f *Firewall) admit(tab *subscribers.Table, ip netip.Addr, now int64) (*subscribers.Subscriber, kind, bool) {
	if f.rl != nil && !f.rl.allow(ip, now) {
		return nil, kDropRate, false
	}
	sub := tab.Lookup(ip)
	if f.opts.Unknown != "allow" && sub == tab.Default() {
		if f.opts.Unknown == "drop" {
			return nil, kDropUnknown, false
		}
		return nil, kRefused, false
	}
	return sub, 0, true
}

// respond builds the answer of a decided query into dst, or returns nil
// when the query is to be forwarded.
func respond(dst, msg []byte, q *query, d dataplane.Decision, ans *Answers) ([]byte, kind) {
	switch d.Action {
	case decision.Block:
		return blockAnswer(dst, msg, q, ans), kBlocked
	case decision.Sinkhole:
		return sinkholeAnswer(dst, msg, q, ans, d.Category), kSinkholed
	}
	return nil, kForwarded
}

// udpWorker is one UDP socket of a listen address with its decision path
// and its own socket to the upstreams.
type udpWorker struct {
	f    *Firewall
	id   int
	conn *net.UDPConn
	bc   batchConn // ipv4 or ipv6 PacketConn of conn
	up   *net.UDPConn
	upb  batchConn // the same for up
	path *dataplane.Path
	c    counters

	mu        sync.Mutex
	slots     []slot
	free      []uint16
	inflight  atomic.Int32
	lastSweep atomic.Int64
}

// batchConn reads and writes several datagrams per system call.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// newBatchConn wraps c for recvmmsg / sendmmsg by its address family.
func newBatchConn(c *net.UDPConn) batchConn {
	if a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr(); a.Is4() || a.Is4In6() {
		return ipv4.NewPacketConn(c)
	}
	return ipv6.NewPacketConn(c)
}

// slot is a forwarded query waiting for its upstream's answer.
type slot struct {
	used     bool
	gen      uint16
	origID   uint16
	client   net.Addr
	start    int64 // unix ns of the first send
	deadline int64 // unix ns when the current attempt times out
	up       *upstream
	tries    int
	st       *settings
	msg      []byte // the query as sent upstream (our id)
}

// upstreamNetwork is the family of the workers' upstream sockets: IPv4
// only when every upstream is IPv4 (the kernel's IPv4 path is shorter),
// dual-stack otherwise. A reload that adds an upstream of another family
// reaches it at the next start (until then its sends fail, counted).
func upstreamNetwork(s *settings) string {
	for _, u := range s.upstreams {
		if !u.addr.Addr().Is4() {
			return "udp"
		}
	}
	return "udp4"
}

func newUDPWorker(f *Firewall, conn *net.UDPConn, id int) (*udpWorker, error) {
	up, err := net.ListenUDP(upstreamNetwork(f.set.Load()), nil)
	if err != nil {
		return nil, fmt.Errorf("upstream socket: %w", err)
	}
	setBuffers(up)
	w := &udpWorker{f: f, id: id, conn: conn, up: up, slots: make([]slot, f.opts.MaxInflight)}
	w.bc, w.upb = newBatchConn(conn), newBatchConn(up)
	for i := len(w.slots) - 1; i >= 0; i-- {
		w.free = append(w.free, uint16(i))
	}
	var post dataplane.Poster
	if f.opts.NewPoster != nil {
		post = f.opts.NewPoster()
	}
	w.path = dataplane.NewPath(f.opts.Shared, f.opts.NewDecider(), post)
	return w, nil
}

// pending is a query of a read burst awaiting its decision.
type pending struct {
	msg  int // index into the read messages
	q    query
	name [256 * 4]byte // presentation form can escape bytes as \DDD
}

func (w *udpWorker) readClients() {
	defer w.f.wg.Done()
	n := w.f.opts.Batch
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 4096)}
	}
	out := make([]ipv4.Message, 0, n)
	fwd := make([]ipv4.Message, 0, n)
	outBufs := make([][]byte, n)
	for i := range outBufs {
		outBufs[i] = make([]byte, 0, 1024)
	}
	pend := make([]pending, n)
	qs := make([]dataplane.Query, 0, n)
	res := make([]dataplane.Result, n)
	dec := dnsdecode.NewMessageDecoder()
	var dr dnsdecode.Result
	for {
		got, err := w.bc.ReadBatch(ms, 0)
		if err != nil {
			if w.f.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			w.c.readErrs.Add(1)
			w.f.lim.Warn("dns_firewall: read", "socket", w.conn.LocalAddr().String(), "err", err)
			continue
		}
		now := time.Now()
		nowNS, nowMS := now.UnixNano(), now.UnixMilli()
		st := w.f.set.Load()
		tab := w.f.opts.Shared.Subscribers().Load()
		out, qs, fwd = out[:0], qs[:0], fwd[:0]
		np := 0
		w.c.queries.Add(uint64(got))
		for i := 0; i < got; i++ {
			m := &ms[i]
			msg := m.Buffers[0][:m.N]
			p := &pend[np]
			v, reason := parse(dec, &dr, msg, &p.q)
			switch v {
			case vDrop:
				if reason == "short" {
					w.c.count(kDropShort)
				} else {
					w.c.count(kDropResponse)
				}
				continue
			case vFormErr:
				w.c.formErr(reason)
				out = append(out, ipv4.Message{Buffers: [][]byte{rcodeOnly(outBufs[len(out)], msg, &p.q, rcodeFormErr)}, Addr: m.Addr})
				continue
			case vNotImp:
				w.c.count(kNotImp)
				out = append(out, ipv4.Message{Buffers: [][]byte{rcodeOnly(outBufs[len(out)], msg, &p.q, rcodeNotImp)}, Addr: m.Addr})
				continue
			}
			ip := addrOf(m.Addr)
			sub, k, ok := w.f.admit(tab, ip, nowNS)
			if !ok {
				w.c.count(k)
				if k == kRefused {
					out = append(out, ipv4.Message{Buffers: [][]byte{rcodeOnly(outBufs[len(out)], msg, &p.q, rcodeRefused)}, Addr: m.Addr})
				}
				continue
			}
			nl := copy(p.name[:], p.q.name)
			p.q.name = p.name[:nl]
			p.msg = i
			qs = append(qs, dataplane.Query{TS: nowMS, IP: ip, Name: p.q.name, QType: p.q.qtype, Subscriber: sub})
			np++
		}
		if np > 0 {
			w.path.Decide(qs, res)
			for j := 0; j < np; j++ {
				p := &pend[j]
				m := &ms[p.msg]
				msg := m.Buffers[0][:m.N]
				b, k := respond(outBufs[len(out)], msg, &p.q, res[j].Decision, &st.answers)
				if b == nil {
					if q, u := w.forward(st, msg, m.Addr, nowNS); q != nil {
						fwd = append(fwd, ipv4.Message{Buffers: [][]byte{q}, Addr: u.uaddr})
					}
					continue
				}
				w.c.count(k)
				out = append(out, ipv4.Message{Buffers: [][]byte{b}, Addr: m.Addr})
			}
		}
		w.sendUpstream(fwd)
		w.send(out)
	}
}

// sendUpstream writes the forwarded queries of a burst.
func (w *udpWorker) sendUpstream(fwd []ipv4.Message) {
	for len(fwd) > 0 {
		n, err := w.upb.WriteBatch(fwd, 0)
		if err != nil {
			if w.f.closed.Load() {
				return
			}
			if u := w.f.set.Load().find(addrPortOf(fwd[0].Addr)); u != nil {
				u.errors.Add(1)
			}
			w.f.lim.Warn("dns_firewall: send to upstream", "upstream", fwd[0].Addr.String(), "err", err)
			n = 1 // skip it: its slot times out and is retried or failed
		}
		fwd = fwd[n:]
	}
}

// send writes the answers of a burst.
func (w *udpWorker) send(out []ipv4.Message) {
	for len(out) > 0 {
		n, err := w.bc.WriteBatch(out, 0)
		if err != nil {
			if w.f.closed.Load() {
				return
			}
			w.c.count(kDropWrite)
			w.f.lim.Warn("dns_firewall: send", "socket", w.conn.LocalAddr().String(), "err", err)
			n = 1 // skip the datagram that failed
		}
		out = out[n:]
	}
}

func addrOf(a net.Addr) netip.Addr {
	if u, ok := a.(*net.UDPAddr); ok {
		ip, _ := netip.AddrFromSlice(u.IP)
		return ip.Unmap()
	}
	return netip.Addr{}
}

// forward keeps a client's query in a slot until the answer comes, its
// time runs out or the upstreams fail, and returns it rewritten with the
// slot's id and the upstream to send it to (nil when it was answered
// SERVFAIL at once: no upstream in service or no free slot).
func (w *udpWorker) forward(st *settings, msg []byte, client net.Addr, now int64) ([]byte, *upstream) {
	u := st.pick(now, nil)
	if u == nil {
		w.c.count(kServFail)
		w.servfail(msg, client)
		return nil, nil
	}
	w.mu.Lock()
	if len(w.free) == 0 {
		w.mu.Unlock()
		w.c.count(kServFail)
		w.f.lim.Warn("dns_firewall: too many queries waiting for upstreams; answering SERVFAIL", "max_inflight", len(w.slots))
		w.servfail(msg, client)
		return nil, nil
	}
	idx := w.free[len(w.free)-1]
	w.free = w.free[:len(w.free)-1]
	s := &w.slots[idx]
	s.gen = (s.gen + 1) & 0xf
	id := s.gen<<12 | idx
	s.used, s.origID, s.client, s.start, s.up, s.tries, s.st = true, binary.BigEndian.Uint16(msg), client, now, u, 0, st
	s.deadline = now + int64(st.timeout)
	s.msg = append(s.msg[:0], msg...)
	binary.BigEndian.PutUint16(s.msg, id)
	out := s.msg
	w.mu.Unlock()
	if w.inflight.Add(1) == 1 {
		w.up.SetReadDeadline(time.Now().Add(sweepEvery(st)))
	}
	u.sent.Add(1)
	return out, u
}

// sweepEvery is how often waiting queries are checked for their timeout.
func sweepEvery(st *settings) time.Duration { return max(st.timeout/8, 5*time.Millisecond) }

func (w *udpWorker) servfail(msg []byte, client net.Addr) {
	q := headerOnly(msg)
	b := rcodeOnly(make([]byte, 0, 512), msg, &q, rcodeServFail)
	if _, err := w.conn.WriteTo(b, client); err != nil && !w.f.closed.Load() {
		w.c.count(kDropWrite)
	}
}

// readUpstream reads the upstreams' answers, a batch per system call, and
// relays them in one; between reads it times out waiting queries, retrying
// them on another upstream or answering SERVFAIL. With nothing waiting it
// blocks without a deadline.
func (w *udpWorker) readUpstream() {
	defer w.f.wg.Done()
	n := w.f.opts.Batch
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 65535)}
	}
	out := make([]ipv4.Message, 0, n)
	for {
		got, err := w.upb.ReadBatch(ms, 0)
		if err != nil {
			if w.f.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				w.c.readErrs.Add(1)
				w.f.lim.Warn("dns_firewall: read from upstreams", "err", err)
			}
			w.sweep()
			continue
		}
		out = out[:0]
		now := time.Now().UnixNano()
		for i := 0; i < got; i++ {
			m := &ms[i]
			resp := m.Buffers[0][:m.N]
			if client := w.relay(resp, addrPortOf(m.Addr), now); client != nil {
				out = append(out, ipv4.Message{Buffers: [][]byte{resp}, Addr: client})
			}
		}
		w.send(out)
		if w.inflight.Load() > 0 {
			w.sweepIfDue()
		}
	}
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// relay matches an upstream's answer to the query it answers, restores the
// client's id and returns the client (nil when nothing waits for it).
func (w *udpWorker) relay(resp []byte, from netip.AddrPort, now int64) net.Addr {
	if len(resp) < 12 {
		w.c.count(kLate)
		return nil
	}
	id := binary.BigEndian.Uint16(resp)
	idx := int(id & 0xfff)
	w.mu.Lock()
	if idx >= len(w.slots) {
		w.mu.Unlock()
		w.c.count(kLate)
		return nil
	}
	s := &w.slots[idx]
	var up *upstream
	if s.used && s.gen == id>>12 {
		up = s.st.find(from)
	}
	if up == nil || !sameQuestion(s.msg, resp) {
		w.mu.Unlock()
		w.c.count(kLate)
		return nil
	}
	client, orig, start := s.client, s.origID, s.start
	w.release(idx)
	w.mu.Unlock()
	up.answer(start, now)
	binary.BigEndian.PutUint16(resp, orig)
	if binary.BigEndian.Uint16(resp[2:])&flagTC != 0 {
		w.c.count(kTruncated)
	}
	w.c.count(kForwarded)
	return client
}

// release frees slot idx (w.mu held).
func (w *udpWorker) release(idx int) {
	s := &w.slots[idx]
	s.used, s.client, s.st, s.up = false, nil, nil, nil
	w.free = append(w.free, uint16(idx))
	w.inflight.Add(-1)
}

// sweepIfDue sweeps when the last sweep of this worker is older than the
// sweep period (answers keep the socket busy, so its deadline may not fire).
func (w *udpWorker) sweepIfDue() {
	st := w.f.set.Load()
	now := time.Now().UnixNano()
	if last := w.lastSweep.Load(); now-last >= int64(sweepEvery(st)) {
		w.sweep()
	}
}

// sweep retries or fails the queries whose attempt timed out and sets the
// socket's deadline for the next sweep (none when nothing waits).
func (w *udpWorker) sweep() {
	now := time.Now().UnixNano()
	w.lastSweep.Store(now)
	type retry struct {
		msg []byte
		u   *upstream
	}
	var retries []retry
	var fails []slot
	w.mu.Lock()
	for i := range w.slots {
		s := &w.slots[i]
		if !s.used || s.deadline > now {
			continue
		}
		s.up.missed()
		if s.tries < s.st.retries {
			if u := s.st.pick(now, s.up); u != nil {
				s.tries++
				s.up, s.deadline = u, now+int64(s.st.timeout)
				u.sent.Add(1)
				retries = append(retries, retry{append([]byte(nil), s.msg...), u})
				continue
			}
		}
		fails = append(fails, slot{client: s.client, origID: s.origID, msg: append([]byte(nil), s.msg...)})
		w.release(i)
	}
	w.mu.Unlock()
	for _, r := range retries {
		if _, err := w.up.WriteToUDPAddrPort(r.msg, r.u.addr); err != nil {
			r.u.errors.Add(1)
		}
	}
	for _, s := range fails {
		binary.BigEndian.PutUint16(s.msg, s.origID)
		w.c.count(kServFail)
		w.servfail(s.msg, s.client)
	}
	if w.inflight.Load() == 0 {
		w.up.SetReadDeadline(time.Time{})
		if w.inflight.Load() == 0 {
			return
		}
	}
	w.up.SetReadDeadline(time.Now().Add(sweepEvery(w.f.set.Load())))
}
