package cdrkafka

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/cdr/spool"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
)

// errQueueFull is what a producer adapter returns (wrapped) when the
// producer's queue stayed full.
var errQueueFull = errors.New("producer queue full")

// producer is what the backend needs of a Kafka producer, bound to the
// CDR topic. *reskafka.Producer satisfies it through resProducer; tests use
// a fake. Deliveries come back through Backend.onDelivery.
type producer interface {
	// produceBatch queues msgs (keys and values are copied) without
	// blocking on the network, in one call; each Opaque comes back with its
	// message's delivery report. It returns how many of the first msgs were
	// accepted and, when that is fewer than len(msgs), the error of the
	// first refused one (wrapping errQueueFull when the queue stayed full);
	// the messages after it were not queued.
	produceBatch(msgs []reskafka.OutMessage) (int, error)
	// flush waits up to timeout for outstanding deliveries and returns how
	// many messages are still undelivered.
	flush(timeout time.Duration) int
	// len returns the producer's queue length.
	len() int
}

// warnFunc logs a rate-limited warning under a key.
type warnFunc func(key, msg string, args ...any)

// Backend is the Kafka CDR backend: it implements cdr.Backend.
type Backend struct {
	logger *slog.Logger
	warn   warnFunc

	cfg  atomic.Pointer[Config]
	gen  atomic.Uint64 // configuration generation, for batchers
	prod atomic.Pointer[prodBox]
	reg  *cdr.Registration
	st   *cdr.Stats

	// spool mode
	sp         *spool.Spool
	spoolMu    sync.Mutex // orders the spooling decision with spool writes
	spooling   atomic.Bool
	kvScratch  []spool.Record // under spoolMu
	kick       chan struct{}
	stop, done chan struct{}

	// journal mode (journal = yes): every batch is written ahead to jr
	jr            *spool.Spool
	journalErrors atomic.Uint64 // batches produced without their journal write
	kvPool        sync.Pool     // *[]spool.Record scratch for journal writes

	liveMu sync.Mutex
	live   map[*chunk]struct{} // chunks with messages awaiting delivery (spool mode)
	shutMu sync.Mutex

	chunks sync.Pool

	replayInflight atomic.Int64 // replayed records read from the spool and not yet reported
	pending        *chunk       // replayed records not yet accepted by the producer (replayer only)
	pendingAt      int
	replayOut      []reskafka.OutMessage // replayer's produceBatch scratch
	queueFull      atomic.Uint64         // hand-overs that met a full queue
	retried        atomic.Uint64
	lateDelivered  atomic.Uint64 // spooled at shutdown, delivered after all (acknowledged in the spool)
	lateFailed     atomic.Uint64
	deliveryErrors atomic.Uint64 // failed delivery reports (spooled or not)
	lastErr        atomic.Value  // string
}

type prodBox struct{ p producer }

// newBackend returns a backend using cfg and p. It is not registered.
func newBackend(cfg *Config, p producer, logger *slog.Logger, warn warnFunc) *Backend {
	k := &Backend{logger: logger, warn: warn, kick: make(chan struct{}, 1), live: make(map[*chunk]struct{})}
	if k.warn == nil {
		k.warn = func(string, string, ...any) {}
	}
	k.cfg.Store(cfg)
	k.prod.Store(&prodBox{p})
	k.lastErr.Store("")
	k.chunks.New = func() any { return &chunk{k: k} }
	return k
}

// Name implements cdr.Backend.
func (k *Backend) Name() string { return "kafka" }

// Attach implements cdr.Backend: the registration and its counters.
func (k *Backend) Attach(r *cdr.Registration) { k.reg, k.st = r, r.Stats() }

// FlushAfter implements cdr.Backend.
func (k *Backend) FlushAfter() time.Duration { return k.cfg.Load().flushAfter() }

// NewBatcher implements cdr.Backend.
func (k *Backend) NewBatcher() cdr.Batcher {
	return &batcher{k: k, c: k.getChunk()}
}

func (k *Backend) producer() producer { return k.prod.Load().p }

func (k *Backend) getChunk() *chunk {
	c := k.chunks.Get().(*chunk)
	c.reset()
	return c
}

// msgPos locates one message in a chunk's data.
// msgPos locates one message in a chunk: key data[k0:k1], value
// data[k1:v1], and the CDR id's text inside the value, data[id0:id1]
// (id1 == 0: none).
type msgPos struct{ k0, k1, v1, id0, id1 uint32 }

// idField starts the id's text in a CDR's JSON (cdr.AppendJSON).
var idField = []byte(`,"id":"`)

// idAt returns where the id's text is in data[v0:v1] (a CDR's JSON), or
// 0, 0. The id is the last string field, so the search runs from the end.
func idAt(data []byte, v0, v1 uint32) (uint32, uint32) {
	i := bytes.LastIndex(data[v0:v1], idField)
	if i < 0 {
		return 0, 0
	}
	start := v0 + uint32(i+len(idField))
	end := bytes.IndexByte(data[start:v1], '"')
	if end < 0 {
		return 0, 0
	}
	return start, start + uint32(end)
}

// ref is the opaque of one produced message in spool mode.
type ref struct {
	c     *chunk
	i     int32
	state atomic.Int32 // refInflight, refSettled, refSpooled
	pos   spool.Pos    // replay: source; spooled at shutdown: destination
	jpos  spool.Pos    // journal mode: where the record was written ahead
}

const (
	refInflight = iota
	refSettled
	refSpooled // spooled at shutdown while still in the producer
)

// chunk is the encoded content of one batch (or of one replay read).
type chunk struct {
	k           *Backend
	data        []byte
	msgs        []msgPos
	hdrs        []reskafka.Header // one per message, for the id header
	refs        []ref
	outstanding atomic.Int32
	replay      bool
}

func (c *chunk) reset() {
	c.data, c.msgs, c.replay = c.data[:0], c.msgs[:0], false
}

func (c *chunk) key(i int) []byte { m := c.msgs[i]; return c.data[m.k0:m.k1] }

func (c *chunk) value(i int) []byte { m := c.msgs[i]; return c.data[m.k1:m.v1] }

// outMessages fills out (reused, grown as needed) with c's messages; in
// spool mode (withRefs) each carries its ref as the opaque. The messages
// point into c.data: the producer copies them.
// With an id header configured, each message carries its CDR's id there.
func (c *chunk) outMessages(out []reskafka.OutMessage, withRefs bool) []reskafka.OutMessage {
	n := len(c.msgs)
	if cap(out) < n {
		out = make([]reskafka.OutMessage, n)
	}
	out = out[:n]
	idHeader := c.k.cfg.Load().IDHeader
	if idHeader != "" {
		if cap(c.hdrs) < n {
			c.hdrs = make([]reskafka.Header, n)
		}
		c.hdrs = c.hdrs[:n]
	}
	for i, m := range c.msgs {
		o := &out[i]
		o.Key, o.Value, o.Headers, o.Opaque = c.data[m.k0:m.k1], c.data[m.k1:m.v1], nil, nil
		if idHeader != "" && m.id1 != 0 {
			c.hdrs[i] = reskafka.Header{Key: idHeader, Value: c.data[m.id0:m.id1]}
			o.Headers = c.hdrs[i : i+1 : i+1]
		}
		if withRefs {
			o.Opaque = &c.refs[i]
		}
	}
	return out
}

func (c *chunk) add(key, value []byte) {
	k0 := uint32(len(c.data))
	c.data = append(c.data, key...)
	k1 := uint32(len(c.data))
	c.data = append(c.data, value...)
	v1 := uint32(len(c.data))
	id0, id1 := idAt(c.data, k1, v1)
	c.msgs = append(c.msgs, msgPos{k0, k1, v1, id0, id1})
}

// prepareRefs sizes refs for every message; outstanding counts them plus
// one held by the caller until it calls release(1).
func (c *chunk) prepareRefs() {
	n := len(c.msgs)
	if cap(c.refs) < n {
		c.refs = make([]ref, n)
	}
	c.refs = c.refs[:n]
	for i := range c.refs {
		r := &c.refs[i]
		r.c, r.i, r.pos, r.jpos = c, int32(i), spool.Pos{}, spool.Pos{}
		r.state.Store(refInflight)
	}
	c.outstanding.Store(int32(n) + 1)
	c.k.liveMu.Lock()
	c.k.live[c] = struct{}{}
	c.k.liveMu.Unlock()
}

func (c *chunk) release(n int) {
	if c.outstanding.Add(-int32(n)) == 0 {
		k := c.k
		k.liveMu.Lock()
		delete(k.live, c)
		k.liveMu.Unlock()
		k.chunks.Put(c)
	}
}

// batcher is one Poster's batch for this backend.
type batcher struct {
	k       *Backend
	c       *chunk
	gen     uint64
	cfg     *Config
	keyText bool
	max     int
	out     []reskafka.OutMessage // produceBatch scratch, reused for every batch
}

// Add implements cdr.Batcher: it encodes the key and the JSON value.
func (b *batcher) Add(r *cdr.Record) bool {
	if len(b.c.msgs) == 0 {
		if g := b.k.gen.Load(); g != b.gen || b.cfg == nil {
			b.gen, b.cfg = g, b.k.cfg.Load()
			b.keyText, b.max = b.cfg.Key == "ip_text", b.cfg.BatchMax
		}
	}
	c := b.c
	k0 := uint32(len(c.data))
	if b.keyText {
		c.data = cdr.AppendKeyText(c.data, r.IP)
	} else {
		c.data = cdr.AppendKeyBinary(c.data, r.IP)
	}
	k1 := uint32(len(c.data))
	c.data = cdr.AppendJSON(c.data, r)
	v1 := uint32(len(c.data))
	var id0, id1 uint32
	if !r.ID.IsZero() {
		id0, id1 = idAt(c.data, k1, v1)
	}
	c.msgs = append(c.msgs, msgPos{k0, k1, v1, id0, id1})
	return len(c.msgs) >= b.max
}

// Len implements cdr.Batcher.
func (b *batcher) Len() int { return len(b.c.msgs) }

// Flush implements cdr.Batcher: it hands the batch to the producer (or the
// spool).
func (b *batcher) Flush() {
	retained, out := b.k.handover(b.c, b.cfg, b.out)
	b.out = out
	if retained {
		b.c = b.k.getChunk() // the old chunk stays with its in-flight messages
		return
	}
	b.c.reset()
}

// handover hands a batch to the producer, using out as produceBatch
// scratch; it returns out for reuse. It returns true when the chunk is
// retained (spool mode: until every message is reported).
func (k *Backend) handover(c *chunk, cfg *Config, out []reskafka.OutMessage) (bool, []reskafka.OutMessage) {
	if cfg == nil {
		cfg = k.cfg.Load()
	}
	switch cfg.mode() {
	case modeSpool:
		return k.handoverSpool(c, cfg, out)
	case modeBlock:
		return false, k.handoverDirect(c, cfg, out, refusalBlock)
	default:
		return false, k.handoverDirect(c, cfg, out, refusalDrop)
	}
}

// handoverDirect is drop and block mode: the producer copies each message,
// nothing is retained, and what the producer refuses is dropped and counted.
func (k *Backend) handoverDirect(c *chunk, cfg *Config, out []reskafka.OutMessage, how onRefusal) []reskafka.OutMessage {
	p := k.producer()
	out = c.outMessages(out, false)
	k.produce(p, c, out, 0, how, cfg.BlockMs)
	clear(out) // drop the references into c.data
	return out
}

// handoverSpool is spool mode. While the spool holds records (spooling),
// new batches are appended to it, behind the older ones, and the replayer
// feeds them to the producer in order. Otherwise the batch is journalled
// (journal = yes) and produced; a full queue spools the rest of the batch
// and starts spooling.
func (k *Backend) handoverSpool(c *chunk, cfg *Config, out []reskafka.OutMessage) (bool, []reskafka.OutMessage) {
	if k.spooling.Load() {
		k.spoolMu.Lock()
		if k.spooling.Load() {
			k.spoolRangeLocked(c, 0, len(c.msgs))
			k.spoolMu.Unlock()
			return false, out
		}
		k.spoolMu.Unlock()
	}
	p := k.producer()
	c.prepareRefs()
	if k.jr != nil {
		k.journalWrite(c)
	}
	out = c.outMessages(out, true)
	k.produce(p, c, out, 0, refusalSpool, cfg.BlockMs)
	clear(out) // drop the references into c
	c.release(1)
	return true, out
}

// onRefusal is what a produce loop does with the messages the producer
// refuses with its queue full; the hand-over modes and the replayer differ
// only in that (and in whether c carries refs).
type onRefusal uint8

const (
	// refusalDrop (on_queue_full = drop): the producer already served its
	// poll queue for queue_full_timeout_ms; the refused message is retried
	// once, then the rest of the batch is dropped (queue_full).
	refusalDrop onRefusal = iota
	// refusalBlock (block): the refused message is retried until block_ms
	// after the batch's first full queue, then the rest of the batch is
	// dropped (block_timeout).
	refusalBlock
	// refusalSpool (spool): the rest of the batch goes to the spool and new
	// batches queue behind it. c carries refs.
	refusalSpool
	// refusalReplay (the replayer): the rest stays pending, in order, for
	// the replayer's next attempt. c carries refs.
	refusalReplay
)

// produce hands messages out[from:] of c to p with one produceBatch call,
// more only when the producer refuses part of it, and returns the index of
// the first message it did not deal with: len(out), or less when the queue
// is full in refusalReplay. A message refused for another reason than a
// full queue is dropped (produce_error) and the messages after it follow
// one at a time (res_kafka counts the unqueued rest of each refused call as
// dropped, so a persistent error is not counted again for every remaining
// message). A full queue is handled as how says. Messages are offered in
// order, so one subscriber's CDRs keep theirs.
func (k *Backend) produce(p producer, c *chunk, out []reskafka.OutMessage, from int, how onRefusal, blockMs int) int {
	n := len(out)
	var deadline time.Time
	single := false
	for i := from; i < n; {
		end := n
		if single {
			end = i + 1
		}
		m, err := p.produceBatch(out[i:end])
		if m > 0 {
			k.st.AddEnqueued(uint64(m))
			i += m
		}
		if err == nil {
			continue
		}
		// out[i] was refused: no delivery report will come for it.
		if !errors.Is(err, errQueueFull) {
			k.dropRefused(c, i, err, how, true)
			i++
			single = true
			continue
		}
		k.queueFull.Add(1)
		switch how {
		case refusalReplay:
			return i
		case refusalSpool:
			k.spoolRefused(c, i)
			return n
		case refusalDrop:
			// Retry once, then drop the rest: the queue is still full.
			k.retried.Add(1)
			if _, err = p.produceBatch(out[i : i+1]); err == nil {
				k.st.AddEnqueued(1)
				i++
				continue
			}
			k.st.AddDropped(cdr.DropQueueFull, uint64(n-i))
			k.warn("queue-full", "cdr_kafka: producer queue full; CDRs dropped", "dropped", n-i, "queued", p.len())
			return n
		}
		// refusalBlock: retry until block_ms after the first full queue.
		if deadline.IsZero() {
			deadline = time.Now().Add(time.Duration(blockMs) * time.Millisecond)
		}
		for {
			if time.Now().After(deadline) {
				k.st.AddDropped(cdr.DropBlockTimeout, uint64(n-i))
				k.warn("block-timeout", "cdr_kafka: producer queue full for block_ms; CDRs dropped", "dropped", n-i, "block_ms", blockMs)
				return n
			}
			k.retried.Add(1)
			if _, err = p.produceBatch(out[i : i+1]); err == nil {
				k.st.AddEnqueued(1)
				break
			}
			time.Sleep(time.Millisecond) // res_kafka already waited queue_full_timeout_ms; do not spin if it is 0
			if !errors.Is(err, errQueueFull) {
				k.dropRefused(c, i, err, how, false)
				single = true
				break
			}
		}
		i++
	}
	return n
}

// dropRefused drops message i of c, refused by the producer for another
// reason than a full queue, counts it (produce_error) and, when warn is
// set, logs it. A message with a ref is settled: its journal record is
// acknowledged (its outcome is final), a replayed one is settled in the
// spool, and the chunk no longer waits for it.
func (k *Backend) dropRefused(c *chunk, i int, err error, how onRefusal, warn bool) {
	hasRef := how == refusalSpool || how == refusalReplay
	if hasRef {
		c.refs[i].state.Store(refSettled)
	}
	if how == refusalReplay {
		k.replayInflight.Add(-1)
	}
	k.st.AddDropped(cdr.DropProduceError, 1)
	k.setErr(err)
	if warn {
		msg := "cdr_kafka: producer refused a CDR; dropped"
		if how == refusalReplay {
			msg = "cdr_kafka: producer refused a replayed CDR; dropped"
		}
		k.warn("produce", msg, "err", err.Error())
	}
	if !hasRef {
		return
	}
	if how == refusalReplay {
		k.sp.Settle(c.refs[i].pos, false)
	} else {
		k.journalAck(&c.refs[i])
	}
	c.release(1)
}

// spoolRefused writes messages [i, n) of a spool-mode batch, refused from i
// on with the queue full, to the spool and starts spooling: new batches
// queue behind them. Their journal records are acknowledged once they are
// in the spool, and the chunk no longer waits for them.
func (k *Backend) spoolRefused(c *chunk, i int) {
	n := len(c.msgs)
	for j := i; j < n; j++ {
		c.refs[j].state.Store(refSettled)
	}
	k.spoolMu.Lock()
	k.spooling.Store(true)
	k.spoolRangeLocked(c, i, n)
	k.spoolMu.Unlock()
	for j := i; j < n; j++ {
		k.journalAck(&c.refs[j])
	}
	c.release(n - i)
	k.kickReplay()
}

// journalWrite writes a batch ahead to the journal before it is produced and
// notes where each record went. A failed write is counted and logged; the
// batch is produced anyway (only its crash safety is lost).
func (k *Backend) journalWrite(c *chunk) {
	kp, _ := k.kvPool.Get().(*[]spool.Record)
	if kp == nil {
		kp = new([]spool.Record)
	}
	kvs := (*kp)[:0]
	for i := range c.msgs {
		kvs = append(kvs, spool.Record{Key: c.key(i), Value: c.value(i)})
	}
	first, err := k.jr.Append(kvs)
	clear(kvs)
	*kp = kvs[:0]
	k.kvPool.Put(kp)
	if err != nil {
		k.journalErrors.Add(1)
		k.setErr(err)
		k.warn("journal-write", "cdr_kafka: cannot write the journal; batch produced without crash safety", "records", len(c.msgs), "err", err.Error())
		return
	}
	for i := range c.refs {
		c.refs[i].jpos = first.Plus(i)
	}
}

// journalAck acknowledges r's journal record, if it has one: its outcome is
// final (delivered, dropped and counted) or it is safe in the main spool.
func (k *Backend) journalAck(r *ref) {
	if !r.jpos.IsZero() {
		k.jr.AckJournal(r.jpos)
	}
}

// spoolRangeLocked writes messages [from, to) of c to the spool and counts
// them. The caller holds spoolMu.
func (k *Backend) spoolRangeLocked(c *chunk, from, to int) {
	if to <= from {
		return
	}
	kvs := k.kvScratch[:0]
	for i := from; i < to; i++ {
		kvs = append(kvs, spool.Record{Key: c.key(i), Value: c.value(i)})
	}
	k.kvScratch = kvs[:0]
	if _, err := k.sp.Append(kvs); err != nil {
		k.st.AddDropped(cdr.DropSpoolError, uint64(len(kvs)))
		k.setErr(err)
		k.warn("spool-write", "cdr_kafka: cannot write the spool; CDRs dropped", "dropped", len(kvs), "err", err.Error())
		return
	}
	k.st.AddSpooled(uint64(len(kvs)))
	k.kickReplay()
}

func (k *Backend) kickReplay() {
	select {
	case k.kick <- struct{}{}:
	default:
	}
}

func (k *Backend) setErr(err error) { k.lastErr.Store(err.Error()) }

// onDelivery is called (from res_kafka's poll goroutine) with each
// message's outcome.
func (k *Backend) onDelivery(opaque any, err error) {
	r, _ := opaque.(*ref)
	if r == nil {
		if err == nil {
			k.st.AddDelivered(1)
			return
		}
		k.deliveryErrors.Add(1)
		k.st.AddFailed(1)
		k.setErr(err)
		k.warn("delivery", "cdr_kafka: CDR delivery failed; lost (on_queue_full=spool would keep it)", "err", err.Error())
		return
	}
	c := r.c
	if c.replay {
		k.replayInflight.Add(-1)
	}
	if r.state.CompareAndSwap(refInflight, refSettled) {
		if err == nil {
			k.st.AddDelivered(1)
			if c.replay {
				k.sp.Settle(r.pos, true)
			}
		} else {
			k.deliveryErrors.Add(1)
			k.setErr(err)
			k.warn("delivery", "cdr_kafka: CDR delivery failed; spooled", "err", err.Error())
			k.spoolMu.Lock()
			k.spooling.Store(true)
			k.spoolRangeLocked(c, int(r.i), int(r.i)+1)
			k.spoolMu.Unlock()
			if c.replay {
				k.sp.Settle(r.pos, false)
			}
		}
		k.journalAck(r)
	} else {
		// Spooled at shutdown while still in the producer.
		k.shutMu.Lock()
		pos := r.pos
		k.shutMu.Unlock()
		if err == nil && !pos.IsZero() {
			k.sp.Ack(pos)
			k.st.AddReplayed(1)
			k.st.AddDelivered(1)
			k.lateDelivered.Add(1)
		} else {
			k.lateFailed.Add(1)
		}
	}
	c.release(1)
}

// openSpool opens the spool. Records found from an earlier run are replayed
// before any new CDR: spooling starts true, so new CDRs queue behind them.
// It returns how many were found; startReplay counts them and starts the
// replayer once the backend is registered.
func (k *Backend) openSpool(opts spool.Options) (int, error) {
	sp, loaded, bad, err := spool.Open(opts)
	if err != nil {
		return 0, err
	}
	k.sp = sp
	for _, b := range bad {
		k.logger.Error("cdr_kafka: corrupt spool region skipped", "file", b.Path, "offset", b.Offset, "bytes", b.Bytes)
	}
	if loaded > 0 {
		k.spooling.Store(true)
		k.logger.Info("cdr_kafka: spooled CDRs found; replaying them before new ones", "records", loaded, "dir", opts.Dir)
	}
	return loaded, nil
}

// openJournal opens the write-ahead journal (journal = yes) after the
// spool. Records an earlier run left unacknowledged (a kill -9, a crash)
// are moved into the spool, fsynced, then acknowledged in the journal, so
// they are replayed before new CDRs; it returns how many. A crash during the
// move may replay some of them twice, never lose them.
func (k *Backend) openJournal(opts spool.Options) (int, error) {
	jr, loaded, bad, err := spool.Open(opts)
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	for _, b := range bad {
		k.logger.Error("cdr_kafka: corrupt journal region skipped", "file", b.Path, "offset", b.Offset, "bytes", b.Bytes)
	}
	moved := 0
	var recs []spool.Entry
	var buf []byte
	for loaded > 0 {
		var lost int
		recs, buf, lost = jr.Next(1024, recs[:0], buf[:0])
		if lost > 0 {
			k.logger.Error("cdr_kafka: journal records unreadable; lost", "records", lost)
		}
		if len(recs) == 0 {
			break
		}
		kvs := make([]spool.Record, len(recs))
		for i, r := range recs {
			kvs[i] = spool.Record{Key: r.Key, Value: r.Value}
		}
		if _, err := k.sp.Append(kvs); err != nil {
			jr.Close()
			return moved, fmt.Errorf("journal: moving %d records to the spool: %w", len(kvs), err)
		}
		k.sp.Sync()
		for _, r := range recs {
			jr.Settle(r.Pos, true)
		}
		moved += len(recs)
	}
	k.jr = jr
	if moved > 0 {
		k.spooling.Store(true)
		k.logger.Warn("cdr_kafka: journal records of an unclean stop moved to the spool; replaying them before new ones", "records", moved, "dir", opts.Dir)
	}
	return moved, nil
}

// startReplay counts the loaded records and starts the replayer.
func (k *Backend) startReplay(loaded int) {
	if loaded > 0 {
		k.st.AddLoaded(uint64(loaded))
	}
	k.stop, k.done = make(chan struct{}), make(chan struct{})
	go k.replayLoop()
}

// replayLoop replays the spool. It retries every 10 ms while records wait
// (spooled, or refused by a full queue) and sleeps otherwise: spooling a
// record kicks it, and so does a replayed record's delivery.
func (k *Backend) replayLoop() {
	defer close(k.done)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	retry := t.C
	for {
		select {
		case <-k.stop:
			return
		case <-k.kick:
		case <-retry:
		}
		for k.replayOnce() {
			select {
			case <-k.stop:
				return
			default:
			}
		}
		switch idle := k.pending == nil && k.sp.Empty(); {
		case idle && retry != nil:
			t.Stop() // nothing waits: sleep until kicked
			retry = nil
		case !idle && retry == nil:
			t.Reset(10 * time.Millisecond)
			retry = t.C
		}
	}
}

// replayOnce feeds up to one chunk of spooled records to the producer and
// reports whether it did anything. Records the producer could not take
// (queue full) stay in k.pending, in order, and are offered again first.
func (k *Backend) replayOnce() bool {
	if k.pending != nil {
		return k.producePending()
	}
	if k.sp.Empty() {
		if k.spooling.Load() {
			k.spoolMu.Lock()
			if k.sp.Empty() {
				k.spooling.Store(false)
			}
			k.spoolMu.Unlock()
		}
		return false
	}
	cfg := k.cfg.Load()
	room := int64(cfg.ReplayInflight) - k.replayInflight.Load()
	if room <= 0 {
		return false
	}
	recs, _, lost := k.sp.Next(int(min(room, 1024)), nil, nil)
	if lost > 0 {
		k.st.AddSpoolLost(uint64(lost))
		k.logger.Error("cdr_kafka: spooled CDRs unreadable; lost", "records", lost, "err", k.sp.Status().LastError)
	}
	if len(recs) == 0 {
		return lost > 0
	}
	c := k.getChunk()
	c.replay = true
	for _, r := range recs {
		c.add(r.Key, r.Value)
	}
	c.prepareRefs()
	for i, r := range recs {
		c.refs[i].pos = r.Pos
	}
	k.st.AddReplayed(uint64(len(recs)))
	k.replayInflight.Add(int64(len(recs)))
	k.pending, k.pendingAt = c, 0
	return k.producePending()
}

// producePending produces k.pending from k.pendingAt on (one produceBatch
// call, more only when the producer refuses part of it). It returns false
// when the queue is full (the rest waits for the next tick).
func (k *Backend) producePending() bool {
	c := k.pending
	p := k.producer()
	out := c.outMessages(k.replayOut, true)
	k.pendingAt = k.produce(p, c, out, k.pendingAt, refusalReplay, 0)
	clear(out) // drop the references into c
	k.replayOut = out
	if k.pendingAt < len(c.msgs) {
		return false
	}
	k.pending = nil
	c.release(1)
	return true
}

// shutdown runs at unload after the engine handed over every batch: it
// stops the replayer, flushes the producer for up to flush and, in spool
// mode, spools what is still undelivered. It returns how many records were
// still undelivered after the flush.
func (k *Backend) shutdown(flush time.Duration) int {
	cfg := k.cfg.Load()
	if k.stop != nil {
		close(k.stop)
		<-k.done
	}
	left := k.producer().flush(flush)
	if k.sp == nil {
		if left > 0 {
			k.logger.Warn("cdr_kafka: messages still undelivered after the shutdown flush; res_kafka keeps trying until it stops (on_queue_full=spool would keep them)",
				"undelivered", left, "flush_ms", cfg.ShutdownFlushMs)
		}
		return left
	}
	if c := k.pending; c != nil {
		// Read from the spool but never accepted by the producer: they are
		// still in their segment, unacknowledged, and replay next start.
		for i := k.pendingAt; i < len(c.msgs); i++ {
			c.refs[i].state.Store(refSettled)
			k.replayInflight.Add(-1)
		}
		k.st.AddSpooled(uint64(len(c.msgs) - k.pendingAt))
		c.release(len(c.msgs) - k.pendingAt + 1)
		k.pending = nil
	}
	k.shutMu.Lock()
	k.liveMu.Lock()
	var refs []*ref
	var kvs []spool.Record
	spooledReplays := 0
	for c := range k.live {
		for i := range c.refs {
			r := &c.refs[i]
			if !r.state.CompareAndSwap(refInflight, refSpooled) {
				continue
			}
			if c.replay {
				// Still in its source segment, not acknowledged: it is
				// replayed at the next start.
				k.replayInflight.Add(-1)
				spooledReplays++
				continue
			}
			refs = append(refs, r)
			kvs = append(kvs, spool.Record{Key: c.key(i), Value: c.value(i)})
		}
	}
	k.liveMu.Unlock()
	if spooledReplays > 0 {
		k.st.AddSpooled(uint64(spooledReplays))
	}
	if len(kvs) > 0 {
		first, err := k.sp.Append(kvs)
		if err != nil {
			k.st.AddDropped(cdr.DropShutdown, uint64(len(kvs)))
			k.logger.Error("cdr_kafka: cannot spool undelivered CDRs at shutdown; lost", "records", len(kvs), "err", err)
		} else {
			k.sp.Sync()
			for j, r := range refs {
				r.pos = first.Plus(j)
				k.journalAck(r) // safe in the main spool now
			}
			k.st.AddSpooled(uint64(len(kvs)))
		}
	}
	k.shutMu.Unlock()
	if k.jr != nil {
		if left := k.jr.JournalOutstanding(); left > 0 {
			k.logger.Warn("cdr_kafka: journal records still unacknowledged at shutdown; moved to the spool at the next start", "records", left)
		}
		k.jr.Close()
	}
	if n := len(kvs) + spooledReplays; n > 0 {
		k.logger.Info("cdr_kafka: undelivered CDRs spooled at shutdown; replayed at the next start", "records", n)
	}
	k.sp.Close()
	return left
}

// Status lines for "cdr show status" (cdr.StatusWriter).
func (k *Backend) WriteStatus(w func(label, value string)) {
	cfg := k.cfg.Load()
	w("topic", cfg.Topic)
	w("key", cfg.Key)
	w("on_queue_full", cfg.OnQueueFull)
	w("batch_max / flush_ms", fmt.Sprintf("%d / %d", cfg.BatchMax, cfg.FlushMs))
	w("producer queue", fmt.Sprint(k.producer().len()))
	w("queue full events", fmt.Sprint(k.queueFull.Load()))
	w("delivery errors", fmt.Sprint(k.deliveryErrors.Load()))
	if k.sp != nil {
		s := k.sp.Status()
		state := "direct"
		if k.spooling.Load() {
			state = "spooling (new CDRs queue behind the spool)"
		}
		w("spool state", state)
		w("spool", fmt.Sprintf("%d records unread, %d segments, %d bytes", s.Records, s.Segments, s.Bytes))
		w("spool replay in flight", fmt.Sprint(k.replayInflight.Load()))
		w("spool corrupt", fmt.Sprintf("%d regions, %d bytes skipped", s.CorruptRegions, s.CorruptBytes))
		w("spool write errors / fsyncs", fmt.Sprintf("%d / %d", s.WriteErrors, s.Fsyncs))
		w("late deliveries (spooled at shutdown)", fmt.Sprintf("%d delivered, %d failed", k.lateDelivered.Load(), k.lateFailed.Load()))
	}
	if k.jr != nil {
		s := k.jr.Status()
		w("journal", fmt.Sprintf("on: %d records awaiting delivery, %d segments, %d bytes, %d write errors, %d fsyncs",
			k.jr.JournalOutstanding(), s.Segments, s.Bytes, k.journalErrors.Load(), s.Fsyncs))
	}
	if e := k.lastErr.Load().(string); e != "" {
		w("last error", e)
	}
}
