package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/switchboard-dp/switchboard/core"
)

// notifier speaks systemd's notify protocol (sd_notify) when the service
// manager asked for it by setting NOTIFY_SOCKET: READY=1 once every module
// started and the listeners are bound, RELOADING=1 ... READY=1 around a
// reload, STOPPING=1, STATUS= with a one-line summary, and WATCHDOG=1 pings
// while the host answers. Without NOTIFY_SOCKET it does nothing at all.
type notifier struct {
	h       *core.Host
	logger  *slog.Logger
	enabled bool
	failed  atomic.Bool // a send failed: logged once
}

func newNotifier(h *core.Host, logger *slog.Logger) *notifier {
	return &notifier{h: h, logger: logger, enabled: os.Getenv("NOTIFY_SOCKET") != ""}
}

func (n *notifier) send(state string) {
	if !n.enabled {
		return
	}
	if _, err := sddaemon.SdNotify(false, state); err != nil && !n.failed.Swap(true) {
		n.logger.Warn("cannot notify the service manager", "socket", os.Getenv("NOTIFY_SOCKET"), "err", err)
	}
}

// ready tells the service manager the daemon serves, with the summary.
func (n *notifier) ready() { n.send("READY=1\nSTATUS=" + n.status()) }

// reloading tells it a reload began; ready ends it.
func (n *notifier) reloading() { n.send("RELOADING=1\nSTATUS=reloading") }

// stopping tells it the daemon stops.
func (n *notifier) stopping() { n.send("STOPPING=1\nSTATUS=stopping") }

// status is the one-line summary: modules by state.
func (n *notifier) status() string {
	byState := map[core.State]int{}
	for _, m := range n.h.Modules() {
		byState[m.State]++
	}
	s := fmt.Sprintf("%d modules running", byState[core.StateRunning])
	for _, st := range []core.State{core.StateFailed, core.StateDeclined} {
		if byState[st] > 0 {
			s += fmt.Sprintf(", %d %s", byState[st], st)
		}
	}
	return s
}

// watchdog pings the service manager at half its watchdog interval
// (WATCHDOG_USEC) for as long as the host answers: each ping follows a call
// into the host (its module table, under the host's lock), so a host that
// hangs stops the pings and systemd restarts the service. It returns when
// stop is closed, at once when no watchdog is asked for.
func (n *notifier) watchdog(stop <-chan struct{}) {
	if !n.enabled {
		return
	}
	interval, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		answered := make(chan string, 1)
		go func() { answered <- n.status() }()
		select {
		case st := <-answered:
			n.send("WATCHDOG=1\nSTATUS=" + st)
		case <-time.After(interval / 2):
			n.logger.Error("the host did not answer within half the watchdog interval; no watchdog ping", "interval", interval)
		case <-stop:
			return
		}
	}
}
