// Package cdrfile is the cdr_file module: the file backend of the CDR
// engine, in the spirit of Asterisk's cdr_csv and cdr_custom. It registers
// with the engine (modules/cdr) and writes every CDR as one line, JSON
// (exactly cdr.AppendJSON's text, the Kafka message) or CSV with configured
// columns, to files in a directory that rotate by time and size. The file
// being written is named <name>.open and renamed to <name> once complete,
// so a log shipper that ignores *.open only ever reads complete files.
//
// # Accounting
//
// Writing is synchronous: a batch's hand-over writes its lines to the open
// file with one write(2) and counts them delivered (with fsync = always,
// once they are fsynced). When the file cannot be written (disk full,
// permission, read-only file system, missing directory...), the records not
// in the file go to the spool (package modules/cdr/spool, on_error = spool)
// or are dropped and counted (reason write_error, on_error = drop). While
// the spool holds records, new batches are spooled behind them, and a
// replayer writes them to the files in order, retrying with a backoff until
// writing works again; then batches are written directly again. A write
// that fails part way is cut back to the last complete record, so no torn
// line stays in a file and every record is in the files once.
//
// # What a crash can lose
//
// Records are batched in memory per posting goroutine for up to flush_ms
// (fewer when batch_max fills first): a process crash (kill -9) loses what
// is batched, nothing written (the kernel has it) and nothing spooled. An
// OS crash or power loss also loses what was written and not yet fsynced:
// nothing counted delivered with fsync = always, up to fsync_ms of records
// with fsync = interval, and what the kernel had not written back with
// fsync = never (files are fsynced at rotation and at stop whatever the
// policy). Spooled records: up to spool_fsync_ms / spool_fsync_records, and
// records written from the spool in the last spool_fsync_ms before a crash
// may be written again after the restart (at least once: the copies share
// the record's "id"). A file a crash left as *.open is cut after its last
// complete record and renamed at the next start.
package cdrfile

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/lograte"
	"github.com/switchboard-dp/switchboard/internal/metrics"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/cdr/spool"
)

// Name is the module's name.
const Name = "cdr_file"

func init() { core.Register(Info()) }

// Info returns cdr_file's registration record.
func Info() core.ModuleInfo {
	return core.ModuleInfo{
		Name:        Name,
		Description: "CDR backend: JSON or CSV lines to rotating files, with a spool for when they cannot be written",
		Priority:    core.PriorityBackend,
		Requires:    []string{cdr.Name},
		Support:     core.SupportCore,
		Configs:     []core.ConfigFile{{Name: ConfigFile, New: func() any { return new(File) }}},
		New:         func() core.Module { return new(Module) },
	}
}

// Module is the running cdr_file.
type Module struct {
	logger *slog.Logger
	b      *Backend
	reg    *cdr.Registration
}

var (
	_ core.Starter         = (*Module)(nil)
	_ core.Stopper         = (*Module)(nil)
	_ core.Reloader        = (*Module)(nil)
	_ core.StopTimeouter   = (*Module)(nil)
	_ prometheus.Collector = (*Module)(nil)
	_ cdr.StatusWriter     = (*Backend)(nil)
)

// config returns a copy of the decoded [general] section.
func config(ctx *core.Context) *Config {
	cfg := core.Config[*File](ctx).General
	return &cfg
}

func spoolOpts(s *settings) spool.Options {
	return spool.Options{Dir: s.spoolDir, MaxBytes: int64(s.cfg.SpoolMaxMB) << 20,
		FsyncInterval: time.Duration(s.cfg.SpoolFsyncMs) * time.Millisecond, FsyncRecords: s.cfg.SpoolFsyncRecords}
}

// Start declines unless enabled = yes; otherwise it completes the files an
// earlier run left open, opens the spool (on_error = spool) and registers
// the backend. It does not need the directory to be writable: CDRs are
// spooled (or dropped) until it is.
func (m *Module) Start(ctx *core.Context) error {
	cfg := config(ctx)
	if !cfg.Enabled {
		return core.Decline("%s: [general] enabled = no (the default: set enabled = yes to write CDR files)", ConfigFile)
	}
	s, err := resolve(cfg, ctx.DataDir())
	if err != nil {
		return fmt.Errorf("%s: %w", ConfigFile, err)
	}
	eng, err := core.Dep[*cdr.Engine](ctx, cdr.Name)
	if err != nil {
		return err
	}
	lim := lograte.New(ctx.Logger, 10*time.Second)
	b := newBackend(s, ctx.Logger, func(key, msg string, args ...any) { lim.Warn(key, msg, args...) })
	b.recoverDir(s.dir)
	loaded := 0
	if !s.drop {
		if loaded, err = b.openSpool(spoolOpts(s)); err != nil {
			return fmt.Errorf("spool: %w", err)
		}
	}
	reg, err := eng.Register(b)
	if err != nil {
		if b.sp != nil {
			b.sp.Close()
		}
		return err
	}
	m.logger, m.b, m.reg = ctx.Logger, b, reg
	b.start(loaded)
	ctx.Logger.Info("cdr_file registered", "directory", s.dir, "file", cfg.File, "format", cfg.Format,
		"rotate_interval", cfg.RotateInterval, "rotate_size_mb", cfg.RotateSizeMB, "fsync", cfg.Fsync, "on_error", cfg.OnError)
	return nil
}

// Stop unregisters from the engine (which hands every batch over: written,
// spooled or dropped), then fsyncs, closes and renames the open file and
// closes the spool, returning by ctx's deadline (StopTimeout asks for the
// time the final fsync may take). If the disk hangs past the deadline the
// work goes on in the background; nothing written is lost by that, and a
// file left *.open is completed at the next start.
func (m *Module) Stop(ctx context.Context) error {
	if m.reg == nil {
		return nil
	}
	err := core.Within(ctx, func() error {
		m.reg.Unregister()
		m.b.shutdown()
		return nil
	})
	if err != nil {
		return err
	}
	s := m.reg.Snapshot()
	m.logger.Info("cdr_file stopped", "posted", s.Posted, "delivered", s.Delivered, "dropped", s.Dropped,
		"spooled", s.Spooled, "spool_pending", s.SpoolPending, "bytes_written", m.b.bytesWritten.Load())
	return nil
}

// Stop budget: stopBase for the hand-over of the last batches, the
// rename and the spool's close, plus the final fsync of what the open file
// holds unsynced at an assumed worst-case write-back rate of stopSyncRate
// (a slow disk). With fsync = always or interval little is unsynced and
// the host's default stop_timeout (10 s) is larger; with fsync = never a
// big dirty file can need more, and StopTimeout asks for it.
const (
	stopBase     = 2 * time.Second
	stopSyncRate = 20 << 20 // bytes per second
)

// StopTimeout implements core.StopTimeouter.
func (m *Module) StopTimeout() time.Duration {
	if m.b == nil {
		return 0
	}
	return stopBase + time.Duration(float64(m.b.unsyncedBytes.Load())/stopSyncRate*float64(time.Second))
}

// Reload re-reads cdr_file.conf. batch_max, flush_ms and retention apply at
// once; format, columns, csv_header, csv_crlf, file, rotation and fsync at
// the next file; a new directory closes the open file (hand-overs are
// suspended for the swap) so the next record starts a file there. on_error
// and spool_dir need the module unloaded and loaded again.
func (m *Module) Reload(ctx *core.Context) error {
	cfg := config(ctx)
	old := m.b.set.Load()
	if !cfg.Enabled {
		return fmt.Errorf("enabled = no needs an unload; old configuration kept")
	}
	if cfg.OnError != old.cfg.OnError || cfg.SpoolDir != old.cfg.SpoolDir {
		return fmt.Errorf("on_error and spool_dir cannot change by reload (unload and load cdr_file); old configuration kept")
	}
	s, err := resolve(cfg, ctx.DataDir())
	if err != nil {
		return err
	}
	if s.dir != old.dir {
		m.reg.Suspend()
		m.b.mu.Lock()
		m.b.set.Store(s)
		m.b.closeLocked(closeReload)
		m.b.mu.Unlock()
		m.reg.Resume()
		m.b.recoverDir(s.dir)
	} else {
		m.b.set.Store(s)
		m.reg.SetFlushAfter(s.flushAfter)
	}
	m.b.retentionDue.Store(true)
	if m.b.sp != nil {
		m.b.sp.SetPolicy(spoolOpts(s))
	}
	ctx.Logger.Info("cdr_file reloaded", "directory", s.dir, "format", cfg.Format, "file", cfg.File)
	return nil
}

var (
	descBytes     = prometheus.NewDesc("switchboard_cdr_file_bytes_written_total", "Bytes written to CDR files.", nil, nil)
	descOpened    = prometheus.NewDesc("switchboard_cdr_file_files_opened_total", "CDR files opened.", nil, nil)
	descClosed    = prometheus.NewDesc("switchboard_cdr_file_files_closed_total", "CDR files completed, by why: interval, size, reload, stop, vanished (removed from outside while open).", []string{"reason"}, nil)
	descErrors    = prometheus.NewDesc("switchboard_cdr_file_errors_total", "Failed file operations, by operation.", []string{"op"}, nil)
	descFsyncs    = prometheus.NewDesc("switchboard_cdr_file_fsyncs_total", "fsyncs of CDR files.", nil, nil)
	descOpenBytes = prometheus.NewDesc("switchboard_cdr_file_open_file_bytes", "Size of the file being written (0 when none is open).", nil, nil)
	descLastErr   = prometheus.NewDesc("switchboard_cdr_file_last_error_timestamp_seconds", "Time of the last error (0: none).", nil, nil)
	descSpooling  = prometheus.NewDesc("switchboard_cdr_file_spooling", "1 while new CDRs queue behind the spool.", nil, nil)
	descSpoolRecs = prometheus.NewDesc("switchboard_cdr_file_spool_records", "Spooled CDRs not yet read back to be written.", nil, nil)
	descSpoolB    = prometheus.NewDesc("switchboard_cdr_file_spool_bytes", "Size of the spool files.", nil, nil)
	descSpoolWErr = prometheus.NewDesc("switchboard_cdr_file_spool_write_errors_total", "Failed spool file operations.", nil, nil)
	descRetries   = prometheus.NewDesc("switchboard_cdr_file_replay_retries_total", "Failed attempts to write spooled CDRs (each followed by a backoff).", nil, nil)
	descRemoved   = prometheus.NewDesc("switchboard_cdr_file_retention_removed_total", "CDR files removed by max_files / max_age.", nil, nil)
	descRetErr    = prometheus.NewDesc("switchboard_cdr_file_retention_errors_total", "Retention scans or removals that failed.", nil, nil)
	descRecovered = prometheus.NewDesc("switchboard_cdr_file_recovered_files_total", "Files left *.open by an earlier run, completed at start.", nil, nil)
	descTorn      = prometheus.NewDesc("switchboard_cdr_file_torn_bytes_total", "Bytes of torn records cut off files left by an earlier run.", nil, nil)
	descPending   = prometheus.NewDesc("switchboard_cdr_file_pending_renames", "Closed files still named *.open (rename failed; retried).", nil, nil)

	descs = metrics.Descs{descBytes, descOpened, descClosed, descErrors, descFsyncs, descOpenBytes, descLastErr,
		descSpooling, descSpoolRecs, descSpoolB, descSpoolWErr, descRetries, descRemoved, descRetErr, descRecovered, descTorn, descPending}
)

// Describe implements prometheus.Collector.
func (m *Module) Describe(ch chan<- *prometheus.Desc) { descs.Describe(ch) }

// Collect implements prometheus.Collector. The per-backend CDR counters are
// the cdr module's (switchboard_cdr_*{backend="file"}).
func (m *Module) Collect(ch chan<- prometheus.Metric) {
	b := m.b
	if b == nil {
		return
	}
	out := metrics.Sink(ch)
	out.CounterUint(descBytes, b.bytesWritten.Load())
	out.CounterUint(descOpened, b.filesOpened.Load())
	for i := range b.closed {
		out.CounterUint(descClosed, b.closed[i].Load(), closeNames[i])
	}
	for i := range b.errs {
		out.CounterUint(descErrors, b.errs[i].Load(), opNames[i])
	}
	out.CounterUint(descFsyncs, b.fsyncs.Load())
	out.Gauge(descOpenBytes, float64(b.curSize.Load()))
	last := 0.0
	if e := b.lastErr.Load(); e != nil {
		last = float64(e.at.UnixNano()) / 1e9
	}
	out.Gauge(descLastErr, last)
	if b.sp != nil {
		st := b.sp.Status()
		out.GaugeBool(descSpooling, b.spoolOn.Load())
		out.Gauge(descSpoolRecs, float64(st.Records))
		out.Gauge(descSpoolB, float64(st.Bytes))
		out.CounterUint(descSpoolWErr, st.WriteErrors)
		out.CounterUint(descRetries, b.retries.Load())
	}
	out.CounterUint(descRemoved, b.removed.Load())
	out.CounterUint(descRetErr, b.retentionErrors.Load())
	out.CounterUint(descRecovered, b.recoveredFiles.Load())
	out.CounterUint(descTorn, b.tornBytes.Load())
	out.Gauge(descPending, float64(b.pendingRenames.Load()))
}
