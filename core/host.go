package core

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/conf"
)

// State is where a module is in its lifecycle.
type State int

// Module states as "module show" prints them.
const (
	StateNotRunning State = iota
	StateRunning
	StateDeclined
	StateFailed
)

func (s State) String() string {
	switch s {
	case StateRunning:
		return "Running"
	case StateDeclined:
		return "Declined"
	case StateFailed:
		return "Failed"
	}
	return "Not Running"
}

// Options configure a Host.
type Options struct {
	// Registry holds the module types; nil means Default.
	Registry *Registry
	// ConfigDir holds modules.conf and every module's configuration.
	ConfigDir string
	// DataDir is where modules keep state; "" means ConfigDir/data.
	DataDir string
	// Logger receives the host's and modules' logs; nil means slog.Default().
	Logger *slog.Logger
	// StopTimeout bounds each module's Stop unless modules.conf sets
	// stop_timeout or the module asks for more (StopTimeouter); 0 means 10 s.
	StopTimeout time.Duration
	// Version is printed by "core show version".
	Version string
}

// StopMode is how a stop was requested.
type StopMode int

// Stop modes of "core stop".
const (
	StopGracefully StopMode = iota
	StopNow
)

// Host runs modules. Its lifecycle methods are serialised; status reads and
// borrowing are safe from any goroutine.
type Host struct {
	opts    Options
	reg     *Registry
	logger  *slog.Logger
	tree    *cli.Tree
	started time.Time
	stopReq chan StopMode

	life     sync.Mutex  // serialises Start, Stop, Load, Unload, Reload
	stopping atomic.Bool // Stop began: the host no longer reports ready

	mu    sync.Mutex // guards recs, order, records' state and use counts
	recs  map[string]*record
	order []string // running modules, in start order
	sel   *selection
	base  context.Context
}

// record is the host's bookkeeping for one module: what "module show" prints.
type record struct {
	info     ModuleInfo
	mod      Module
	configs  []any // decoded values of info.Configs, in order
	ctx      *Context
	cancel   context.CancelFunc
	state    State
	lastErr  error
	required bool
	since    time.Time
	users    map[string]int // who borrows this module, and how often
	holds    map[string]int // what this module borrows
}

// New returns a host; nothing starts until Start.
func New(opts Options) *Host {
	if opts.Registry == nil {
		opts.Registry = Default
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.StopTimeout <= 0 {
		opts.StopTimeout = 10 * time.Second
	}
	if opts.DataDir == "" {
		opts.DataDir = filepath.Join(opts.ConfigDir, "data")
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	h := &Host{opts: opts, reg: opts.Registry, logger: opts.Logger, tree: cli.NewTree(),
		recs: map[string]*record{}, stopReq: make(chan StopMode, 1), base: context.Background()}
	if err := h.tree.Register("core", h.coreCommands()...); err != nil {
		panic(err) // the core's own command set is fixed
	}
	return h
}

// Commands returns the host's command tree.
func (h *Host) Commands() *cli.Tree { return h.tree }

// Run executes one CLI command line.
func (h *Host) Run(ctx context.Context, line string, w io.Writer) error {
	return h.tree.Run(ctx, w, line)
}

// StopRequests delivers "core stop" requests (and anything calling
// RequestStop) to whoever runs the host's main loop.
func (h *Host) StopRequests() <-chan StopMode { return h.stopReq }

// RequestStop asks the main loop to stop the host.
func (h *Host) RequestStop(mode StopMode) {
	select {
	case h.stopReq <- mode:
	default:
	}
}

// Uptime returns how long the host has been started.
func (h *Host) Uptime() time.Duration {
	if h.started.IsZero() {
		return 0
	}
	return time.Since(h.started)
}

// prepare reads modules.conf and builds fresh, unconfigured records in start
// order.
func (h *Host) prepare() (*selection, []*record, error) {
	sel, err := readModulesConf(filepath.Join(h.opts.ConfigDir, "modules.conf"), h.reg)
	if err != nil {
		return nil, nil, err
	}
	infos := map[string]ModuleInfo{}
	for _, n := range sel.wanted(h.reg) {
		infos[n], _ = h.reg.Lookup(n)
	}
	order, err := startOrder(infos, sel.preload)
	if err != nil {
		return nil, nil, err
	}
	recs := make([]*record, 0, len(order))
	for _, n := range order {
		recs = append(recs, &record{info: infos[n], required: sel.require[n],
			users: map[string]int{}, holds: map[string]int{}})
	}
	return sel, recs, nil
}

func (h *Host) newContext(rec *record) {
	ctx, cancel := context.WithCancel(h.base)
	rec.cancel = cancel
	rec.ctx = &Context{Context: ctx, Logger: h.logger.With("module", rec.info.Name), host: h, rec: rec}
	rec.mod = rec.info.New()
}

// configure makes a fresh instance, decodes its declared config files and
// runs its Configure.
func (h *Host) configure(rec *record) error {
	h.newContext(rec)
	vals, err := h.decodeConfigs(rec)
	if err != nil {
		return err
	}
	h.mu.Lock()
	rec.configs = vals
	h.mu.Unlock()
	if c, ok := rec.mod.(Configurer); ok {
		return c.Configure(rec.ctx)
	}
	return nil
}

// decodeConfigs loads and decodes every config file the module declares and
// returns the values in declaration order, or every problem found (each as
// "file:line: [section] key: message").
func (h *Host) decodeConfigs(rec *record) ([]any, error) {
	var vals []any
	var errs []error
	for _, cf := range rec.info.Configs {
		path := filepath.Join(h.opts.ConfigDir, cf.Name)
		f, err := conf.Load(path)
		if errors.Is(err, fs.ErrNotExist) {
			if cf.Required {
				errs = append(errs, fmt.Errorf("%s: required configuration file is missing", path))
				continue
			}
			h.logger.Info("no configuration file; running on defaults", "module", rec.info.Name, "file", path)
			f, err = nil, nil
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		v := cf.New()
		if err := conf.DecodeFile(f, v); err != nil {
			errs = append(errs, err)
			continue
		}
		vals = append(vals, v)
	}
	return vals, errors.Join(errs...)
}

// CheckConfig configures every module modules.conf selects, on fresh
// instances, and returns every problem found. Nothing starts.
func (h *Host) CheckConfig() error {
	_, recs, err := h.prepare()
	if err != nil {
		return err
	}
	var errs []error
	for _, rec := range recs {
		err := h.configure(rec)
		rec.cancel()
		if err != nil && !IsDecline(err) {
			errs = append(errs, fmt.Errorf("%s: %w", rec.info.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Start configures every selected module, then starts them in dependency
// order. A module that declines, or fails without being required, is logged
// and its dependents decline. A required module that fails makes Start roll
// back the modules already started and return the error.
func (h *Host) Start(ctx context.Context) error {
	h.life.Lock()
	defer h.life.Unlock()
	h.base = context.WithoutCancel(ctx)
	sel, recs, err := h.prepare()
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.sel = sel
	for _, rec := range recs {
		h.recs[rec.info.Name] = rec
	}
	h.mu.Unlock()

	// Phase 1: decode and validate every configuration before anything starts.
	var fatal []error
	for _, rec := range recs {
		if err := h.configure(rec); err != nil {
			h.setState(rec, stateFor(err), err)
			if rec.required {
				fatal = append(fatal, fmt.Errorf("required module %s: %w", rec.info.Name, err))
			} else {
				h.logOutcome(rec, err)
			}
		}
	}
	if len(fatal) > 0 {
		return errors.Join(fatal...)
	}
	// Phase 2: start in order.
	for _, rec := range recs {
		if rec.state != StateNotRunning {
			continue
		}
		err := h.start(rec)
		if err == nil {
			continue
		}
		if rec.required {
			h.logger.Error("required module failed; rolling back", "module", rec.info.Name, "err", err)
			h.stopAll(StopGracefully)
			return fmt.Errorf("required module %s: %w", rec.info.Name, err)
		}
		h.logOutcome(rec, err)
	}
	h.started = time.Now()
	return nil
}

func stateFor(err error) State {
	if IsDecline(err) {
		return StateDeclined
	}
	return StateFailed
}

func (h *Host) logOutcome(rec *record, err error) {
	if IsDecline(err) {
		h.logger.Warn("module declined to load", "module", rec.info.Name, "reason", err)
	} else {
		h.logger.Error("module failed to load", "module", rec.info.Name, "err", err)
	}
}

// start starts one configured module whose requirements must be running.
func (h *Host) start(rec *record) error {
	for _, dep := range rec.info.Requires {
		h.mu.Lock()
		d := h.recs[dep]
		ok := d != nil && d.state == StateRunning
		h.mu.Unlock()
		if !ok {
			why := "not loaded"
			if d != nil {
				why = strings.ToLower(d.state.String())
			}
			err := Decline("requires %s, which is %s", dep, why)
			h.setState(rec, StateDeclined, err)
			return err
		}
	}
	h.takeDeps(rec)
	if s, ok := rec.mod.(Starter); ok {
		if err := s.Start(rec.ctx); err != nil {
			h.releaseAll(rec)
			rec.cancel()
			h.setState(rec, stateFor(err), err)
			return err
		}
	}
	if c, ok := rec.mod.(Commander); ok {
		if err := h.tree.Register(rec.info.Name, c.Commands()...); err != nil {
			h.stopOne(rec, StopGracefully)
			h.setState(rec, StateFailed, err)
			return err
		}
	}
	h.mu.Lock()
	rec.state, rec.lastErr, rec.since = StateRunning, nil, time.Now()
	h.order = append(h.order, rec.info.Name)
	h.mu.Unlock()
	h.logger.Info("module loaded", "module", rec.info.Name)
	return nil
}

func (h *Host) setState(rec *record, s State, err error) {
	h.mu.Lock()
	rec.state, rec.lastErr, rec.since = s, err, time.Now()
	h.mu.Unlock()
}

// Stop stops every running module in reverse start order, each within its
// stop timeout (StopNow: one second each).
func (h *Host) Stop(mode StopMode) {
	h.stopping.Store(true)
	h.life.Lock()
	defer h.life.Unlock()
	h.stopAll(mode)
}

func (h *Host) stopAll(mode StopMode) {
	for {
		h.mu.Lock()
		if len(h.order) == 0 {
			h.mu.Unlock()
			return
		}
		rec := h.recs[h.order[len(h.order)-1]]
		h.mu.Unlock()
		h.stopOne(rec, mode)
	}
}

// stopTimeout is the time the module's Stop gets: one second when stopping
// now, else the larger of the host's stop timeout (modules.conf
// stop_timeout, else Options.StopTimeout) and what the module asks for.
func (h *Host) stopTimeout(rec *record, mode StopMode) time.Duration {
	if mode == StopNow {
		return time.Second
	}
	d := h.opts.StopTimeout
	h.mu.Lock()
	if h.sel != nil && h.sel.stopTimeout > 0 {
		d = h.sel.stopTimeout
	}
	h.mu.Unlock()
	if st, ok := rec.mod.(StopTimeouter); ok {
		d = max(d, st.StopTimeout())
	}
	return d
}

// stopOne stops a module, removes its commands and gives back what it holds.
func (h *Host) stopOne(rec *record, mode StopMode) {
	timeout := h.stopTimeout(rec, mode)
	h.tree.Unregister(rec.info.Name)
	var err error
	if s, ok := rec.mod.(Stopper); ok {
		ctx, cancel := context.WithTimeout(h.base, timeout)
		done := make(chan error, 1)
		go func() { done <- s.Stop(ctx) }()
		select {
		case err = <-done:
		case <-ctx.Done():
			err = fmt.Errorf("stop did not finish within %s", timeout)
		}
		cancel()
	}
	rec.cancel()
	h.releaseAll(rec)
	h.mu.Lock()
	for i, n := range h.order {
		if n == rec.info.Name {
			h.order = append(h.order[:i], h.order[i+1:]...)
			break
		}
	}
	rec.state, rec.lastErr, rec.since = StateNotRunning, err, time.Now()
	h.mu.Unlock()
	if err != nil {
		h.logger.Error("module stopped with error", "module", rec.info.Name, "err", err)
	} else {
		h.logger.Info("module unloaded", "module", rec.info.Name)
	}
}

// Load configures and starts a module that is registered but not running.
func (h *Host) Load(name string) error {
	name = moduleName(name)
	h.life.Lock()
	defer h.life.Unlock()
	info, ok := h.reg.Lookup(name)
	if !ok {
		return fmt.Errorf("no module named %s", name)
	}
	h.mu.Lock()
	rec := h.recs[name]
	if rec != nil && rec.state == StateRunning {
		h.mu.Unlock()
		return fmt.Errorf("module %s is already running", name)
	}
	if rec == nil {
		rec = &record{info: info, users: map[string]int{}, holds: map[string]int{}}
		h.recs[name] = rec
	}
	rec.users, rec.holds = map[string]int{}, map[string]int{}
	h.mu.Unlock()
	if err := h.configure(rec); err != nil {
		rec.cancel()
		h.setState(rec, stateFor(err), err)
		return err
	}
	return h.start(rec)
}

// Unload stops a running module. A module that others hold is refused, naming
// them, unless force is set: then its holders are unloaded first.
func (h *Host) Unload(name string, force bool) error {
	name = moduleName(name)
	h.life.Lock()
	defer h.life.Unlock()
	return h.unload(name, force)
}

func (h *Host) unload(name string, force bool) error {
	h.mu.Lock()
	rec := h.recs[name]
	if rec == nil || rec.state != StateRunning {
		h.mu.Unlock()
		return fmt.Errorf("module %s is not running", name)
	}
	users := sortedKeys(rec.users)
	h.mu.Unlock()
	if len(users) > 0 {
		if !force {
			return fmt.Errorf("module %s is in use by %s (use 'module unload -f %s' to unload them too)",
				name, strings.Join(users, ", "), name)
		}
		for _, u := range users {
			if err := h.unload(u, true); err != nil {
				return err
			}
		}
	}
	h.stopOne(rec, StopGracefully)
	return nil
}

// Reload reloads the named module, or every running module in start order
// when name is empty. A module that cannot reload says so.
func (h *Host) Reload(name string) error {
	name = moduleName(name)
	h.life.Lock()
	defer h.life.Unlock()
	h.mu.Lock()
	names := append([]string(nil), h.order...)
	h.mu.Unlock()
	if name != "" {
		h.mu.Lock()
		rec := h.recs[name]
		h.mu.Unlock()
		if rec == nil || rec.state != StateRunning {
			return fmt.Errorf("module %s is not running", name)
		}
		if _, ok := rec.mod.(Reloader); !ok {
			return fmt.Errorf("module %s does not support reload", name)
		}
		names = []string{name}
	}
	var errs []error
	for _, n := range names {
		h.mu.Lock()
		rec := h.recs[n]
		h.mu.Unlock()
		r, ok := rec.mod.(Reloader)
		if !ok {
			continue
		}
		err := h.reloadOne(rec, r)
		h.mu.Lock()
		rec.lastErr = err
		h.mu.Unlock()
		if err != nil {
			h.logger.Error("reload failed; old configuration kept", "module", n, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", n, err))
		} else {
			h.logger.Info("module reloaded", "module", n)
		}
	}
	return errors.Join(errs...)
}

// reloadOne decodes the module's files again and, when they are valid,
// hands the new values to Reload; if Reload fails, the old values are put
// back.
func (h *Host) reloadOne(rec *record, r Reloader) error {
	vals, err := h.decodeConfigs(rec)
	if err != nil {
		return err
	}
	h.mu.Lock()
	old := rec.configs
	rec.configs = vals
	h.mu.Unlock()
	if err := r.Reload(rec.ctx); err != nil {
		h.mu.Lock()
		rec.configs = old
		h.mu.Unlock()
		return err
	}
	return nil
}

// takeDeps records that holder uses each module it requires and each
// optional one that runs; Dep hands them out.
func (h *Host) takeDeps(holder *record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, names := range [][]string{holder.info.Requires, holder.info.Optional} {
		for _, name := range names {
			if rec := h.recs[name]; rec != nil && rec.state == StateRunning {
				rec.users[holder.info.Name]++
				holder.holds[name]++
			}
		}
	}
}

// held returns a module holder holds a reference to.
func (h *Host) held(holder *record, name string) (Module, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := h.recs[name]
	if holder.holds[name] == 0 || rec == nil || rec.state != StateRunning {
		return nil, fmt.Errorf("module %s is not running", name)
	}
	return rec.mod, nil
}

func (h *Host) releaseAll(holder *record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range holder.holds {
		if rec := h.recs[name]; rec != nil {
			delete(rec.users, holder.info.Name)
		}
	}
	holder.holds = map[string]int{}
}

// ModuleStatus is the host-side record of one module: what "module show" prints.
type ModuleStatus struct {
	Name        string
	Description string
	Support     SupportLevel
	State       State
	UseCount    int
	Users       []string
	LastError   string
	Since       time.Time
}

// Modules returns the status of every module the host knows, sorted by name.
func (h *Host) Modules() []ModuleStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]ModuleStatus, 0, len(h.recs))
	for _, rec := range h.recs {
		st := ModuleStatus{Name: rec.info.Name, Description: rec.info.Description,
			Support: rec.info.Support, State: rec.state, Users: sortedKeys(rec.users), Since: rec.since}
		for _, n := range rec.users {
			st.UseCount += n
		}
		if rec.lastErr != nil {
			st.LastError = rec.lastErr.Error()
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Ready reports whether the host serves: it is not stopping, no module
// failed, and every running module that is a Readier is ready. When it is
// not, the reasons say why, one per line.
func (h *Host) Ready() (bool, []string) {
	var reasons []string
	if h.stopping.Load() {
		reasons = append(reasons, "stopping")
	}
	var running []string
	for _, st := range h.Modules() {
		switch st.State {
		case StateFailed:
			reasons = append(reasons, fmt.Sprintf("module %s failed: %s", st.Name, st.LastError))
		case StateRunning:
			running = append(running, st.Name)
		}
	}
	for _, name := range running {
		mod, ok := h.Instance(name)
		if !ok {
			continue
		}
		if r, ok := mod.(Readier); ok {
			if ready, why := r.Ready(); !ready {
				reasons = append(reasons, fmt.Sprintf("module %s: %s", name, why))
			}
		}
	}
	return len(reasons) == 0, reasons
}

// Instance returns the running instance of the named module, without
// borrowing it (for read-only inspection such as metrics collection).
func (h *Host) Instance(name string) (Module, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rec := h.recs[name]
	if rec == nil || rec.state != StateRunning {
		return nil, false
	}
	return rec.mod, true
}

// Running returns the running modules' instances in start order.
func (h *Host) Running() []Module {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]Module, 0, len(h.order))
	for _, n := range h.order {
		out = append(out, h.recs[n].mod)
	}
	return out
}

// Greetings returns the console greeting lines of the running modules, in
// start order.
func (h *Host) Greetings() []string {
	var out []string
	for _, m := range h.Running() {
		if g, ok := m.(Greeter); ok {
			out = append(out, g.Greeting()...)
		}
	}
	return out
}

// moduleName accepts Asterisk's habit of naming a module by its file,
// "res_kafka.so", as modules.conf does.
func moduleName(name string) string { return strings.TrimSuffix(name, ".so") }

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
