package pktengine

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcap"

	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
)

// LiveOptions configure live capture.
type LiveOptions struct {
	// Snaplen is the capture length per packet (default 65535).
	Snaplen int
	// Promisc puts the interface in promiscuous mode.
	Promisc bool
	// Filter is the BPF filter (default "udp port 53 or tcp port 53").
	Filter string
	// BufferSize is the kernel buffer in bytes (0: libpcap's default).
	BufferSize int
	// Timeout is the read timeout after which partly filled batches are
	// handed over (default 50ms).
	Timeout time.Duration
	// Fanout is the number of AF_PACKET ring sockets (afpacket sources):
	// one reader each, the kernel spreading flows over them (default
	// runtime.NumCPU()).
	Fanout int
}

type liveSource struct {
	name string
	h    *pcap.Handle
}

func openLive(iface string, o LiveOptions) (Source, error) {
	if o.Snaplen <= 0 {
		o.Snaplen = 65535
	}
	if o.Timeout <= 0 {
		o.Timeout = 50 * time.Millisecond
	}
	in, err := pcap.NewInactiveHandle(iface)
	if err != nil {
		return nil, fmt.Errorf("live:%s: %w", iface, err)
	}
	defer in.CleanUp()
	for _, step := range []error{in.SetSnapLen(o.Snaplen), in.SetPromisc(o.Promisc), in.SetTimeout(o.Timeout)} {
		if step != nil {
			return nil, fmt.Errorf("live:%s: %w", iface, step)
		}
	}
	if o.BufferSize > 0 {
		if err := in.SetBufferSize(o.BufferSize); err != nil {
			return nil, fmt.Errorf("live:%s: buffer size: %w", iface, err)
		}
	}
	h, err := in.Activate()
	if err != nil {
		return nil, fmt.Errorf("live:%s: %w", iface, err)
	}
	if !dnsdecode.SupportedLinkType(h.LinkType()) {
		h.Close()
		return nil, fmt.Errorf("live:%s: unsupported link type %v", iface, h.LinkType())
	}
	if o.Filter != "" {
		if err := h.SetBPFFilter(o.Filter); err != nil {
			h.Close()
			return nil, fmt.Errorf("live:%s: filter %q: %w", iface, o.Filter, err)
		}
	}
	return &liveSource{name: "live:" + iface, h: h}, nil
}

func (s *liveSource) Name() string              { return s.name }
func (s *liveSource) LinkType() layers.LinkType { return s.h.LinkType() }
func (s *liveSource) Close() error              { s.h.Close(); return nil }

func (s *liveSource) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	data, ci, err := s.h.ZeroCopyReadPacketData()
	if errors.Is(err, pcap.NextErrorTimeoutExpired) {
		return nil, ci, ErrTimeout
	}
	return data, ci, err
}

func (s *liveSource) DropStats() (received, dropped, ifDropped uint64, err error) {
	st, err := s.h.Stats()
	if err != nil {
		return 0, 0, 0, err
	}
	return uint64(st.PacketsReceived), uint64(st.PacketsDropped), uint64(st.PacketsIfDropped), nil
}

// DefaultFilter returns the BPF filter for the DNS ports:
// "udp port 53 or tcp port 53" for the default port.
func DefaultFilter(ports []uint16) string {
	if len(ports) == 0 {
		ports = []uint16{53}
	}
	f := ""
	for _, proto := range []string{"udp", "tcp"} {
		for _, p := range ports {
			if f != "" {
				f += " or "
			}
			f += fmt.Sprintf("%s port %d", proto, p)
		}
	}
	return f
}
