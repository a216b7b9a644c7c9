package pktengine

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/afpacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcap"
	"golang.org/x/net/bpf"
)

// afSource is an AF_PACKET capture: Fanout TPACKET_V3 ring sockets on one
// interface in one PACKET_FANOUT group (hashed by flow, so a subscriber's
// packets stay on one socket and in order), each read by its own reader.
type afSource struct {
	name  string
	parts []*afPart

	mu sync.Mutex // parts' closed and last counters
}

// afPart is one ring socket of an afSource.
type afPart struct {
	s      *afSource
	h      *afpacket.TPacket
	closed bool
	// the kernel counters when last read (kept once the socket is closed)
	received, dropped uint64
}

// partsSource is a source read by several readers at once, one per part;
// the engine shows it as one source.
type partsSource interface {
	Source
	Parts() []Source
}

// outgoingFilter drops packets the interface sent itself (on loopback the
// socket sees each packet leave and arrive; libpcap drops the first copy
// the same way), then runs the user's filter.
var outgoingFilter = func() []bpf.RawInstruction {
	raw, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: 4 /* PACKET_OUTGOING */, SkipFalse: 1},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		panic(err) // a fixed program
	}
	return raw
}()

// afFanouts numbers this process's fanout groups; a group's id is that
// number plus the pid, since ids are global to the network namespace.
var afFanouts atomic.Uint32

func openAFPacket(iface string, o LiveOptions) (Source, error) {
	if o.Snaplen <= 0 {
		o.Snaplen = 65535
	}
	if o.Timeout <= 0 {
		o.Timeout = 50 * time.Millisecond
	}
	n := o.Fanout
	if n <= 0 {
		n = runtime.NumCPU()
	}
	name := "afpacket:" + iface
	var prog []bpf.RawInstruction
	prog = append(prog, outgoingFilter...)
	if o.Filter != "" {
		ins, err := pcap.CompileBPFFilter(layers.LinkTypeEthernet, o.Snaplen, o.Filter)
		if err != nil {
			return nil, fmt.Errorf("%s: filter %q: %w", name, o.Filter, err)
		}
		for _, in := range ins {
			prog = append(prog, bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K})
		}
	} else {
		prog = append(prog, bpf.RawInstruction{Op: 0x06, K: 0xffffffff}) // ret #-1: accept
	}
	// The ring: buffer_size bytes (default 32 MB) per socket in blocks of
	// about 1 MB (TPACKET_V3 packs packets of any length into a block; a
	// frame, of which a block holds a whole number, only needs to hold the
	// largest packet).
	frame := (o.Snaplen + 128 + 4095) &^ 4095
	block := frame * max(1, (1<<20)/frame)
	total := o.BufferSize
	if total <= 0 {
		total = 32 << 20
	}
	blocks := max(total/block, 4)
	s := &afSource{name: fmt.Sprintf("%s (fanout %d)", name, n)}
	id := uint16(os.Getpid()) + uint16(afFanouts.Add(1))
	for i := 0; i < n; i++ {
		h, err := afpacket.NewTPacket(afpacket.OptInterface(iface), afpacket.TPacketVersion3,
			afpacket.OptFrameSize(frame), afpacket.OptBlockSize(block), afpacket.OptNumBlocks(blocks),
			afpacket.OptBlockTimeout(max(o.Timeout/2, time.Millisecond)), afpacket.OptPollTimeout(o.Timeout))
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		s.parts = append(s.parts, &afPart{s: s, h: h})
		if err := h.SetBPF(prog); err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: filter: %w", name, err)
		}
		if n > 1 {
			if err := h.SetFanout(afpacket.FanoutHash, id); err != nil {
				s.Close()
				return nil, fmt.Errorf("%s: fanout: %w", name, err)
			}
		}
	}
	return s, nil
}

func (s *afSource) Name() string              { return s.name }
func (s *afSource) LinkType() layers.LinkType { return layers.LinkTypeEthernet }

// Parts returns the ring sockets, one reader each.
func (s *afSource) Parts() []Source {
	out := make([]Source, len(s.parts))
	for i, p := range s.parts {
		out[i] = p
	}
	return out
}

// ZeroCopyReadPacketData is not used: the engine reads the parts.
func (s *afSource) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	return nil, gopacket.CaptureInfo{}, errors.New("afpacket: read the parts")
}

// Close closes every ring socket (those the engine has not closed yet).
func (s *afSource) Close() error {
	for _, p := range s.parts {
		p.Close()
	}
	return nil
}

// DropStats sums the kernel counters of the ring sockets: packets the
// rings received and packets dropped because a ring was full. A closed
// socket counts with what it had when last read.
func (s *afSource) DropStats() (received, dropped, ifDropped uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.parts {
		if !p.closed {
			_, v3, e := p.h.SocketStats()
			if e != nil {
				return 0, 0, 0, e
			}
			p.received, p.dropped = uint64(v3.Packets()), uint64(v3.Drops())
		}
		received += p.received
		dropped += p.dropped
	}
	return received, dropped, 0, nil
}

func (p *afPart) Name() string              { return p.s.name }
func (p *afPart) LinkType() layers.LinkType { return layers.LinkTypeEthernet }

func (p *afPart) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := p.h.ZeroCopyReadPacketData()
	if errors.Is(err, afpacket.ErrTimeout) {
		return nil, ci, ErrTimeout
	}
	return data, ci, err
}

// Close closes the part's socket (once), reading its counters last.
func (p *afPart) Close() error {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	if !p.closed {
		if _, v3, err := p.h.SocketStats(); err == nil {
			p.received, p.dropped = uint64(v3.Packets()), uint64(v3.Drops())
		}
		p.h.Close()
		p.closed = true
	}
	return nil
}
