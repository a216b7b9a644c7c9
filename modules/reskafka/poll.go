package reskafka

import (
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// poller is res_kafka's one poll goroutine. confluent-kafka-go runs
// librdkafka's rd_kafka_poll inside each client and forwards delivery
// reports, errors and statistics to a Go channel per producer, and logs to
// one shared channel; the poll goroutine drains all of them (it must: a full
// channel stalls librdkafka), calls delivery callbacks, and keeps the
// connections' state and counters. While events flow it drains without
// sleeping; when idle it blocks on every channel at once and wakes at least
// every poll interval for housekeeping.
type poller struct {
	m        *Module
	interval time.Duration
	logs     chan kafka.LogEvent

	mu      sync.Mutex
	clients map[*kafka.Producer]*conn
	changed bool

	wake chan struct{}
	reqs chan func()
	stop chan struct{}
	done chan struct{}
}

func newPoller(m *Module, interval time.Duration) *poller {
	return &poller{
		m: m, interval: interval,
		logs:    make(chan kafka.LogEvent, 4096),
		clients: map[*kafka.Producer]*conn{},
		wake:    make(chan struct{}, 1),
		reqs:    make(chan func()),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
}

// kick wakes the poll goroutine at once.
func (p *poller) kick() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// add starts serving a producer's events.
func (p *poller) add(kp *kafka.Producer, c *conn) {
	p.mu.Lock()
	p.clients[kp] = c
	p.changed = true
	p.mu.Unlock()
	p.kick()
}

// remove stops serving a producer's events; when it returns the poll
// goroutine no longer reads them, so the caller may drain them itself.
func (p *poller) remove(kp *kafka.Producer) {
	p.mu.Lock()
	delete(p.clients, kp)
	p.changed = true
	p.mu.Unlock()
	p.do(func() {})
}

// do runs f on the poll goroutine and waits for it (or runs it here when the
// goroutine has stopped).
func (p *poller) do(f func()) {
	done := make(chan struct{})
	select {
	case p.reqs <- func() { f(); close(done) }:
		<-done
	case <-p.done:
		f()
	}
}

func (p *poller) start() { go p.run() }

func (p *poller) shutdown() {
	close(p.stop)
	<-p.done
}

type pollClient struct {
	kp *kafka.Producer
	c  *conn
}

func (p *poller) run() {
	defer close(p.done)
	ticker := time.NewTicker(p.interval)
	defer ticker.Stop()
	var clients []pollClient
	var cases []reflect.SelectCase
	const fixed = 5 // stop, reqs, wake, ticker, logs
	rebuild := func() {
		p.mu.Lock()
		clients = clients[:0]
		for kp, c := range p.clients {
			clients = append(clients, pollClient{kp, c})
		}
		p.changed = false
		p.mu.Unlock()
		cases = append(cases[:0],
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(p.stop)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(p.reqs)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(p.wake)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ticker.C)},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(p.logs)},
		)
		for _, cl := range clients {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(cl.kp.Events())})
		}
	}
	rebuild()
	lastHousekeeping := time.Now()
	for {
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		if changed {
			rebuild()
		}
		// Drain without blocking while there is work.
		n := 0
		for _, cl := range clients {
		drain:
			for i := 0; i < 10000; i++ {
				select {
				case ev, ok := <-cl.kp.Events():
					if !ok {
						break drain
					}
					cl.c.handleProducerEvent(ev)
					n++
				default:
					break drain
				}
			}
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
		case f := <-p.reqs:
			f()
			continue
		default:
		}
		if time.Since(lastHousekeeping) >= p.interval {
			lastHousekeeping = time.Now()
			p.m.housekeeping()
		}
		if n > 0 {
			continue
		}
		// Idle: block on everything at once.
		chosen, v, ok := reflect.Select(cases)
		switch {
		case chosen == 0:
			return
		case chosen == 1:
			v.Interface().(func())()
		case chosen == 2, chosen == 3:
		case chosen == 4:
			p.m.handleLog(v.Interface().(kafka.LogEvent))
		default:
			cl := clients[chosen-fixed]
			if !ok {
				// Closed under us: stop watching it.
				p.mu.Lock()
				delete(p.clients, cl.kp)
				p.changed = true
				p.mu.Unlock()
				continue
			}
			cl.c.handleProducerEvent(v.Interface().(kafka.Event))
		}
	}
}

// handleLog forwards one librdkafka log line into slog, rate-limited per
// connection and tag; fatal lines (syslog level 0-2) are always logged.
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
	if le.Level <= 2 {
		m.logger.Log(m.ctx, level, "librdkafka: "+msg, args...)
		return
	}
	m.lim.Log(level, "rdlog:"+conn+":"+le.Tag, "librdkafka: "+msg, args...)
}
