package pktengine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
	"github.com/switchboard-dp/switchboard/modules/pktengine/pcapfile"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// The crafted captures in testdata/crafted are small files with the
// properties captures from the wild showed: a header claiming a ~2 GB snap
// length, packets longer than the snap length, a packet far larger than any
// frame, pcapng interfaces of different link types (one not decoded), PPP
// and PPP-in-HDLC framing, a raw-IPv4 link carrying an IPv6 packet. They are
// written by the code below; TestCraftedCapturesUpToDate checks the files
// are what it writes (go test -run TestCraftedCapturesUpToDate -update
// rewrites them).
var updateCrafted = flag.Bool("update", false, "rewrite testdata/crafted")

const craftedDir = "testdata/crafted"

// ipQuery is an IPv4 (or IPv6) UDP DNS query for name, without a link header.
func ipQuery(t testing.TB, name string, v6 bool) []byte {
	t.Helper()
	msg := []byte{0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}
	for _, l := range strings.Split(name, ".") {
		msg = append(append(msg, byte(len(l))), l...)
	}
	msg = append(msg, 0, 0, 1, 0, 1)
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::53")}
		ls, nl = append(ls, ip), ip
	} else {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 53)}
		ls, nl = append(ls, ip), ip
	}
	udp := &layers.UDP{SrcPort: 40000, DstPort: 53}
	udp.SetNetworkLayerForChecksum(nl)
	ls = append(ls, udp, gopacket.Payload(msg))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// ethQuery is ipQuery in an Ethernet frame.
func ethQuery(t testing.TB, name string) []byte {
	eth := []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00}
	return append(eth, ipQuery(t, name, false)...)
}

type rec struct {
	data   []byte
	iface  uint32
	caplen uint32 // 0: len(data)
}

// pcapBytes writes a classic pcap file (little endian, microseconds).
func pcapBytes(snaplen, link uint32, recs []rec) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	h := make([]byte, 24)
	le.PutUint32(h[0:], 0xA1B2C3D4)
	le.PutUint16(h[4:], 2)
	le.PutUint16(h[6:], 4)
	le.PutUint32(h[16:], snaplen)
	le.PutUint32(h[20:], link)
	b.Write(h)
	for i, r := range recs {
		caplen := uint32(len(r.data))
		if r.caplen != 0 {
			caplen = r.caplen
		}
		rh := make([]byte, 16)
		le.PutUint32(rh[0:], 1700000000+uint32(i))
		le.PutUint32(rh[8:], caplen)
		le.PutUint32(rh[12:], caplen)
		b.Write(rh)
		b.Write(r.data)
		b.Write(make([]byte, int(caplen)-len(r.data)))
	}
	return b.Bytes()
}

// pcapngBytes writes a pcapng file: one section, an interface per link
// type (with its snap length), an enhanced packet block per record.
func pcapngBytes(links, snaplens []uint32, recs []rec) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	block := func(typ uint32, body []byte) {
		for len(body)%4 != 0 {
			body = append(body, 0)
		}
		h := make([]byte, 8)
		le.PutUint32(h[0:], typ)
		le.PutUint32(h[4:], uint32(12+len(body)))
		b.Write(h)
		b.Write(body)
		b.Write(h[4:8])
	}
	shb := make([]byte, 16)
	le.PutUint32(shb[0:], 0x1A2B3C4D)
	le.PutUint16(shb[4:], 1)
	le.PutUint64(shb[8:], ^uint64(0))
	block(0x0A0D0D0A, shb)
	for i, lt := range links {
		idb := make([]byte, 8)
		le.PutUint16(idb[0:], uint16(lt))
		le.PutUint32(idb[4:], snaplens[i])
		block(1, idb)
	}
	for i, r := range recs {
		epb := make([]byte, 20)
		le.PutUint32(epb[0:], r.iface)
		ts := uint64(1700000000+i) * 1000000
		le.PutUint32(epb[4:], uint32(ts>>32))
		le.PutUint32(epb[8:], uint32(ts))
		le.PutUint32(epb[12:], uint32(len(r.data)))
		le.PutUint32(epb[16:], uint32(len(r.data)))
		block(6, append(epb, r.data...))
	}
	return b.Bytes()
}

// craftedCaptures returns the crafted files by name.
func craftedCaptures(t testing.TB) map[string][]byte {
	hdlc := func(ip []byte) []byte { return append([]byte{0xFF, 0x03, 0x00, 0x21}, ip...) }
	return map[string][]byte{
		// A header claiming a snap length of 2^31-1 bytes, three queries.
		"huge-snaplen.pcap": pcapBytes(0x7FFFFFFF, 1, []rec{
			{data: ethQuery(t, "a.example")}, {data: ethQuery(t, "b.example")}, {data: ethQuery(t, "c.example")}}),
		// Snap length 80: the second query is longer; a 300,000-byte
		// packet sits between the third and the fourth.
		"over-snaplen.pcap": pcapBytes(80, 1, []rec{
			{data: ethQuery(t, "short.example")},
			{data: ethQuery(t, "a-much-longer-name-than-the-snap-length-allows.example")},
			{data: ethQuery(t, "third.example")},
			{data: []byte{0xde, 0xad}, caplen: 300000},
			{data: ethQuery(t, "fourth.example")}}),
		// Four interfaces: Ethernet, PPP in HDLC framing, USER0 (147: not
		// decoded), raw IPv4 (228) with a ~2 GB snap length.
		"mixed-links.pcapng": pcapngBytes([]uint32{1, 50, 147, 228}, []uint32{65535, 65535, 65535, 0x7FFFFFFF}, []rec{
			{data: ethQuery(t, "eth.example"), iface: 0},
			{data: hdlc(ipQuery(t, "hdlc.example", false)), iface: 1},
			{data: []byte{1, 2, 3, 4}, iface: 2},
			{data: ipQuery(t, "raw4.example", false), iface: 3},
			{data: ipQuery(t, "six-on-v4-link.example", true), iface: 3},
			{data: []byte{5, 6, 7, 8}, iface: 2}}),
		// PPP (9): the protocol field in full, and compressed to one byte.
		"ppp.pcap": pcapBytes(65535, 9, []rec{
			{data: append([]byte{0x00, 0x21}, ipQuery(t, "ppp.example", false)...)},
			{data: append([]byte{0x21}, ipQuery(t, "pfc.example", false)...)},
			{data: append([]byte{0xFF, 0x03, 0x00, 0x57}, ipQuery(t, "ppp6.example", true)...)},
			{data: []byte{0xC0, 0x21, 1, 1, 0, 4}}}), // LCP: not IP
		// A link type the engine does not decode.
		"unknown-link.pcap": pcapBytes(65535, 148, []rec{{data: []byte{1, 2, 3}}}),
	}
}

func TestCraftedCapturesUpToDate(t *testing.T) {
	for name, data := range craftedCaptures(t) {
		path := filepath.Join(craftedDir, name)
		if *updateCrafted {
			if err := os.MkdirAll(craftedDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -run TestCraftedCapturesUpToDate -update writes it)", err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s differs from what the test writes (go test -run TestCraftedCapturesUpToDate -update)", path)
		}
	}
}

// readAll reads a crafted capture with pcapfile and returns the packets'
// link types and the reader's stats, and how many bytes the reading
// allocated.
func readAll(t *testing.T, name string) (links []layers.LinkType, st pcapfile.Stats, alloc uint64) {
	t.Helper()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	f, err := pcapfile.Open(filepath.Join(craftedDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for {
		_, ci, err := f.ZeroCopyReadPacketData()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatalf("%s: %v", name, err)
			}
			break
		}
		lt := f.LinkType()
		if len(ci.AncillaryData) > 0 {
			lt = ci.AncillaryData[0].(layers.LinkType)
		}
		links = append(links, lt)
	}
	runtime.ReadMemStats(&m1)
	return links, f.Stats(), m1.TotalAlloc - m0.TotalAlloc
}

// TestCraftedReaderMemoryAndOversize: memory follows the packets, not the
// header's snap length; a packet over the snap length is read and counted;
// a packet over pcapfile.MaxPacket is skipped, counted, and the file goes on.
func TestCraftedReaderMemoryAndOversize(t *testing.T) {
	links, st, alloc := readAll(t, "huge-snaplen.pcap")
	if len(links) != 3 || alloc > 4<<20 {
		t.Errorf("huge snap length: %d packets, %d bytes allocated (the reader's 1 MB buffer and the packets)", len(links), alloc)
	}
	links, st, _ = readAll(t, "over-snaplen.pcap")
	if len(links) != 4 || st.Oversize != 2 || st.Skipped != 1 {
		t.Errorf("over snap length: %d packets, stats %+v; want 4 packets, 2 oversize (one of them skipped)", len(links), st)
	}
	links, _, alloc = readAll(t, "mixed-links.pcapng")
	want := []layers.LinkType{1, 50, 147, 228, 228, 147}
	if len(links) != len(want) || alloc > 4<<20 {
		t.Fatalf("pcapng: link types %v (want %v), %d bytes allocated", links, want, alloc)
	}
	for i := range want {
		if links[i] != want[i] {
			t.Errorf("pcapng packet %d: link type %v, want %v", i, links[i], want[i])
		}
	}
}

// TestCraftedEngineCounts replays the crafted captures through the engine:
// every packet is decoded or counted, by link type and reason.
func TestCraftedEngineCounts(t *testing.T) {
	h := newHarness(t, 2, decision.AllActions, nil)
	h.replay(t, filepath.Join(craftedDir, "mixed-links.pcapng"), 0)
	h.replay(t, filepath.Join(craftedDir, "ppp.pcap"), 0)
	h.replay(t, filepath.Join(craftedDir, "over-snaplen.pcap"), 0)
	st := h.e.Status()
	tt := st.Totals
	if tt.Packets != 6+4+4 {
		t.Errorf("packets %d, want 14", tt.Packets)
	}
	if tt.OtherLink[147] != 2 || len(tt.OtherLink) != 1 {
		t.Errorf("packets of link types not decoded: %v, want USER0 (147): 2", tt.OtherLink)
	}
	if tt.Reasons[dnsdecode.MalformedIPVersion] != 1 {
		t.Errorf("IPv6 on the raw-IPv4 link: ip_version %d, want 1", tt.Reasons[dnsdecode.MalformedIPVersion])
	}
	if tt.Oversize != 2 || tt.TooLarge != 1 {
		t.Errorf("oversize %d, too large %d; want 2 and 1", tt.Oversize, tt.TooLarge)
	}
	h.mu.Lock()
	var names []string
	for _, r := range h.recs {
		names = append(names, r.domain)
	}
	h.mu.Unlock()
	sort.Strings(names)
	want := []string{"a-much-longer-name-than-the-snap-length-allows.example", "eth.example", "fourth.example", "hdlc.example",
		"pfc.example", "ppp.example", "ppp6.example", "raw4.example", "short.example", "third.example"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("queries decided:\n%v\nwant\n%v", names, want)
	}
	var out bytes.Buffer
	WriteStatus(&out, st)
	for _, s := range []string{"Not decoded:", "(147) 2", "Oversize:", "ip_version"} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("packet show status lacks %q:\n%s", s, out.String())
		}
	}
}

// TestCraftedRefusal: a pcap file of a link type the engine does not decode
// is refused with the link type's name and number.
func TestCraftedRefusal(t *testing.T) {
	_, err := OpenFile(filepath.Join(craftedDir, "unknown-link.pcap"))
	if err == nil || !strings.Contains(err.Error(), "(148)") || strings.Contains(err.Error(), "UnknownLinkType") {
		t.Fatalf("refusal: %v; want the link type by name and number", err)
	}
}
