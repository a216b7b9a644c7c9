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
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/pktengine/subscribers"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
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
		Requires:    []string{"res_policy", "cdr"},
		Support:     core.SupportCore,
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

// Config is the decoded pkt_engine.conf plus the subscriber table it names.
type Config struct {
	General General
	Live    Live
	// Ports are the parsed dns_ports.
	Ports []uint16
	// CDRSet is the parsed cdr_actions.
	CDRSet ActionSet
	// Subscribers is the table read from General.Subscribers.
	Subscribers *subscribers.Table
	// SubscribersNote says where the table came from (for the log).
	SubscribersNote string
}

// LiveOptions returns the live capture options of the config.
func (c *Config) LiveOptions() LiveOptions {
	f := c.Live.Filter
	if f == "" {
		f = DefaultFilter(c.Ports)
	}
	return LiveOptions{Snaplen: c.Live.Snaplen, Promisc: c.Live.Promisc, Filter: f, BufferSize: c.Live.BufferSize, Timeout: c.Live.Timeout}
}

// splitList splits repeated and comma-separated values.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}

// DecodeConfig decodes a parsed pkt_engine.conf (f may be nil: defaults).
// The subscriber file is not read here (see LoadSubscribers).
func DecodeConfig(f *conf.File) (*Config, error) {
	cfg := &Config{}
	var errs conf.Errors
	gen, live := f.Section("general"), f.Section("live")
	for _, name := range f.Names() {
		if name != "general" && name != "live" {
			s := f.Section(name)
			errs.Addf(s.File, s.Line, name, "", "unknown section [%s] (want [general] or [live])", name)
		}
	}
	addErr := func(err error) {
		var ce conf.Errors
		if errors.As(err, &ce) {
			errs = append(errs, ce...)
		} else if err != nil {
			errs.Addf("", 0, "", "", "%v", err)
		}
	}
	addErr(conf.Decode(gen, &cfg.General))
	addErr(conf.Decode(live, &cfg.Live))
	if len(errs) > 0 {
		return nil, errs.Err()
	}
	keyOf := func(name string) *conf.Key { return gen.Key(name) }
	for _, p := range splitList(cfg.General.DNSPorts) {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			errs.Add(gen, keyOf("dns_ports"), "bad port %q", p)
			continue
		}
		cfg.Ports = append(cfg.Ports, uint16(n))
	}
	for _, a := range splitList(cfg.General.CDRActions) {
		if a == "none" {
			continue
		}
		act, err := ParseAction(strings.ToLower(a))
		if err != nil {
			errs.Add(gen, keyOf("cdr_actions"), "%v", err)
			continue
		}
		cfg.CDRSet |= 1 << act
	}
	if src := cfg.General.Source; src != "" {
		kind, arg, ok := strings.Cut(src, ":")
		if !ok || arg == "" || (kind != "pcap" && kind != "file" && kind != "live") {
			errs.Add(gen, keyOf("source"), "source %q: want pcap:<file> or live:<interface>", src)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// LoadSubscribers reads the subscriber table named by the config (relative
// to dir). A missing file gives the default-only table.
func (c *Config) LoadSubscribers(path string) error {
	t, err := subscribers.Load(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		t, _ = subscribers.Build(&subscribers.Subscriber{ID: "unknown", Group: "default"}, nil)
		c.SubscribersNote = fmt.Sprintf("%s not found: every address is subscriber \"unknown\" in group \"default\"", path)
	case err != nil:
		return err
	default:
		c.SubscribersNote = fmt.Sprintf("%s: %d prefixes, %d subscribers, groups %s", path, t.Prefixes(), t.Subscribers(), strings.Join(t.Groups(), ","))
	}
	c.Subscribers = t
	return nil
}

// Module is the pkt_engine module.
type Module struct {
	mu      sync.Mutex
	cfg     *Config
	engine  *Engine
	cfgSrc  int // id of the source started from the config, 0 if none
	ctx     *core.Context
	policy  *respolicy.Module
	cdrEng  *cdr.Engine
	started time.Time
}

var (
	_ core.Configurer = (*Module)(nil)
	_ core.Starter    = (*Module)(nil)
	_ core.Stopper    = (*Module)(nil)
	_ core.Reloader   = (*Module)(nil)
	_ core.Commander  = (*Module)(nil)
)

// Info implements core.Module.
func (m *Module) Info() core.ModuleInfo { return Info() }

func (m *Module) loadConfig(ctx *core.Context) (*Config, error) {
	f, err := ctx.LoadConfig(ConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		ctx.Logger.Info("no " + ConfigFile + ": running on defaults (no source until \"packet replay\")")
		f, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	cfg, err := DecodeConfig(f)
	if err != nil {
		return nil, err
	}
	if err := cfg.LoadSubscribers(ctx.ConfigPath(cfg.General.Subscribers)); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Configure decodes and validates pkt_engine.conf and subscribers.conf.
func (m *Module) Configure(ctx *core.Context) error {
	cfg, err := m.loadConfig(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.cfg = cfg
	m.mu.Unlock()
	return nil
}

// Start borrows res_policy and cdr, starts the workers and the configured
// source.
func (m *Module) Start(ctx *core.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg := m.cfg
	pol, err := core.Borrow[*respolicy.Module](ctx, "res_policy")
	if err != nil {
		return fmt.Errorf("borrowing res_policy: %w", err)
	}
	eng, err := core.Borrow[*cdr.Engine](ctx, "cdr")
	if err != nil {
		return fmt.Errorf("borrowing cdr: %w", err)
	}
	e, err := New(EngineOptions{
		Workers:     cfg.General.Workers,
		Batch:       cfg.General.Batch,
		Queue:       cfg.General.Queue,
		FlushAfter:  cfg.General.FlushAfter,
		Ports:       cfg.Ports,
		NewDecider:  func() Decider { return NewPolicyDecider(pol.NewMatcher()) },
		NewPoster:   func() Poster { return eng.NewPoster() },
		Subscribers: subscribers.NewHolder(cfg.Subscribers),
		CDRActions:  cfg.CDRSet,
		Logger:      ctx.Logger,
	})
	if err != nil {
		return err
	}
	ctx.Logger.Info("subscribers loaded", "table", cfg.SubscribersNote)
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
	cfg, err := m.loadConfig(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, e := m.cfg, m.engine
	if e == nil {
		m.cfg = cfg
		return nil
	}
	prev := e.Subscribers().Swap(cfg.Subscribers)
	e.SetCDRActions(cfg.CDRSet)
	ctx.Logger.Info("subscribers reloaded", "table", cfg.SubscribersNote, "previous_prefixes", prev.Prefixes())
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

// policyDecider adapts a res_policy Matcher to Decider.
type policyDecider struct {
	mt  *respolicy.Matcher
	out []respolicy.Decision
}

// NewPolicyDecider wraps a res_policy matcher (one per worker).
func NewPolicyDecider(mt *respolicy.Matcher) Decider { return &policyDecider{mt: mt} }

func (p *policyDecider) DecideBurst(groups []string, qnames [][]byte, out []Decision) {
	n := len(qnames)
	if cap(p.out) < n {
		p.out = make([]respolicy.Decision, n)
	}
	o := p.out[:n]
	p.mt.DecideBurst(groups, qnames, o)
	for i := range o {
		a := ActionAllow
		switch o[i].Action {
		case respolicy.ActionBlock:
			a = ActionBlock
		case respolicy.ActionSinkhole:
			a = ActionSinkhole
		}
		out[i] = Decision{Action: a, Group: o[i].Group, Category: o[i].Category}
	}
}

func (p *policyDecider) Close() { p.mt.Close() }

// Commands implements core.Commander.
func (m *Module) Commands() []*cli.Command { return m.commands() }
