// Package dnsfirewall is the dns_firewall module: an inline DNS firewall.
// It serves DNS over UDP and TCP on the configured addresses, several UDP
// sockets per address with SO_REUSEPORT (one worker each, reading and
// writing with recvmmsg / sendmmsg), and sends every query down the
// decision path pkt_engine uses (package dataplane: subscriber, res_policy
// decision, one CDR per decision). Then it acts: a blocked query gets the
// answer [block] configures (NXDOMAIN by default), a sinkholed A / AAAA
// query the sinkhole address, and an allowed query is forwarded to the
// upstream resolvers, whose answer is relayed unchanged.
//
// It is not an open resolver: sources outside the subscriber prefixes are
// refused (or dropped) unless unknown_clients = allow. Everything that is
// not answered normally is counted by kind and shown by "dns show status"
// and the metrics.
package dnsfirewall

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/dataplane"
	"github.com/switchboard-dp/switchboard/modules/dataplane/subscribers"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
)

// Name is the module's name.
const Name = "dns_firewall"

// ConfigFile is the module's configuration file.
const ConfigFile = "dns_firewall.conf"

// Info returns the module's registration.
func Info() core.ModuleInfo {
	return core.ModuleInfo{
		Name:        Name,
		Description: "Inline DNS firewall: answers blocked and sinkholed queries, forwards the rest to upstream resolvers",
		Priority:    core.PriorityApplication,
		Requires:    []string{respolicy.Name, cdr.Name},
		Support:     core.SupportCore,
		Configs:     []core.ConfigFile{{Name: ConfigFile, New: func() any { return new(Config) }}},
		New:         func() core.Module { return new(Module) },
	}
}

func init() { core.Register(Info()) }

// Module is the dns_firewall module.
type Module struct {
	mu   sync.Mutex
	cfg  *Config
	subs *subscribers.Table
	note string
	fw   *Firewall
}

var (
	_ core.Configurer = (*Module)(nil)
	_ core.Starter    = (*Module)(nil)
	_ core.Stopper    = (*Module)(nil)
	_ core.Reloader   = (*Module)(nil)
	_ core.Commander  = (*Module)(nil)
)

// Configure reads the subscriber table dns_firewall.conf names.
func (m *Module) Configure(ctx *core.Context) error {
	cfg := core.Config[*Config](ctx)
	t, note, err := loadSubscribers(ctx, cfg)
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.cfg, m.subs, m.note = cfg, t, note
	m.mu.Unlock()
	return nil
}

func loadSubscribers(ctx *core.Context, cfg *Config) (*subscribers.Table, string, error) {
	path := ctx.ConfigPath(cfg.General.Subscribers)
	t, note, err := dataplane.LoadSubscribers(path)
	if err != nil {
		return nil, "", err
	}
	if len(cfg.Addrs) > 0 && cfg.General.UnknownClients != "allow" && t.Prefixes() == 0 {
		ctx.Logger.Warn("no subscriber prefixes: every query will be " + cfg.General.UnknownClients + "d (unknown_clients)")
	}
	return t, note, nil
}

// newSettings builds the reloadable part of the configuration.
func newSettings(cfg *Config) *settings {
	s := &settings{
		answers:    cfg.Answers,
		roundrobin: cfg.Upstream.Policy == "roundrobin",
		timeout:    cfg.Upstream.Timeout,
		retries:    cfg.Upstream.Retries,
		downAfter:  int32(cfg.Upstream.DownAfter),
		probe:      cfg.Upstream.ProbeInterval,
	}
	for _, ap := range cfg.Servers {
		s.upstreams = append(s.upstreams, newUpstream(ap))
	}
	return s
}

// Start opens the sockets and serves.
func (m *Module) Start(ctx *core.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg := m.cfg
	if len(cfg.Addrs) == 0 {
		ctx.Logger.Info("no listen address in " + ConfigFile + ": not serving")
		return nil
	}
	pol, err := core.Dep[*respolicy.Module](ctx, respolicy.Name)
	if err != nil {
		return err
	}
	eng, err := core.Dep[*cdr.Engine](ctx, cdr.Name)
	if err != nil {
		return err
	}
	fw, err := New(Options{
		Addrs:       cfg.Addrs,
		Workers:     cfg.General.Workers,
		TCP:         cfg.General.TCP,
		Batch:       cfg.General.Batch,
		Unknown:     cfg.General.UnknownClients,
		RateLimit:   cfg.General.RateLimit,
		RateBurst:   cfg.General.RateBurst,
		TCPIdle:     cfg.General.TCPIdle,
		TCPMaxConns: cfg.General.TCPMaxConns,
		MaxInflight: cfg.Upstream.MaxInflight,
		Shared:      dataplane.NewShared(subscribers.NewHolder(m.subs), cfg.CDRSet),
		NewDecider:  func() dataplane.Decider { return dataplane.NewPolicyDecider(pol.NewMatcher()) },
		NewPoster:   func() dataplane.Poster { return eng.NewPoster() },
		Logger:      ctx.Logger,
	}, newSettings(cfg))
	if err != nil {
		return err
	}
	m.fw = fw
	var addrs []string
	for _, s := range fw.Addrs() {
		addrs = append(addrs, s.Proto+"/"+s.Addr.String())
	}
	ctx.Logger.Info("serving DNS", "sockets", len(addrs), "addresses", slices.Compact(addrs), "upstreams", len(cfg.Servers), "subscribers", m.note)
	return nil
}

// Stop closes the sockets and the decision paths.
func (m *Module) Stop(ctx context.Context) error {
	m.mu.Lock()
	fw := m.fw
	m.fw = nil
	m.mu.Unlock()
	if fw == nil {
		return nil
	}
	return fw.Close(ctx)
}

// Reload re-reads dns_firewall.conf and subscribers.conf: upstreams,
// answers, the subscriber table and cdr_actions change while the sockets
// stay open. listen, workers, tcp, batch and the limits take effect at the
// next start.
func (m *Module) Reload(ctx *core.Context) error {
	next := *core.Config[*Config](ctx)
	cfg := &next
	t, note, err := loadSubscribers(ctx, cfg)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old, fw := m.cfg, m.fw
	m.subs, m.note = t, note
	if fw == nil {
		m.cfg = cfg
		return nil
	}
	if !slices.Equal(old.Addrs, cfg.Addrs) || !sameSockets(old, cfg) || old.Upstream.MaxInflight != cfg.Upstream.MaxInflight {
		ctx.Logger.Warn("listen, workers, tcp, batch, unknown_clients, rate limits and max_inflight take effect when dns_firewall is restarted")
		cfg.General, cfg.Addrs, cfg.Upstream.MaxInflight = old.General, old.Addrs, old.Upstream.MaxInflight
	}
	fw.opts.Shared.Subscribers().Swap(t)
	fw.opts.Shared.SetCDRActions(cfg.CDRSet)
	fw.Swap(newSettings(cfg))
	m.cfg = cfg
	ctx.Logger.Info("reloaded", "upstreams", len(cfg.Servers), "block_answer", cfg.Block.Answer, "subscribers", note)
	return nil
}

// sameSockets reports whether the [general] settings fixed at start are
// the same (subscribers and cdr_actions may change).
func sameSockets(a, b *Config) bool {
	x, y := a.General, b.General
	x.Subscribers, y.Subscribers = "", ""
	x.CDRActions, y.CDRActions = nil, nil
	return fmt.Sprint(x) == fmt.Sprint(y)
}

// Firewall returns the running firewall (nil when not serving).
func (m *Module) Firewall() *Firewall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fw
}

// Addrs returns the bound UDP addresses (for tests and tools).
func (m *Module) Addrs() []netip.AddrPort {
	fw := m.Firewall()
	if fw == nil {
		return nil
	}
	var out []netip.AddrPort
	for _, s := range fw.Addrs() {
		if s.Proto == "udp" && !slices.Contains(out, s.Addr) {
			out = append(out, s.Addr)
		}
	}
	return out
}

// Commands implements core.Commander.
func (m *Module) Commands() []*cli.Command { return m.commands() }
