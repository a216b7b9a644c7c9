package dnsfirewall

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

func (m *Module) commands() []*cli.Command {
	return []*cli.Command{{
		Path:    "dns show status",
		Summary: "Show the DNS firewall's sockets, queries/s, answers by kind and upstream health",
		Usage: "dns show status\n\nSockets, queries received and queries/s, what became of them (blocked, sinkholed,\n" +
			"forwarded, SERVFAIL, REFUSED, FORMERR by reason, dropped by reason), decisions and CDRs,\n" +
			"queries waiting for an upstream, and each upstream's state, counters and latency.",
		Run: m.cliStatus,
	}}
}

func (m *Module) cliStatus(_ context.Context, w io.Writer, args []string) error {
	if err := cli.NoArgs(args); err != nil {
		return err
	}
	fw := m.Firewall()
	if fw == nil {
		return fmt.Errorf("dns_firewall is not serving (no listen address in %s)", ConfigFile)
	}
	WriteStatus(w, fw.Status())
	return nil
}

// WriteStatus prints a status as "dns show status" does.
func WriteStatus(w io.Writer, st Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	var socks []string
	for _, s := range st.Sockets {
		socks = append(socks, s.Proto+" "+s.Addr.String())
	}
	fmt.Fprintf(tw, "Sockets:\t%d\t%s\n", len(st.Sockets), strings.Join(compact(socks), ", "))
	fmt.Fprintf(tw, "Queries/s:\t%.0f\t(last interval)\n", st.QPS)
	fmt.Fprintf(tw, "Queries:\t%d\treceived in %s\n", st.Queries, st.Uptime.Truncate(time.Second))
	k := st.Kinds
	fmt.Fprintf(tw, "Answered:\t%d\tblocked %d, sinkholed %d, forwarded %d (truncated %d), servfail %d, refused %d, formerr %d, notimp %d\n",
		k[kBlocked]+k[kSinkholed]+k[kForwarded]+k[kServFail]+k[kRefused]+k[kFormErr]+k[kNotImp],
		k[kBlocked], k[kSinkholed], k[kForwarded], k[kTruncated], k[kServFail], k[kRefused], k[kFormErr], k[kNotImp])
	if len(st.FormErrs) > 0 {
		var parts []string
		for r, n := range st.FormErrs {
			parts = append(parts, fmt.Sprintf("%s %d", r, n))
		}
		sort.Strings(parts)
		fmt.Fprintf(tw, "FORMERR:\t%d\tby reason: %s\n", k[kFormErr], strings.Join(parts, ", "))
	}
	fmt.Fprintf(tw, "Dropped:\t%d\tshort %d, response %d, rate limit %d, unknown client %d, send failed %d, tcp connections %d\n",
		k[kDropShort]+k[kDropResponse]+k[kDropRate]+k[kDropUnknown]+k[kDropWrite]+k[kDropTCPConns],
		k[kDropShort], k[kDropResponse], k[kDropRate], k[kDropUnknown], k[kDropWrite], k[kDropTCPConns])
	fmt.Fprintf(tw, "Unmatched:\t%d\tupstream answers to no waiting query (late or forged)\n", k[kLate])
	if st.ReadErrors > 0 {
		fmt.Fprintf(tw, "Read errors:\t%d\n", st.ReadErrors)
	}
	d := st.Decisions
	fmt.Fprintf(tw, "Decisions:\t%d\tallow %d, block %d, sinkhole %d\n", d.Decided[0]+d.Decided[1]+d.Decided[2], d.Decided[decision.Allow], d.Decided[decision.Block], d.Decided[decision.Sinkhole])
	fmt.Fprintf(tw, "CDRs:\t%d\tposted; not posted: allow %d, block %d, sinkhole %d\n", d.CDRs, d.CDRSkipped[decision.Allow], d.CDRSkipped[decision.Block], d.CDRSkipped[decision.Sinkhole])
	fmt.Fprintf(tw, "Waiting:\t%d\tforwarded queries waiting for an answer\n", st.Waiting)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "Upstream\tState\tSent\tAnswered\tTimeouts\tTCP\tErrors\tLatency")
	for _, u := range st.Upstreams {
		state := "up"
		if !u.Up {
			state = "down"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", u.Addr, state, u.Sent, u.Answered, u.Timeouts, u.TCP, u.Errors, u.Latency.Round(time.Microsecond))
	}
	tw.Flush()
}

// compact collapses repeats of the same socket ("udp 127.0.0.1:5353 x2").
func compact(in []string) []string {
	var out []string
	for i := 0; i < len(in); {
		j := i
		for j < len(in) && in[j] == in[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s x%d", in[i], j-i))
		} else {
			out = append(out, in[i])
		}
		i = j
	}
	return out
}
