// Package capgen writes synthetic DNS captures: N queries from many
// subscribers (IPv4 and IPv6 source addresses) for names drawn from real block
// lists plus benign names, over any link type the engine decodes, as pcap or
// pcapng. Output is deterministic for a given Config (seed included), so
// benchmarks and tests can regenerate identical traffic.
package capgen

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Config describes a capture to generate. Zero fields take the defaults
// noted.
type Config struct {
	// Queries is the number of DNS queries to write (default 1000).
	Queries int
	// Seed makes the output reproducible (0 is a valid seed).
	Seed uint64
	// Subscribers is the number of distinct source addresses (default 10000).
	Subscribers int
	// IPv6Share is the fraction of subscribers with IPv6 addresses (default 0
	// unless set; use a negative value for none explicitly).
	IPv6Share float64
	// BlockedShare is the fraction of queries for block-list names (default 0.3
	// when Blocked is not empty).
	BlockedShare float64
	// Blocked are block-list domains; a drawn name is the domain itself or a
	// subdomain of it.
	Blocked []string
	// Benign are benign domains (default: BenignDomains).
	Benign []string
	// TCPShare is the fraction of queries sent over TCP (2-octet length prefix).
	TCPShare float64
	// Responses adds a response after each query (NOERROR, one A/AAAA answer).
	Responses bool
	// MixedCaseShare is the fraction of names written with random upper case
	// (DNS 0x20), which the decoder must fold.
	MixedCaseShare float64
	// Link is the link type by name (default "ether"); see LinkTypes.
	Link string
	// VLANs are 802.1Q tags on Ethernet frames; two tags make QinQ (outer
	// 0x88a8).
	VLANs []uint16
	// Port is the DNS server port (default 53).
	Port uint16
	// Start is the first packet's timestamp (default 2026-01-01T00:00:00Z).
	Start time.Time
	// PPS paces timestamps, packets per second (default 10000).
	PPS float64
	// NG writes pcapng instead of pcap.
	NG bool
}

// Stats says what Generate wrote.
type Stats struct {
	Packets, Queries, Responses, Blocked, Benign, TCP, IPv6 int
}

// BenignDomains is a built-in list of popular, benign domains.
var BenignDomains = []string{
	"google.com", "youtube.com", "facebook.com", "wikipedia.org", "amazon.com", "apple.com",
	"microsoft.com", "netflix.com", "instagram.com", "linkedin.com", "twitter.com", "x.com",
	"whatsapp.net", "bing.com", "yahoo.com", "github.com", "stackoverflow.com", "reddit.com",
	"cloudflare.com", "akamaiedge.net", "gstatic.com", "googleapis.com", "icloud.com",
	"office.com", "live.com", "openai.com", "zoom.us", "spotify.com", "twitch.tv", "ebay.com",
	"paypal.com", "bbc.co.uk", "nytimes.com", "debian.org", "kernel.org", "golang.org",
	"tcpdump.org", "mozilla.org", "cdn.jsdelivr.net", "fastly.net", "example.com", "ietf.org",
	"nic.nl", "bol.com", "marktplaats.nl", "nu.nl", "tweakers.net", "ns.nl", "rijksoverheid.nl",
	"ing.nl", "rabobank.nl", "abnamro.nl", "kpn.com", "ziggo.nl", "tmobile.nl", "weather.com",
}

var subLabels = []string{"www", "api", "cdn", "mail", "img", "static", "m", "login", "app", "edge"}

// LinkTypes are the link types Generate writes, by name.
var LinkTypes = map[string]layers.LinkType{
	"ether": layers.LinkTypeEthernet,
	"sll":   layers.LinkTypeLinuxSLL,
	"raw":   layers.LinkTypeRaw,
	"null":  layers.LinkTypeNull,
	"loop":  layers.LinkTypeLoop,
}

type packetWriter interface {
	WritePacket(ci gopacket.CaptureInfo, data []byte) error
}

// Generate writes the capture described by cfg to w.
func Generate(w io.Writer, cfg Config) (Stats, error) {
	var st Stats
	if cfg.Queries == 0 {
		cfg.Queries = 1000
	}
	if cfg.Subscribers <= 0 {
		cfg.Subscribers = 10000
	}
	if cfg.BlockedShare == 0 && len(cfg.Blocked) > 0 {
		cfg.BlockedShare = 0.3
	}
	if len(cfg.Benign) == 0 {
		cfg.Benign = BenignDomains
	}
	if cfg.Link == "" {
		cfg.Link = "ether"
	}
	link, ok := LinkTypes[cfg.Link]
	if !ok {
		return st, fmt.Errorf("capgen: unknown link type %q", cfg.Link)
	}
	if cfg.Port == 0 {
		cfg.Port = 53
	}
	if cfg.Start.IsZero() {
		cfg.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if cfg.PPS <= 0 {
		cfg.PPS = 10000
	}
	if len(cfg.VLANs) > 0 && link != layers.LinkTypeEthernet {
		return st, fmt.Errorf("capgen: VLAN tags need Ethernet")
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var pw packetWriter
	if cfg.NG {
		ng, err := pcapgo.NewNgWriter(bw, link)
		if err != nil {
			return st, err
		}
		defer ng.Flush()
		pw = ng
	} else {
		pw1 := pcapgo.NewWriter(bw)
		if err := pw1.WriteFileHeader(65535, link); err != nil {
			return st, err
		}
		pw = pw1
	}

	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	g := &gen{cfg: cfg, link: link, rng: rng, buf: gopacket.NewSerializeBuffer()}
	step := time.Duration(float64(time.Second) / cfg.PPS)
	ts := cfg.Start
	for i := 0; i < cfg.Queries; i++ {
		sub := rng.IntN(cfg.Subscribers)
		src := g.subscriberAddr(sub)
		name, blocked := g.name()
		if blocked {
			st.Blocked++
		} else {
			st.Benign++
		}
		qtype := g.qtype(src.Is6())
		tcp := cfg.TCPShare > 0 && rng.Float64() < cfg.TCPShare
		id := uint16(rng.Uint32())
		sport := uint16(1024 + rng.IntN(64511))
		msg := buildQuery(nil, id, name, qtype, rng.IntN(2) == 0)
		frame, err := g.frame(src, g.resolver(src.Is6()), sport, cfg.Port, msg, tcp)
		if err != nil {
			return st, err
		}
		if err := pw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(frame), Length: len(frame)}, frame); err != nil {
			return st, err
		}
		st.Packets++
		st.Queries++
		if tcp {
			st.TCP++
		}
		if src.Is6() {
			st.IPv6++
		}
		ts = ts.Add(step)
		if cfg.Responses {
			resp := buildResponse(nil, id, name, qtype)
			frame, err := g.frame(g.resolver(src.Is6()), src, cfg.Port, sport, resp, tcp)
			if err != nil {
				return st, err
			}
			if err := pw.WritePacket(gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(frame), Length: len(frame)}, frame); err != nil {
				return st, err
			}
			st.Packets++
			st.Responses++
			ts = ts.Add(step)
		}
	}
	if ng, ok := pw.(*pcapgo.NgWriter); ok {
		if err := ng.Flush(); err != nil {
			return st, err
		}
	}
	return st, bw.Flush()
}

type gen struct {
	cfg  Config
	link layers.LinkType
	rng  *rand.Rand
	buf  gopacket.SerializeBuffer
}

// SubscriberAddr returns the source address of subscriber i for a config
// with the given IPv6 share. IPv4 subscribers live in 10.0.0.0/8 (from
// 10.0.1.0), IPv6 subscribers get one /64 each under 2001:db8:1000::/36
// (host ::1). Which subscribers are IPv6 is spread evenly over the indexes.
func SubscriberAddr(i int, ipv6Share float64) netip.Addr {
	if ipv6Share > 0 && float64((uint32(i)*2654435761)%1000) < ipv6Share*1000 {
		var a [16]byte
		binary.BigEndian.PutUint32(a[:], 0x20010db8)
		binary.BigEndian.PutUint32(a[4:], 0x10000000|uint32(i)&0x0fffffff)
		a[15] = 1
		return netip.AddrFrom16(a)
	}
	n := uint32(i) + 256
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

func (g *gen) subscriberAddr(i int) netip.Addr { return SubscriberAddr(i, g.cfg.IPv6Share) }

// Resolver addresses the queries go to.
var (
	Resolver4 = netip.MustParseAddr("192.0.2.53")
	Resolver6 = netip.MustParseAddr("2001:db8:53::53")
)

func (g *gen) resolver(v6 bool) netip.Addr {
	if v6 {
		return Resolver6
	}
	return Resolver4
}

func (g *gen) name() (string, bool) {
	r := g.rng
	var base string
	blocked := len(g.cfg.Blocked) > 0 && r.Float64() < g.cfg.BlockedShare
	if blocked {
		base = g.cfg.Blocked[r.IntN(len(g.cfg.Blocked))]
	} else {
		base = g.cfg.Benign[r.IntN(len(g.cfg.Benign))]
	}
	name := base
	if r.IntN(3) == 0 {
		name = subLabels[r.IntN(len(subLabels))] + "." + base
	}
	if g.cfg.MixedCaseShare > 0 && r.Float64() < g.cfg.MixedCaseShare {
		b := []byte(name)
		for i, c := range b {
			if c >= 'a' && c <= 'z' && r.IntN(2) == 0 {
				b[i] = c - 32
			}
		}
		name = string(b)
	}
	return name, blocked
}

func (g *gen) qtype(v6 bool) uint16 {
	switch x := g.rng.IntN(100); {
	case x < 55:
		return 1 // A
	case x < 85:
		return 28 // AAAA
	case x < 93:
		return 65 // HTTPS
	case x < 96:
		return 15 // MX
	case x < 98:
		return 16 // TXT
	default:
		return 12 // PTR
	}
}

// buildQuery appends a DNS query (RD set, optional EDNS OPT) to b.
func buildQuery(b []byte, id uint16, name string, qtype uint16, edns bool) []byte {
	ar := uint16(0)
	if edns {
		ar = 1
	}
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, 0x0100) // RD
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, ar)
	b = appendName(b, name)
	b = binary.BigEndian.AppendUint16(b, qtype)
	b = binary.BigEndian.AppendUint16(b, 1) // IN
	if edns {
		b = append(b, 0)                           // root
		b = binary.BigEndian.AppendUint16(b, 41)   // OPT
		b = binary.BigEndian.AppendUint16(b, 1232) // UDP size
		b = append(b, 0, 0, 0, 0)                  // ext rcode, version, flags
		b = binary.BigEndian.AppendUint16(b, 0)    // rdlen
	}
	return b
}

// buildResponse appends a response with the question and, for A/AAAA, one
// answer that points back at the question by compression.
func buildResponse(b []byte, id uint16, name string, qtype uint16) []byte {
	an := uint16(0)
	if qtype == 1 || qtype == 28 {
		an = 1
	}
	b = binary.BigEndian.AppendUint16(b, id)
	b = binary.BigEndian.AppendUint16(b, 0x8180) // QR RD RA
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, an)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = appendName(b, name)
	b = binary.BigEndian.AppendUint16(b, qtype)
	b = binary.BigEndian.AppendUint16(b, 1)
	if an == 1 {
		b = append(b, 0xC0, 12)
		b = binary.BigEndian.AppendUint16(b, qtype)
		b = binary.BigEndian.AppendUint16(b, 1)
		b = binary.BigEndian.AppendUint32(b, 300)
		if qtype == 1 {
			b = binary.BigEndian.AppendUint16(b, 4)
			b = append(b, 198, 51, 100, 7)
		} else {
			b = binary.BigEndian.AppendUint16(b, 16)
			b = append(b, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7)
		}
	}
	return b
}

func appendName(b []byte, name string) []byte {
	for _, l := range strings.Split(strings.TrimSuffix(name, "."), ".") {
		if l == "" {
			continue
		}
		if len(l) > 63 {
			l = l[:63]
		}
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

// frame serializes one packet of the configured link type. The returned
// slice is valid until the next call.
func (g *gen) frame(src, dst netip.Addr, sport, dport uint16, msg []byte, tcp bool) ([]byte, error) {
	var ls []gopacket.SerializableLayer
	var netLayer gopacket.NetworkLayer
	var ethType layers.EthernetType
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Flags: layers.IPv4DontFragment,
			SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		ethType = layers.EthernetTypeIPv4
		if tcp {
			ip.Protocol = layers.IPProtocolTCP
		} else {
			ip.Protocol = layers.IPProtocolUDP
		}
		netLayer = ip
		ls = append(ls, ip)
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		ethType = layers.EthernetTypeIPv6
		if tcp {
			ip.NextHeader = layers.IPProtocolTCP
		} else {
			ip.NextHeader = layers.IPProtocolUDP
		}
		netLayer = ip
		ls = append(ls, ip)
	}
	payload := msg
	if tcp {
		t := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: g.rng.Uint32(),
			Ack: g.rng.Uint32(), PSH: true, ACK: true, Window: 64240}
		if err := t.SetNetworkLayerForChecksum(netLayer); err != nil {
			return nil, err
		}
		payload = binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(msg)), uint16(len(msg)))
		payload = append(payload, msg...)
		ls = append(ls, t)
	} else {
		u := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		if err := u.SetNetworkLayerForChecksum(netLayer); err != nil {
			return nil, err
		}
		ls = append(ls, u)
	}
	ls = append(ls, gopacket.Payload(payload))
	if err := gopacket.SerializeLayers(g.buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, err
	}
	// Link header, prepended by hand (gopacket has no LinuxSLL serializer).
	switch g.link {
	case layers.LinkTypeEthernet:
		next := ethType
		for i := len(g.cfg.VLANs) - 1; i >= 0; i-- {
			h, _ := g.buf.PrependBytes(4)
			binary.BigEndian.PutUint16(h, g.cfg.VLANs[i]&0x0fff)
			binary.BigEndian.PutUint16(h[2:], uint16(next))
			if i == 0 && len(g.cfg.VLANs) > 1 {
				next = layers.EthernetTypeQinQ
			} else {
				next = layers.EthernetTypeDot1Q
			}
		}
		h, _ := g.buf.PrependBytes(14)
		copy(h, []byte{0x02, 0, 0, 0, 0, 0x53, 0x02, 0, 0, 0, 0, 0x01})
		binary.BigEndian.PutUint16(h[12:], uint16(next))
	case layers.LinkTypeLinuxSLL:
		h, _ := g.buf.PrependBytes(16)
		binary.BigEndian.PutUint16(h[0:], 4) // sent by us
		binary.BigEndian.PutUint16(h[2:], 1) // ARPHRD_ETHER
		binary.BigEndian.PutUint16(h[4:], 6)
		copy(h[6:14], []byte{0x02, 0, 0, 0, 0, 0x01, 0, 0})
		binary.BigEndian.PutUint16(h[14:], uint16(ethType))
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		fam := uint32(2) // AF_INET
		if ethType == layers.EthernetTypeIPv6 {
			fam = 24 // AF_INET6 (BSD)
		}
		h, _ := g.buf.PrependBytes(4)
		if g.link == layers.LinkTypeLoop {
			binary.BigEndian.PutUint32(h, fam)
		} else {
			binary.LittleEndian.PutUint32(h, fam)
		}
	}
	return g.buf.Bytes(), nil
}
