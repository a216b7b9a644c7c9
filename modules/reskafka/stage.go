package reskafka

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// The stage is how accepted messages reach librdkafka. Produce copies each
// message into the stage's fill buffer and returns; one drainer goroutine,
// locked to its OS thread, takes the whole buffer and hands it to
// librdkafka with one cgo call per chunk. Compared with one cgo call per
// message from whatever thread the caller runs on, this saves the per-call
// cgo cost and keeps every allocation librdkafka makes for a message on one
// thread (one malloc arena), as a C program's produce loop would.
//
// The stage does not lengthen the queue: a message counts against
// queue_buffering_max_messages / _kbytes from the moment Produce accepts it
// until its delivery report was handled, so Produce's queue-full bound means
// what it meant when it called librdkafka directly. Order is kept: one fill
// buffer, and one pusher at a time, FIFO.
//
// A batch of at least directMin messages (ProduceBatch, as cdr_kafka's) that
// finds the stage empty and nobody pushing is pushed by its caller at once:
// one cgo call per batch is cheap already, and waking the drainer's thread
// for every batch would cost more than it saves.

// A stage buffer is full at stageMaxMsgs messages or stageMaxBytes bytes
// (small enough to stay in cache between Produce and the drainer); Produce
// then waits for the drainer to take it, at least stageFullWait before it
// reports a full queue.
const (
	stageMaxMsgs  = 1024
	stageMaxBytes = 256 << 10
	stageFullWait = time.Second
)

// full says whether the buffer takes no more messages.
func (b *stageBuf) full() bool {
	return len(b.msgs) >= stageMaxMsgs || len(b.buf) >= stageMaxBytes
}

// directMin is the smallest batch its caller pushes itself.
const directMin = 32

// pushChunk is how many messages the drainer hands over per cgo call (the
// producer handle's read lock is held for one chunk).
const pushChunk = 1024

// stage is a producer handle's hand-over buffer and its drainer.
type stage struct {
	mu       sync.Mutex
	fill     *stageBuf // Produce appends here
	spare    *stageBuf // the drainer's next buffer (nil while it holds it)
	busy     bool      // a pusher (the drainer or a direct caller) holds a batch
	handoff  *stageBuf // a direct caller's unfinished batch, for the drainer
	closed   bool      // no more messages (the producer closes)
	running  bool      // the drainer goroutine was started
	out      int64     // accepted messages not yet reported (staged + in librdkafka)
	outBytes int64     // their key + value bytes
	idle     chan struct{}

	abort   atomic.Bool  // fail what is staged instead of waiting for room
	aborted atomic.Int64 // messages failed by an abort
	wake    chan struct{}
	quit    chan struct{}
	done    chan struct{}
}

func (s *stage) init() {
	s.fill, s.spare = new(stageBuf), new(stageBuf)
	s.wake = make(chan struct{}, 1)
	s.quit = make(chan struct{})
	s.done = make(chan struct{})
}

// kick wakes the drainer.
func (s *stage) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// reported forgets n messages of size bytes whose delivery reports were
// handled (or that failed before reaching librdkafka).
func (s *stage) reported(n, bytes int64) {
	s.mu.Lock()
	s.out -= n
	s.outBytes -= bytes
	s.mu.Unlock()
}

// outstanding returns how many accepted messages are not yet reported.
func (s *stage) outstanding() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out
}

// waitDrained waits up to d until nothing is staged and the drainer is idle.
func (s *stage) waitDrained(d time.Duration) bool {
	var t *time.Timer
	for {
		s.mu.Lock()
		if len(s.fill.msgs) == 0 && !s.busy {
			s.mu.Unlock()
			return true
		}
		if s.idle == nil {
			s.idle = make(chan struct{})
		}
		ch := s.idle
		s.mu.Unlock()
		if t == nil {
			t = time.NewTimer(d)
			defer t.Stop()
		}
		select {
		case <-ch:
		case <-t.C:
			return false
		}
	}
}

// takeLocked makes the caller the pusher of the fill buffer and returns it;
// nil when it is empty or another pusher is busy (s.mu held).
func (s *stage) takeLocked() *stageBuf {
	if s.busy || len(s.fill.msgs) == 0 {
		return nil
	}
	b := s.fill
	s.fill, s.spare, s.busy = s.spare, nil, true
	return b
}

// giveBack ends a push of b: b becomes the spare buffer, and whatever was
// staged meanwhile goes to the drainer.
func (s *stage) giveBack(b *stageBuf) {
	b.reset()
	s.mu.Lock()
	s.spare, s.busy = b, false
	more := len(s.fill.msgs) > 0
	if !more && s.idle != nil {
		close(s.idle)
		s.idle = nil
	}
	s.mu.Unlock()
	if more {
		s.kick()
	}
}

// handOver passes a batch its direct caller could not finish to the
// drainer, which stays the pusher until the batch got through.
func (s *stage) handOver(b *stageBuf) {
	s.mu.Lock()
	s.handoff = b
	s.mu.Unlock()
	s.kick()
}

// startDrainer starts the drainer once (under p.mu, with the first inner
// producer).
func (p *Producer) startDrainer() {
	s := &p.st
	s.mu.Lock()
	start := !s.running && !s.closed
	s.running = s.running || start
	s.mu.Unlock()
	if start {
		go p.drain()
	}
}

// drain is the drainer: it hands every staged batch to librdkafka.
func (p *Producer) drain() {
	// All of librdkafka's per-message allocations happen on this thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := &p.st
	defer close(s.done)
	for {
		select {
		case <-s.wake:
		case <-s.quit:
			return
		}
		for {
			s.mu.Lock()
			b := s.handoff
			s.handoff = nil
			if b == nil {
				b = s.takeLocked()
			}
			s.mu.Unlock()
			if b == nil {
				break // empty, or a direct caller is pushing (it kicks when done)
			}
			p.space.broadcast() // room for producers waiting on a full stage
			p.push(b, false)
			s.giveBack(b)
		}
	}
}

// push hands batch b (from b.pushed on) to librdkafka and reports whether
// it got through. On a full librdkafka queue the drainer waits for room (the
// messages were accepted: they are never dropped for lack of room), and on
// a producer that failed fatally it waits for its replacement, while a
// direct caller stops there and leaves the rest to the drainer (handOver),
// so that Produce never blocks. A message librdkafka refuses for another
// reason (too large, unknown topic or partition) fails (counted, logged, its
// callback told) while the others go on; everything left fails when the
// producer is closing and gave up waiting (abort).
func (p *Producer) push(b *stageBuf, direct bool) bool {
	n := b.len()
	wait := 200 * time.Microsecond
	for done := b.pushed; done < n; {
		if p.st.abort.Load() {
			p.st.aborted.Add(int64(n - done))
			p.failStaged(b, done, n, kafka.NewError(kafka.ErrPurgeQueue, "message purged: producer closed before it was queued", false))
			return true
		}
		p.mu.RLock()
		kp := p.inner
		if kp == nil {
			p.mu.RUnlock()
			if _, err := p.ensure(); err != nil {
				p.failStaged(b, done, n, err)
				return true
			}
			continue
		}
		k, refused, err := kp.produceStaged(b, done, min(n, done+pushChunk))
		var kerr kafka.Error
		if errors.As(err, &kerr) && kerr.Code() == kafka.ErrFatal {
			// Under the lock: kp is not retired before onFatal saw it.
			if fe := kp.fatalError(); fe != nil {
				p.c.onFatal(p, kp, *fe)
			}
		}
		p.mu.RUnlock()
		if refused > 0 {
			for i := done; i < done+k; i++ {
				if rerr := b.refusal(i); rerr != nil {
					p.failStaged(b, i, i+1, rerr)
				}
			}
		}
		done += k
		switch {
		case err == nil:
			wait = 200 * time.Microsecond
		case errors.As(err, &kerr) && kerr.Code() == kafka.ErrQueueFull:
			if direct {
				b.pushed = done
				return false
			}
			p.waitSpace(wait, nil)
			wait = min(wait*2, 5*time.Millisecond)
		case errors.As(err, &kerr) && kerr.Code() == kafka.ErrFatal:
			// kp failed fatally: the rest goes to the producer that
			// replaces it (fatal.go), in moments; the drainer waits for it.
			if direct {
				b.pushed = done
				return false
			}
			p.waitSpace(wait, nil)
			wait = min(wait*2, 5*time.Millisecond)
		default:
			// Not a refusal produceStaged stops at: fail the message it
			// stopped at and go on.
			p.failStaged(b, done, done+1, err)
			done++
		}
	}
	return true
}

// failStaged fails messages from..to-1 of b, which never reached
// librdkafka: they are counted as failed and their callbacks (run on the
// poll goroutine, like every delivery callback) get err.
func (p *Producer) failStaged(b *stageBuf, from, to int, err error) {
	c := p.c
	n := to - from
	hs := make([]uintptr, n)
	ents := make([]cbEntry, n)
	topics := make([]string, n)
	var bytes int64
	for i := range n {
		var size int64
		hs[i], topics[i], size = b.msg(from + i)
		bytes += size
	}
	p.cbs.take(hs, ents)
	c.failed.Add(int64(n))
	c.setError(err)
	c.m.lim.Warn("staged-fail:"+c.name, "kafka message failed before reaching librdkafka",
		"connection", c.name, "topic", topics[0], "messages", n, "err", c.mask(err.Error()), "failed", c.failed.Load())
	c.m.poll.runLater(func() {
		for i, e := range ents {
			if e.cb != nil {
				c.m.callback(c, e.cb, Delivery{Topic: topics[i], Partition: kafka.PartitionAny, Offset: int64(kafka.OffsetInvalid),
					Err: err, Status: NotPersisted, Opaque: e.opaque})
			}
		}
		// After the callbacks ran, as for delivery reports.
		p.st.reported(int64(n), bytes)
		p.space.broadcast()
	})
}

// stopStage closes the stage: nothing more is accepted, what is staged is
// handed over within timeout or failed, and the drainer stops. It returns
// how many staged messages failed.
func (p *Producer) stopStage(timeout time.Duration) int {
	s := &p.st
	s.mu.Lock()
	s.closed = true
	running := s.running
	s.mu.Unlock()
	if !running {
		return 0
	}
	if !s.waitDrained(timeout) {
		s.abort.Store(true)
		p.space.broadcast()
		s.kick()
		s.waitDrained(time.Hour) // the drainer fails the rest at once
	}
	close(s.quit)
	<-s.done
	return int(s.aborted.Load())
}
