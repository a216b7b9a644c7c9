// Package pcapfile reads pcap and pcapng files behind one zero-copy reader
// interface, choosing the format from the file's magic number.
//
// The readers are written here rather than taken from gopacket's pcapgo,
// whose readers size their packet buffer by the file's snap length (a
// header claiming ~2 GB made each replay allocate that much) and stop at
// the first packet longer than it (tcpdump reads on). Here memory follows
// the packets actually read: the buffer grows to the longest packet, and a
// packet longer than MaxPacket is skipped (its bytes discarded, counted).
// A packet longer than the snap length its header or interface declares is
// read and counted as oversize. In pcapng every interface keeps its own
// link type: each packet's CaptureInfo.AncillaryData[0] is its
// layers.LinkType.
package pcapfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// MaxPacket is the longest packet the readers return; longer ones are
// skipped (Stats.Skipped). 256 KiB: four times the largest IP packet (64
// KiB) with room for any link header.
const MaxPacket = 256 << 10

// Reader reads packets from a capture file. ZeroCopyReadPacketData's data is
// valid until the next read.
type Reader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	// LinkType is the link type of the file (pcap) or of its first
	// interface (pcapng).
	LinkType() layers.LinkType
	// Stats counts what the reader read past or skipped.
	Stats() Stats
}

// Stats counts packets a reader treated specially.
type Stats struct {
	// Oversize counts packets longer than the snap length their file or
	// interface declares (read all the same when within MaxPacket).
	Oversize uint64
	// Skipped counts packets longer than MaxPacket, discarded unread.
	Skipped uint64
}

// File is an open capture file.
type File struct {
	Reader
	// Format is "pcap" or "pcapng".
	Format string
	f      *os.File
}

// Close closes the underlying file.
func (f *File) Close() error { return f.f.Close() }

// Magic numbers.
const (
	ngMagic        = 0x0A0D0D0A // pcapng section header block type
	ngByteOrder    = 0x1A2B3C4D
	pcapMicro      = 0xA1B2C3D4
	pcapNano       = 0xA1B23C4D
	pcapMicroSwap  = 0xD4C3B2A1
	pcapNanoSwap   = 0x4D3CB2A1
	pcapHeaderLen  = 24
	pcapRecordLen  = 16
	ngBlockMinLen  = 12
	ngMaxBlockBody = MaxPacket + 1<<16 // a packet block's body: the packet, its header and options
)

// Open opens a pcap or pcapng file.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, format, err := NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{Reader: r, Format: format, f: f}, nil
}

// NewReader returns a Reader for pcap or pcapng data and the format's name.
func NewReader(r io.Reader) (Reader, string, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, "", fmt.Errorf("reading capture magic: %w", err)
	}
	if binary.LittleEndian.Uint32(magic) == ngMagic {
		ng, err := newNgReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("pcapng: %w", err)
		}
		return ng, "pcapng", nil
	}
	pr, err := newPcapReader(br)
	if err != nil {
		return nil, "", fmt.Errorf("pcap: %w", err)
	}
	return pr, "pcap", nil
}

// buffer is a packet buffer that grows to the longest packet read.
type buffer []byte

func (b *buffer) get(n int) []byte {
	if cap(*b) < n {
		*b = make([]byte, n, max(n, 2*cap(*b)))
	}
	return (*b)[:n]
}

// pcapReader reads classic pcap (microsecond or nanosecond timestamps,
// either byte order).
type pcapReader struct {
	r       *bufio.Reader
	order   binary.ByteOrder
	nano    bool
	snaplen uint32
	link    layers.LinkType
	hdr     [pcapRecordLen]byte
	buf     buffer
	stats   Stats
}

func newPcapReader(r *bufio.Reader) (*pcapReader, error) {
	var h [pcapHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, fmt.Errorf("reading the file header: %w", err)
	}
	p := &pcapReader{r: r}
	switch binary.LittleEndian.Uint32(h[:4]) {
	case pcapMicro:
		p.order = binary.LittleEndian
	case pcapNano:
		p.order, p.nano = binary.LittleEndian, true
	case pcapMicroSwap:
		p.order = binary.BigEndian
	case pcapNanoSwap:
		p.order, p.nano = binary.BigEndian, true
	default:
		return nil, fmt.Errorf("unknown magic number %#08x (neither pcap nor pcapng)", binary.LittleEndian.Uint32(h[:4]))
	}
	p.snaplen = p.order.Uint32(h[16:20])
	// The low 16 bits are the link type; the upper ones carry FCS flags.
	p.link = layers.LinkType(p.order.Uint32(h[20:24]) & 0xFFFF)
	return p, nil
}

func (p *pcapReader) LinkType() layers.LinkType { return p.link }
func (p *pcapReader) Stats() Stats              { return p.stats }

func (p *pcapReader) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	for {
		if _, err := io.ReadFull(p.r, p.hdr[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				return nil, gopacket.CaptureInfo{}, fmt.Errorf("record header: %w", err)
			}
			return nil, gopacket.CaptureInfo{}, err // io.EOF: the end
		}
		sec, frac := p.order.Uint32(p.hdr[0:4]), p.order.Uint32(p.hdr[4:8])
		caplen, origlen := p.order.Uint32(p.hdr[8:12]), p.order.Uint32(p.hdr[12:16])
		if p.snaplen > 0 && caplen > p.snaplen {
			p.stats.Oversize++
		}
		if caplen > MaxPacket {
			p.stats.Skipped++
			if _, err := p.r.Discard(int(caplen)); err != nil {
				return nil, gopacket.CaptureInfo{}, fmt.Errorf("skipping a %d-byte packet: %w", caplen, io.ErrUnexpectedEOF)
			}
			continue
		}
		data := p.buf.get(int(caplen))
		if _, err := io.ReadFull(p.r, data); err != nil {
			return nil, gopacket.CaptureInfo{}, fmt.Errorf("packet data: %w", io.ErrUnexpectedEOF)
		}
		ns := int64(frac) * 1000
		if p.nano {
			ns = int64(frac)
		}
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(int64(sec), ns).UTC(), CaptureLength: int(caplen),
			Length: int(max(origlen, caplen))}
		return data, ci, nil
	}
}

// ngInterface is one interface of a pcapng section.
type ngInterface struct {
	link    layers.LinkType
	snaplen uint32
	tsDiv   uint64 // timestamp ticks per second (if_tsresol; default 10^6)
}

// ngReader reads pcapng: section header, interface description, enhanced,
// simple and (obsolete) packet blocks; every other block is skipped.
type ngReader struct {
	r      *bufio.Reader
	order  binary.ByteOrder
	ifaces []ngInterface
	link   layers.LinkType
	blk    [8]byte
	body   buffer
	ancil  [1]interface{}
	stats  Stats
}

func newNgReader(r *bufio.Reader) (*ngReader, error) {
	n := &ngReader{r: r}
	// The first block is a section header; read blocks until the first
	// interface so that LinkType is known (packets before it are invalid).
	for len(n.ifaces) == 0 {
		typ, body, err := n.block()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errors.New("no interface description block")
			}
			return nil, err
		}
		if typ == 6 || typ == 3 || typ == 2 {
			return nil, errors.New("packet block before any interface description block")
		}
		if err := n.meta(typ, body); err != nil {
			return nil, err
		}
	}
	n.link = n.ifaces[0].link
	return n, nil
}

func (n *ngReader) LinkType() layers.LinkType { return n.link }
func (n *ngReader) Stats() Stats              { return n.stats }

// block reads the next block: its type and body (valid until the next
// call). A section header block sets the byte order first.
func (n *ngReader) block() (uint32, []byte, error) {
	if _, err := io.ReadFull(n.r, n.blk[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil, fmt.Errorf("block header: %w", err)
		}
		return 0, nil, err
	}
	if binary.LittleEndian.Uint32(n.blk[:4]) == ngMagic {
		bo, err := n.r.Peek(4)
		if err != nil {
			return 0, nil, fmt.Errorf("section header: %w", io.ErrUnexpectedEOF)
		}
		switch {
		case binary.LittleEndian.Uint32(bo) == ngByteOrder:
			n.order = binary.LittleEndian
		case binary.BigEndian.Uint32(bo) == ngByteOrder:
			n.order = binary.BigEndian
		default:
			return 0, nil, fmt.Errorf("section header: bad byte-order magic %#08x", binary.LittleEndian.Uint32(bo))
		}
		n.ifaces = n.ifaces[:0] // interfaces are per section
	}
	if n.order == nil {
		return 0, nil, errors.New("first block is not a section header")
	}
	typ, total := n.order.Uint32(n.blk[:4]), n.order.Uint32(n.blk[4:8])
	if total < ngBlockMinLen || total%4 != 0 {
		return 0, nil, fmt.Errorf("block of type %#x with bad length %d", typ, total)
	}
	bodyLen := int(total) - ngBlockMinLen
	if bodyLen > ngMaxBlockBody {
		// Far larger than any packet kept: skip it whole (a packet block
		// is counted; other blocks are of no interest).
		if typ == 6 || typ == 3 || typ == 2 {
			n.stats.Skipped++
		}
		if _, err := n.r.Discard(bodyLen + 4); err != nil {
			return 0, nil, fmt.Errorf("skipping a %d-byte block: %w", total, io.ErrUnexpectedEOF)
		}
		return n.block()
	}
	body := n.body.get(bodyLen + 4)
	if _, err := io.ReadFull(n.r, body); err != nil {
		return 0, nil, fmt.Errorf("block of type %#x: %w", typ, io.ErrUnexpectedEOF)
	}
	if n.order.Uint32(body[bodyLen:]) != total {
		return 0, nil, fmt.Errorf("block of type %#x: trailing length %d differs from %d", typ, n.order.Uint32(body[bodyLen:]), total)
	}
	return typ, body[:bodyLen], nil
}

// meta takes in a block that is not a packet: interface descriptions are
// kept, the rest ignored.
func (n *ngReader) meta(typ uint32, body []byte) error {
	if typ != 1 {
		return nil
	}
	if len(body) < 8 {
		return fmt.Errorf("interface description block of %d bytes", len(body))
	}
	iface := ngInterface{link: layers.LinkType(n.order.Uint16(body[0:2])), snaplen: n.order.Uint32(body[4:8]),
		tsDiv: 1000000}
	// Options: if_tsresol (code 9) changes the timestamp unit.
	for opts := body[8:]; len(opts) >= 4; {
		code, l := n.order.Uint16(opts[0:2]), int(n.order.Uint16(opts[2:4]))
		if code == 0 || 4+l > len(opts) {
			break
		}
		if code == 9 && l >= 1 {
			v := opts[4]
			div := uint64(1)
			for i := 0; i < int(v&0x7F) && div < 1e18; i++ {
				if v&0x80 != 0 {
					div *= 2
				} else {
					div *= 10
				}
			}
			iface.tsDiv = div
		}
		opts = opts[4+(l+3)&^3:]
	}
	n.ifaces = append(n.ifaces, iface)
	return nil
}

// timestamp converts ticks of an interface to a time.
func (iface *ngInterface) timestamp(ticks uint64) time.Time {
	sec := ticks / iface.tsDiv
	rem := ticks % iface.tsDiv
	return time.Unix(int64(sec), int64(rem*1e9/iface.tsDiv)).UTC()
}

func (n *ngReader) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	for {
		typ, body, err := n.block()
		if err != nil {
			return nil, gopacket.CaptureInfo{}, err
		}
		var ifIdx, caplen, origlen uint32
		var ticks uint64
		var data []byte
		switch typ {
		case 6: // enhanced packet block
			if len(body) < 20 {
				return nil, gopacket.CaptureInfo{}, fmt.Errorf("enhanced packet block of %d bytes", len(body))
			}
			ifIdx = n.order.Uint32(body[0:4])
			ticks = uint64(n.order.Uint32(body[4:8]))<<32 | uint64(n.order.Uint32(body[8:12]))
			caplen, origlen = n.order.Uint32(body[12:16]), n.order.Uint32(body[16:20])
			if int64(caplen) > int64(len(body)-20) {
				return nil, gopacket.CaptureInfo{}, fmt.Errorf("enhanced packet block: captured length %d beyond its block", caplen)
			}
			data = body[20 : 20+caplen]
		case 2: // obsolete packet block
			if len(body) < 20 {
				return nil, gopacket.CaptureInfo{}, fmt.Errorf("packet block of %d bytes", len(body))
			}
			ifIdx = uint32(n.order.Uint16(body[0:2]))
			ticks = uint64(n.order.Uint32(body[4:8]))<<32 | uint64(n.order.Uint32(body[8:12]))
			caplen, origlen = n.order.Uint32(body[12:16]), n.order.Uint32(body[16:20])
			if int64(caplen) > int64(len(body)-20) {
				return nil, gopacket.CaptureInfo{}, fmt.Errorf("packet block: captured length %d beyond its block", caplen)
			}
			data = body[20 : 20+caplen]
		case 3: // simple packet block: interface 0, no timestamp
			if len(body) < 4 {
				return nil, gopacket.CaptureInfo{}, fmt.Errorf("simple packet block of %d bytes", len(body))
			}
			origlen = n.order.Uint32(body[0:4])
			caplen = min(origlen, uint32(len(body)-4))
			data = body[4 : 4+caplen]
		default:
			if err := n.meta(typ, body); err != nil {
				return nil, gopacket.CaptureInfo{}, err
			}
			continue
		}
		if int(ifIdx) >= len(n.ifaces) {
			return nil, gopacket.CaptureInfo{}, fmt.Errorf("packet of interface %d, but the section describes %d", ifIdx, len(n.ifaces))
		}
		iface := &n.ifaces[ifIdx]
		if iface.snaplen > 0 && caplen > iface.snaplen {
			n.stats.Oversize++
			if typ == 3 {
				data, caplen = data[:iface.snaplen], iface.snaplen
			}
		}
		if caplen > MaxPacket {
			n.stats.Skipped++
			continue
		}
		ci := gopacket.CaptureInfo{CaptureLength: int(caplen), Length: int(max(origlen, caplen)), InterfaceIndex: int(ifIdx)}
		if typ != 3 {
			ci.Timestamp = iface.timestamp(ticks)
		}
		n.ancil[0] = iface.link
		ci.AncillaryData = n.ancil[:]
		return data, ci, nil
	}
}
