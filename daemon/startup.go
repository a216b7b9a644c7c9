package daemon

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
	Console struct {
		Try []string `conf:"try"`
	} `section:"console"`
	Startup struct {
		Run []string `conf:"run"`
	} `section:"startup_commands"`
}

// loadCLIConf reads cli.conf from the config dir; a missing file is no error.
func loadCLIConf(dir string) (*cliConf, error) {
	f, err := conf.Load(filepath.Join(dir, "cli.conf"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	cc := new(cliConf)
	if err := conf.DecodeFile(f, cc); err != nil {
		return nil, err
	}
	return cc, nil
}

// banner says what is running, what the modules have to tell, and what to try.
func (o options) banner(h *core.Host, cc *cliConf) string {
	var running []string
	for _, m := range h.Modules() {
		if m.State == core.StateRunning {
			running = append(running, m.Name)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s console. Running %d modules: %s.\n", o.Name, o.Version, len(running), strings.Join(running, ", "))
	for _, g := range h.Greetings() {
		fmt.Fprintf(&b, "%s\n", g)
	}
	if len(cc.Console.Try) > 0 {
		b.WriteString("Try:\n")
		for _, t := range cc.Console.Try {
			fmt.Fprintf(&b, "  %s\n", t)
		}
	}
	fmt.Fprintf(&b, "'help' lists every command; 'exit' stops %s.", o.Name)
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
