//go:build faults

package faults

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tcpProxy forwards loopback TCP connections to a target and can pause
// them (bytes stop flowing, connections stay open: a black hole), cut them
// (every open connection closed) or refuse new ones.
type tcpProxy struct {
	ln     net.Listener
	mu     sync.Mutex
	cond   *sync.Cond
	target string
	paused bool
	refuse bool
	conns  map[net.Conn]struct{}
	stats  struct{ accepted, cut, refused int }
}

func newProxy(t *testing.T) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) addr() string { return p.ln.Addr().String() }

func (p *tcpProxy) setTarget(addr string) { p.mu.Lock(); p.target = addr; p.mu.Unlock() }

func (p *tcpProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target, refuse := p.target, p.refuse
		if refuse || target == "" {
			p.stats.refused++
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.stats.accepted++
		p.mu.Unlock()
		go p.handle(c, target)
	}
}

func (p *tcpProxy) handle(c net.Conn, target string) {
	u, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	p.conns[c], p.conns[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { p.pipe(u, c); done <- struct{}{} }()
	go func() { p.pipe(c, u); done <- struct{}{} }()
	<-done
	c.Close()
	u.Close()
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, u)
	p.mu.Unlock()
}

// pipe copies src to dst, holding each chunk while the proxy is paused.
func (p *tcpProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.paused {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				return
			}
			return
		}
	}
}

func (p *tcpProxy) pause() { p.mu.Lock(); p.paused = true; p.mu.Unlock() }

func (p *tcpProxy) resume() {
	p.mu.Lock()
	p.paused, p.refuse = false, false
	p.cond.Broadcast()
	p.mu.Unlock()
}

// cut closes every open connection (both sides).
func (p *tcpProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for c := range p.conns {
		c.Close()
		n++
	}
	p.stats.cut += n / 2
	p.paused = false
	p.cond.Broadcast()
	return n / 2
}

func (p *tcpProxy) setRefuse(r bool) { p.mu.Lock(); p.refuse = r; p.mu.Unlock() }

func (p *tcpProxy) close() {
	p.ln.Close()
	p.cut()
}

// TestNetworkFaults: switchboard talks to its broker through a TCP proxy
// (the broker advertises the proxy's address, so every connection the
// client makes goes through it). Under load the proxy black-holes traffic,
// cuts every connection, and refuses connections for a while: the producer
// recovers each time and nothing is lost.
func TestNetworkFaults(t *testing.T) {
	p := newProxy(t)
	d := dedicated(t, "proxied", "KAFKA_PROXY_ADVERTISE="+p.addr())
	p.setTarget("127.0.0.1:" + d.env["KAFKA_PROXIED_PORT"])
	topic := "faults-netfault"
	createTopic(t, d.bootstrap(), topic, 3, 1, nil)
	sb := newInstance(t, "netfault", map[string]string{
		"modules.conf":   modulesConf("res_kafka", "cdr", "cdr_kafka"),
		"kafka.conf":     kafkaConf(p.addr()),
		"cdr_kafka.conf": cdrKafkaConf(topic, "on_queue_full = spool"),
	})
	sb.startReady()
	const first, rate = 1, 1000
	l := startLoad(sb, first, rate)
	time.Sleep(4 * time.Second)
	var events []string
	// Black hole: 8 s (longer than request_timeout_ms = 5 s).
	p.pause()
	time.Sleep(8 * time.Second)
	ks, _ := sb.rx("kafka show status")
	p.resume()
	events = append(events, "blackhole 8s")
	time.Sleep(4 * time.Second)
	// Connection cuts, 3 times.
	for i := 0; i < 3; i++ {
		n := p.cut()
		events = append(events, fmt.Sprintf("cut %d conns", n))
		time.Sleep(2 * time.Second)
	}
	// Refused for 6 s.
	p.setRefuse(true)
	p.cut()
	time.Sleep(6 * time.Second)
	p.resume()
	events = append(events, "refused 6s")
	time.Sleep(5 * time.Second)
	posted := l.finish()
	status := sb.waitDrained(2 * time.Minute)
	tl, _ := readBack(t, d.broker(), topic, first, posted, time.Minute)
	report(t, "network-faults-proxy", tl.sent, tl.received, tl.lost, tl.dup, fmt.Sprintf("%v at %d/s", events, rate))
	t.Logf("kafka show status during the black hole:\n%s", ks)
	if tl.lost != 0 {
		t.Errorf("lost %d (e.g. %v)\n%s", tl.lost, tl.missing(first, posted), status)
	}
	if len(l.failures) > 0 {
		t.Logf("cdr test post failures: %v", l.failures)
	}
}
