package cdrfile

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"unicode/utf8"
	"unsafe"

	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// A batch keeps its records in a compact binary form, not as output lines:
// the line format belongs to the file a record is written to (a reload
// changes it at the next file), so a record is encoded as a line only when
// it is written, in the format of the file it goes to. The same binary form
// is what the spool holds, so a spooled record is written in the format of
// the file that is open when it is replayed.
//
// Binary record (all integers little-endian):
//
//	u8  version (recVersion)
//	u8  flags: flagIPValid, flagIP4 (4 address bytes, else 16), flagZone
//	i64 ts
//	4 or 16 address bytes (when flagIPValid)
//	uvarint length + zone (when flagZone)
//	uvarint length + subscriber id
//	uvarint length + domain
//	u16 qtype | u8 action | u32 group | u32 category
//	u64 id instance | u64 id number (cdr.ID; zero: none)
//	uvarint seq
const recVersion = 1

const (
	flagIPValid = 1 << iota
	flagIP4
	flagZone
)

// appendRecord appends r's binary form to dst. It copies everything r
// points to and does not allocate when dst has room.
func appendRecord(dst []byte, r *cdr.Record) []byte {
	var flags byte
	if r.IP.IsValid() {
		flags |= flagIPValid
		if r.IP.Is4() {
			flags |= flagIP4
		}
		if r.IP.Zone() != "" {
			flags |= flagZone
		}
	}
	dst = append(dst, recVersion, flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(r.TS))
	if flags&flagIPValid != 0 {
		if flags&flagIP4 != 0 {
			a := r.IP.As4()
			dst = append(dst, a[:]...)
		} else {
			a := r.IP.As16()
			dst = append(dst, a[:]...)
		}
		if flags&flagZone != 0 {
			z := r.IP.Zone()
			dst = binary.AppendUvarint(dst, uint64(len(z)))
			dst = append(dst, z...)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(r.SubscriberID)))
	dst = append(dst, r.SubscriberID...)
	dst = binary.AppendUvarint(dst, uint64(len(r.Domain)))
	dst = append(dst, r.Domain...)
	dst = binary.LittleEndian.AppendUint16(dst, r.QType)
	dst = append(dst, byte(r.Action))
	dst = binary.LittleEndian.AppendUint32(dst, r.Group)
	dst = binary.LittleEndian.AppendUint32(dst, r.Category)
	dst = binary.LittleEndian.AppendUint64(dst, r.ID.Instance)
	dst = binary.LittleEndian.AppendUint64(dst, r.ID.N)
	return binary.AppendUvarint(dst, r.Seq)
}

var errBadRecord = errors.New("malformed spooled record")

// decodeRecord fills r from the binary form in b. r.Domain points into b
// and r.SubscriberID is a string over b's bytes (no copy): r is valid only
// while b is neither modified nor reused, which is how the writer uses it
// (decode, encode the line at once). A zoned IPv6 address (rare) allocates
// its zone.
func decodeRecord(r *cdr.Record, b []byte) error {
	if len(b) < 10 || b[0] != recVersion {
		return errBadRecord
	}
	flags := b[1]
	r.TS = int64(binary.LittleEndian.Uint64(b[2:]))
	b = b[10:]
	r.IP = netip.Addr{}
	if flags&flagIPValid != 0 {
		if flags&flagIP4 != 0 {
			if len(b) < 4 {
				return errBadRecord
			}
			r.IP = netip.AddrFrom4([4]byte(b[:4]))
			b = b[4:]
		} else {
			if len(b) < 16 {
				return errBadRecord
			}
			r.IP = netip.AddrFrom16([16]byte(b[:16]))
			b = b[16:]
		}
		if flags&flagZone != 0 {
			z, rest, ok := lenPrefixed(b)
			if !ok {
				return errBadRecord
			}
			r.IP, b = r.IP.WithZone(string(z)), rest
		}
	}
	sub, b, ok := lenPrefixed(b)
	if !ok {
		return errBadRecord
	}
	r.SubscriberID = unsafe.String(unsafe.SliceData(sub), len(sub))
	if r.Domain, b, ok = lenPrefixed(b); !ok {
		return errBadRecord
	}
	const fixed = 2 + 1 + 4 + 4 + 8 + 8
	if len(b) < fixed {
		return errBadRecord
	}
	r.QType = binary.LittleEndian.Uint16(b)
	r.Action = decision.Action(b[2])
	r.Group = binary.LittleEndian.Uint32(b[3:])
	r.Category = binary.LittleEndian.Uint32(b[7:])
	r.ID = cdr.ID{Instance: binary.LittleEndian.Uint64(b[11:]), N: binary.LittleEndian.Uint64(b[19:])}
	seq, n := binary.Uvarint(b[fixed:])
	if n <= 0 || n != len(b)-fixed {
		return errBadRecord
	}
	r.Seq = seq
	return nil
}

// lenPrefixed splits a uvarint length and that many bytes off b.
func lenPrefixed(b []byte) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}

// column identifies one CSV column.
type column uint8

// The CSV columns, named as the JSON fields.
const (
	colTS column = iota
	colIP
	colSubscriberID
	colDomain
	colQType
	colAction
	colGroup
	colCategory
	colID
	colSeq
	numColumns
)

// columnNames are the names of the columns in the columns option and in
// the CSV header, the JSON field names.
var columnNames = [numColumns]string{"ts", "ip", "subscriber_id", "domain", "qtype", "action", "group", "category", "id", "seq"}

// lineFormat encodes records as lines of one file.
type lineFormat struct {
	csv     bool
	columns []column // csv
	eol     string   // csv: "\n" or "\r\n"
}

// appendLine appends r as one line (with its line end) to dst.
func (f *lineFormat) appendLine(dst []byte, r *cdr.Record) []byte {
	if !f.csv {
		return append(cdr.AppendJSON(dst, r), '\n')
	}
	for i, c := range f.columns {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendColumn(dst, r, c)
	}
	return append(dst, f.eol...)
}

// header returns the CSV header line: the column names (which need no
// quoting).
func (f *lineFormat) header() []byte {
	var b []byte
	for i, c := range f.columns {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, columnNames[c]...)
	}
	return append(b, f.eol...)
}

// appendColumn appends column c of r as one CSV field. Numbers, the IP
// address (without a zone), the action and the category are never quoted;
// subscriber_id and domain are quoted when RFC 4180 needs it (see
// appendCSVField). id and seq are empty when the record has none (the zero
// ID, seq 0), as their JSON fields are absent then.
func appendColumn(dst []byte, r *cdr.Record, c column) []byte {
	switch c {
	case colTS:
		return strconv.AppendInt(dst, r.TS, 10)
	case colIP:
		if !r.IP.IsValid() {
			return dst
		}
		if r.IP.Zone() == "" {
			return r.IP.AppendTo(dst)
		}
		// A zone is free text: quote the whole field if it needs it.
		return appendCSVField(dst, r.IP.AppendTo(nil))
	case colSubscriberID:
		return appendCSVField(dst, unsafe.Slice(unsafe.StringData(r.SubscriberID), len(r.SubscriberID)))
	case colDomain:
		return appendCSVField(dst, r.Domain)
	case colQType:
		return strconv.AppendUint(dst, uint64(r.QType), 10)
	case colAction:
		dst, _ = r.Action.AppendText(dst) // letters, digits and parentheses only; never fails
		return dst
	case colGroup:
		return strconv.AppendUint(dst, uint64(r.Group), 10)
	case colCategory:
		v := r.Category
		dst = append(dst, '0', 'x')
		for shift := 28; shift >= 0; shift -= 4 {
			dst = append(dst, hexDigits[v>>uint(shift)&0xf])
		}
		return dst
	case colID:
		if r.ID.IsZero() {
			return dst
		}
		dst, _ = r.ID.AppendText(dst) // hex digits, '-' and digits; never fails
		return dst
	case colSeq:
		if r.Seq == 0 {
			return dst
		}
		return strconv.AppendUint(dst, r.Seq, 10)
	}
	return dst
}

const hexDigits = "0123456789abcdef"

// appendCSVField appends s as one CSV field. As RFC 4180 (and Go's
// encoding/csv) says, a field that contains a comma, a double quote, CR or
// LF is enclosed in double quotes with each double quote doubled; like
// encoding/csv, a field that starts with a space or a tab is quoted too.
// Bytes that are not valid UTF-8 are written as U+FFFD (as the JSON format
// does), so every file is valid UTF-8.
func appendCSVField(dst, s []byte) []byte {
	quote := len(s) > 0 && (s[0] == ' ' || s[0] == '\t')
	valid := true
	for i := 0; i < len(s); i++ {
		switch b := s[i]; {
		case b == ',' || b == '"' || b == '\r' || b == '\n':
			quote = true
		case b >= utf8.RuneSelf:
			valid = false
		}
	}
	if !quote && (valid || utf8.Valid(s)) {
		return append(dst, s...)
	}
	if quote {
		dst = append(dst, '"')
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b == '"' {
				dst = append(dst, '"')
			}
			dst = append(dst, b)
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, "\uFFFD"...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	if quote {
		dst = append(dst, '"')
	}
	return dst
}
