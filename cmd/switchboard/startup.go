package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/core"
)

// cliConf is cli.conf: what the console shows and which commands run at
// start-up, as Asterisk's cli.conf [startup_commands].
//
//	[console]
//	try => kafka show status        ; suggested under the banner (repeatable)
//	[startup_commands]
//	run => packet replay x.pcap     ; run in order once every module started (repeatable)
type cliConf struct {
	Try     []string
	Startup []string
}

type consoleSection struct {
	Try []string `conf:"try"`
}

type startupSection struct {
	Run []string `conf:"run"`
}

// loadCLIConf reads cli.conf from the config dir; a missing file is no error.
func loadCLIConf(dir string) (cliConf, error) {
	var out cliConf
	f, err := conf.Load(filepath.Join(dir, "cli.conf"))
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	var errs conf.Errors
	for _, s := range f.Sections {
		var err error
		switch s.Name {
		case "console":
			var c consoleSection
			if err = conf.Decode(s, &c); err == nil {
				out.Try = c.Try
			}
		case "startup_commands":
			var c startupSection
			if err = conf.Decode(s, &c); err == nil {
				out.Startup = c.Run
			}
		default:
			errs.Addf(s.File, s.Line, s.Name, "", "unknown section (want [console] or [startup_commands])")
		}
		var ce conf.Errors
		if errors.As(err, &ce) {
			errs = append(errs, ce...)
		} else if err != nil {
			return out, err
		}
	}
	return out, errs.Err()
}

// banner says what is running and what to try.
func banner(h *core.Host, cc cliConf) string {
	var running []string
	for _, m := range h.Modules() {
		if m.State == core.StateRunning {
			running = append(running, m.Name)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "switchboard %s console. Running %d modules: %s.\n", buildVersion(), len(running), strings.Join(running, ", "))
	for _, g := range h.Greetings() {
		fmt.Fprintf(&b, "%s\n", g)
	}
	if len(cc.Try) > 0 {
		b.WriteString("Try:\n")
		for _, t := range cc.Try {
			fmt.Fprintf(&b, "  %s\n", t)
		}
	}
	b.WriteString("'help' lists every command; 'exit' stops switchboard.")
	return b.String()
}

// runStartup runs cli.conf's startup commands in order, writing each one's
// output to w. A failing command is logged and the next one still runs.
func runStartup(ctx context.Context, h *core.Host, cmds []string, w io.Writer, logger *slog.Logger) (failed int) {
	for _, line := range cmds {
		var out bytes.Buffer
		err := h.Run(ctx, line, &out)
		if out.Len() > 0 {
			fmt.Fprintf(w, "%s\n%s", line, strings.TrimRight(out.String(), "\n")+"\n")
		}
		if err != nil {
			failed++
			logger.Error("startup command failed", "command", line, "err", err)
			continue
		}
		logger.Info("startup command done", "command", line)
	}
	return failed
}
