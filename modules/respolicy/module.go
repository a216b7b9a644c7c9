package respolicy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/lograte"
)

// Name is the module's name.
const Name = "res_policy"

// ConfigFile is the module's configuration file.
const ConfigFile = "res_policy.conf"

// Info returns the module's registration.
func Info() core.ModuleInfo {
	return core.ModuleInfo{
		Name:        Name,
		Description: "Per-group DNS policy tables, malicious table and matcher (hash tier + Hyperscan)",
		Priority:    core.PriorityResource,
		Support:     core.SupportCore,
		Configs:     []core.ConfigFile{{Name: ConfigFile, New: func() any { return new(Config) }}},
		New:         func() core.Module { return new(Module) },
	}
}

func init() { core.Register(Info()) }

// General is the [general] section of res_policy.conf.
type General struct {
	SeedFile             string `conf:"seed_file"`
	WhitelistVsMalicious string `conf:"whitelist_vs_malicious" default:"malicious" enum:"malicious|whitelist"`
	DefaultGroup         string `conf:"default_group"`
	Hyperscan            bool   `conf:"hyperscan" default:"no"`
	HyperscanMaxEntries  int    `conf:"hyperscan_max_entries" default:"1000000" min:"0"`
	BurstEngine          string `conf:"burst_engine" default:"hash" enum:"hash|hyperscan"`
	MaxPatterns          int    `conf:"max_patterns" default:"100000" min:"1"`
}

// Config is the decoded res_policy.conf.
type Config struct {
	General General `section:"general"`
	// GroupsSection is [groups] as written; Validate turns it into Groups.
	GroupsSection *conf.Section `section:"groups"`
	// Groups maps group names to numeric ids ([groups]).
	Groups map[string]uint32
}

// storeConfig converts the config for the store.
func (c *Config) storeConfig() StoreConfig {
	return StoreConfig{WhitelistWins: c.General.WhitelistVsMalicious == "whitelist", DefaultGroup: c.General.DefaultGroup,
		GroupIDs: c.Groups, Hyperscan: c.General.Hyperscan, HyperscanMaxEntries: c.General.HyperscanMaxEntries,
		BurstEngine: c.General.BurstEngine, MaxPatterns: c.General.MaxPatterns}
}

// Validate reads [groups] (name => id, each id once, 1 to 2147483647) into
// Groups and checks default_group.
func (c *Config) Validate(f *conf.File) error {
	var errs conf.Errors
	c.Groups = map[string]uint32{}
	if s := c.GroupsSection; s != nil {
		byID := map[uint32]string{}
		for _, k := range s.Keys {
			id, err := strconv.ParseUint(k.Value, 10, 32)
			switch {
			case validGroup(k.Name) != nil:
				errs.Add(s, k, "group name: %v", validGroup(k.Name))
			case err != nil || id == 0 || id >= 0x80000000:
				errs.Add(s, k, "group id %q: want a number from 1 to 2147483647 (ids from 2147483648 are automatic)", k.Value)
			case byID[uint32(id)] != "" && byID[uint32(id)] != k.Name:
				errs.Add(s, k, "group id %d is already used by %s", id, byID[uint32(id)])
			default:
				if _, dup := c.Groups[k.Name]; dup {
					errs.Add(s, k, "group %s listed twice", k.Name)
					continue
				}
				c.Groups[k.Name] = uint32(id)
				byID[uint32(id)] = k.Name
			}
		}
	}
	if g := c.General.DefaultGroup; g != "" {
		if err := validGroup(g); err != nil {
			errs.At(f, "general", "default_group", "%v", err)
		}
	}
	return errs.Err()
}

// Module is res_policy: the policy store, the matcher, the file loader and
// the "policy" CLI. A module that lists respolicy.Name in its Requires gets
// it with:
//
//	pol, err := core.Dep[*respolicy.Module](ctx, respolicy.Name)
type Module struct {
	mu       sync.Mutex
	cfg      *Config
	store    *Store
	logger   *slog.Logger
	lim      *lograte.Limiter
	loads    []LoadResult // last file loads, newest last (for "policy show sync")
	reporter SyncReporter
	started  time.Time
}

var (
	_ core.Configurer = (*Module)(nil)
	_ core.Starter    = (*Module)(nil)
	_ core.Stopper    = (*Module)(nil)
	_ core.Reloader   = (*Module)(nil)
	_ core.Commander  = (*Module)(nil)
)

// Configure implements core.Configurer: the seed file must exist.
func (m *Module) Configure(ctx *core.Context) error {
	cfg := core.Config[*Config](ctx)
	if cfg.General.SeedFile != "" {
		if _, err := os.Stat(ctx.ConfigPath(cfg.General.SeedFile)); err != nil {
			return fmt.Errorf("%s: [general] seed_file: %w", ConfigFile, err)
		}
	}
	return nil
}

// Start implements core.Starter: it publishes the empty policy with the
// configured groups, loads the seed file, and starts the background
// Hyperscan compiler.
func (m *Module) Start(ctx *core.Context) error {
	cfg := core.Config[*Config](ctx)
	m.mu.Lock()
	m.cfg = cfg
	m.logger = ctx.Logger
	m.lim = lograte.New(ctx.Logger, 10*time.Second)
	m.store = NewStore(cfg.storeConfig())
	m.store.SetLogger(ctx.Logger)
	m.started = time.Now()
	m.mu.Unlock()
	m.store.StartCompiler(ctx.Logger)
	if cfg.General.SeedFile != "" {
		res, err := m.LoadFile(ctx.ConfigPath(cfg.General.SeedFile), "seed")
		if err != nil {
			m.store.Close()
			return fmt.Errorf("seed_file: %w", err)
		}
		ctx.Logger.Info("seed file loaded", "file", res.File, "messages", res.Applied, "rejected", res.Rejected,
			"took", res.Took.Round(time.Millisecond))
	}
	return nil
}

// Stop implements core.Stopper: it stops the compiler and retires every
// Hyperscan database (each is freed once no matcher uses it).
func (m *Module) Stop(context.Context) error {
	if s := m.getStore(); s != nil {
		s.Close()
	}
	return nil
}

// Reload implements core.Reloader: group ids, precedence, default group and
// burst engine change at once (tables are kept); an invalid file keeps the
// old configuration.
func (m *Module) Reload(ctx *core.Context) error {
	if err := m.Configure(ctx); err != nil {
		return err
	}
	cfg := core.Config[*Config](ctx)
	m.mu.Lock()
	m.cfg = cfg
	s := m.store
	m.mu.Unlock()
	if s != nil {
		s.SetConfig(cfg.storeConfig())
		if cfg.General.Hyperscan {
			s.StartCompiler(ctx.Logger)
		}
	}
	return nil
}

func (m *Module) getStore() *Store {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.store
}

// Store returns the policy store (nil before Start).
func (m *Module) Store() *Store { return m.getStore() }

// Snapshot returns the active policy. It never returns nil after Start.
func (m *Module) Snapshot() *Snapshot { return m.getStore().Snapshot() }

// NewMatcher returns a matcher for one worker goroutine; Close it when the
// worker ends.
func (m *Module) NewMatcher() *Matcher { return newMatcher(m.getStore()) }

// GroupID returns the numeric id of a group known to the active policy or
// listed in res_policy.conf.
func (m *Module) GroupID(name string) (uint32, bool) {
	if g, ok := m.Snapshot().Group(name); ok {
		return g.ID, true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg != nil {
		id, ok := m.cfg.Groups[name]
		return id, ok
	}
	return 0, false
}

// Apply applies a parsed message from source ("kafka", "file", "api"). A
// rejection is counted per reason, logged (rate-limited) and returned.
func (m *Module) Apply(source string, msg Message) error {
	err := m.getStore().Apply(source, msg)
	if err != nil {
		m.logReject(source, err)
	}
	return err
}

// ApplyRaw parses and applies one JSON message; see Apply.
func (m *Module) ApplyRaw(source string, data []byte) (Message, error) {
	msg, err := ParseMessage(data)
	if err != nil {
		m.getStore().CountReject(source, RejectReason(err))
		m.logReject(source, err)
		return msg, err
	}
	return msg, m.Apply(source, msg)
}

func (m *Module) logReject(source string, err error) {
	if m.lim != nil {
		m.lim.Warn(source+"/"+RejectReason(err), "policy message skipped", "source", source,
			"reason", RejectReason(err), "err", err)
	}
}

// BeginSync opens a sync of group (as a BEGIN_SYNC message).
func (m *Module) BeginSync(group string) error {
	return m.Apply("api", Message{Type: TypeBeginSync, Group: group})
}

// AddDomain adds a domain to a group's whitelist or blacklist (to the pending
// table when a sync is open, else to the active policy at once).
func (m *Module) AddDomain(group, domain string, list List, category uint32) error {
	d, err := NormalizeDomain(domain)
	if err != nil {
		return err
	}
	if list != ListWhitelist && list != ListBlacklist {
		return fmt.Errorf("add domain: list %v is not whitelist or blacklist", list)
	}
	return m.Apply("api", Message{Type: TypeAddDomain, Group: group, Domain: d, List: list, Category: category})
}

// RemoveDomain removes a domain from a group's active and pending tables.
func (m *Module) RemoveDomain(group, domain string) error {
	d, err := NormalizeDomain(domain)
	if err != nil {
		return err
	}
	return m.Apply("api", Message{Type: TypeRemoveDomain, Group: group, Domain: d})
}

// CompleteSync makes a group's pending table active (one atomic swap).
func (m *Module) CompleteSync(group string) error {
	return m.Apply("api", Message{Type: TypeSyncComplete, Group: group})
}

// AddMalicious adds or updates an entry of the global malicious table.
func (m *Module) AddMalicious(domain string, category uint32, confidence uint8) error {
	d, err := NormalizeDomain(domain)
	if err != nil {
		return err
	}
	if confidence > 100 {
		return fmt.Errorf("add malicious: confidence %d > 100", confidence)
	}
	return m.Apply("api", Message{Type: TypeAddMalicious, Domain: d, List: ListMalicious, Category: category, Confidence: confidence})
}

// Commands implements core.Commander.
func (m *Module) Commands() []*cli.Command { return m.commands() }

// CountReject counts a message from source that was rejected before it
// could be applied (it did not parse); the caller logs it.
func (m *Module) CountReject(source, reason string) { m.getStore().CountReject(source, reason) }
