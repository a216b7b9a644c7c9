package pktengine

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/gopacket/layers"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
	"github.com/switchboard-dp/switchboard/modules/pktengine/pcapfile"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

func (m *Module) commands() []*cli.Command {
	return []*cli.Command{
		{
			Path:    "packet show status",
			Summary: "Show the packet engine's sources, counters, decisions and worker queues",
			Usage:   "packet show status\n\nSources (running and recently finished), packets/s, decoded DNS messages, queries, responses,\nignored packets and decode errors by reason, decisions by action, CDRs, per-worker queue depth.",
			Run:     m.cliStatus,
		},
		{
			Path:    "packet replay",
			Summary: "Replay a capture file through the live pipeline",
			Usage: "packet replay <file> [speed <x>] [wait]\n\nReads a pcap or pcapng file as a new source: speed 0 (default) as fast as possible,\n" +
				"1 at the capture's pace, x times faster. With wait, returns when the replay has ended\nand its queries are decided, and prints its counters.",
			Run:      m.cliReplay,
			Complete: completeReplay,
		},
		{
			Path:    "packet stop",
			Summary: "Stop packet sources",
			Usage:   "packet stop [<source id>]\n\nStops every running source, or the one with the given id (see \"packet show status\").\nWhat was read before the stop is still decided and posted.",
			Run:     m.cliStop,
		},
	}
}

func (m *Module) running() (*Engine, error) {
	e := m.Engine()
	if e == nil {
		return nil, fmt.Errorf("pkt_engine is not running")
	}
	return e, nil
}

func (m *Module) cliStatus(_ context.Context, w io.Writer, args []string) error {
	if err := cli.NoArgs(args); err != nil {
		return err
	}
	e, err := m.running()
	if err != nil {
		return err
	}
	WriteStatus(w, e.Status())
	return nil
}

// WriteStatus prints a status as "packet show status" does.
func WriteStatus(w io.Writer, st Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Packets/s:\t%.0f\t(last interval)\n", st.PPS)
	t := st.Totals
	fmt.Fprintf(tw, "Packets:\t%d\t(%d bytes)\n", t.Packets, t.Bytes)
	fmt.Fprintf(tw, "Decoded DNS:\t%d\n", t.Queries+t.Responses)
	fmt.Fprintf(tw, "Queries:\t%d\n", t.Queries)
	fmt.Fprintf(tw, "Responses:\t%d\n", t.Responses)
	fmt.Fprintf(tw, "Ignored:\t%d\t%s\n", t.Ignored(), reasons(&t, false))
	fmt.Fprintf(tw, "Decode errors:\t%d\t%s\n", t.Malformed(), reasons(&t, true))
	if t.Oversize+t.TooLarge > 0 {
		fmt.Fprintf(tw, "Oversize:\t%d\tlonger than the capture's snap length (read); %d longer than %d bytes (skipped)\n",
			t.Oversize, t.TooLarge, pcapfile.MaxPacket)
	}
	if len(t.OtherLink) > 0 {
		var n uint64
		var parts []string
		for _, lt := range sortedLinks(t.OtherLink) {
			n += t.OtherLink[lt]
			parts = append(parts, fmt.Sprintf("%s %d", dnsdecode.LinkTypeName(lt), t.OtherLink[lt]))
		}
		fmt.Fprintf(tw, "Not decoded:\t%d\tby link type: %s\n", n, strings.Join(parts, ", "))
	}
	if t.ReadErrors+t.Dropped+t.KernelDropped+t.IfDropped+st.Dropped > 0 {
		fmt.Fprintf(tw, "Read errors:\t%d\n", t.ReadErrors)
		fmt.Fprintf(tw, "Dropped:\t%d\t(kernel %d, interface %d, at shutdown %d)\n", t.KernelDropped+t.IfDropped+t.Dropped+st.Dropped, t.KernelDropped, t.IfDropped, t.Dropped+st.Dropped)
	}
	fmt.Fprintf(tw, "Decisions:\t%d\tallow %d, block %d, sinkhole %d\n", st.Decided[0]+st.Decided[1]+st.Decided[2], st.Decided[decision.Allow], st.Decided[decision.Block], st.Decided[decision.Sinkhole])
	fmt.Fprintf(tw, "CDRs:\t%d\tposted (cdr_actions = %s); not posted: allow %d, block %d, sinkhole %d\n", st.CDRs, st.CDRSet, st.Skipped[decision.Allow], st.Skipped[decision.Block], st.Skipped[decision.Sinkhole])
	fmt.Fprintf(tw, "Subscribers:\t%d\tprefixes\n", st.Prefixes)
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSource\tState\tSpeed\tPackets\tQueries\tResponses\tErrors\tPkts/s\tStarted")
	if len(st.Sources) == 0 {
		fmt.Fprintln(tw, "-\t(none: set source in pkt_engine.conf or use \"packet replay\")\t\t\t\t\t\t\t\t")
	}
	for _, s := range st.Sources {
		speed := "max"
		if s.Speed > 0 {
			speed = strconv.FormatFloat(s.Speed, 'g', -1, 64) + "x"
		}
		state := s.State
		if s.Err != "" {
			state += ": " + s.Err
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%.0f\t%s\n", s.ID, s.Name, state, speed, s.Packets, s.Queries, s.Responses,
			s.Malformed()+s.ReadErrors, s.PPS, s.Started.Format(time.TimeOnly))
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Worker\tQueued\tBatches\tAllow\tBlock\tSinkhole\tCDRs")
	for _, ws := range st.Workers {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\n", ws.ID, ws.Queued, ws.Batches, ws.Decided[decision.Allow], ws.Decided[decision.Block], ws.Decided[decision.Sinkhole], ws.CDRs)
	}
	tw.Flush()
}

func reasons(c *Counters, malformed bool) string {
	var parts []string
	for r, v := range c.Reasons {
		rr := dnsdecode.Reason(r)
		if v == 0 || r == 0 || rr.IsMalformed() != malformed {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %d", rr, v))
	}
	if len(parts) == 0 {
		return ""
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func (m *Module) cliReplay(ctx context.Context, w io.Writer, args []string) error {
	if err := cli.MinArgs(args, "<file>"); err != nil {
		return err
	}
	file, speed, wait := args[0], 0.0, false
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "speed":
			if err := cli.Keyword(args, i, "speed", "<x>"); err != nil {
				return err
			}
			v, err := strconv.ParseFloat(strings.TrimSuffix(args[i+1], "x"), 64)
			if err != nil || v < 0 {
				return cli.Usagef("speed %q is not a number >= 0 (0 = as fast as possible, 1 = capture pace, x = x times faster)", args[i+1])
			}
			speed = v
			i++
		case "wait":
			wait = true
		default:
			return cli.Unexpected(args[i])
		}
	}
	e, err := m.running()
	if err != nil {
		return err
	}
	if !filepath.IsAbs(file) && m.ctx != nil {
		if _, err := os.Stat(file); err != nil {
			// Relative to the config dir if not found from here.
			if p := m.ctx.ConfigPath(file); p != file {
				if _, err2 := os.Stat(p); err2 == nil {
					file = p
				}
			}
		}
	}
	src, err := OpenFile(file)
	if err != nil {
		return err
	}
	id, err := e.Start(src, speed)
	if err != nil {
		return err
	}
	if !wait {
		fmt.Fprintf(w, "Replaying %s as source %d (speed %s)\n", file, id, speedText(speed))
		return nil
	}
	if err := e.Wait(ctx, id); err != nil {
		return err
	}
	if err := e.Drain(ctx); err != nil {
		return err
	}
	for _, s := range e.Status().Sources {
		if s.ID == id {
			fmt.Fprintf(w, "Replayed %s: %s, %d packets, %d queries, %d responses, %d decode errors, %.0f packets/s\n",
				file, s.State, s.Packets, s.Queries, s.Responses, s.Malformed(), s.PPS)
			if s.Err != "" {
				return fmt.Errorf("replay %s: %s", file, s.Err)
			}
		}
	}
	return nil
}

func speedText(s float64) string {
	if s == 0 {
		return "max"
	}
	return strconv.FormatFloat(s, 'g', -1, 64) + "x"
}

func completeReplay(args []string, prefix string) []string {
	if len(args) == 0 {
		matches, _ := filepath.Glob(prefix + "*")
		var out []string
		for _, m := range matches {
			if fi, err := os.Stat(m); err == nil && fi.IsDir() {
				out = append(out, m+"/")
			} else if strings.HasSuffix(m, ".pcap") || strings.HasSuffix(m, ".pcapng") {
				out = append(out, m)
			}
		}
		return out
	}
	var out []string
	for _, w := range []string{"speed", "wait"} {
		if strings.HasPrefix(w, prefix) && args[len(args)-1] != "speed" {
			out = append(out, w)
		}
	}
	return out
}

func (m *Module) cliStop(ctx context.Context, w io.Writer, args []string) error {
	if err := cli.MaxArgs(args, 1); err != nil {
		return err
	}
	id := 0
	if len(args) == 1 {
		n, err := strconv.Atoi(args[0])
		if err != nil || n <= 0 {
			return cli.Usagef("source id %q is not a positive number", args[0])
		}
		id = n
	}
	e, err := m.running()
	if err != nil {
		return err
	}
	n, err := e.StopSource(ctx, id)
	if err != nil {
		return err
	}
	m.mu.Lock()
	if id == 0 || id == m.cfgSrc {
		m.cfgSrc = 0
	}
	m.mu.Unlock()
	switch {
	case n == 0 && id != 0:
		return fmt.Errorf("no running source %d", id)
	case n == 0:
		fmt.Fprintln(w, "No source running")
	default:
		fmt.Fprintf(w, "Stopped %d source(s)\n", n)
	}
	return nil
}

// sortedLinks returns the link types of m in numeric order.
func sortedLinks(m map[layers.LinkType]uint64) []layers.LinkType {
	out := make([]layers.LinkType, 0, len(m))
	for lt := range m {
		out = append(out, lt)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
