// Package dnsdecode turns captured frames into DNS query facts without
// allocating: gopacket's DecodingLayerParser (with reused layer structs)
// handles link, network and transport, and the DNS header and first question
// are parsed by hand straight from the UDP payload or TCP segment into a
// buffer the Decoder owns.
//
// A Decoder is not safe for concurrent use; give each goroutine its own.
package dnsdecode

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Kind classifies a decoded frame.
type Kind uint8

// Kinds of frame.
const (
	// Ignored frames are not DNS messages on a DNS port (Reason says why).
	Ignored Kind = iota
	// Query is a DNS message with QR=0 and opcode QUERY.
	Query
	// Response is a DNS message with QR=1.
	Response
	// Malformed frames are on a DNS port but could not be decoded (Reason says why).
	Malformed
)

func (k Kind) String() string {
	switch k {
	case Ignored:
		return "ignored"
	case Query:
		return "query"
	case Response:
		return "response"
	case Malformed:
		return "malformed"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Reason says why a frame was ignored or is malformed.
type Reason uint8

// Reasons. The Ignored* reasons go with Kind Ignored, the others with Malformed.
const (
	ReasonNone Reason = iota

	IgnoredNotIP        // no IPv4/IPv6 layer (ARP, LLDP, ...)
	IgnoredTransport    // IP but neither UDP nor TCP
	IgnoredPort         // UDP/TCP but no configured DNS port
	IgnoredFragment     // IP fragment
	IgnoredTCPNoPayload // TCP segment without payload (handshake, ACK, FIN)
	IgnoredOpcode       // QR=0 with an opcode other than QUERY (NOTIFY, UPDATE, ...)

	MalformedLink            // link layer did not decode
	MalformedIP              // IP header did not decode
	MalformedTransport       // UDP/TCP header did not decode
	MalformedTruncated       // DNS message ends before its header or first question does
	MalformedTCPPartial      // TCP length prefix says the message continues in another segment
	MalformedBadLabel        // label type 0x40/0x80 (extended/reserved)
	MalformedNameTooLong     // name longer than 255 octets on the wire
	MalformedBadPointer      // compression pointer outside the message or into the header
	MalformedCompressionLoop // compression pointer that does not point strictly backwards
	MalformedBadCounts       // section counts that cannot fit in the message
	MalformedNoQuestion      // query with QDCOUNT 0
	MalformedIPVersion       // raw IP link: the version nibble is not the link's IP version (4 or 6)

	// NumReasons is the number of reasons, for sizing counter arrays.
	NumReasons
)

var reasonNames = [NumReasons]string{
	ReasonNone:               "none",
	IgnoredNotIP:             "not_ip",
	IgnoredTransport:         "not_udp_tcp",
	IgnoredPort:              "not_dns_port",
	IgnoredFragment:          "ip_fragment",
	IgnoredTCPNoPayload:      "tcp_no_payload",
	IgnoredOpcode:            "not_query_opcode",
	MalformedLink:            "bad_link",
	MalformedIP:              "bad_ip",
	MalformedTransport:       "bad_transport",
	MalformedTruncated:       "truncated",
	MalformedTCPPartial:      "tcp_partial",
	MalformedBadLabel:        "bad_label",
	MalformedNameTooLong:     "name_too_long",
	MalformedBadPointer:      "bad_pointer",
	MalformedCompressionLoop: "compression_loop",
	MalformedBadCounts:       "bad_counts",
	MalformedNoQuestion:      "no_question",
	MalformedIPVersion:       "ip_version",
}

// String returns the reason's metric label (snake_case).
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// IsMalformed reports whether the reason belongs to a malformed frame.
func (r Reason) IsMalformed() bool { return r >= MalformedLink && r < NumReasons }

// Transport protocol numbers used in Result.Transport.
const (
	TransportUDP = 17
	TransportTCP = 6
)

// Result is what Decode extracts from one frame. Name aliases the Decoder's
// buffer and is valid until the next call to Decode.
type Result struct {
	Kind   Kind
	Reason Reason
	// Truncated is set when the capture cut the frame short (snaplen).
	Truncated bool
	// Transport is TransportUDP or TransportTCP once known.
	Transport        uint8
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	// ID, Flags (the second header word), QDCount, ANCount, NSCount, ARCount
	// are the DNS header.
	ID, Flags                          uint16
	QDCount, ANCount, NSCount, ARCount uint16
	// QType and QClass are from the first question.
	QType, QClass uint16
	// QEnd is the offset in the DNS message just after the first question
	// (0 when there is none): msg[12:QEnd] is the question as sent.
	QEnd uint16
	// Name is the first question's name in presentation form: ASCII
	// lower-cased, labels joined by '.', no trailing dot ("." for the root),
	// '.' and '\' inside a label escaped with '\', bytes outside 0x21..0x7e as
	// \DDD. Empty for a response without a question.
	Name []byte
}

// Opcode returns the DNS opcode from Flags.
func (r *Result) Opcode() uint8 { return uint8(r.Flags>>11) & 0xf }

// Rcode returns the DNS response code from Flags.
func (r *Result) Rcode() uint8 { return uint8(r.Flags & 0xf) }

// Options configure a Decoder.
type Options struct {
	// Ports are the DNS ports; a UDP datagram or TCP segment with either port
	// in the set is decoded as DNS. Empty means 53.
	Ports []uint16
}

// Decoder decodes frames of one link type. Not safe for concurrent use.
type Decoder struct {
	link    layers.LinkType
	parser  *gopacket.DecodingLayerParser // first layer fixed by the link type
	parser6 *gopacket.DecodingLayerParser // raw IP links: the IPv6 parser (parser is IPv4)
	rawIP   bool
	ipVer   byte // raw IP links that carry one IP version only (4 or 6; 0: either)
	ppp     bool // PPP links: the PPP header is taken off first
	eth     layers.Ethernet
	dot1q   layers.Dot1Q
	sll     layers.LinuxSLL
	loop    layers.Loopback
	ip4     layers.IPv4
	ip6     layers.IPv6
	udp     layers.UDP
	tcp     layers.TCP
	decoded []gopacket.LayerType
	ports   [1024]uint64 // bitset of DNS ports
	name    [1024]byte   // presentation name; 255 wire octets escape to < 1024
}

// SupportedLinkType reports whether New accepts the link type.
func SupportedLinkType(lt layers.LinkType) bool {
	_, ok := firstLayer(lt)
	return ok
}

// Link types of raw IP captures that gopacket's enum does not name.
const (
	linkTypeRawBSD     layers.LinkType = 12  // DLT_RAW on some BSDs
	linkTypeRawOpenBSD layers.LinkType = 14  // DLT_RAW on OpenBSD
	linkTypeIPv4       layers.LinkType = 228 // LINKTYPE_IPV4
	linkTypeIPv6       layers.LinkType = 229 // LINKTYPE_IPV6
	linkTypePPPHDLC    layers.LinkType = 50  // LINKTYPE_PPP_HDLC (PPP in HDLC-like framing)
)

// LinkTypeName names a link type with its number, as refusals and counters
// show it: "Ethernet (1)", "PPP (9)", "LINKTYPE_228 (228)" for one gopacket
// does not name.
func LinkTypeName(lt layers.LinkType) string {
	name := lt.String()
	switch {
	case lt == linkTypeIPv4:
		name = "IPV4"
	case lt == linkTypeIPv6:
		name = "IPV6"
	case lt == linkTypePPPHDLC:
		name = "PPP_HDLC"
	case strings.HasPrefix(name, "Unknown"):
		name = "LINKTYPE_" + strconv.Itoa(int(lt))
	}
	return name + " (" + strconv.Itoa(int(lt)) + ")"
}

func firstLayer(lt layers.LinkType) (gopacket.LayerType, bool) {
	switch lt {
	case layers.LinkTypeEthernet:
		return layers.LayerTypeEthernet, true
	case layers.LinkTypeLinuxSLL:
		return layers.LayerTypeLinuxSLL, true
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		return layers.LayerTypeLoopback, true
	case layers.LinkTypeRaw, linkTypeRawBSD, linkTypeRawOpenBSD, linkTypeIPv4, linkTypeIPv6,
		layers.LinkTypePPP, linkTypePPPHDLC:
		return layers.LayerTypeIPv4, true // raw (and PPP's payload): chosen per packet from the version nibble
	}
	return 0, false
}

// New returns a Decoder for frames of the given link type.
func New(lt layers.LinkType, opts Options) (*Decoder, error) {
	first, ok := firstLayer(lt)
	if !ok {
		return nil, fmt.Errorf("dnsdecode: unsupported link type %s", LinkTypeName(lt))
	}
	d := &Decoder{link: lt, decoded: make([]gopacket.LayerType, 0, 8)}
	ports := opts.Ports
	if len(ports) == 0 {
		ports = []uint16{53}
	}
	for _, p := range ports {
		d.ports[p>>6] |= 1 << (p & 63)
	}
	mk := func(first gopacket.LayerType) *gopacket.DecodingLayerParser {
		dlc := gopacket.DecodingLayerSparse(nil)
		var c gopacket.DecodingLayerContainer = dlc
		for _, l := range []gopacket.DecodingLayer{&d.eth, &d.dot1q, &d.sll, &d.loop, &d.ip4, &d.ip6, &d.udp, &d.tcp} {
			c = c.Put(l)
		}
		p := gopacket.NewDecodingLayerParser(first)
		p.SetDecodingLayerContainer(c)
		p.IgnoreUnsupported = true
		return p
	}
	d.parser = mk(first)
	if first == layers.LayerTypeIPv4 {
		d.rawIP = true
		d.parser6 = mk(layers.LayerTypeIPv6)
	}
	switch lt {
	case linkTypeIPv4:
		d.ipVer = 4
	case linkTypeIPv6:
		d.ipVer = 6
	case layers.LinkTypePPP, linkTypePPPHDLC:
		d.ppp = true
	}
	return d, nil
}

// NewMessageDecoder returns a Decoder of bare DNS messages, for DecodeDNS
// only (a DNS server's own sockets deliver messages without link, IP or
// transport headers).
func NewMessageDecoder() *Decoder { return &Decoder{} }

// LinkType returns the decoder's link type.
func (d *Decoder) LinkType() layers.LinkType { return d.link }

func (d *Decoder) isDNSPort(p uint16) bool { return d.ports[p>>6]&(1<<(p&63)) != 0 }

// PPP protocol numbers of the network layers the decoder reads.
const (
	pppIPv4 = 0x0021
	pppIPv6 = 0x0057
)

// pppPayload takes the PPP header off a frame: the optional HDLC address
// and control bytes (0xFF 0x03) and the protocol field (one byte when
// compressed, i.e. odd, else two). It returns the IP packet, nil for a
// frame of another protocol (LCP, IPCP, ...), and ok false when the header
// does not fit.
func pppPayload(data []byte) (ip []byte, ok bool) {
	if len(data) >= 2 && data[0] == 0xFF && data[1] == 0x03 {
		data = data[2:]
	}
	if len(data) < 1 {
		return nil, false
	}
	var proto uint16
	if data[0]&1 == 1 { // compressed: one byte
		proto, data = uint16(data[0]), data[1:]
	} else {
		if len(data) < 2 {
			return nil, false
		}
		proto, data = uint16(data[0])<<8|uint16(data[1]), data[2:]
	}
	switch proto {
	case pppIPv4, pppIPv6:
		return data, true
	}
	return nil, true
}

// Decode decodes one frame into r. It never panics on hostile input and does
// not allocate for well-formed frames.
func (d *Decoder) Decode(data []byte, r *Result) {
	*r = Result{}
	if d.ppp {
		var ok bool
		if data, ok = pppPayload(data); !ok {
			r.Kind, r.Reason = Malformed, MalformedLink
			return
		}
		if data == nil {
			r.Kind, r.Reason = Ignored, IgnoredNotIP
			return
		}
	}
	p := d.parser
	if d.rawIP && len(data) > 0 {
		v := data[0] >> 4
		if d.ipVer != 0 && v != d.ipVer || d.ipVer == 0 && v != 4 && v != 6 {
			r.Kind, r.Reason = Malformed, MalformedIPVersion
			return
		}
		if v == 6 {
			p = d.parser6
		}
	}
	err := p.DecodeLayers(data, &d.decoded)
	r.Truncated = p.Truncated
	var haveIP, haveTransport bool
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeIPv4:
			haveIP = true
			r.Src = netip.AddrFrom4([4]byte(d.ip4.SrcIP.To4()))
			r.Dst = netip.AddrFrom4([4]byte(d.ip4.DstIP.To4()))
		case layers.LayerTypeIPv6:
			haveIP = true
			r.Src = netip.AddrFrom16([16]byte(d.ip6.SrcIP))
			r.Dst = netip.AddrFrom16([16]byte(d.ip6.DstIP))
		case layers.LayerTypeUDP:
			haveTransport = true
			r.Transport = TransportUDP
			r.SrcPort, r.DstPort = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
		case layers.LayerTypeTCP:
			haveTransport = true
			r.Transport = TransportTCP
			r.SrcPort, r.DstPort = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
		}
	}
	if err != nil {
		r.Kind = Malformed
		switch {
		case haveIP:
			r.Reason = MalformedTransport
		case d.rawIP || len(d.decoded) > 0:
			r.Reason = MalformedIP
		default:
			r.Reason = MalformedLink
		}
		return
	}
	if !haveIP {
		r.Kind, r.Reason = Ignored, IgnoredNotIP
		return
	}
	if !haveTransport {
		r.Kind, r.Reason = Ignored, IgnoredTransport
		switch d.decoded[len(d.decoded)-1] {
		case layers.LayerTypeIPv4:
			if d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0 {
				r.Reason = IgnoredFragment
			}
		case layers.LayerTypeIPv6:
			if d.ip6.NextLayerType() == layers.LayerTypeIPv6Fragment {
				r.Reason = IgnoredFragment
			}
		}
		return
	}
	if !d.isDNSPort(r.SrcPort) && !d.isDNSPort(r.DstPort) {
		r.Kind, r.Reason = Ignored, IgnoredPort
		return
	}
	var msg []byte
	if r.Transport == TransportUDP {
		msg = d.udp.Payload
	} else {
		pl := d.tcp.Payload
		switch {
		case len(pl) == 0:
			r.Kind, r.Reason = Ignored, IgnoredTCPNoPayload
			return
		case len(pl) < 2:
			r.Kind, r.Reason = Malformed, MalformedTCPPartial
			return
		}
		n := int(binary.BigEndian.Uint16(pl))
		if n > len(pl)-2 {
			r.Kind, r.Reason = Malformed, MalformedTCPPartial
			return
		}
		msg = pl[2 : 2+n]
	}
	d.decodeDNS(msg, r)
}

// DecodeDNS decodes a bare DNS message (no link/IP/transport headers) into
// r's DNS fields.
func (d *Decoder) DecodeDNS(msg []byte, r *Result) {
	*r = Result{}
	d.decodeDNS(msg, r)
}

func (d *Decoder) decodeDNS(msg []byte, r *Result) {
	if len(msg) < 12 {
		r.Kind, r.Reason = Malformed, MalformedTruncated
		return
	}
	r.ID = binary.BigEndian.Uint16(msg[0:])
	r.Flags = binary.BigEndian.Uint16(msg[2:])
	r.QDCount = binary.BigEndian.Uint16(msg[4:])
	r.ANCount = binary.BigEndian.Uint16(msg[6:])
	r.NSCount = binary.BigEndian.Uint16(msg[8:])
	r.ARCount = binary.BigEndian.Uint16(msg[10:])
	isResponse := r.Flags&0x8000 != 0
	if !isResponse {
		if r.Opcode() != 0 {
			r.Kind, r.Reason = Ignored, IgnoredOpcode
			return
		}
		if r.QDCount == 0 {
			r.Kind, r.Reason = Malformed, MalformedNoQuestion
			return
		}
		// Every question needs at least 5 octets, every record 11. (A lone
		// question that does not fit is reported as truncated below.)
		records := int(r.ANCount) + int(r.NSCount) + int(r.ARCount)
		min := 12 + 5*int(r.QDCount) + 11*records
		if min > len(msg) && !r.Truncated && (r.QDCount > 1 || records > 0) {
			r.Kind, r.Reason = Malformed, MalformedBadCounts
			return
		}
	} else if r.QDCount == 0 {
		r.Kind = Response
		return
	}
	end, n, reason := d.readName(msg, 12)
	if reason != ReasonNone {
		r.Kind, r.Reason = Malformed, reason
		return
	}
	if end+4 > len(msg) {
		r.Kind, r.Reason = Malformed, MalformedTruncated
		return
	}
	r.Name = d.name[:n:n]
	r.QType = binary.BigEndian.Uint16(msg[end:])
	r.QClass = binary.BigEndian.Uint16(msg[end+2:])
	r.QEnd = uint16(end + 4)
	if isResponse {
		r.Kind = Response
	} else {
		r.Kind = Query
	}
}

const hex = "0123456789"

// lowerTab folds ASCII upper case; escTab marks bytes that presentation form
// escapes ('.', '\\', and bytes outside 0x21..0x7e).
var lowerTab, escTab = func() (lo, esc [256]byte) {
	for i := range lo {
		c := byte(i)
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lo[i] = c
		if i <= 0x20 || i >= 0x7f || i == '.' || i == '\\' {
			esc[i] = 1
		}
	}
	return
}()

// escapeLabel writes lab at d.name[n:] in presentation form and returns the
// new length.
func (d *Decoder) escapeLabel(lab []byte, n int) int {
	for _, c := range lab {
		switch {
		case c == '.' || c == '\\':
			d.name[n] = '\\'
			d.name[n+1] = c
			n += 2
		case c <= 0x20 || c >= 0x7f:
			d.name[n] = '\\'
			d.name[n+1] = hex[c/100]
			d.name[n+2] = hex[c/10%10]
			d.name[n+3] = hex[c%10]
			n += 4
		default:
			d.name[n] = lowerTab[c]
			n++
		}
	}
	return n
}

// readName reads the name starting at off into d.name in presentation form.
// It returns the offset just after the name in msg and the name's length.
func (d *Decoder) readName(msg []byte, off int) (end, n int, reason Reason) {
	end = -1
	runStart := off // start of the run of labels being read; pointers must go below it
	wire := 0
	hops := 0
	for {
		if off >= len(msg) {
			return 0, 0, MalformedTruncated
		}
		l := int(msg[off])
		switch l & 0xC0 {
		case 0x00:
			if l == 0 {
				if end < 0 {
					end = off + 1
				}
				if n == 0 {
					d.name[0] = '.'
					n = 1
				}
				return end, n, ReasonNone
			}
			if off+1+l > len(msg) {
				return 0, 0, MalformedTruncated
			}
			wire += l + 1
			if wire > 254 { // plus the root octet: at most 255
				return 0, 0, MalformedNameTooLong
			}
			if n > 0 {
				d.name[n] = '.'
				n++
			}
			// Fast path: lower-case copy; escape only if a byte needs it.
			lab := msg[off+1 : off+1+l]
			dst := d.name[n:]
			dst = dst[:len(lab)]
			var esc byte
			for i, c := range lab {
				dst[i] = lowerTab[c]
				esc |= escTab[c]
			}
			if esc == 0 {
				n += len(lab)
			} else {
				n = d.escapeLabel(lab, n)
			}
			off += 1 + l
		case 0xC0:
			if off+1 >= len(msg) {
				return 0, 0, MalformedTruncated
			}
			ptr := (l&0x3F)<<8 | int(msg[off+1])
			if end < 0 {
				end = off + 2
			}
			if ptr < 12 || ptr >= len(msg) {
				return 0, 0, MalformedBadPointer
			}
			if ptr >= runStart {
				return 0, 0, MalformedCompressionLoop
			}
			hops++
			if hops > 127 { // cannot happen with strictly decreasing runs; belt and braces
				return 0, 0, MalformedCompressionLoop
			}
			runStart, off = ptr, ptr
		default:
			return 0, 0, MalformedBadLabel
		}
	}
}
