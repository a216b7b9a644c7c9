package pktengine

import (
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/modules/dataplane"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// TestLiveLoopback captures on the loopback interface with libpcap: DNS
// queries sent over UDP to a local port configured as a DNS port are
// decoded and decided. Skipped without capture permission (CAP_NET_RAW).
func TestLiveLoopback(t *testing.T) {
	// A listener so the queries are delivered (not required for capture, but
	// keeps the kernel from answering with ICMP port unreachable).
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	src, err := openLive("lo", LiveOptions{Filter: DefaultFilter([]uint16{port}), Timeout: 20 * time.Millisecond})
	if err != nil {
		if strings.Contains(err.Error(), "permitted") || strings.Contains(err.Error(), "permission") || strings.Contains(err.Error(), "No such device") {
			t.Skipf("no live capture here: %v", err)
		}
		t.Fatal(err)
	}
	e, err := New(EngineOptions{Workers: 2, Ports: []uint16{port}, FlushAfter: time.Millisecond,
		NewDecider: func() dataplane.Decider { return &fakeDecider{blocked: map[string]bool{"blocked.example": true}} }})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	if _, err := e.Start(src, 0); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("udp4", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
