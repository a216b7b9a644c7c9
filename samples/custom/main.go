// Command custom is an example of switchboard as a library: a program of its
// own that registers two modules next to the built-ins and runs the same
// daemon as the switchboard binary (console, -r, -rx, signals, cli.conf,
// --check-config), with no daemon code of its own.
//
//	go run ./samples/custom -c -C samples/custom/conf -D /tmp/custom   # console
//	go run ./samples/custom -f -C samples/custom/conf -s /tmp/custom.ctl &
//	go run ./samples/custom -rx "hello say world" -s /tmp/custom.ctl
//
// The modules:
//
//   - hello_counter: "hello say [name]" greets and counts, "hello count"
//     shows the count. Its hello_counter.conf ([general] greeting = Hello)
//     is declared in its registration, so the host reads, validates and
//     reloads it; the module only reads core.Config. It requires the cdr
//     engine: every greeting is posted as a CDR, and the module is also a
//     CDR backend (the contract of package cdr) that counts the CDRs it
//     receives, by action, whoever posted them.
//   - hello_kafka: requires res_kafka and hello_counter. Every greeting is
//     produced to a Kafka topic through res_kafka, and a subscription reads
//     the topic back; "hello heard" shows what came back. Its
//     hello_kafka.conf names the connection and the topic.
//
// Nothing but Go and the repository's Debian libraries is needed to build
// it: no build tag, no environment variable.
package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/daemon"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"

	_ "github.com/switchboard-dp/switchboard/modules/all" // the built-in modules
)

// Module names.
const (
	HelloCounterName = "hello_counter"
	HelloKafkaName   = "hello_kafka"
)

func init() {
	core.Register(core.ModuleInfo{
		Name:        HelloCounterName,
		Description: "Example module: greets, counts greetings, posts and receives CDRs",
		Priority:    core.PriorityApplication,
		Requires:    []string{cdr.Name},
		Support:     core.SupportExtended,
		Configs:     []core.ConfigFile{{Name: "hello_counter.conf", New: func() any { return new(HelloConfig) }}},
		New:         func() core.Module { return new(HelloCounter) },
	})
	core.Register(core.ModuleInfo{
		Name:        HelloKafkaName,
		Description: "Example module: greetings to a Kafka topic and back",
		Priority:    core.PriorityApplication + 1,
		Requires:    []string{reskafka.Name, HelloCounterName},
		Support:     core.SupportExtended,
		Configs:     []core.ConfigFile{{Name: "hello_kafka.conf", New: func() any { return new(KafkaConfig) }}},
		New:         func() core.Module { return new(HelloKafka) },
	})
}

// options name the program; main is the whole daemon.
var options = daemon.Options{Name: "custom", Version: "custom-example", FallbackConfigDir: "samples/custom/conf"}

func main() { os.Exit(daemon.Main(options)) }

// HelloConfig is hello_counter.conf.
type HelloConfig struct {
	General struct {
		Greeting string `conf:"greeting" default:"Hello"`
	} `section:"general"`
}

// HelloCounter greets and counts. Others hear about each greeting through
// OnGreeting. It posts each greeting as a CDR and, as the CDR backend
// "hello", counts every CDR the engine hands it.
type HelloCounter struct {
	greeting  atomic.Pointer[string] // swapped whole by Reload
	greetings atomic.Int64

	mu        sync.Mutex
	listeners []func(text string)

	engine *cdr.Engine
	reg    *cdr.Registration
	st     *cdr.Stats
	byAct  [decision.NumActions]atomic.Int64 // CDRs received, by action
}

var (
	_ core.Starter   = (*HelloCounter)(nil)
	_ core.Stopper   = (*HelloCounter)(nil)
	_ core.Reloader  = (*HelloCounter)(nil)
	_ core.Commander = (*HelloCounter)(nil)
	_ cdr.Backend    = (*HelloCounter)(nil)
)

// Start takes the greeting from the decoded configuration and registers
// the CDR backend.
func (m *HelloCounter) Start(ctx *core.Context) error {
	if err := m.Reload(ctx); err != nil {
		return err
	}
	eng, err := core.Dep[*cdr.Engine](ctx, cdr.Name)
	if err != nil {
		return err
	}
	m.engine = eng
	m.reg, err = eng.Register(m)
	return err
}

// Stop unregisters the backend (the engine hands over what it still holds
// for it first).
func (m *HelloCounter) Stop(context.Context) error {
	m.reg.Unregister()
	return nil
}

// Name implements cdr.Backend.
func (m *HelloCounter) Name() string { return "hello" }

// Attach implements cdr.Backend: the counters every record must be
// accounted in.
func (m *HelloCounter) Attach(r *cdr.Registration) { m.st = r.Stats() }

// FlushAfter implements cdr.Backend: a batch older than this is handed over.
func (m *HelloCounter) FlushAfter() time.Duration { return 50 * time.Millisecond }

// NewBatcher implements cdr.Backend.
func (m *HelloCounter) NewBatcher() cdr.Batcher { return &helloBatch{m: m} }

// helloBatch keeps the actions of its records (nothing the Record points to).
type helloBatch struct {
	m    *HelloCounter
	acts []decision.Action
}

func (b *helloBatch) Add(r *cdr.Record) bool {
	b.acts = append(b.acts, r.Action)
	return len(b.acts) >= 64
}

func (b *helloBatch) Len() int { return len(b.acts) }

// Flush counts the batch: the destination is a counter, so every record is
// delivered at once, and each is accounted exactly once.
func (b *helloBatch) Flush() {
	for _, a := range b.acts {
		if a.Valid() {
			b.m.byAct[a].Add(1)
		}
	}
	b.m.st.AddDelivered(uint64(len(b.acts)))
	b.acts = b.acts[:0]
}

// Reload takes the new greeting (the host refused an invalid file before
// calling it); the count survives.
func (m *HelloCounter) Reload(ctx *core.Context) error {
	g := core.Config[*HelloConfig](ctx).General.Greeting
	m.greeting.Store(&g)
	return nil
}

// OnGreeting adds a function called with the text of every greeting.
func (m *HelloCounter) OnGreeting(f func(text string)) {
	m.mu.Lock()
	m.listeners = append(m.listeners, f)
	m.mu.Unlock()
}

func (m *HelloCounter) say(name string) string {
	text := fmt.Sprintf("%s, %s!", *m.greeting.Load(), name)
	m.greetings.Add(1)
	m.engine.Post(&cdr.Record{TS: time.Now().UnixMilli(), IP: netip.IPv6Loopback(), SubscriberID: "hello",
		Domain: []byte(name + ".hello.invalid"), QType: 1, Action: decision.Allow})
	m.mu.Lock()
	ls := m.listeners
	m.mu.Unlock()
	for _, f := range ls {
		f(text)
	}
	return text
}

// Commands implements core.Commander.
func (m *HelloCounter) Commands() []*cli.Command {
	return []*cli.Command{
		{Path: "hello say", Summary: "Greet someone (and count it)", Usage: "hello say [name]",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.MaxArgs(args, 1); err != nil {
					return err
				}
				name := "world"
				if len(args) == 1 {
					name = args[0]
				}
				_, err := fmt.Fprintln(w, m.say(name))
				return err
			},
			Complete: func(args []string, _ string) []string {
				if len(args) == 0 {
					return []string{"world", "switchboard"}
				}
				return nil
			}},
		{Path: "hello count", Summary: "Show how many greetings were made", Usage: "hello count",
			Run: func(_ context.Context, w io.Writer, args []string) error {
				if err := cli.NoArgs(args); err != nil {
					return err
				}
				_, err := fmt.Fprintf(w, "Greetings: %d\nCDRs received: allow %d, block %d, sinkhole %d\n", m.greetings.Load(),
					m.byAct[decision.Allow].Load(), m.byAct[decision.Block].Load(), m.byAct[decision.Sinkhole].Load())
				return err
			}},
	}
}

// KafkaConfig is hello_kafka.conf.
type KafkaConfig struct {
	General struct {
		Connection string `conf:"connection" default:"default"`
		Topic      string `conf:"topic" default:"greetings"`
	} `section:"general"`
}

// HelloKafka produces every greeting to a topic and reads the topic back.
type HelloKafka struct {
	producer *reskafka.Producer
	sub      *reskafka.Subscription
	topic    string

	produced, failed, heard atomic.Int64
	mu                      sync.Mutex
	last                    string
}

var (
	_ core.Starter   = (*HelloKafka)(nil)
	_ core.Stopper   = (*HelloKafka)(nil)
	_ core.Commander = (*HelloKafka)(nil)
)

// Start gets the producer of the configured connection, subscribes to the
// topic and hooks into hello_counter's greetings.
func (m *HelloKafka) Start(ctx *core.Context) error {
	cfg := core.Config[*KafkaConfig](ctx).General
	kafka, err := core.Dep[*reskafka.Module](ctx, reskafka.Name)
	if err != nil {
		return err
	}
	counter, err := core.Dep[*HelloCounter](ctx, HelloCounterName)
	if err != nil {
		return err
	}
	if m.producer, err = kafka.Producer(cfg.Connection); err != nil {
		return err
	}
	m.topic = cfg.Topic
	m.sub, err = kafka.Subscribe(cfg.Connection, []string{cfg.Topic}, func(_ context.Context, msg *reskafka.Message) error {
		m.heard.Add(1)
		m.mu.Lock()
		m.last = string(msg.Value)
		m.mu.Unlock()
		return nil
	}, reskafka.SubscribeOptions{Name: HelloKafkaName, GroupID: "hello-kafka", AutoOffsetReset: "earliest"})
	if err != nil {
		m.producer.Release()
		return err
	}
	counter.OnGreeting(m.publish)
	return nil
}

// publish produces one greeting; the outcome is counted when its delivery
// report arrives.
func (m *HelloKafka) publish(text string) {
	err := m.producer.Produce(m.topic, nil, []byte(text), nil, func(d reskafka.Delivery) {
		if d.Err != nil {
			m.failed.Add(1)
			return
		}
		m.produced.Add(1)
	})
	if err != nil {
		m.failed.Add(1)
	}
}

// Stop leaves the consumer group (returning by ctx's deadline) and gives
// the producer back.
func (m *HelloKafka) Stop(ctx context.Context) error {
	err := core.Within(ctx, m.sub.Close)
	m.producer.Release()
	return err
}

// Commands implements core.Commander.
func (m *HelloKafka) Commands() []*cli.Command {
	return []*cli.Command{{Path: "hello heard", Summary: "Show the greetings read back from Kafka", Usage: "hello heard",
		Run: func(_ context.Context, w io.Writer, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			m.mu.Lock()
			last := m.last
			m.mu.Unlock()
			_, err := fmt.Fprintf(w, "Topic %s: produced %d, failed %d, heard back %d (last %q)\n",
				m.topic, m.produced.Load(), m.failed.Load(), m.heard.Load(), last)
			return err
		}}}
}
