package cdr

import (
	"net/netip"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// Record is one Charging Data Record: one policy decision of the data plane.
//
// Ownership: Post copies (encodes) everything it needs before it returns, so
// the caller may reuse the Record and everything it points to, in particular
// Domain, which is a []byte so that a packet decoder can pass the name it
// decoded into its own buffer (dnsdecode.Result.Name) without converting it
// to a string (no allocation per record).
type Record struct {
	// TS is the decision time in epoch milliseconds.
	TS int64
	// IP is the subscriber's address (IPv4, IPv4-mapped IPv6 or IPv6).
	IP netip.Addr
	// SubscriberID identifies the subscriber ("subscriber-42").
	SubscriberID string
	// Domain is the queried name as bytes. Any bytes are accepted: the
	// encoder escapes what JSON needs escaped and replaces each byte that is
	// not part of valid UTF-8 with U+FFFD, as encoding/json does.
	Domain []byte
	// QType is the DNS query type (1 = A, 28 = AAAA, ...).
	QType uint16
	// Action is the decision's action, encoded by its name ("allow",
	// "block" or "sinkhole").
	Action decision.Action
	// Group is the subscriber's policy group.
	Group uint32
	// Category is the category bitmask of the matched domain, encoded as
	// "0x%08x".
	Category uint32
	// ID is the record's unique id, set by Post (Poster.Post and
	// Engine.Post): the engine's instance and a number no other record of
	// that engine has. Every backend gets the same ID for one record, and
	// spools and journals keep it, so a consumer drops the copies
	// at-least-once delivery may add by keeping the first of each ID. The
	// zero ID (a record that did not go through Post) is not encoded.
	ID ID
	// Seq is an optional sequence id; when non-zero it is encoded as an
	// extra field "seq" after the fixed ones.
	Seq uint64
}

// ID identifies one record: Instance is chosen at random when the engine
// is made (so two switchboard processes, or two starts of one, never share
// it), N counts within the instance. Its text form is Instance in 16 hex
// digits, a dash, and N in decimal: "9f3a0c1b2d4e5f60-42".
type ID struct {
	Instance, N uint64
}

// IsZero reports whether id is the zero ID (no ID).
func (id ID) IsZero() bool { return id == ID{} }

// AppendText appends the text form of id without allocating (when b has
// room); the error is always nil.
func (id ID) AppendText(b []byte) ([]byte, error) {
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, hexDigits[id.Instance>>uint(shift)&0xf])
	}
	b = append(b, '-')
	return strconv.AppendUint(b, id.N, 10), nil
}

// String returns the text form of id.
func (id ID) String() string {
	b, _ := id.AppendText(make([]byte, 0, 38))
	return string(b)
}

// AppendJSON appends r as one JSON object in the wire format of issue 5 and
// returns the extended buffer:
//
//	{"ts":1717430400123,"ip":"192.168.1.42","subscriber_id":"subscriber-42","domain":"malware.ru","qtype":1,"action":"sinkhole","group":3,"category":"0x00000001"}
//
// with ,"id":"<instance>-<n>" (see ID) when the record has an ID, then
// ,"seq":N when r.Seq is non-zero, before the closing brace. Field order is
// fixed. The output is valid JSON for any Domain and SubscriberID bytes
// and any Action value (a value that is not an action is written as its
// String form, "action(N)"). It does not allocate when dst has room (about
// 150 bytes for a typical record).
func AppendJSON(dst []byte, r *Record) []byte {
	dst = append(dst, `{"ts":`...)
	dst = strconv.AppendInt(dst, r.TS, 10)
	dst = append(dst, `,"ip":"`...)
	if r.IP.IsValid() {
		if zone := r.IP.Zone(); zone == "" {
			dst = r.IP.AppendTo(dst) // digits, hex digits, ':' and '.' only
		} else {
			// A zone is free text (rare: link-local): escape it.
			dst = r.IP.WithZone("").AppendTo(dst)
			dst = append(dst, '%')
			dst = appendString(dst, zone)
		}
	}
	dst = append(dst, `","subscriber_id":"`...)
	dst = appendString(dst, r.SubscriberID)
	dst = append(dst, `","domain":"`...)
	dst = appendBytes(dst, r.Domain)
	dst = append(dst, `","qtype":`...)
	dst = strconv.AppendUint(dst, uint64(r.QType), 10)
	dst = append(dst, `,"action":"`...)
	dst, _ = r.Action.AppendText(dst) // letters, digits and parentheses only; never fails
	dst = append(dst, `","group":`...)
	dst = strconv.AppendUint(dst, uint64(r.Group), 10)
	dst = append(dst, `,"category":"0x`...)
	c := r.Category
	dst = append(dst,
		hexDigits[c>>28&0xf], hexDigits[c>>24&0xf], hexDigits[c>>20&0xf], hexDigits[c>>16&0xf],
		hexDigits[c>>12&0xf], hexDigits[c>>8&0xf], hexDigits[c>>4&0xf], hexDigits[c&0xf], '"')
	if !r.ID.IsZero() {
		dst = append(dst, `,"id":"`...)
		dst, _ = r.ID.AppendText(dst)
		dst = append(dst, '"')
	}
	if r.Seq != 0 {
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, r.Seq, 10)
	}
	return append(dst, '}')
}

// AppendKeyBinary appends the Kafka key of the "ip_binary" form: 4 bytes in
// network order for IPv4 (and IPv4-mapped IPv6), 16 for IPv6; nothing for an
// invalid address.
func AppendKeyBinary(dst []byte, ip netip.Addr) []byte {
	if !ip.IsValid() {
		return dst
	}
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		return append(dst, a[:]...)
	}
	a := ip.As16()
	return append(dst, a[:]...)
}

// AppendKeyText appends the Kafka key of the "ip_text" form: the address in
// its usual text form (IPv4-mapped addresses unmapped, zone dropped).
func AppendKeyText(dst []byte, ip netip.Addr) []byte {
	if !ip.IsValid() {
		return dst
	}
	return ip.Unmap().WithZone("").AppendTo(dst)
}

const hexDigits = "0123456789abcdef"

// safe[b] is true for ASCII bytes that go into a JSON string as they are.
var safe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = b != '"' && b != '\\'
	}
	return t
}()

// appendBytes appends s escaped as the inside of a JSON string. It follows
// encoding/json: '"' and '\' are escaped, control characters become \n, \r,
// \t or \u00XX, U+2028 and U+2029 are escaped, and every byte that is not
// part of valid UTF-8 becomes \ufffd. ('<', '>' and '&' are not escaped:
// the output is not meant for HTML.)
func appendBytes(dst, s []byte) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if safe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = appendEscapedASCII(dst, b)
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\u202`...)
			dst = append(dst, hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}

// appendString is appendBytes for a string. It views the string's bytes
// without copying them; appendBytes only reads them.
func appendString(dst []byte, s string) []byte {
	return appendBytes(dst, unsafe.Slice(unsafe.StringData(s), len(s)))
}

func appendEscapedASCII(dst []byte, b byte) []byte {
	switch b {
	case '"', '\\':
		return append(dst, '\\', b)
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
}
