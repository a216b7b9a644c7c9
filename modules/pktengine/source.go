package pktengine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
	"github.com/switchboard-dp/switchboard/modules/pktengine/pcapfile"
)

// Source is a packet source: a capture file or a live interface.
type Source interface {
	// Name is the source as configured ("pcap:/x.pcap", "live:eth0").
	Name() string
	// LinkType is the link type of the packets.
	LinkType() layers.LinkType
	// ZeroCopyReadPacketData returns the next packet; data is valid until
	// the next call. io.EOF ends the source; ErrTimeout means no packet
	// arrived within the read timeout (the reader flushes and retries).
	ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error)
	// Close releases the source.
	Close() error
}

// ErrTimeout is returned by live sources when no packet arrived in time.
var ErrTimeout = errors.New("read timeout")

// readStatser is implemented by file sources: packets read past their
// capture's snap length, or skipped as too large.
type readStatser interface {
	Stats() pcapfile.Stats
}

// dropStatser is implemented by live sources that count kernel drops.
type dropStatser interface {
	DropStats() (received, dropped, ifDropped uint64, err error)
}

// fileSource replays a pcap or pcapng file.
type fileSource struct {
	name string
	f    *pcapfile.File
}

// OpenFile opens a capture file as a source.
func OpenFile(path string) (Source, error) {
	f, err := pcapfile.Open(path)
	if err != nil {
		return nil, err
	}
	// A pcap file has one link type; a pcapng file one per interface, each
	// packet decoded (or counted as not decoded) by its own.
	if f.Format == "pcap" && !dnsdecode.SupportedLinkType(f.LinkType()) {
		f.Close()
		return nil, fmt.Errorf("%s: unsupported link type %s", path, dnsdecode.LinkTypeName(f.LinkType()))
	}
	return &fileSource{name: "pcap:" + path, f: f}, nil
}

func (s *fileSource) Name() string              { return s.name }
func (s *fileSource) LinkType() layers.LinkType { return s.f.LinkType() }
func (s *fileSource) Close() error              { return s.f.Close() }
func (s *fileSource) ZeroCopyReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	return s.f.ZeroCopyReadPacketData()
}
func (s *fileSource) Stats() pcapfile.Stats { return s.f.Stats() }

// OpenSource opens a source from its configured form: "pcap:<file>",
// "live:<interface>" (libpcap) or "afpacket:<interface>" (AF_PACKET
// TPACKET_V3 rings, live.Fanout sockets in a fanout group).
func OpenSource(spec string, live LiveOptions) (Source, error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok || arg == "" {
		return nil, fmt.Errorf("source %q: want pcap:<file>, live:<interface> or afpacket:<interface>", spec)
	}
	switch kind {
	case "pcap", "file":
		return OpenFile(arg)
	case "live":
		return openLive(arg, live)
	case "afpacket":
		return openAFPacket(arg, live)
	}
	return nil, fmt.Errorf("source %q: unknown kind %q (want pcap, live or afpacket)", spec, kind)
}

// readerCounters are a source's counters, published by its reader in
// batches so the hot loop touches no shared cache lines per packet.
type readerCounters struct {
	packets, bytes, queries, responses atomic.Uint64
	reasons                            [dnsdecode.NumReasons]atomic.Uint64
	readErrors                         atomic.Uint64
	dropped                            atomic.Uint64 // queries dropped at shutdown
	kernelDropped, ifDropped           atomic.Uint64 // live: libpcap's counters
	oversize, tooLarge                 atomic.Uint64 // files: see pcapfile.Stats

	linkMu    sync.Mutex
	otherLink map[layers.LinkType]uint64 // packets of link types not decoded
}

type localCounters struct {
	packets, bytes, queries, responses uint64
	reasons                            [dnsdecode.NumReasons]uint64
	readErrors, dropped                uint64
	otherLink                          map[layers.LinkType]uint64
}

func (rc *readerCounters) publish(l *localCounters) {
	rc.packets.Add(l.packets)
	rc.bytes.Add(l.bytes)
	rc.queries.Add(l.queries)
	rc.responses.Add(l.responses)
	for i, v := range l.reasons {
		if v != 0 {
			rc.reasons[i].Add(v)
		}
	}
	rc.readErrors.Add(l.readErrors)
	rc.dropped.Add(l.dropped)
	rc.addLinks(l.otherLink)
	*l = localCounters{}
}

// addLinks adds per-link-type packet counts.
func (rc *readerCounters) addLinks(m map[layers.LinkType]uint64) {
	if len(m) == 0 {
		return
	}
	rc.linkMu.Lock()
	defer rc.linkMu.Unlock()
	if rc.otherLink == nil {
		rc.otherLink = map[layers.LinkType]uint64{}
	}
	for lt, n := range m {
		rc.otherLink[lt] += n
	}
}

func (rc *readerCounters) addTo(o *readerCounters) {
	o.packets.Add(rc.packets.Load())
	o.bytes.Add(rc.bytes.Load())
	o.queries.Add(rc.queries.Load())
	o.responses.Add(rc.responses.Load())
	for i := range rc.reasons {
		o.reasons[i].Add(rc.reasons[i].Load())
	}
	o.readErrors.Add(rc.readErrors.Load())
	o.dropped.Add(rc.dropped.Load())
	o.kernelDropped.Add(rc.kernelDropped.Load())
	o.ifDropped.Add(rc.ifDropped.Load())
	o.oversize.Add(rc.oversize.Load())
	o.tooLarge.Add(rc.tooLarge.Load())
	rc.linkMu.Lock()
	defer rc.linkMu.Unlock()
	o.addLinks(rc.otherLink)
}

// runningSource is a source being read.
type runningSource struct {
	id      int
	name    string
	speed   float64
	started time.Time
	cancel  context.CancelFunc
	done    chan struct{}
	rc      readerCounters
	ended   atomic.Pointer[time.Time]
	err     atomic.Pointer[string]
	stopped atomic.Bool
	readers atomic.Int32 // readers still running (one per part)
}

// Start reads src on a new goroutine until it ends, fails or is stopped.
// speed paces file replays: 0 reads as fast as possible, 1 at the capture's
// pace, 2 twice as fast. It returns the source's id.
func (e *Engine) Start(src Source, speed float64) (int, error) {
	if speed < 0 || math.IsNaN(speed) || math.IsInf(speed, 0) {
		src.Close()
		return 0, fmt.Errorf("bad speed %v", speed)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		src.Close()
		return 0, errors.New("pktengine: engine stopped")
	}
	parts := []Source{src}
	if ps, ok := src.(partsSource); ok {
		parts = ps.Parts()
	}
	decs := make([]*dnsdecode.Decoder, len(parts))
	for i, p := range parts {
		dec, err := dnsdecode.New(p.LinkType(), dnsdecode.Options{Ports: e.opts.Ports})
		if err != nil {
			// A pcapng file whose first interface is of a link type not
			// decoded may have others that are: its packets are counted.
			if fs, ok := src.(*fileSource); !ok || fs.f.Format != "pcapng" {
				src.Close()
				return 0, err
			}
			dec = nil
		}
		decs[i] = dec
	}
	e.nextID++
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningSource{id: e.nextID, name: src.Name(), speed: speed, started: time.Now(), cancel: cancel, done: make(chan struct{})}
	e.sources[rs.id] = rs
	rs.readers.Store(int32(len(parts)))
	ds, _ := src.(dropStatser)
	for i, p := range parts {
		if i > 0 {
			ds = nil // the first reader polls the source's drop counters
		}
		go e.read(ctx, rs, p, decs[i], ds)
	}
	return rs.id, nil
}

// StopSource stops one source (id) or, with id 0, every source, and waits
// until what they read has been handed to the workers. It returns how many
// sources it stopped.
func (e *Engine) StopSource(ctx context.Context, id int) (int, error) {
	e.mu.Lock()
	var srcs []*runningSource
	for _, s := range e.sources {
		if id == 0 || s.id == id {
			srcs = append(srcs, s)
		}
	}
	e.mu.Unlock()
	for _, s := range srcs {
		s.stopped.Store(true)
		s.cancel()
	}
	for _, s := range srcs {
		select {
		case <-s.done:
		case <-ctx.Done():
			return len(srcs), ctx.Err()
		}
	}
	return len(srcs), nil
}

// Wait blocks until source id has ended (or ctx ends).
func (e *Engine) Wait(ctx context.Context, id int) error {
	e.mu.Lock()
	s := e.sources[id]
	e.mu.Unlock()
	if s == nil {
		return nil
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Drain waits until every worker's queue is empty (or ctx ends).
func (e *Engine) Drain(ctx context.Context) error {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		busy := false
		for _, w := range e.workers {
			if w.queued.Load() != 0 {
				busy = true
			}
		}
		if !busy {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// pick returns the worker of a subscriber address.
func (e *Engine) pick(a netip.Addr) *worker {
	n := len(e.workers)
	if n == 1 {
		return e.workers[0]
	}
	var h uint64
	if a.Is4() {
		b := a.As4()
		h = uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
	} else {
		b := a.As16()
		for i := 0; i < 16; i += 8 {
			h ^= uint64(b[i])<<56 | uint64(b[i+1])<<48 | uint64(b[i+2])<<40 | uint64(b[i+3])<<32 |
				uint64(b[i+4])<<24 | uint64(b[i+5])<<16 | uint64(b[i+6])<<8 | uint64(b[i+7])
		}
	}
	h *= 0x9E3779B97F4A7C15
	return e.workers[(h>>32)%uint64(n)]
}

// publishEvery is how often a reader publishes its counters.
const publishEvery = 100 * time.Millisecond

var reasonKeys = func() (k [dnsdecode.NumReasons]string) {
	for i := range k {
		k[i] = "decode:" + dnsdecode.Reason(i).String()
	}
	return
}()

// reader is the per-source decode loop state.
type reader struct {
	e     *Engine
	rs    *runningSource
	cur   []*batch
	l     localCounters
	now   time.Time
	dead  bool        // engine aborted: drop instead of hand over
	stats readStatser // file sources
}

// publish hands the local counters (and the file reader's) to the source's.
func (r *reader) publish() {
	r.rs.rc.publish(&r.l)
	if r.stats != nil {
		st := r.stats.Stats()
		r.rs.rc.oversize.Store(st.Oversize)
		r.rs.rc.tooLarge.Store(st.Skipped)
	}
}

// read is one reader of a source (of one part of a partsSource): it decodes
// src's packets and hands their queries to the workers. The last reader
// of a source to end retires it.
func (e *Engine) read(ctx context.Context, rs *runningSource, src Source, dec *dnsdecode.Decoder, ds dropStatser) {
	r := &reader{e: e, rs: rs, cur: make([]*batch, len(e.workers)), now: time.Now()}
	var res dnsdecode.Result
	var endErr error
	var firstTS time.Time
	var startWall time.Time
	r.stats, _ = src.(readStatser)
	linkOf := src.LinkType()
	decoders := map[layers.LinkType]*dnsdecode.Decoder{linkOf: dec} // nil: not decoded
	defer func() {
		r.flushAll()
		r.publish()
		if ds != nil {
			r.pollDrops(ds)
		}
		src.Close()
		if endErr != nil {
			msg := endErr.Error()
			rs.err.CompareAndSwap(nil, &msg)
		}
		if rs.readers.Add(-1) > 0 {
			return
		}
		now := time.Now()
		rs.ended.Store(&now)
		if p := rs.err.Load(); p != nil {
			e.log.Warn("packet source failed", "source", rs.name, "err", *p)
		} else {
			e.log.Info("packet source ended", "source", rs.name, "packets", rs.rc.packets.Load(), "queries", rs.rc.queries.Load(), "stopped", rs.stopped.Load())
		}
		e.mu.Lock()
		delete(e.sources, rs.id)
		rs.rc.addTo(&e.retired)
		e.finished = append(e.finished, e.sourceStatus(rs))
		if len(e.finished) > 10 {
			e.finished = e.finished[len(e.finished)-10:]
		}
		e.mu.Unlock()
		close(rs.done)
	}()
	flushAfter := e.opts.FlushAfter
	_, isFile := src.(*fileSource)
	lastPub, lastDrops := r.now, r.now
	for n := uint64(0); ; n++ {
		// Housekeeping: files check the clock every 64 packets; live sources
		// use each packet's capture time (set below) and check every packet,
		// so a trickle of queries is not held back.
		if !isFile || n&63 == 0 {
			if n&63 == 0 {
				if ctx.Err() != nil {
					return
				}
				if isFile {
					r.now = time.Now()
				}
			}
			r.flushOld(flushAfter)
			if r.now.Sub(lastPub) >= publishEvery {
				r.publish()
				lastPub = r.now
				if ds != nil && r.now.Sub(lastDrops) >= time.Second {
					r.pollDrops(ds)
					lastDrops = r.now
				}
			}
		}
		data, ci, err := src.ZeroCopyReadPacketData()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
				return
			case errors.Is(err, ErrTimeout):
				r.now = time.Now()
				r.flushAll()
				r.publish()
				if ds != nil {
					r.pollDrops(ds)
				}
				continue
			case errors.Is(err, io.ErrUnexpectedEOF):
				// A capture cut short (still being written, or truncated):
				// what was read counts; the tail is reported.
				endErr = fmt.Errorf("capture ends inside a packet: %w", err)
				r.l.readErrors++
				return
			default:
				r.l.readErrors++
				if isFile {
					endErr = err
					return
				}
				e.lim.Warn("read:"+rs.name, "packet read error", "source", rs.name, "err", err)
				if r.l.readErrors > 1000 && r.l.packets == 0 {
					endErr = err
					return
				}
				continue
			}
		}
		if rs.speed > 0 {
			if firstTS.IsZero() {
				firstTS, startWall = ci.Timestamp, time.Now()
			} else if due := startWall.Add(time.Duration(float64(ci.Timestamp.Sub(firstTS)) / rs.speed)); due.After(r.now) {
				if d := time.Until(due); d > time.Millisecond {
					r.flushAll()
					r.publish()
					t := time.NewTimer(d)
					select {
					case <-ctx.Done():
						t.Stop()
						return
					case <-t.C:
					}
					r.now = time.Now()
				}
			}
		}
		if !isFile {
			r.now = ci.Timestamp
		}
		r.l.packets++
		r.l.bytes += uint64(ci.Length)
		if len(ci.AncillaryData) > 0 {
			// pcapng: each interface has its own link type.
			if lt, ok := ci.AncillaryData[0].(layers.LinkType); ok && (lt != linkOf || dec == nil) {
				d, known := decoders[lt]
				if !known {
					var err error
					if d, err = dnsdecode.New(lt, dnsdecode.Options{Ports: e.opts.Ports}); err != nil {
						d = nil
					}
					decoders[lt] = d
					if d == nil {
						e.log.Warn("packets of a link type not decoded are counted and skipped", "source", rs.name,
							"link_type", dnsdecode.LinkTypeName(lt))
					}
				}
				if linkOf = lt; d == nil {
					dec = nil
					if r.l.otherLink == nil {
						r.l.otherLink = map[layers.LinkType]uint64{}
					}
					r.l.otherLink[lt]++
					continue
				}
				dec = d
			}
		}
		dec.Decode(data, &res)
		switch res.Kind {
		case dnsdecode.Query:
			r.l.queries++
			r.add(&res, ci.Timestamp.UnixMilli())
		case dnsdecode.Response:
			r.l.responses++
		default:
			r.l.reasons[res.Reason]++
			if res.Kind == dnsdecode.Malformed {
				e.lim.Warn(reasonKeys[res.Reason], "malformed DNS packet", "source", rs.name, "reason", res.Reason.String(), "src", res.Src)
			}
		}
	}
}

func (r *reader) pollDrops(ds dropStatser) {
	_, dropped, ifd, err := ds.DropStats()
	if err == nil {
		r.rs.rc.kernelDropped.Store(dropped)
		r.rs.rc.ifDropped.Store(ifd)
	}
}

// add appends a query to its worker's batch, handing the batch over when
// full.
func (r *reader) add(res *dnsdecode.Result, ts int64) {
	w := r.e.pick(res.Src)
	b := r.cur[w.id]
	if b != nil && len(b.arena)+len(res.Name) > cap(b.arena) {
		r.send(w, b)
		b = nil
	}
	if b == nil {
		b = r.take(w)
		if b == nil {
			r.l.dropped++
			return
		}
		r.cur[w.id] = b
	}
	off := len(b.arena)
	b.arena = append(b.arena, res.Name...)
	b.items = append(b.items, item{ts: ts, ip: res.Src, qtype: res.QType, off: uint32(off), n: uint16(len(res.Name))})
	if len(b.items) == cap(b.items) {
		r.send(w, b)
	}
}

// take gets an empty batch for w, waiting for the worker to free one
// (back-pressure) unless the engine is aborting.
func (r *reader) take(w *worker) *batch {
	if r.dead {
		return nil
	}
	select {
	case b := <-w.free:
		b.first = r.now
		return b
	default:
	}
	select {
	case b := <-w.free:
		b.first = r.now
		return b
	case <-r.e.abort:
		r.dead = true
		return nil
	}
}

func (r *reader) send(w *worker, b *batch) {
	r.cur[w.id] = nil
	n := len(b.items)
	if n == 0 {
		w.free <- b
		return
	}
	w.queued.Add(int64(n))
	select {
	case w.in <- b:
	case <-r.e.abort:
		r.dead = true
		w.queued.Add(-int64(n))
		r.l.dropped += uint64(n)
	}
}

func (r *reader) flushAll() {
	for i, b := range r.cur {
		if b != nil {
			r.send(r.e.workers[i], b)
		}
	}
}

func (r *reader) flushOld(age time.Duration) {
	for i, b := range r.cur {
		if b != nil && r.now.Sub(b.first) >= age {
			r.send(r.e.workers[i], b)
		}
	}
}
