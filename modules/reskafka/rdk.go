package reskafka

// res_kafka's own producer: cgo straight on the librdkafka that
// confluent-kafka-go links statically into the binary (header in
// internal/rdkafka, same version). Produce is one cgo call into
// rd_kafka_produce (RD_KAFKA_MSG_F_COPY); delivery reports are read in C
// from librdkafka's event queue: successes of messages without a callback
// are only counted, failures and messages with a callback are copied into a
// Go-owned array in batches, with librdkafka's true message status. Errors,
// statistics and log lines come from the same queue as events. The
// consumer and admin clients stay on confluent-kafka-go.

/*
#cgo CFLAGS: -I${SRCDIR}/internal/rdkafka -O2
#include <stdint.h>
#include <stdlib.h>
#include <rdkafka.h>

// sb_dr is one delivery report handed to Go.
typedef struct {
	int64_t offset;
	uintptr_t opaque;
	uintptr_t rkt;
	int32_t partition;
	int32_t err;
	int32_t status;
	int32_t pad;
} sb_dr;

// sb_poll_res says what sb_poll found.
typedef struct {
	int64_t ok;       // delivered messages without a callback (not in out)
	int32_t n;        // entries written to out
	int32_t events;   // events handled
	rd_kafka_event_t *other; // a non-DR event for Go (Go destroys it)
} sb_poll_res;

// sb_poll serves the producer's main queue without blocking: it walks
// delivery-report events (keeping a partly read one in *cur for the next
// call when out is full) and stops at the first event of another type,
// which it returns for Go to handle.
static void sb_poll(rd_kafka_queue_t *q, rd_kafka_event_t **cur, sb_dr *out, int cap, int max_events, sb_poll_res *res) {
	res->ok = 0; res->n = 0; res->events = 0; res->other = NULL;
	while (res->events < max_events) {
		rd_kafka_event_t *ev = *cur;
		if (ev == NULL) {
			ev = rd_kafka_queue_poll(q, 0);
			if (ev == NULL)
				return;
			if (rd_kafka_event_type(ev) != RD_KAFKA_EVENT_DR) {
				res->other = ev;
				res->events++;
				return;
			}
			*cur = ev;
		}
		const rd_kafka_message_t *m;
		while (res->n < cap && (m = rd_kafka_event_message_next(ev)) != NULL) {
			if (m->err == 0 && m->_private == NULL) {
				res->ok++;
				continue;
			}
			sb_dr *d = &out[res->n++];
			d->offset = m->offset;
			d->opaque = (uintptr_t)m->_private;
			d->rkt = (uintptr_t)m->rkt;
			d->partition = m->partition;
			d->err = m->err;
			d->status = (int32_t)rd_kafka_message_status(m);
		}
		if (res->n >= cap)
			return; // resume this event next time
		rd_kafka_event_destroy(ev);
		*cur = NULL;
		res->events++;
	}
}

static int sb_produce(rd_kafka_topic_t *rkt, char *val, size_t vlen, int vnull, char *key, size_t klen, uintptr_t opaque) {
	if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
			vnull ? NULL : val, vlen, key, klen, (void *)opaque) == -1)
		return rd_kafka_last_error();
	return 0;
}

// sb_produce_batch produces n messages whose keys and values lie in buf at
// the offsets in offs (4 int32 per message: key offset, key length or -1
// for none, value offset, value length or -1 for null), opaque from
// opaques (may be NULL). It stops at the first refusal and returns how many
// were accepted; *errp holds the refusal's error code.
static int sb_produce_batch(rd_kafka_topic_t *rkt, char *buf, int32_t *offs, uintptr_t *opaques, int n, int *errp) {
	*errp = 0;
	for (int i = 0; i < n; i++) {
		int32_t *o = offs + 4 * i;
		char *key = o[1] < 0 ? NULL : buf + o[0];
		char *val = o[3] < 0 ? NULL : buf + o[2];
		if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY,
				val, o[3] < 0 ? 0 : (size_t)o[3], key, o[1] < 0 ? 0 : (size_t)o[1],
				opaques ? (void *)opaques[i] : NULL) == -1) {
			*errp = rd_kafka_last_error();
			return i;
		}
	}
	return n;
}

static int sb_produce_hdrs(rd_kafka_t *rk, rd_kafka_topic_t *rkt, char *val, size_t vlen, int vnull, char *key, size_t klen, rd_kafka_headers_t *hdrs, uintptr_t opaque) {
	rd_kafka_resp_err_t err = rd_kafka_producev(rk,
		RD_KAFKA_V_RKT(rkt),
		RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
		RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
		RD_KAFKA_V_VALUE((vnull ? NULL : val), vlen),
		RD_KAFKA_V_KEY(key, klen),
		RD_KAFKA_V_HEADERS(hdrs),
		RD_KAFKA_V_OPAQUE((void *)opaque),
		RD_KAFKA_V_END);
	if (err)
		rd_kafka_headers_destroy(hdrs);
	return err;
}

static int sb_header_add(rd_kafka_headers_t *hdrs, char *name, size_t nlen, char *val, size_t vlen, int vnull) {
	return rd_kafka_header_add(hdrs, name, (ssize_t)nlen, vnull ? NULL : val, (ssize_t)vlen);
}

static rd_kafka_t *sb_new_producer(rd_kafka_conf_t *conf, char *errstr, size_t errlen) {
	rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_STATS | RD_KAFKA_EVENT_LOG);
	return rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errlen);
}

static const char *sb_event_log(rd_kafka_event_t *ev, const char **fac, int *level) {
	const char *str = NULL;
	if (rd_kafka_event_log(ev, fac, &str, level) != 0)
		return NULL;
	return str;
}
*/
import "C"

import (
	"fmt"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// rdProducer is one librdkafka producer instance owned by res_kafka.
type rdProducer struct {
	rk   *C.rd_kafka_t
	q    *C.rd_kafka_queue_t // main queue: delivery reports, errors, stats, logs
	name string

	cur *C.rd_kafka_event_t // delivery-report event partly read (poller only)
	drs []C.sb_dr           // poller's buffer

	tmu    sync.RWMutex
	topics map[string]*C.rd_kafka_topic_t
	names  map[uintptr]string
}

// newRdProducer creates a librdkafka producer from cm (the go.* keys of the
// confluent-kafka-go configuration are ignored); log lines are delivered as
// events on the main queue, whose io events are written to wakeFd.
func newRdProducer(cm kafka.ConfigMap, wakeFd int) (*rdProducer, error) {
	conf := C.rd_kafka_conf_new()
	errstr := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(errstr))
	set := func(k, v string) error {
		ck, cv := C.CString(k), C.CString(v)
		defer C.free(unsafe.Pointer(ck))
		defer C.free(unsafe.Pointer(cv))
		if C.rd_kafka_conf_set(conf, ck, cv, errstr, 512) != C.RD_KAFKA_CONF_OK {
			return kafka.NewError(kafka.ErrInvalidArg, C.GoString(errstr), false)
		}
		return nil
	}
	for k, v := range cm {
		if strings.HasPrefix(k, "go.") {
			continue
		}
		if err := set(k, fmt.Sprint(v)); err != nil {
			C.rd_kafka_conf_destroy(conf)
			return nil, err
		}
	}
	if err := set("log.queue", "true"); err != nil {
		C.rd_kafka_conf_destroy(conf)
		return nil, err
	}
	rk := C.sb_new_producer(conf, errstr, 512)
	if rk == nil {
		C.rd_kafka_conf_destroy(conf)
		return nil, kafka.NewError(kafka.ErrInvalidArg, C.GoString(errstr), false)
	}
	p := &rdProducer{rk: rk, q: C.rd_kafka_queue_get_main(rk), name: C.GoString(C.rd_kafka_name(rk)),
		topics: map[string]*C.rd_kafka_topic_t{}, names: map[uintptr]string{}}
	C.rd_kafka_set_log_queue(rk, nil) // logs to the main queue
	if wakeFd >= 0 {
		payload := C.CString("p")
		C.rd_kafka_queue_io_event_enable(p.q, C.int(wakeFd), unsafe.Pointer(payload), 1)
		C.free(unsafe.Pointer(payload)) // librdkafka copies the payload
	}
	return p, nil
}

// String returns the librdkafka instance name.
func (p *rdProducer) String() string { return p.name }

// topic returns the topic handle for name.
func (p *rdProducer) topic(name string) (*C.rd_kafka_topic_t, error) {
	p.tmu.RLock()
	t := p.topics[name]
	p.tmu.RUnlock()
	if t != nil {
		return t, nil
	}
	p.tmu.Lock()
	defer p.tmu.Unlock()
	if t = p.topics[name]; t != nil {
		return t, nil
	}
	cn := C.CString(name)
	defer C.free(unsafe.Pointer(cn))
	t = C.rd_kafka_topic_new(p.rk, cn, nil)
	if t == nil {
		code := C.rd_kafka_last_error()
		return nil, rdError(code)
	}
	p.topics[name] = t
	p.names[uintptr(unsafe.Pointer(t))] = name
	return t, nil
}

// topicName returns the name of a topic handle of this producer.
func (p *rdProducer) topicName(rkt uintptr) string {
	p.tmu.RLock()
	defer p.tmu.RUnlock()
	return p.names[rkt]
}

func rdError(code C.rd_kafka_resp_err_t) kafka.Error {
	return kafka.NewError(kafka.ErrorCode(code), C.GoString(C.rd_kafka_err2str(code)), false)
}

// bytesArg returns a C pointer, length and null flag for b.
func bytesArg(b []byte) (*C.char, C.size_t, C.int) {
	if b == nil {
		return nil, 0, 1
	}
	return (*C.char)(unsafe.Pointer(unsafe.SliceData(b))), C.size_t(len(b)), 0
}

// produce queues one message (copied); code 0 means accepted.
func (p *rdProducer) produce(rkt *C.rd_kafka_topic_t, key, value []byte, headers []Header, opaque uintptr) int {
	vp, vl, vnull := bytesArg(value)
	var kp *C.char
	if len(key) > 0 {
		kp = (*C.char)(unsafe.Pointer(unsafe.SliceData(key)))
	}
	if len(headers) == 0 {
		return int(C.sb_produce(rkt, vp, vl, vnull, kp, C.size_t(len(key)), C.uintptr_t(opaque)))
	}
	hdrs := C.rd_kafka_headers_new(C.size_t(len(headers)))
	for _, h := range headers {
		hp, hl, hnull := bytesArg(h.Value)
		C.sb_header_add(hdrs, (*C.char)(unsafe.Pointer(unsafe.StringData(h.Key))), C.size_t(len(h.Key)), hp, hl, hnull)
	}
	return int(C.sb_produce_hdrs(p.rk, rkt, vp, vl, vnull, kp, C.size_t(len(key)), hdrs, C.uintptr_t(opaque)))
}

// produceBatch queues msgs packed in buf (see sb_produce_batch); it returns
// how many were accepted and the error code of the first refusal.
func (p *rdProducer) produceBatch(rkt *C.rd_kafka_topic_t, buf []byte, offs []int32, opaques []uintptr) (int, int) {
	var errc C.int
	var bp *C.char
	if len(buf) > 0 {
		bp = (*C.char)(unsafe.Pointer(&buf[0]))
	}
	var op *C.uintptr_t
	if opaques != nil {
		op = (*C.uintptr_t)(unsafe.Pointer(&opaques[0]))
	}
	n := C.sb_produce_batch(rkt, bp, (*C.int32_t)(unsafe.Pointer(&offs[0])), op, C.int(len(offs)/4), &errc)
	return int(n), int(errc)
}

// len is rd_kafka_outq_len: messages queued or in flight plus events not
// yet served.
func (p *rdProducer) len() int { return int(C.rd_kafka_outq_len(p.rk)) }

// flush waits up to timeout for every message to be delivered (the poller
// serves the delivery reports) and returns how many are left.
func (p *rdProducer) flush(timeout time.Duration) int {
	C.rd_kafka_flush(p.rk, C.int(timeout/time.Millisecond))
	return p.len()
}

// purge drops queued and in-flight messages; their delivery reports say
// so.
func (p *rdProducer) purge() {
	C.rd_kafka_purge(p.rk, C.RD_KAFKA_PURGE_F_QUEUE|C.RD_KAFKA_PURGE_F_INFLIGHT|C.RD_KAFKA_PURGE_F_NON_BLOCKING)
}

// rdEvent is what one poll step found.
type rdEvent struct {
	ok     int64     // successful deliveries without a callback
	drs    []C.sb_dr // other delivery reports
	events int       // events served
	err    *kafka.Error
	stats  string
	log    *kafka.LogEvent
}

const rdPollBatch = 4096

// poll serves the main queue without blocking (poller goroutine, or the
// retiring goroutine once the poller let go).
func (p *rdProducer) poll(maxEvents int) rdEvent {
	if p.drs == nil {
		p.drs = make([]C.sb_dr, rdPollBatch)
	}
	var res C.sb_poll_res
	C.sb_poll(p.q, &p.cur, &p.drs[0], C.int(len(p.drs)), C.int(maxEvents), &res)
	ev := rdEvent{ok: int64(res.ok), drs: p.drs[:res.n], events: int(res.events)}
	if o := res.other; o != nil {
		switch C.rd_kafka_event_type(o) {
		case C.RD_KAFKA_EVENT_ERROR:
			code := C.rd_kafka_event_error(o)
			fatal := C.rd_kafka_event_error_is_fatal(o) != 0
			msg := C.GoString(C.rd_kafka_event_error_string(o))
			if fatal {
				// The real fatal error, as confluent-kafka-go reports it.
				buf := (*C.char)(C.malloc(512))
				if fc := C.rd_kafka_fatal_error(p.rk, buf, 512); fc != 0 {
					code, msg = fc, C.GoString(buf)
				}
				C.free(unsafe.Pointer(buf))
			}
			e := kafka.NewError(kafka.ErrorCode(code), msg, fatal)
			ev.err = &e
		case C.RD_KAFKA_EVENT_STATS:
			ev.stats = C.GoString(C.rd_kafka_event_stats(o))
		case C.RD_KAFKA_EVENT_LOG:
			var fac *C.char
			var level C.int
			if s := C.sb_event_log(o, &fac, &level); s != nil {
				ev.log = &kafka.LogEvent{Name: p.name, Tag: C.GoString(fac), Message: C.GoString(s),
					Level: int(level), Timestamp: time.Now()}
			}
		}
		C.rd_kafka_event_destroy(o)
	}
	return ev
}

// disableWake stops io events (before the wake pipe may close).
func (p *rdProducer) disableWake() {
	C.rd_kafka_queue_io_event_enable(p.q, -1, nil, 0)
}

// destroy frees the producer; nobody may use it any more.
func (p *rdProducer) destroy() {
	if p.cur != nil {
		C.rd_kafka_event_destroy(p.cur)
		p.cur = nil
	}
	p.tmu.Lock()
	for _, t := range p.topics {
		C.rd_kafka_topic_destroy(t)
	}
	p.topics, p.names = map[string]*C.rd_kafka_topic_t{}, map[uintptr]string{}
	p.tmu.Unlock()
	C.rd_kafka_queue_destroy(p.q)
	C.rd_kafka_destroy(p.rk)
}

// rdVersion is the version of the linked librdkafka and of the header.
func rdVersion() (linked, header int) {
	return int(C.rd_kafka_version()), int(C.RD_KAFKA_VERSION)
}

const (
	rdErrQueueFull = int(C.RD_KAFKA_RESP_ERR__QUEUE_FULL)
)

// serve runs one poll step of the connection's librdkafka producer kp
// (behind handle p) and handles what it found; it returns how much work
// there was (0: the queue was empty).
func (c *conn) serve(p *Producer, kp *rdProducer, maxEvents int) int {
	ev := kp.poll(maxEvents)
	if ev.ok > 0 {
		c.delivered.Add(ev.ok)
		c.markUp()
	}
	if len(ev.drs) > 0 {
		c.deliveries(p, kp, ev.drs)
	}
	if ev.ok > 0 || len(ev.drs) > 0 {
		p.space.broadcast()
	}
	if ev.err != nil {
		c.handleClientError("producer", *ev.err)
	}
	if ev.stats != "" {
		c.handleStats(ev.stats)
	}
	if ev.log != nil {
		c.m.handleLog(*ev.log)
	}
	return ev.events + len(ev.drs) + int(ev.ok)
}

func (c *conn) markUp() {
	c.smu.Lock()
	if c.state != stateUp {
		c.state = stateUp
	}
	c.smu.Unlock()
}

// drScratch is the poll goroutine's scratch space for deliveries.
type drScratch struct {
	hs   []uintptr
	ents []cbEntry
}

var drScratchPool = sync.Pool{New: func() any { return new(drScratch) }}

// deliveries handles delivery reports of failed messages and of messages
// with a callback.
func (c *conn) deliveries(p *Producer, kp *rdProducer, drs []C.sb_dr) {
	sc := drScratchPool.Get().(*drScratch)
	defer drScratchPool.Put(sc)
	if cap(sc.hs) < len(drs) {
		sc.hs, sc.ents = make([]uintptr, len(drs)), make([]cbEntry, len(drs))
	}
	hs, ents := sc.hs[:len(drs)], sc.ents[:len(drs)]
	for i := range drs {
		hs[i] = uintptr(drs[i].opaque)
	}
	p.cbs.take(hs, ents)
	var ok int64
	for i := range drs {
		if drs[i].err == 0 {
			ok++
		}
	}
	if ok > 0 {
		c.delivered.Add(ok)
		c.markUp()
	}
	for i := range drs {
		d := &drs[i]
		var err error
		topic := ""
		if d.err != 0 {
			err = rdError(C.rd_kafka_resp_err_t(d.err))
			topic = kp.topicName(uintptr(d.rkt))
			c.failed.Add(1)
			c.m.lim.Warn("dr:"+c.name, "kafka message delivery failed",
				"connection", c.name, "topic", topic, "err", c.mask(err.Error()), "failed", c.failed.Load())
		}
		e := ents[i]
		ents[i] = cbEntry{}
		if e.cb == nil {
			continue
		}
		if topic == "" {
			topic = kp.topicName(uintptr(d.rkt))
		}
		c.m.callback(c, e.cb, Delivery{Topic: topic, Partition: int32(d.partition), Offset: int64(d.offset),
			Err: err, Status: Persistence(d.status), Opaque: e.opaque})
	}
}
