package pktengine

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/dataplane"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// TestLiveLoopback captures on the loopback interface with libpcap: DNS
// queries sent over UDP to a local port configured as a DNS port are
// decoded and decided. Skipped without capture permission (CAP_NET_RAW).
func TestLiveLoopback(t *testing.T) {
	e, _, c := liveRun(t, func(port uint16) (Source, error) {
		return openLive("lo", LiveOptions{Filter: DefaultFilter([]uint16{port}), Timeout: 20 * time.Millisecond})
	})
	const n = 20
	deadline := time.Now().Add(10 * time.Second)
	sent := 0
	for e.Status().Decided[decision.Block] < n/2 && time.Now().Before(deadline) {
		// Keep sending until the capture has seen enough: the handle may
		// start capturing a moment after Start returns.
		name := "ok.example"
		if sent%2 == 0 {
			name = "www.blocked.example"
		}
		c.Write(dnsQuery(uint16(sent), name, 1))
		sent++
		time.Sleep(5 * time.Millisecond)
	}
	st := e.Status()
	if st.Decided[decision.Block] < n/2 || st.Decided[decision.Allow] == 0 || st.Totals.Queries == 0 {
		t.Fatalf("sent %d, status %+v", sent, st.Totals)
	}
	if st.Sources[0].Name != "live:lo" || st.Sources[0].State != "running" {
		t.Fatalf("source %+v", st.Sources[0])
	}
	if n, _ := e.StopSource(context.Background(), 0); n != 1 {
		t.Fatalf("stopped %d", n)
	}
}

// liveRun starts an engine (two workers, the fake decider) reading the
// source open returns for a fresh loopback UDP port, and returns the
// engine and a client connected to that port. A listener holds the port so
// the kernel delivers the queries instead of answering ICMP.
func liveRun(t *testing.T, open func(port uint16) (Source, error)) (*Engine, Source, net.Conn) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	src, err := open(port)
	if err != nil {
		if strings.Contains(err.Error(), "permitted") || strings.Contains(err.Error(), "permission") {
			t.Skipf("no live capture here: %v", err)
		}
		t.Fatal(err)
	}
	e, err := New(EngineOptions{Workers: 2, Ports: []uint16{port}, FlushAfter: time.Millisecond,
		NewDecider: func() dataplane.Decider { return &fakeDecider{blocked: map[string]bool{"blocked.example": true}} }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	if _, err := e.Start(src, 0); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return e, src, c
}

// dnsQuery returns a DNS query message for name and qtype: RD set, one
// question of class IN, no EDNS.
func dnsQuery(id uint16, name string, qtype uint16) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0) // flags RD, QDCOUNT 1, no other records
	for _, l := range strings.Split(name, ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	b = append(b, 0) // the root label
	b = binary.BigEndian.AppendUint16(b, qtype)
	return binary.BigEndian.AppendUint16(b, 1) // class IN
}

// TestAFPacketLoopback captures on loopback with AF_PACKET rings, two in a
// fanout group: every query sent is decoded exactly once (the copy the
// socket sees leaving the interface is filtered out, as libpcap does), the
// source shows as one, and its kernel counters are read.
func TestAFPacketLoopback(t *testing.T) {
	e, src, c := liveRun(t, func(port uint16) (Source, error) {
		return OpenSource("afpacket:lo", LiveOptions{Filter: DefaultFilter([]uint16{port}), Timeout: 20 * time.Millisecond, Fanout: 2})
	})
	// The rings may start a moment after Start: send until one query is
	// seen. Then a marker (sinkholed): the packets of one flow are read by
	// one ring and decided by one worker in order, so once the marker is
	// decided every packet sent before it has been.
	deadline := time.Now().Add(10 * time.Second)
	for e.Status().Totals.Queries == 0 && time.Now().Before(deadline) {
		c.Write(dnsQuery(0, "warmup.example", 1))
		time.Sleep(5 * time.Millisecond) // pacing, not waiting
	}
	marker := func(k uint64) {
		c.Write(dnsQuery(0, fmt.Sprintf("m%d.malware.example", k), 1))
		testwait.Until(t, 10*time.Second, fmt.Sprintf("marker %d decided", k), func() bool { return e.Status().Decided[decision.Sinkhole] >= k })
	}
	marker(1)
	base := e.Status()
	const n = 200
	for i := range n {
		name := "ok.example"
		if i%2 == 0 {
			name = "www.blocked.example"
		}
		c.Write(dnsQuery(uint16(i+1), name, 1))
	}
	marker(2)
	st := e.Status()
	// Decisions, not the readers' counters: those are published every 100 ms.
	decided := func(s Status) uint64 { return s.Decided[0] + s.Decided[1] + s.Decided[2] }
	if got := decided(st) - decided(base); got != n+1 {
		t.Fatalf("%d queries decided for %d sent (and the marker)", got, n)
	}
	if got := st.Decided[decision.Block] - base.Decided[decision.Block]; got != n/2 {
		t.Errorf("%d blocked, want %d", got, n/2)
	}
	if len(st.Sources) != 1 || st.Sources[0].Name != "afpacket:lo (fanout 2)" || st.Sources[0].State != "running" {
		t.Fatalf("sources %+v", st.Sources)
	}
	if _, dropped, _, err := src.(dropStatser).DropStats(); err != nil || dropped != 0 {
		t.Errorf("kernel counters: dropped %d, %v", dropped, err)
	}
	if n, _ := e.StopSource(context.Background(), 0); n != 1 {
		t.Fatalf("stopped %d", n)
	}
	if st := e.Status(); len(st.Sources) != 1 || st.Sources[0].State == "running" {
		t.Errorf("after stop: %+v", st.Sources)
	}
}
