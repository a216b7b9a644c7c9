package dnsfirewall

import (
	"encoding/binary"

	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
)

// DNS constants used here (RFC 1035, RFC 6891).
const (
	flagQR = 0x8000
	flagAA = 0x0400
	flagTC = 0x0200
	flagRD = 0x0100
	flagRA = 0x0080
	flagCD = 0x0010

	rcodeNoError  = 0
	rcodeFormErr  = 1
	rcodeServFail = 2
	rcodeNXDomain = 3
	rcodeNotImp   = 4
	rcodeRefused  = 5

	typeA    = 1
	typeSOA  = 6
	typeAAAA = 28
	typeOPT  = 41
	classIN  = 1

	// ednsSize is the UDP payload size the firewall advertises in its own
	// answers (the DNS flag day 2020 value).
	ednsSize = 1232
)

// query is what the firewall reads of a client's query.
type query struct {
	id, flags     uint16
	qtype, qclass uint16
	qend          int    // msg[12:qend] is the question as sent
	name          []byte // lower-cased presentation form (aliases the decoder)
	edns          bool   // an OPT record was present
	ednsDO        bool   // its DO bit
}

// verdict is what parse makes of a message.
type verdict uint8

const (
	vQuery   verdict = iota // a query to decide
	vDrop                   // not answerable: dropped
	vFormErr                // answered FORMERR
	vNotImp                 // answered NOTIMP
)

// parse reads msg. For vDrop and vFormErr, reason names why (a metric
// label).
func parse(d *dnsdecode.Decoder, r *dnsdecode.Result, msg []byte, q *query) (verdict, string) {
	if len(msg) < 12 {
		return vDrop, "short"
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	if flags&flagQR != 0 {
		return vDrop, "response"
	}
	*q = query{id: binary.BigEndian.Uint16(msg), flags: flags}
	if op := (flags >> 11) & 0xf; op != 0 {
		return vNotImp, "opcode"
	}
	if qd := binary.BigEndian.Uint16(msg[4:]); qd != 1 {
		if qd == 0 {
			return vFormErr, "no_question"
		}
		return vFormErr, "qdcount"
	}
	d.DecodeDNS(msg, r)
	if r.Kind != dnsdecode.Query {
		return vFormErr, r.Reason.String()
	}
	q.qtype, q.qclass, q.qend, q.name = r.QType, r.QClass, int(r.QEnd), r.Name
	// Additional records: find OPT.
	off := q.qend
	an, ns, ar := int(r.ANCount), int(r.NSCount), int(r.ARCount)
	for i := 0; i < an+ns+ar; i++ {
		end, ok := skipName(msg, off)
		if !ok || end+10 > len(msg) {
			return vFormErr, "bad_record"
		}
		typ := binary.BigEndian.Uint16(msg[end:])
		rdlen := int(binary.BigEndian.Uint16(msg[end+8:]))
		if end+10+rdlen > len(msg) {
			return vFormErr, "bad_record"
		}
		if typ == typeOPT && i >= an+ns {
			if q.edns {
				return vFormErr, "two_opt"
			}
			q.edns = true
			q.ednsDO = binary.BigEndian.Uint32(msg[end+4:])&0x8000 != 0
		}
		off = end + 10 + rdlen
	}
	return vQuery, ""
}

// headerOnly reads the id, flags and question extent of a query already
// parsed once (for answers built later, such as SERVFAIL).
func headerOnly(msg []byte) query {
	q := query{id: binary.BigEndian.Uint16(msg), flags: binary.BigEndian.Uint16(msg[2:])}
	if end, ok := skipName(msg, 12); ok && end+4 <= len(msg) {
		q.qend = end + 4
	}
	return q
}

// skipName returns the offset after the (possibly compressed) name at off.
func skipName(msg []byte, off int) (int, bool) {
	for n := 0; n < 128; n++ {
		if off >= len(msg) {
			return 0, false
		}
		l := int(msg[off])
		switch l & 0xC0 {
		case 0x00:
			if l == 0 {
				return off + 1, true
			}
			off += 1 + l
		case 0xC0:
			if off+2 > len(msg) {
				return 0, false
			}
			return off + 2, true
		default:
			return 0, false
		}
	}
	return 0, false
}

// answer builds responses into a caller's buffer.
type answer struct {
	b  []byte
	an uint16
	ns uint16
}

// start writes the header and the echoed question of a response to q
// (msg is the query) with rcode. The counts are patched by finish.
func (a *answer) start(dst, msg []byte, q *query, rcode uint16, withQuestion bool) {
	flags := flagQR | q.flags&(0x7800|flagRD|flagCD) | flagRA | rcode
	b := dst[:0]
	b = binary.BigEndian.AppendUint16(b, q.id)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	if withQuestion && q.qend > 12 {
		b = append(b, msg[12:q.qend]...)
		binary.BigEndian.PutUint16(b[4:], 1)
	}
	a.b, a.an, a.ns = b, 0, 0
}

// rr appends a record owned by the question's name (a pointer to offset
// 12) with the given rdata.
func (a *answer) rr(typ, class uint16, ttl uint32, rdata ...[]byte) {
	n := 0
	for _, r := range rdata {
		n += len(r)
	}
	a.b = append(a.b, 0xC0, 12)
	a.b = binary.BigEndian.AppendUint16(a.b, typ)
	a.b = binary.BigEndian.AppendUint16(a.b, class)
	a.b = binary.BigEndian.AppendUint32(a.b, ttl)
	a.b = binary.BigEndian.AppendUint16(a.b, uint16(n))
	for _, r := range rdata {
		a.b = append(a.b, r...)
	}
}

// soa appends the negative-caching SOA of ans to the authority section.
func (a *answer) soa(ans *Answers, ttl uint32) {
	var tail [20]byte
	binary.BigEndian.PutUint32(tail[0:], 1)      // serial
	binary.BigEndian.PutUint32(tail[4:], 3600)   // refresh
	binary.BigEndian.PutUint32(tail[8:], 600)    // retry
	binary.BigEndian.PutUint32(tail[12:], 86400) // expire
	binary.BigEndian.PutUint32(tail[16:], ttl)   // minimum: the negative TTL
	a.rr(typeSOA, classIN, ttl, ans.SOAMName, ans.SOARName, tail[:])
	a.ns++
}

// finish writes the counts and, when the query had one, an OPT record.
func (a *answer) finish(q *query) []byte {
	ar := uint16(0)
	if q.edns {
		a.b = append(a.b, 0)
		a.b = binary.BigEndian.AppendUint16(a.b, typeOPT)
		a.b = binary.BigEndian.AppendUint16(a.b, ednsSize)
		var flags uint16
		if q.ednsDO {
			flags = 0x8000
		}
		a.b = append(a.b, 0, 0)
		a.b = binary.BigEndian.AppendUint16(a.b, flags)
		a.b = append(a.b, 0, 0)
		ar = 1
	}
	binary.BigEndian.PutUint16(a.b[6:], a.an)
	binary.BigEndian.PutUint16(a.b[8:], a.ns)
	binary.BigEndian.PutUint16(a.b[10:], ar)
	return a.b
}

// rcodeOnly builds an answer with only an rcode (and the question when
// the query had a readable one).
func rcodeOnly(dst, msg []byte, q *query, rcode uint16) []byte {
	var a answer
	a.start(dst, msg, q, rcode, q.qend > 12)
	return a.finish(q)
}

// blockAnswer builds the configured answer to a blocked query.
func blockAnswer(dst, msg []byte, q *query, ans *Answers) []byte {
	var a answer
	switch ans.BlockKind {
	case blockRefused:
		return rcodeOnly(dst, msg, q, rcodeRefused)
	case blockNXDomain:
		a.start(dst, msg, q, rcodeNXDomain, true)
	default:
		a.start(dst, msg, q, rcodeNoError, true)
		if ans.BlockKind == blockAddress && q.qclass == classIN {
			switch q.qtype {
			case typeA:
				a.rr(typeA, classIN, ans.BlockTTL, ans.BlockA[:])
				a.an++
			case typeAAAA:
				a.rr(typeAAAA, classIN, ans.BlockTTL, ans.BlockAAAA[:])
				a.an++
			}
		}
	}
	if a.an == 0 && ans.SOA {
		a.soa(ans, ans.BlockTTL)
	}
	return a.finish(q)
}

// sinkholeAnswer builds the sinkhole answer: A / AAAA with the sinkhole
// address of the first category entry that matches category (the default
// addresses otherwise), NODATA for other types.
func sinkholeAnswer(dst, msg []byte, q *query, ans *Answers, category uint32) []byte {
	a4, a6 := ans.SinkA, ans.SinkAAAA
	for i := range ans.ByCategory {
		if c := &ans.ByCategory[i]; category&c.mask != 0 {
			a4, a6 = c.a, c.aaaa
			break
		}
	}
	var a answer
	a.start(dst, msg, q, rcodeNoError, true)
	if q.qclass == classIN {
		switch q.qtype {
		case typeA:
			a.rr(typeA, classIN, ans.SinkTTL, a4[:])
			a.an++
		case typeAAAA:
			a.rr(typeAAAA, classIN, ans.SinkTTL, a6[:])
			a.an++
		}
	}
	if a.an == 0 && ans.SOA {
		a.soa(ans, ans.SinkTTL)
	}
	return a.finish(q)
}
