package dnsdecode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/switchboard-dp/switchboard/modules/pktengine/pcapfile"
)

// dnsHeader builds a DNS header.
func dnsHeader(flags, qd, an, ns, ar uint16) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], 0x1234)
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint16(b[4:], qd)
	binary.BigEndian.PutUint16(b[6:], an)
	binary.BigEndian.PutUint16(b[8:], ns)
	binary.BigEndian.PutUint16(b[10:], ar)
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

var qtail = []byte{0, 1, 0, 1} // A IN

func TestDecodeDNSCases(t *testing.T) {
	long := []byte{}
	for i := 0; i < 5; i++ { // 5*64 = 320 wire octets
		long = append(long, 63)
		long = append(long, strings.Repeat("a", 63)...)
	}
	cases := []struct {
		name   string
		msg    []byte
		kind   Kind
		reason Reason
		qname  string
		qtype  uint16
	}{
		{"simple", cat(dnsHeader(0x0100, 1, 0, 0, 0), []byte("\x03www\x07Example\x03COM\x00"), qtail), Query, 0, "www.example.com", 1},
		{"root", cat(dnsHeader(0, 1, 0, 0, 0), []byte{0}, []byte{0, 2, 0, 1}), Query, 0, ".", 2},
		{"escapes", cat(dnsHeader(0, 1, 0, 0, 0), []byte("\x05a.b\\\x20\x02\xff\x00\x00"), qtail), Query, 0, `a\.b\\\032.\255\000`, 1},
		{"response no question", dnsHeader(0x8180, 0, 0, 0, 0), Response, 0, "", 0},
		{"response", cat(dnsHeader(0x8180, 1, 0, 0, 0), []byte("\x01x\x00"), []byte{0, 28, 0, 1}), Response, 0, "x", 28},
		{"short header", []byte{1, 2, 3}, Malformed, MalformedTruncated, "", 0},
		{"no question", dnsHeader(0x0100, 0, 0, 0, 0), Malformed, MalformedNoQuestion, "", 0},
		{"absurd counts", cat(dnsHeader(0x0100, 1, 0xffff, 0, 0), []byte("\x01x\x00"), qtail), Malformed, MalformedBadCounts, "", 0},
		{"absurd qdcount", cat(dnsHeader(0x0100, 0xffff, 0, 0, 0), []byte("\x01x\x00"), qtail), Malformed, MalformedBadCounts, "", 0},
		{"label past end", cat(dnsHeader(0, 1, 0, 0, 0), []byte("\x09abc")), Malformed, MalformedTruncated, "", 0},
		{"no terminator", cat(dnsHeader(0, 1, 0, 0, 0), []byte("\x03abc")), Malformed, MalformedTruncated, "", 0},
		{"no qtype", cat(dnsHeader(0, 1, 0, 0, 0), []byte("\x03abc\x00\x00")), Malformed, MalformedTruncated, "", 0},
		{"extended label", cat(dnsHeader(0, 1, 0, 0, 0), []byte("\x41abc\x00"), qtail), Malformed, MalformedBadLabel, "", 0},
		{"reserved label", cat(dnsHeader(0, 1, 0, 0, 0), []byte("\x81abc\x00"), qtail), Malformed, MalformedBadLabel, "", 0},
		{"too long", cat(dnsHeader(0, 1, 0, 0, 0), long, []byte{0}, qtail), Malformed, MalformedNameTooLong, "", 0},
		{"self pointer", cat(dnsHeader(0, 1, 0, 0, 0), []byte{0xC0, 12}, qtail), Malformed, MalformedCompressionLoop, "", 0},
		{"loop via label", cat(dnsHeader(0, 1, 0, 0, 0), []byte{1, 'a', 0xC0, 12}, qtail), Malformed, MalformedCompressionLoop, "", 0},
		{"forward pointer", cat(dnsHeader(0, 1, 0, 0, 0), []byte{0xC0, 14, 0}, qtail), Malformed, MalformedCompressionLoop, "", 0},
		{"pointer into header", cat(dnsHeader(0, 1, 0, 0, 0), []byte{0xC0, 2}, qtail), Malformed, MalformedBadPointer, "", 0},
		{"pointer past end", cat(dnsHeader(0, 1, 0, 0, 0), []byte{0xC3, 0xff}, qtail), Malformed, MalformedBadPointer, "", 0},
		{"cut pointer", cat(dnsHeader(0, 1, 0, 0, 0), []byte{0xC0}), Malformed, MalformedTruncated, "", 0},
		{"notify", cat(dnsHeader(0x2000, 1, 0, 0, 0), []byte("\x01x\x00"), qtail), Ignored, IgnoredOpcode, "", 0},
	}
	d, err := New(layers.LinkTypeEthernet, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var r Result
			d.DecodeDNS(c.msg, &r)
			if r.Kind != c.kind || r.Reason != c.reason {
				t.Fatalf("got %v/%v, want %v/%v", r.Kind, r.Reason, c.kind, c.reason)
			}
			if string(r.Name) != c.qname || r.QType != c.qtype {
				t.Fatalf("got %q type %d, want %q type %d", r.Name, r.QType, c.qname, c.qtype)
			}
		})
	}
}

// frame serializes an Ethernet/IP/transport frame around payload.
func frame(t testing.TB, v6, tcp bool, sport, dport uint16, payload []byte) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	proto := layers.IPProtocolUDP
	if tcp {
		proto = layers.IPProtocolTCP
	}
	if v6 {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::53")}
		ls, nl = append(ls, eth, ip), ip
	} else {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 53)}
		ls, nl = append(ls, eth, ip), ip
	}
	if tcp {
		tl := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), ACK: true, PSH: true}
		tl.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tl)
	} else {
		ul := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		ul.SetNetworkLayerForChecksum(nl)
		ls = append(ls, ul)
	}
	ls = append(ls, gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func TestDecodeFrames(t *testing.T) {
	q := cat(dnsHeader(0x0100, 1, 0, 0, 0), []byte("\x03foo\x03bar\x00"), qtail)
	tcpq := cat([]byte{0, byte(len(q))}, q)
	udp4 := frame(t, false, false, 5353, 53, q)
	frag := append([]byte(nil), udp4...)
	frag[14+6] |= 0x20 // more fragments
	arp := append(append([]byte(nil), udp4[:12]...), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1)
	cases := []struct {
		name   string
		data   []byte
		ports  []uint16
		kind   Kind
		reason Reason
	}{
		{"udp4", udp4, nil, Query, 0},
		{"udp6", frame(t, true, false, 5353, 53, q), nil, Query, 0},
		{"tcp4", frame(t, false, true, 5353, 53, tcpq), nil, Query, 0},
		{"tcp6", frame(t, true, true, 5353, 53, tcpq), nil, Query, 0},
		{"tcp empty", frame(t, false, true, 5353, 53, nil), nil, Ignored, IgnoredTCPNoPayload},
		{"tcp one octet", frame(t, false, true, 5353, 53, []byte{0}), nil, Malformed, MalformedTCPPartial},
		{"tcp partial", frame(t, false, true, 5353, 53, cat([]byte{0x10, 0}, q)), nil, Malformed, MalformedTCPPartial},
		{"other port", frame(t, false, false, 5353, 5354, q), nil, Ignored, IgnoredPort},
		{"port 8053", frame(t, false, false, 5353, 8053, q), []uint16{53, 8053}, Query, 0},
		{"fragment", frag, nil, Ignored, IgnoredFragment},
		{"arp", arp, nil, Ignored, IgnoredNotIP},
		{"short ethernet", udp4[:10], nil, Malformed, MalformedLink},
		{"short ip", udp4[:20], nil, Malformed, MalformedIP},
		{"short udp", udp4[:14+20+4], nil, Malformed, MalformedTransport},
		{"icmp", func() []byte { b := append([]byte(nil), udp4...); b[14+9] = 1; return b }(), nil, Ignored, IgnoredTransport},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := New(layers.LinkTypeEthernet, Options{Ports: c.ports})
			if err != nil {
				t.Fatal(err)
			}
			var r Result
			d.Decode(c.data, &r)
			if r.Kind != c.kind || r.Reason != c.reason {
				t.Fatalf("got %v/%v, want %v/%v", r.Kind, r.Reason, c.kind, c.reason)
			}
			if c.kind == Query && (string(r.Name) != "foo.bar" || r.QType != 1 || !r.Src.IsValid() || r.DstPort == 0) {
				t.Fatalf("bad result %+v", r)
			}
		})
	}
}

func TestUnsupportedLinkType(t *testing.T) {
	if _, err := New(layers.LinkTypeIEEE802_11, Options{}); err == nil {
		t.Fatal("802.11 accepted")
	}
}

// capturePackets returns every packet of every capture in the test dirs, with
// its link type.
func capturePackets(t testing.TB) (pkts [][]byte, links []layers.LinkType) {
	for _, dir := range captureDirs() {
		files, _ := filepath.Glob(filepath.Join(dir, "*.pcap*"))
		for _, fn := range files {
			f, err := pcapfile.Open(fn)
			if err != nil {
				t.Fatal(err)
			}
			for {
				data, _, err := f.ZeroCopyReadPacketData()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				pkts = append(pkts, append([]byte(nil), data...))
				links = append(links, f.LinkType())
			}
			f.Close()
		}
	}
	return pkts, links
}

func TestZeroAlloc(t *testing.T) {
	pkts, links := capturePackets(t)
	decs := map[layers.LinkType]*Decoder{}
	for i, p := range pkts {
		d := decs[links[i]]
		if d == nil {
			d, _ = New(links[i], Options{Ports: []uint16{53, 8053}})
			decs[links[i]] = d
		}
		var r Result
		if a := testing.AllocsPerRun(20, func() { d.Decode(p, &r) }); a != 0 {
			t.Errorf("packet %d (%v, %v/%v): %.1f allocations per decode", i, links[i], r.Kind, r.Reason, a)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	q := cat(dnsHeader(0x0100, 1, 0, 0, 1), []byte("\x03www\x0dexample-query\x03com\x00"), qtail, []byte{0, 0, 41, 4, 0xd0, 0, 0, 0, 0, 0, 0})
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"udp4", frame(b, false, false, 40000, 53, q)},
		{"udp6", frame(b, true, false, 40000, 53, q)},
		{"tcp4", frame(b, false, true, 40000, 53, cat([]byte{0, byte(len(q))}, q))},
	} {
		b.Run(c.name, func(b *testing.B) {
			d, _ := New(layers.LinkTypeEthernet, Options{})
			var r Result
			b.ReportAllocs()
			b.SetBytes(int64(len(c.data)))
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			c0 := threadCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d.Decode(c.data, &r)
			}
			b.StopTimer()
			// CPU time of this thread: unlike ns/op, not inflated while the
			// benchmark is descheduled on a busy machine.
			b.ReportMetric(float64(threadCPU()-c0)/float64(b.N), "cpu-ns/op")
			if r.Kind != Query {
				b.Fatalf("decoded %v/%v", r.Kind, r.Reason)
			}
		})
	}
}

// threadCPU returns the calling thread's CPU time in ns (RUSAGE_THREAD).
func threadCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(1, &ru) // RUSAGE_THREAD
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// linkSel maps the fuzz input's first octet to a link type.
var linkSel = []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL, layers.LinkTypeRaw, layers.LinkTypeNull, layers.LinkTypeLoop,
	layers.LinkTypePPP, linkTypePPPHDLC, linkTypeIPv4, linkTypeIPv6}

func linkIndex(lt layers.LinkType) byte {
	for i, l := range linkSel {
		if l == lt {
			return byte(i)
		}
	}
	return 0
}

// FuzzDecode feeds arbitrary frames (first octet selects the link type) to
// the decoder. The seed corpus under testdata/fuzz/FuzzDecode holds every
// packet of the test captures (see TestWriteFuzzSeeds) plus what fuzzing found.
func FuzzDecode(f *testing.F) {
	decs := make([]*Decoder, len(linkSel))
	for i, lt := range linkSel {
		d, err := New(lt, Options{Ports: []uint16{53, 8053}})
		if err != nil {
			f.Fatal(err)
		}
		decs[i] = d
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		d := decs[int(in[0])%len(decs)]
		var r, r2 Result
		d.Decode(in[1:], &r)
		name := string(r.Name)
		d.Decode(in[1:], &r2)
		if r.Kind != r2.Kind || r.Reason != r2.Reason || name != string(r2.Name) || r.QType != r2.QType {
			t.Fatalf("not deterministic: %+v vs %+v", r, r2)
		}
		switch r.Kind {
		case Query, Response:
			if r.Reason != ReasonNone {
				t.Fatalf("%v with reason %v", r.Kind, r.Reason)
			}
			if r.Kind == Query && len(name) == 0 {
				t.Fatal("query without name")
			}
			if len(name) > 1020 {
				t.Fatalf("name of %d octets", len(name))
			}
			for i := 0; i < len(name); i++ {
				if c := name[i]; c <= 0x20 || c >= 0x7f || (c >= 'A' && c <= 'Z') {
					t.Fatalf("name %q has octet %#x", name, c)
				}
			}
			if r.Transport == 0 || !r.Src.IsValid() {
				t.Fatalf("DNS without addresses: %+v", r)
			}
		case Malformed:
			if !r.Reason.IsMalformed() {
				t.Fatalf("malformed with reason %v", r.Reason)
			}
		case Ignored:
			if r.Reason == ReasonNone || r.Reason.IsMalformed() {
				t.Fatalf("ignored with reason %v", r.Reason)
			}
		default:
			t.Fatalf("kind %v", r.Kind)
		}
	})
}

// TestWriteFuzzSeeds (re)writes the capture-derived seed corpus when
// DNSDECODE_WRITE_SEEDS=1; otherwise it checks the seeds are there.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzDecode")
	if os.Getenv("DNSDECODE_WRITE_SEEDS") != "1" {
		seeds, _ := filepath.Glob(filepath.Join(dir, "capture-*"))
		if len(seeds) == 0 {
			t.Fatalf("no capture seeds in %s; run with DNSDECODE_WRITE_SEEDS=1", dir)
		}
		return
	}
	pkts, links := capturePackets(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, p := range pkts {
		in := append([]byte{linkIndex(links[i])}, p...)
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", in)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("capture-%03d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d seeds", len(pkts))
}
