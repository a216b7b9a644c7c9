// Package pcapfile opens pcap and pcapng files behind one zero-copy reader
// interface, choosing the format from the file's magic number.
package pcapfile

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Reader reads packets from a capture file. ZeroCopyReadPacketData's data is
// valid until the next read.
type Reader interface {
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	LinkType() layers.LinkType
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

const ngMagic = 0x0A0D0D0A

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
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{})
		if err != nil {
			return nil, "", fmt.Errorf("pcapng: %w", err)
		}
		return ng, "pcapng", nil
	}
	pr, err := pcapgo.NewReader(br)
	if err != nil {
		return nil, "", fmt.Errorf("pcap: %w", err)
	}
	return pr, "pcap", nil
}
