// Package pktengine is the pkt_engine module, switchboard's DNS data plane:
// it reads packets from capture files or live interfaces (gopacket), decodes
// DNS queries without allocating (package dnsdecode), maps each query's
// source address to a subscriber and policy group (package subscribers),
// asks res_policy for a decision and posts one CDR per decision to the cdr
// engine.
//
// Readers (one per source) decode and hand queries, hashed by subscriber
// address, in batches to N workers; each worker owns its res_policy matcher
// (Hyperscan scratch) and its cdr.Poster, so one subscriber's CDRs keep their
// order and the hot path takes no shared lock.
package pktengine

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/dataplane"
	"github.com/switchboard-dp/switchboard/modules/dataplane/subscribers"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// Name is the module's name.
const Name = "pkt_engine"

// ConfigFile is the module's configuration file.
const ConfigFile = "pkt_engine.conf"

// Info returns the module's registration.
func Info() core.ModuleInfo {
	return core.ModuleInfo{
		Name:        Name,
		Description: "DNS data plane: capture (pcap file, live), zero-alloc decode, subscriber lookup, policy decision, CDR",
		Priority:    core.PriorityApplication,
		Requires:    []string{respolicy.Name, cdr.Name},
		Support:     core.SupportCore,
		Configs:     []core.ConfigFile{{Name: ConfigFile, New: func() any { return new(Config) }}},
		New:         func() core.Module { return new(Module) },
	}
}

func init() { core.Register(Info()) }

// General is the [general] section of pkt_engine.conf.
type General struct {
	Source      string        `conf:"source"`
	Speed       float64       `conf:"speed" default:"0" min:"0" max:"1000000"`
	Workers     int           `conf:"workers" default:"0" min:"0" max:"1024"`
	Batch       int           `conf:"batch" default:"256" min:"1" max:"65536"`
	Queue       int           `conf:"queue" default:"16" min:"1" max:"4096"`
	FlushAfter  time.Duration `conf:"flush_after" default:"5ms" min:"100us" max:"1s"`
	DNSPorts    []string      `conf:"dns_ports" default:"53"`
	CDRActions  []string      `conf:"cdr_actions" default:"allow,block,sinkhole"`
	Subscribers string        `conf:"subscribers" default:"subscribers.conf"`
}

// Live is the [live] section of pkt_engine.conf.
type Live struct {
	Snaplen    int           `conf:"snaplen" default:"65535" min:"64" max:"262144"`
	Promisc    bool          `conf:"promisc" default:"no"`
	Filter     string        `conf:"filter"`
	BufferSize int           `conf:"buffer_size" default:"0" min:"0"`
	Timeout    time.Duration `conf:"timeout" default:"50ms" min:"1ms" max:"10s"`
}

// Config is the decoded pkt_engine.conf.
type Config struct {
	General General `section:"general"`
	Live    Live    `section:"live"`
	// Ports are the parsed dns_ports.
	Ports []uint16
	// CDRSet is the parsed cdr_actions.
	CDRSet decision.ActionSet
}

// LiveOptions returns the live capture options of the config.
func (c *Config) LiveOptions() LiveOptions {
	f := c.Live.Filter
	if f == "" {
		f = DefaultFilter(c.Ports)
	}
	return LiveOptions{Snaplen: c.Live.Snaplen, Promisc: c.Live.Promisc, Filter: f, BufferSize: c.Live.BufferSize, Timeout: c.Live.Timeout,
		Fanout: c.General.Workers}
}

// Validate parses dns_ports and cdr_actions and checks source.
func (c *Config) Validate(f *conf.File) error {
	var errs conf.Errors
	c.Ports, c.CDRSet = nil, 0
	for _, p := range conf.SplitList(c.General.DNSPorts) {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			errs.At(f, "general", "dns_ports", "bad port %q", p)
			continue
		}
		c.Ports = append(c.Ports, uint16(n))
	}
	var bad []string
	c.CDRSet, bad = dataplane.ParseCDRActions(c.General.CDRActions)
	for _, msg := range bad {
		errs.At(f, "general", "cdr_actions", "%s", msg)
	}
	if src := c.General.Source; src != "" {
		kind, arg, ok := strings.Cut(src, ":")
		if !ok || arg == "" || (kind != "pcap" && kind != "file" && kind != "live" && kind != "afpacket") {
			errs.At(f, "general", "source", "source %q: want pcap:<file>, live:<interface> or afpacket:<interface>", src)
		}
	}
	return errs.Err()
}

// Module is the pkt_engine module.
type Module struct {
	mu       sync.Mutex
	cfg      *Config
	subs     *subscribers.Table // read from cfg.General.Subscribers
	subsNote string             // where subs came from (for the log)
	engine   *Engine
	cfgSrc   int // id of the source started from the config, 0 if none
	ctx      *core.Context
	policy   *respolicy.Module
	cdrEng   *cdr.Engine
	started  time.Time
}

var (
	_ core.Configurer = (*Module)(nil)
	_ core.Starter    = (*Module)(nil)
	_ core.Stopper    = (*Module)(nil)
	_ core.Reloader   = (*Module)(nil)
	_ core.Commander  = (*Module)(nil)
)

// Configure reads the subscriber table pkt_engine.conf names (relative to
// the configuration directory).
func (m *Module) Configure(ctx *core.Context) error {
	cfg := core.Config[*Config](ctx)
	t, note, err := dataplane.LoadSubscribers(ctx.ConfigPath(cfg.General.Subscribers))
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.cfg, m.subs, m.subsNote = cfg, t, note
	m.mu.Unlock()
	return nil
}

// Start starts the workers (each with its res_policy matcher and CDR
// poster) and the configured source.
func (m *Module) Start(ctx *core.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg := m.cfg
	pol, err := core.Dep[*respolicy.Module](ctx, respolicy.Name)
	if err != nil {
		return err
	}
	eng, err := core.Dep[*cdr.Engine](ctx, cdr.Name)
	if err != nil {
		return err
	}
	e, err := New(EngineOptions{
		Workers:     cfg.General.Workers,
		Batch:       cfg.General.Batch,
		Queue:       cfg.General.Queue,
		FlushAfter:  cfg.General.FlushAfter,
		Ports:       cfg.Ports,
		NewDecider:  func() dataplane.Decider { return dataplane.NewPolicyDecider(pol.NewMatcher()) },
		NewPoster:   func() dataplane.Poster { return eng.NewPoster() },
		Subscribers: subscribers.NewHolder(m.subs),
		CDRActions:  cfg.CDRSet,
		Logger:      ctx.Logger,
	})
	if err != nil {
		return err
	}
	ctx.Logger.Info("subscribers loaded", "table", m.subsNote)
	m.ctx, m.policy, m.cdrEng, m.engine, m.started = ctx, pol, eng, e, time.Now()
	if cfg.General.Source != "" {
		id, err := m.startSource(cfg.General.Source, cfg.General.Speed, cfg)
		if err != nil {
			e.Close(context.Background())
			m.engine = nil
			return err
		}
		m.cfgSrc = id
	}
	ctx.Logger.Info("packet engine started", "workers", e.Workers(), "source", cfg.General.Source, "cdr_actions", cfg.CDRSet.String())
	return nil
}

func (m *Module) startSource(spec string, speed float64, cfg *Config) (int, error) {
	src, err := OpenSource(spec, cfg.LiveOptions())
	if err != nil {
		return 0, err
	}
	return m.engine.Start(src, speed)
}

// Stop stops the sources, lets the workers drain and closes matchers and
// CDR posters (which hands their batches to the CDR backends).
func (m *Module) Stop(ctx context.Context) error {
	m.mu.Lock()
	e := m.engine
	m.mu.Unlock()
	if e == nil {
		return nil
	}
	return e.Close(ctx)
}

// Reload re-reads pkt_engine.conf and subscribers.conf. The subscriber
// table and cdr_actions are swapped without stopping traffic; a changed
// source or speed restarts the configured source. workers, batch, queue and
// dns_ports take effect at the next start. An invalid configuration keeps
// the old one.
func (m *Module) Reload(ctx *core.Context) error {
	next := *core.Config[*Config](ctx)
	cfg := &next
	t, note, err := dataplane.LoadSubscribers(ctx.ConfigPath(cfg.General.Subscribers))
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, e := m.cfg, m.engine
	m.subs, m.subsNote = t, note
	if e == nil {
		m.cfg = cfg
		return nil
	}
	prev := e.Subscribers().Swap(t)
	e.SetCDRActions(cfg.CDRSet)
	ctx.Logger.Info("subscribers reloaded", "table", note, "previous_prefixes", prev.Prefixes())
	if old.General.Workers != cfg.General.Workers || old.General.Batch != cfg.General.Batch || old.General.Queue != cfg.General.Queue ||
		strings.Join(old.General.DNSPorts, ",") != strings.Join(cfg.General.DNSPorts, ",") {
		ctx.Logger.Warn("workers, batch, queue and dns_ports changes take effect when pkt_engine is restarted")
		cfg.General.Workers, cfg.General.Batch, cfg.General.Queue = old.General.Workers, old.General.Batch, old.General.Queue
		cfg.General.DNSPorts, cfg.Ports = old.General.DNSPorts, old.Ports
	}
	if old.General.Source != cfg.General.Source || old.General.Speed != cfg.General.Speed || old.Live != cfg.Live {
		if m.cfgSrc != 0 {
			stopCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			e.StopSource(stopCtx, m.cfgSrc)
			cancel()
			m.cfgSrc = 0
		}
		if cfg.General.Source != "" {
			id, err := m.startSource(cfg.General.Source, cfg.General.Speed, cfg)
			if err != nil {
				m.cfg = cfg
				return fmt.Errorf("starting source %s: %w", cfg.General.Source, err)
			}
			m.cfgSrc = id
		}
	}
	m.cfg = cfg
	return nil
}

// Engine returns the running engine (nil before Start).
func (m *Module) Engine() *Engine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.engine
}

// Commands implements core.Commander.
func (m *Module) Commands() []*cli.Command { return m.commands() }
