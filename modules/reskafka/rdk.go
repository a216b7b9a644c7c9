package reskafka

// res_kafka's own producer: cgo straight on the librdkafka that
// confluent-kafka-go links statically into the binary, compiled against
// res_kafka's own declarations of the part of its ABI used here
// (sb_rdkafka.h, for librdkafka 2.x; rdkversion.go checks the linked
// version at start, rdkabi_test.go the declarations). Accepted messages
// reach librdkafka in batches: Produce packs them into a stageBuf
// (stage.go) and one drainer thread hands each batch over with one cgo
// call (sb_produce_staged, RD_KAFKA_MSG_F_COPY). Delivery reports are read
// in C from librdkafka's event queue: successes of messages without a
// callback are only counted, failures and messages with a callback are
// copied into a Go-owned array in batches, with librdkafka's true message
// status. Errors, statistics and log lines come from the same queue as
// events. The consumer and admin clients stay on confluent-kafka-go.

/*
#cgo CFLAGS: -I${SRCDIR} -O2
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sb_rdkafka.h"

// sb_dr is one delivery report handed to Go.
typedef struct {
	int64_t offset;
	uintptr_t opaque;
	uintptr_t rkt;
	int32_t partition;
	int32_t err;
	int32_t status;
	int32_t size;     // key + value bytes
} sb_dr;

// sb_poll_res says what sb_poll found.
typedef struct {
	int64_t ok;       // delivered messages without a callback (not in out)
	int64_t bytes;    // key + value bytes of every message reported
	int32_t n;        // entries written to out
	int32_t events;   // events handled
	rd_kafka_event_t *other; // a non-DR event for Go (Go destroys it)
} sb_poll_res;

// sb_poll serves the producer's main queue without blocking: it walks
// delivery-report events (keeping a partly read one in *cur for the next
// call when out is full) and stops at the first event of another type,
// which it returns for Go to handle.
static void sb_poll(rd_kafka_queue_t *q, rd_kafka_event_t **cur, sb_dr *out, int cap, int max_events, sb_poll_res *res) {
	res->ok = 0; res->bytes = 0; res->n = 0; res->events = 0; res->other = NULL;
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
			res->bytes += (int64_t)m->len + (int64_t)m->key_len;
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
			d->size = (int32_t)(m->len + m->key_len);
		}
		if (res->n >= cap)
			return; // resume this event next time
		rd_kafka_event_destroy(ev);
		*cur = NULL;
		res->events++;
	}
}

// sb_msg is one staged message: key (klen bytes, -1: none) then value
// (vlen bytes, -1: null) at buf + off, then hn headers whose name and value
// lengths are hdrs[2*hidx...]; their bytes follow the value. err is set by
// sb_produce_staged when librdkafka refused the message.
typedef struct {
	int64_t off;
	uintptr_t opaque;
	int32_t topic;    // index into rkts
	int32_t klen;
	int32_t vlen;
	int32_t hn;
	int32_t hidx;
	int32_t err;
} sb_msg;

static char sb_empty[1]; // an empty, non-NULL value (NULL would mean null)

// sb_stop says whether a refusal with err stops the hand-over: the message
// and the ones after it were not queued and are to be tried again (a full
// queue; a fatal error, for the producer that replaces this one).
static int sb_stop(int err) {
	return err == RD_KAFKA_RESP_ERR__QUEUE_FULL || err == RD_KAFKA_RESP_ERR__FATAL;
}

// SB_RUN is the most messages one rd_kafka_produce_batch call takes (its
// message array is on the C stack).
#define SB_RUN 256

// sb_produce_run queues msgs[0..n-1], all of one topic and without headers,
// with rd_kafka_produce_batch (one clock reading and one topic lock for all,
// the partitioner still per message). It returns how many it handled,
// stopping before the first message refused with a stop error (in *errp);
// a message refused for another reason has its err set and is counted in
// *refusedp.
static int sb_produce_run(rd_kafka_topic_t *rkt, char *buf, sb_msg *msgs, int n, int *errp, int *refusedp) {
	rd_kafka_message_t rm[SB_RUN];
	for (int done = 0; done < n; ) {
		int k = n - done < SB_RUN ? n - done : SB_RUN;
		memset(rm, 0, sizeof(rm[0]) * (size_t)k);
		for (int i = 0; i < k; i++) {
			sb_msg *m = &msgs[done + i];
			size_t klen = m->klen < 0 ? 0 : (size_t)m->klen;
			rm[i].key = m->klen < 0 ? NULL : buf + m->off;
			rm[i].key_len = klen;
			rm[i].payload = m->vlen < 0 ? NULL : m->vlen == 0 ? sb_empty : buf + m->off + klen;
			rm[i].len = m->vlen < 0 ? 0 : (size_t)m->vlen;
			rm[i]._private = (void *)m->opaque;
		}
		int good = rd_kafka_produce_batch(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, rm, k);
		if (good < k) {
			for (int i = 0; i < k; i++) {
				int err = rm[i].err;
				if (err != 0 && sb_stop(err)) {
					// librdkafka gives every message after this one the
					// same error: none of them was queued.
					*errp = err;
					return done + i;
				}
				msgs[done + i].err = err;
				*refusedp += err != 0;
			}
		}
		done += k;
	}
	return n;
}

// sb_produce_one queues one staged message with headers (copied) with
// rd_kafka_producev and returns librdkafka's error (0: queued).
static int sb_produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, char *buf, sb_msg *m, int32_t *hdrs) {
	size_t klen = m->klen < 0 ? 0 : (size_t)m->klen;
	size_t vlen = m->vlen < 0 ? 0 : (size_t)m->vlen;
	char *key = m->klen < 0 ? NULL : buf + m->off;
	char *val = m->vlen < 0 ? NULL : vlen == 0 ? sb_empty : buf + m->off + klen;
	rd_kafka_headers_t *hs = rd_kafka_headers_new((size_t)m->hn);
	char *p = buf + m->off + klen + vlen;
	for (int k = 0; k < m->hn; k++) {
		int32_t nl = hdrs[2 * (m->hidx + k)], hl = hdrs[2 * (m->hidx + k) + 1];
		char *name = nl == 0 ? sb_empty : p;
		p += nl;
		char *hv = hl < 0 ? NULL : hl == 0 ? sb_empty : p;
		if (hl > 0)
			p += hl;
		rd_kafka_header_add(hs, name, (ssize_t)nl, hv, hl < 0 ? 0 : (ssize_t)hl);
	}
	// (tag, arguments) groups, each tag an rd_kafka_vtype_t and each
	// argument of the type librdkafka reads for it (sb_rdkafka.h).
	rd_kafka_resp_err_t err = rd_kafka_producev(rk,
		(rd_kafka_vtype_t)RD_KAFKA_VTYPE_RKT, rkt,
		(rd_kafka_vtype_t)RD_KAFKA_VTYPE_PARTITION, (int32_t)RD_KAFKA_PARTITION_UA,
		(rd_kafka_vtype_t)RD_KAFKA_VTYPE_MSGFLAGS, (int)RD_KAFKA_MSG_F_COPY,
		(rd_kafka_vtype_t)RD_KAFKA_VTYPE_VALUE, (void *)val, vlen,
		(rd_kafka_vtype_t)RD_KAFKA_VTYPE_KEY, (void *)key, klen,
		(rd_kafka_vtype_t)RD_KAFKA_VTYPE_HEADERS, hs,
		(rd_kafka_vtype_t)RD_KAFKA_VTYPE_OPAQUE, (void *)m->opaque,
		(rd_kafka_vtype_t)RD_KAFKA_VTYPE_END);
	if (err)
		rd_kafka_headers_destroy(hs);
	return err;
}

// sb_produce_staged queues n staged messages (copied): each run of
// messages of one topic without headers with sb_produce_run, a message
// with headers with sb_produce_one. It returns how many messages it
// handled: each was queued or, refused for a reason of its own (too large,
// unknown partition; RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC when its topic handle
// is NULL), has the error in its err field and is counted in *refusedp.
// It stops before the first message refused with a stop error (sb_stop),
// whose code is in *errp.
static int sb_produce_staged(rd_kafka_t *rk, rd_kafka_topic_t **rkts, char *buf, sb_msg *msgs, int32_t *hdrs, int n, int *errp, int *refusedp) {
	*errp = 0;
	*refusedp = 0;
	for (int i = 0; i < n; ) {
		sb_msg *m = &msgs[i];
		m->err = 0;
		rd_kafka_topic_t *rkt = rkts[m->topic];
		if (rkt == NULL) {
			m->err = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
			(*refusedp)++;
			i++;
			continue;
		}
		if (m->hn > 0) {
			int err = sb_produce_one(rk, rkt, buf, m, hdrs);
			if (err != 0 && sb_stop(err)) {
				*errp = err;
				return i;
			}
			m->err = err;
			*refusedp += err != 0;
			i++;
			continue;
		}
		int e = i + 1;
		while (e < n && msgs[e].hn == 0 && msgs[e].topic == m->topic) {
			msgs[e].err = 0;
			e++;
		}
		int k = sb_produce_run(rkt, buf, m, e - i, errp, refusedp);
		if (*errp != 0)
			return i + k;
		i = e;
	}
	return n;
}

// sb_new_producer creates the producer. With sasl_queue set (OAUTHBEARER)
// token refreshes go to a SASL queue that librdkafka's background thread
// serves, calling librdkafka's own token makers (unsecured JWT, OIDC):
// the main queue, which sb_poll reads as events, never sees them, and a
// token request never blocks the poll goroutine. On failure to set that up
// the producer is destroyed and the reason is in errstr. *conf_owned says
// whether conf is still the caller's to destroy (rd_kafka_new takes it
// only on success).
static rd_kafka_t *sb_new_producer(rd_kafka_conf_t *conf, int sasl_queue, char *errstr, size_t errlen, int *conf_owned) {
	rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR | RD_KAFKA_EVENT_STATS | RD_KAFKA_EVENT_LOG);
	if (sasl_queue)
		rd_kafka_conf_enable_sasl_queue(conf, 1);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errlen);
	*conf_owned = rk == NULL;
	if (rk == NULL || !sasl_queue)
		return rk;
	rd_kafka_error_t *err = rd_kafka_sasl_background_callbacks_enable(rk);
	if (err != NULL) {
		snprintf(errstr, errlen, "OAUTHBEARER token refreshes on the background thread: %s", rd_kafka_error_string(err));
		rd_kafka_error_destroy(err);
		rd_kafka_destroy(rk);
		return NULL;
	}
	return rk;
}

// sb_fatal_code returns the instance's fatal error code (0: none) without
// its text.
static rd_kafka_resp_err_t sb_fatal_code(rd_kafka_t *rk) {
	char buf[8];
	return rd_kafka_fatal_error(rk, buf, sizeof(buf));
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
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// rdkafkaLinkedVersion returns rd_kafka_version() of the linked
// librdkafka. A variable so tests can substitute it.
var rdkafkaLinkedVersion = func() int { return int(C.rd_kafka_version()) }

// Delivery.Status is rd_kafka_message_status() converted as it is, so each
// Persistence value must equal librdkafka's (otherwise the index is out of
// range and this does not compile).
var (
	_ = [1]struct{}{}[NotPersisted-C.RD_KAFKA_MSG_STATUS_NOT_PERSISTED]
	_ = [1]struct{}{}[PossiblyPersisted-C.RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED]
	_ = [1]struct{}{}[Persisted-C.RD_KAFKA_MSG_STATUS_PERSISTED]
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

	// fatal is the fatal error of this instance once res_kafka saw it:
	// every failure it reports after that is handed back wrapped in
	// ErrProducerRebuilt (fatal.go).
	fatal atomic.Pointer[kafka.Error]
	// retired is set when the instance stopped being its handle's current
	// producer (rebuilt, reloaded or closed): its statistics are ignored.
	retired atomic.Bool
	// handedBack counts the messages it failed with ErrProducerRebuilt.
	handedBack atomic.Int64
	// rebuiltErrs caches the ErrProducerRebuilt error per librdkafka error
	// code (used by whoever serves the instance's events: one at a time).
	rebuiltErrs map[int32]error
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
	saslQueue := C.int(0)
	if strings.HasPrefix(fmt.Sprint(cm["security.protocol"]), "sasl_") && fmt.Sprint(cm["sasl.mechanisms"]) == "OAUTHBEARER" {
		saslQueue = 1
	}
	var confOwned C.int
	rk := C.sb_new_producer(conf, saslQueue, errstr, 512, &confOwned)
	if rk == nil {
		if confOwned != 0 {
			C.rd_kafka_conf_destroy(conf)
		}
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

// errName returns librdkafka's name of an error code, such as
// "OUT_OF_ORDER_SEQUENCE_NUMBER".
func errName(code kafka.ErrorCode) string {
	return C.GoString(C.rd_kafka_err2name(C.rd_kafka_resp_err_t(code)))
}

// fatalError returns the instance's fatal error (its underlying code and
// reason, as rd_kafka_fatal_error gives them), nil when it has none.
func (p *rdProducer) fatalError() *kafka.Error {
	if C.sb_fatal_code(p.rk) == 0 {
		return nil
	}
	buf := (*C.char)(C.malloc(512))
	defer C.free(unsafe.Pointer(buf))
	code := C.rd_kafka_fatal_error(p.rk, buf, 512)
	if code == 0 {
		return nil
	}
	e := kafka.NewError(kafka.ErrorCode(code), C.GoString(buf), true)
	return &e
}

// testFatalError makes librdkafka raise a fatal error with code on the
// instance, as a real one would be raised (rd_kafka_test_fatal_error). It
// fails when the instance had a fatal error already.
func (p *rdProducer) testFatalError(code kafka.ErrorCode, reason string) error {
	cr := C.CString(reason)
	defer C.free(unsafe.Pointer(cr))
	if rc := C.rd_kafka_test_fatal_error(p.rk, C.rd_kafka_resp_err_t(code), cr); rc != 0 {
		if rc == C.RD_KAFKA_RESP_ERR__PREV_IN_PROGRESS {
			return fmt.Errorf("producer %s has had a fatal error already", p.name)
		}
		return rdError(rc)
	}
	return nil
}

// stageBuf is a batch of accepted messages on their way into librdkafka:
// keys, values and headers packed in buf, one sb_msg per message. Only the
// stage (stage.go) touches it, under its lock or as the drainer's batch.
type stageBuf struct {
	buf    []byte
	msgs   []C.sb_msg
	hdrs   []int32 // name length, value length (-1: null) of each header
	topics []string
	last   int32 // index of the topic used last
	pushed int   // messages already handed to librdkafka
	rkts   []*C.rd_kafka_topic_t
	terrs  []error
}

// stageBufKeep is the buffer capacity kept across batches; a message that
// grew a buffer beyond it gives the memory back.
const stageBufKeep = 4 * stageMaxBytes

func (b *stageBuf) topicIndex(topic string) int32 {
	if int(b.last) < len(b.topics) && b.topics[b.last] == topic {
		return b.last
	}
	for i, t := range b.topics {
		if t == topic {
			b.last = int32(i)
			return b.last
		}
	}
	b.topics = append(b.topics, topic)
	b.last = int32(len(b.topics) - 1)
	return b.last
}

// add appends one message (copied) whose delivery handle is h.
func (b *stageBuf) add(topic string, key, value []byte, headers []Header, h uintptr) {
	m := C.sb_msg{off: C.int64_t(len(b.buf)), opaque: C.uintptr_t(h), topic: C.int32_t(b.topicIndex(topic)), klen: -1, vlen: -1}
	if len(key) > 0 {
		m.klen = C.int32_t(len(key))
		b.buf = append(b.buf, key...)
	}
	if value != nil {
		m.vlen = C.int32_t(len(value))
		b.buf = append(b.buf, value...)
	}
	if len(headers) > 0 {
		m.hn, m.hidx = C.int32_t(len(headers)), C.int32_t(len(b.hdrs)/2)
		for _, hd := range headers {
			vl := int32(-1)
			if hd.Value != nil {
				vl = int32(len(hd.Value))
			}
			b.hdrs = append(b.hdrs, int32(len(hd.Key)), vl)
			b.buf = append(b.buf, hd.Key...)
			b.buf = append(b.buf, hd.Value...)
		}
	}
	b.msgs = append(b.msgs, m)
}

// len returns how many messages the batch holds.
func (b *stageBuf) len() int { return len(b.msgs) }

// msg returns message i's delivery handle, topic and key + value size.
func (b *stageBuf) msg(i int) (h uintptr, topic string, size int64) {
	m := &b.msgs[i]
	return uintptr(m.opaque), b.topics[m.topic], int64(max(m.klen, 0)) + int64(max(m.vlen, 0))
}

// reset empties the batch for reuse.
func (b *stageBuf) reset() {
	if cap(b.buf) > stageBufKeep {
		b.buf, b.msgs, b.hdrs = nil, nil, nil
	}
	clear(b.topics)
	clear(b.terrs)
	b.buf, b.msgs, b.hdrs, b.topics, b.last, b.pushed = b.buf[:0], b.msgs[:0], b.hdrs[:0], b.topics[:0], 0, 0
}

// produceStaged queues messages from..to-1 of b (copied). It returns how
// many it handled (from on), how many of those librdkafka refused for a
// reason of their own (their err fields say why, see refusal), and the error
// of the refusal that stopped it (a full queue, a fatal error), if any.
func (p *rdProducer) produceStaged(b *stageBuf, from, to int) (n, refused int, err error) {
	if cap(b.rkts) < len(b.topics) {
		b.rkts, b.terrs = make([]*C.rd_kafka_topic_t, len(b.topics)), make([]error, len(b.topics))
	}
	b.rkts, b.terrs = b.rkts[:len(b.topics)], b.terrs[:len(b.topics)]
	for i, name := range b.topics {
		b.rkts[i], b.terrs[i] = nil, nil
		if t, err := p.topic(name); err == nil {
			b.rkts[i] = t
		} else {
			b.terrs[i] = fmt.Errorf("topic %s: %w", name, err)
		}
	}
	var bp *C.char
	if len(b.buf) > 0 {
		bp = (*C.char)(unsafe.Pointer(&b.buf[0]))
	}
	var hp *C.int32_t
	if len(b.hdrs) > 0 {
		hp = (*C.int32_t)(unsafe.Pointer(&b.hdrs[0]))
	}
	var errc, nref C.int
	n = int(C.sb_produce_staged(p.rk, &b.rkts[0], bp, &b.msgs[from], hp, C.int(to-from), &errc, &nref))
	if errc != 0 {
		err = rdError(C.rd_kafka_resp_err_t(errc))
	}
	return n, int(nref), err
}

// refusal returns why librdkafka refused message i of b (nil: it did not),
// after produceStaged.
func (b *stageBuf) refusal(i int) error {
	m := &b.msgs[i]
	if m.err == 0 {
		return nil
	}
	if m.err == C.RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC && b.terrs[m.topic] != nil {
		return b.terrs[m.topic]
	}
	return rdError(C.rd_kafka_resp_err_t(m.err))
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
	bytes  int64     // key + value bytes of every message reported
	drs    []C.sb_dr // other delivery reports
	events int       // events served
	err    *kafka.Error
	// stats is a statistics JSON document in librdkafka's memory, valid
	// until hold is destroyed (release).
	stats []byte
	hold  *C.rd_kafka_event_t
	log   *kafka.LogEvent
}

// release destroys the event the step kept (a statistics document).
func (ev *rdEvent) release() {
	if ev.hold != nil {
		C.rd_kafka_event_destroy(ev.hold)
		ev.hold, ev.stats = nil, nil
	}
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
	ev := rdEvent{ok: int64(res.ok), bytes: int64(res.bytes), drs: p.drs[:res.n], events: int(res.events)}
	if o := res.other; o != nil {
		switch C.rd_kafka_event_type(o) {
		case C.RD_KAFKA_EVENT_ERROR:
			code := C.rd_kafka_event_error(o)
			fatal := C.rd_kafka_event_error_is_fatal(o) != 0
			e := kafka.NewError(kafka.ErrorCode(code), C.GoString(C.rd_kafka_event_error_string(o)), fatal)
			if fatal {
				// The underlying fatal error, as confluent-kafka-go reports it.
				if fe := p.fatalError(); fe != nil {
					e = *fe
				}
			}
			ev.err = &e
		case C.RD_KAFKA_EVENT_STATS:
			// Parsed where it is, without a copy: the event is destroyed
			// once the document was handled.
			if js := C.rd_kafka_event_stats(o); js != nil {
				ev.stats = unsafe.Slice((*byte)(unsafe.Pointer(js)), int(C.strlen(js)))
				ev.hold = o
				return ev
			}
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

// serve runs one poll step of the connection's librdkafka producer kp
// (behind handle p) and handles what it found; it returns how much work
// there was (0: the queue was empty).
func (c *conn) serve(p *Producer, kp *rdProducer, maxEvents int) int {
	ev := kp.poll(maxEvents)
	if ev.ok > 0 {
		c.delivered.Add(ev.ok)
		c.markUp(kp)
	}
	if len(ev.drs) > 0 {
		c.deliveries(p, kp, ev.drs)
	}
	if n := ev.ok + int64(len(ev.drs)); n > 0 {
		// After the callbacks ran: Flush returns once they did.
		p.st.reported(n, ev.bytes)
		p.space.broadcast()
	}
	if ev.err != nil {
		if ev.err.IsFatal() {
			c.onFatal(p, kp, *ev.err)
		} else {
			c.handleClientError("producer", *ev.err)
		}
	}
	if ev.stats != nil {
		if !kp.retired.Load() {
			c.handleStats(&p.stats, ev.stats)
		}
		ev.release()
	}
	if ev.log != nil {
		c.m.handleLog(*ev.log)
	}
	return ev.events + len(ev.drs) + int(ev.ok)
}

// markUp records a successful delivery by kp: the connection works, unless
// kp is a producer that failed fatally (its last messages may still be
// acknowledged while it is retired). A delivery by the handle's current
// producer recovers the last fatal error (the producer that had it is
// retired by then).
func (c *conn) markUp(kp *rdProducer) {
	if kp.fatal.Load() != nil {
		return
	}
	if c.fatalPending.Load() && !kp.retired.Load() {
		c.fatalRecovered()
	}
	c.confirmUp()
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
		c.markUp(kp)
	}
	if ok < int64(len(drs)) && kp.fatal.Load() == nil {
		// librdkafka fails the queued messages of an instance with a fatal
		// error, possibly before its error event was served.
		if fe := kp.fatalError(); fe != nil {
			c.onFatal(p, kp, *fe)
		}
	}
	fatal := kp.fatal.Load() != nil
	for i := range drs {
		d := &drs[i]
		var err error
		topic := ""
		if d.err != 0 {
			topic = kp.topicName(uintptr(d.rkt))
			c.failed.Add(1)
			if fatal {
				err = c.rebuiltError(kp, int32(d.err))
				kp.handedBack.Add(1)
				c.rebuiltFailed.Add(1)
				c.m.lim.Warn("dr-rebuilt:"+c.name, "kafka message handed back: its producer failed fatally and was rebuilt",
					"connection", c.name, "topic", topic, "err", err.Error(), "handed_back", c.rebuiltFailed.Load())
			} else {
				err = rdError(C.rd_kafka_resp_err_t(d.err))
				c.m.lim.Warn("dr:"+c.name, "kafka message delivery failed",
					"connection", c.name, "topic", topic, "err", c.mask(err.Error()), "failed", c.failed.Load())
			}
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

// rebuiltError returns the error handed back for a message kp failed with
// code after its fatal error: ErrProducerRebuilt with the fatal error and
// the message's own librdkafka error (one value per code, shared).
func (c *conn) rebuiltError(kp *rdProducer, code int32) error {
	if e, ok := kp.rebuiltErrs[code]; ok {
		return e
	}
	if kp.rebuiltErrs == nil {
		kp.rebuiltErrs = map[int32]error{}
	}
	e := &rebuiltError{fatal: c.fatalText(*kp.fatal.Load()), err: rdError(C.rd_kafka_resp_err_t(code))}
	kp.rebuiltErrs[code] = e
	return e
}
