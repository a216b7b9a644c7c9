package reskafka

import (
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// poller is res_kafka's one poll goroutine. It serves the event queue of
// every res_kafka producer (delivery reports, errors, statistics, log
// lines; see rdk.go) and the log channel the confluent-kafka-go consumers
// and admin clients share, calls delivery callbacks, and keeps the
// connections' state and counters. While events flow it drains without
// sleeping; when idle it blocks until librdkafka signals a queue that
// became non-empty (through a pipe), work is queued (runLater, do), a log
// line arrives, or a once-a-second safety-net pass (the poll interval when
// there is no pipe).
type poller struct {
	m        *Module
	interval time.Duration
	logs     chan kafka.LogEvent

	mu      sync.Mutex
	clients map[*rdProducer]pollClient
	changed bool
	later   []func() // run on the poll goroutine (see runLater)

	pipeR *os.File // read by a goroutine that kicks the poller
	pipeW int      // librdkafka queues write here when they become non-empty

	wake chan struct{}
	stop chan struct{}
	done chan struct{}
}

func newPoller(m *Module, interval time.Duration) *poller {
	p := &poller{
		m: m, interval: interval,
		logs:    make(chan kafka.LogEvent, 4096),
		clients: map[*rdProducer]pollClient{},
		pipeW:   -1,
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err == nil {
		p.pipeR, p.pipeW = os.NewFile(uintptr(fds[0]), "reskafka-wake"), fds[1]
	} else {
		m.logger.Warn("no wake-up pipe for the kafka poll goroutine; delivery reports wait for the poll interval", "err", err)
	}
	return p
}

// wakeFd is the descriptor librdkafka writes to when a queue the poller
// serves becomes non-empty (-1: none).
func (p *poller) wakeFd() int { return p.pipeW }

// kick wakes the poll goroutine at once.
func (p *poller) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// add starts serving a producer's events.
func (p *poller) add(kp *rdProducer, h *Producer, c *conn) {
	p.mu.Lock()
	p.clients[kp] = pollClient{kp, h, c}
	p.changed = true
	p.mu.Unlock()
	p.kick()
}

// remove stops serving a producer's events; when it returns the poll
// goroutine no longer reads them, so the caller may drain them itself.
func (p *poller) remove(kp *rdProducer) {
	p.mu.Lock()
	delete(p.clients, kp)
	p.changed = true
	p.mu.Unlock()
	p.do(func() {})
}

// runLater has f run on the poll goroutine without waiting for it (safe to
// call from the poll goroutine itself, e.g. from a delivery callback).
func (p *poller) runLater(f func()) {
	p.mu.Lock()
	p.later = append(p.later, f)
	p.mu.Unlock()
	p.kick()
}

// runPending runs what runLater queued (poll goroutine, or the stopping
// goroutine once it has exited).
func (p *poller) runPending() int {
	p.mu.Lock()
	fs := p.later
	p.later = nil
	p.mu.Unlock()
	for _, f := range fs {
		f()
	}
	return len(fs)
}

// do runs f on the poll goroutine after what runLater queued before it, and
// waits for it (or runs it here when the goroutine has stopped).
func (p *poller) do(f func()) {
	done := make(chan struct{})
	p.runLater(func() { f(); close(done) })
	select {
	case <-done:
	case <-p.done:
		p.runPending() // unless the stopping goroutine runs it already
		<-done
	}
}

func (p *poller) start() {
	if p.pipeR != nil {
		go func() {
			var buf [64]byte
			for {
				if _, err := p.pipeR.Read(buf[:]); err != nil {
					return
				}
				p.kick()
			}
		}()
	}
	go p.run()
}

// shutdown stops the poll goroutine; every producer must be destroyed.
func (p *poller) shutdown() {
	close(p.stop)
	<-p.done
	p.runPending()
	if p.pipeR != nil {
		_ = syscall.Close(p.pipeW)
		p.pipeR.Close()
	}
}

type pollClient struct {
	kp *rdProducer
	p  *Producer
	c  *conn
}

// idleCheck is how often an idle poll goroutine looks at the queues
// anyway when librdkafka signals them through the pipe (a safety net: the
// pipe is written whenever a queue becomes non-empty).
const idleCheck = time.Second

func (p *poller) run() {
	defer close(p.done)
	period := p.interval
	if p.pipeR != nil {
		period = max(period, idleCheck)
	}
	ticker := time.NewTicker(period)
	defer ticker.Stop()
	var clients []pollClient
	for {
		p.mu.Lock()
		if p.changed {
			clients = clients[:0]
			for _, cl := range p.clients {
				clients = append(clients, cl)
			}
			p.changed = false
		}
		p.mu.Unlock()
		// Drain without blocking while there is work.
		n := p.runPending()
		for _, cl := range clients {
			n += cl.c.serve(cl.p, cl.kp, 64)
		}
	logs:
		for i := 0; i < 1000; i++ {
			select {
			case le := <-p.logs:
				p.m.handleLog(le)
				n++
			default:
				break logs
			}
		}
		select {
		case <-p.stop:
			return
		default:
		}
		if n > 0 {
			continue
		}
		// Idle: block until something happens.
		select {
		case <-p.stop:
			return
		case <-p.wake:
		case <-ticker.C:
		case le := <-p.logs:
			p.m.handleLog(le)
		}
	}
}

// handleLog forwards one librdkafka log line into slog, rate-limited per
// connection and tag; fatal lines (syslog level 0-2) are always logged,
// except librdkafka's "FATAL" line for a fatal error, which is debug (the
// error event is logged instead, see conn.onFatal and handleClientError).
func (m *Module) handleLog(le kafka.LogEvent) {
	c := m.connByClient(le.Name)
	conn := "?"
	msg := le.Message
	if c != nil {
		conn = c.name
		msg = c.mask(msg)
	}
	m.logLines.Add(1)
	level := slog.LevelDebug
	switch {
	case le.Level <= 3:
		level = slog.LevelError
	case le.Level == 4:
		level = slog.LevelWarn
	case le.Level <= 6:
		level = slog.LevelInfo
	}
	args := []any{"connection", conn, "client", le.Name, "tag", le.Tag}
	if le.Tag == "FATAL" {
		// librdkafka's own line for a fatal error: res_kafka logs the
		// error event once, with the connection and what it does about it.
		level = slog.LevelDebug
	}
	if le.Level <= 2 && level != slog.LevelDebug {
		m.logger.Log(m.ctx, level, "librdkafka: "+msg, args...)
		return
	}
	m.lim.Log(level, "rdlog:"+conn+":"+le.Tag, "librdkafka: "+msg, args...)
}
