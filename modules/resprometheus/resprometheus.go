// Package resprometheus is the res_prometheus module: it serves /metrics on a
// loopback address with the Prometheus Go client. It owns no metrics of its
// own subject: at every scrape it collects from each running module that
// implements prometheus.Collector, plus the host's module states and the Go
// runtime, so a module only has to describe its own counters.
package resprometheus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/metrics"
)

// Name is the module's name.
const Name = "res_prometheus"

func init() {
	core.Register(info)
}

// ConfigFile is the module's configuration file.
const ConfigFile = "res_prometheus.conf"

var info = core.ModuleInfo{
	Name:        Name,
	Description: "Prometheus metrics on /metrics",
	Priority:    core.PriorityApplication + 50,
	Support:     core.SupportExtended,
	Configs:     []core.ConfigFile{{Name: ConfigFile, New: func() any { return new(File) }}},
	New:         func() core.Module { return new(Module) },
}

// File is res_prometheus.conf.
type File struct {
	General Config `section:"general"`
}

// Validate checks that bind is a host:port and, unless allow_remote is set,
// a loopback address.
func (f *File) Validate(cf *conf.File) error {
	var errs conf.Errors
	c := f.General
	host, _, err := net.SplitHostPort(c.Bind)
	switch {
	case err != nil:
		errs.At(cf, "general", "bind", "%v", err)
	case !c.AllowRemote && host != "localhost" && !isLoopback(host):
		errs.At(cf, "general", "bind", "%s is not a loopback address (set allow_remote = yes to expose metrics)", c.Bind)
	}
	return errs.Err()
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Config is res_prometheus.conf's [general] section.
type Config struct {
	Enabled bool `conf:"enabled" default:"yes"`
	// Bind is the listen address; it must be a loopback address unless
	// AllowRemote is set.
	Bind        string `conf:"bind" default:"127.0.0.1:8088"`
	URI         string `conf:"uri" default:"/metrics"`
	AllowRemote bool   `conf:"allow_remote" default:"no"`
}

// Module is the running res_prometheus.
type Module struct {
	cfg  Config
	host *core.Host

	mu     sync.Mutex
	srv    *http.Server
	addr   string
	scrape prometheus.Counter
}

var (
	_ core.Starter   = (*Module)(nil)
	_ core.Stopper   = (*Module)(nil)
	_ core.Commander = (*Module)(nil)
)

// Start listens and serves.
func (m *Module) Start(ctx *core.Context) error {
	m.cfg = core.Config[*File](ctx).General
	if !m.cfg.Enabled {
		return core.Decline("enabled = no in %s", ConfigFile)
	}
	m.host = ctx.Host()
	reg := prometheus.NewRegistry()
	m.scrape = prometheus.NewCounter(prometheus.CounterOpts{Name: "switchboard_metrics_scrapes_total",
		Help: "Scrapes of the metrics endpoint."})
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.scrape, &hostCollector{host: m.host, self: m})
	ln, err := net.Listen("tcp", m.cfg.Bind)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.cfg.Bind, err)
	}
	mux := http.NewServeMux()
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: nil})
	mux.Handle(m.cfg.URI, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.scrape.Inc()
		h.ServeHTTP(w, r)
	}))
	mux.HandleFunc("/healthz", m.healthz)
	mux.HandleFunc("/ready", m.ready)
	srv := &http.Server{Handler: mux}
	m.mu.Lock()
	m.srv, m.addr = srv, ln.Addr().String()
	m.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			ctx.Logger.Error("metrics server stopped", "err", err)
		}
	}()
	ctx.Logger.Info("serving metrics", "url", "http://"+m.addr+m.cfg.URI)
	return nil
}

// healthTimeout bounds how long /healthz waits for the host to answer.
const healthTimeout = 2 * time.Second

// healthz answers 200 while the process lives and its host answers (its
// module table, under the host's lock, within healthTimeout), else 503.
func (m *Module) healthz(w http.ResponseWriter, _ *http.Request) {
	answered := make(chan int, 1)
	go func() { answered <- len(m.host.Modules()) }()
	select {
	case n := <-answered:
		fmt.Fprintf(w, "ok: host answers, %d modules\n", n)
	case <-time.After(healthTimeout):
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "host did not answer within %s\n", healthTimeout)
	}
}

// ready answers 200 when the host is ready (core.Host.Ready: not stopping,
// no module failed, every Readier module ready: its Kafka connections up,
// a first policy sync completed), else 503 with the reasons, one per line.
func (m *Module) ready(w http.ResponseWriter, _ *http.Request) {
	ok, reasons := m.host.Ready()
	if ok {
		fmt.Fprintln(w, "ready")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "not ready:")
	for _, r := range reasons {
		fmt.Fprintln(w, "  "+r)
	}
}

// Addr returns the address the server listens on.
func (m *Module) Addr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addr
}

// Stop shuts the server down.
func (m *Module) Stop(ctx context.Context) error {
	m.mu.Lock()
	srv := m.srv
	m.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Shutdown(ctx)
}

// Commands implements core.Commander.
func (m *Module) Commands() []*cli.Command {
	return []*cli.Command{{
		Path: "prometheus show status", Summary: "Show the metrics endpoint", Usage: "prometheus show status",
		Run: func(_ context.Context, w io.Writer, args []string) error {
			if err := cli.NoArgs(args); err != nil {
				return err
			}
			fmt.Fprintf(w, "Metrics URL: http://%s%s\n", m.Addr(), m.cfg.URI)
			return nil
		},
	}}
}

// hostCollector gathers, at scrape time, the module states and the metrics
// of every running module that is a prometheus.Collector. It is unchecked
// (describes nothing), since modules come and go.
type hostCollector struct {
	host *core.Host
	self *Module
}

var moduleUp = prometheus.NewDesc("switchboard_module_up",
	"1 if the module is running, 0 if it is declined, failed or stopped.", []string{"module", "state"}, nil)

func (c *hostCollector) Describe(chan<- *prometheus.Desc) {}

func (c *hostCollector) Collect(ch chan<- prometheus.Metric) {
	out := metrics.Sink(ch)
	for _, st := range c.host.Modules() {
		out.GaugeBool(moduleUp, st.State == core.StateRunning, st.Name, st.State.String())
	}
	for _, mod := range c.host.Running() {
		if col, ok := mod.(prometheus.Collector); ok && mod != core.Module(c.self) {
			col.Collect(ch)
		}
	}
}
