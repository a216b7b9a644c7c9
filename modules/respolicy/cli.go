package respolicy

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
)

// SyncReporter writes a section of "policy show sync"; policy_sync
// registers one for the Kafka consumer.
type SyncReporter func(w io.Writer)

// SetSyncReporter installs (or, with nil, removes) the consumer section of
// "policy show sync".
func (m *Module) SetSyncReporter(r SyncReporter) {
	m.mu.Lock()
	m.reporter = r
	m.mu.Unlock()
}

func (m *Module) commands() []*cli.Command {
	return []*cli.Command{
		{Path: "policy show groups", Summary: "List policy groups with list sizes and sync state",
			Usage: "policy show groups", Run: m.cliGroups},
		{Path: "policy show group", Summary: "Show one group's policy and entries",
			Usage: "policy show group <name> [all]\n  Lists the first 100 entries, or all of them with \"all\".",
			Run:   m.cliGroup, Complete: m.completeGroup(1)},
		{Path: "policy show patterns", Summary: "List pattern rules with their hit counts",
			Usage: "policy show patterns [<group>]\n  A group's own rules then the global ones, in precedence order; without a group the global rules.",
			Run:   m.cliPatterns, Complete: m.completeGroup(1)},
		{Path: "policy show malicious", Summary: "Show the global malicious table",
			Usage: "policy show malicious [all]", Run: m.cliMalicious},
		{Path: "policy lookup", Summary: "Decide a domain for a group and show the matching entry",
			Usage: "policy lookup <group> <domain>", Run: m.cliLookup, Complete: m.completeGroup(1)},
		{Path: "policy show sync", Summary: "Show policy generation, syncs, message counters and the consumer",
			Usage: "policy show sync", Run: m.cliSync},
		{Path: "policy load", Summary: "Apply a JSON-lines file of policy messages",
			Usage: "policy load <file>\n  One message per line, as on the policy topic; applied as one batch.", Run: m.cliLoad},
		m.waitCommand(),
	}
}

// completeGroup completes group names for the first argument.
func (m *Module) completeGroup(argPos int) func(args []string, prefix string) []string {
	return func(args []string, prefix string) []string {
		if len(args) != argPos-1 {
			return nil
		}
		s := m.getStore()
		if s == nil {
			return nil
		}
		var out []string
		for _, g := range s.Snapshot().Groups() {
			if strings.HasPrefix(g.Name, prefix) {
				out = append(out, g.Name)
			}
		}
		sort.Strings(out)
		return out
	}
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Format("2006-01-02 15:04:05") + " (" + time.Since(t).Round(time.Second).String() + " ago)"
}

func (m *Module) running() (*Store, error) {
	s := m.getStore()
	if s == nil {
		return nil, fmt.Errorf("res_policy is not running")
	}
	return s, nil
}

func (m *Module) cliGroups(_ context.Context, w io.Writer, args []string) error {
	if err := cli.NoArgs(args); err != nil {
		return err
	}
	s, err := m.running()
	if err != nil {
		return err
	}
	snap := s.Snapshot()
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tID\tWHITELIST\tBLACKLIST\tDELTA\tSYNCS\tLAST SYNC\tSTATE\tHYPERSCAN")
	for _, st := range s.SyncStates() {
		g, ok := snap.Group(st.Group)
		white, black := 0, 0
		if ok {
			white, black = g.Whitelist, g.Blacklist
		}
		state := "idle"
		if st.Open {
			state = fmt.Sprintf("syncing (%d pending since %s)", st.Pending, st.PendingSince.Format("15:04:05"))
		}
		last := "never"
		if !st.SyncedAt.IsZero() {
			last = st.SyncedAt.Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", st.Group, st.ID, white, black, st.Delta, st.Syncs, last, state, st.HSState)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "%d groups, generation %d, malicious entries %d\n", len(snap.groups), snap.Generation, snap.MaliciousSize())
	return nil
}

func (m *Module) cliGroup(_ context.Context, w io.Writer, args []string) error {
	if err := cli.MinArgs(args, "<name>"); err != nil {
		return err
	}
	if err := optionalAll(args[1:]); err != nil {
		return err
	}
	s, err := m.running()
	if err != nil {
		return err
	}
	g, ok := s.Snapshot().Group(args[0])
	if !ok {
		return fmt.Errorf("no group %q (see \"policy show groups\")", args[0])
	}
	var st SyncState
	for _, x := range s.SyncStates() {
		if x.Group == g.Name {
			st = x
		}
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Group:\t%s\n", g.Name)
	fmt.Fprintf(tw, "ID:\t%d\n", g.ID)
	fmt.Fprintf(tw, "Whitelist:\t%d\n", g.Whitelist)
	fmt.Fprintf(tw, "Blacklist:\t%d\n", g.Blacklist)
	fmt.Fprintf(tw, "Changes since last build:\t%d\n", st.Delta)
	fmt.Fprintf(tw, "Syncs completed:\t%d\n", g.Syncs)
	fmt.Fprintf(tw, "Last sync:\t%s\n", ago(g.SyncedAt))
	fmt.Fprintf(tw, "Last change:\t%s\n", ago(g.LastChange))
	if st.Open {
		fmt.Fprintf(tw, "Sync state:\tsyncing, %d entries pending since %s\n", st.Pending, ago(st.PendingSince))
	} else {
		fmt.Fprintf(tw, "Sync state:\tidle\n")
	}
	fmt.Fprintf(tw, "Hyperscan:\t%s\n", st.HSState)
	fmt.Fprintf(tw, "Table memory:\t%d bytes\n", g.tables.base.bytes()+g.tables.delta.bytes())
	fmt.Fprintf(tw, "Pattern rules:\t%d of its own\n", g.Patterns)
	if err := tw.Flush(); err != nil {
		return err
	}
	if pats := s.Patterns(g.Name); len(pats) > 0 {
		if err := printPatterns(w, pats); err != nil {
			return err
		}
	}
	var items []tableItem
	g.tables.each(func(name string, e entry) { items = append(items, tableItem{name: name, e: e}) })
	return printEntries(w, items, len(args) == 2)
}

// optionalAll accepts nothing or the single word "all", the optional last
// argument of "policy show group" and "policy show malicious".
func optionalAll(args []string) error {
	if len(args) > 0 && args[0] != "all" {
		return cli.Unexpected(args...)
	}
	return cli.MaxArgs(args, 1)
}

func printEntries(w io.Writer, items []tableItem, all bool) error {
	sort.Slice(items, func(i, j int) bool { return items[i].name < items[j].name })
	limit := len(items)
	if !all && limit > 100 {
		limit = 100
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tLIST\tCATEGORY\tCONFIDENCE")
	for _, it := range items[:limit] {
		conf := "-"
		if it.e.List == ListMalicious {
			conf = fmt.Sprint(it.e.Confidence)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", it.name, strings.ToUpper(it.e.List.String()), it.e.Category, conf)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if limit < len(items) {
		fmt.Fprintf(w, "... %d more (add \"all\")\n", len(items)-limit)
	}
	return nil
}

func (m *Module) cliMalicious(_ context.Context, w io.Writer, args []string) error {
	if err := optionalAll(args); err != nil {
		return err
	}
	s, err := m.running()
	if err != nil {
		return err
	}
	snap := s.Snapshot()
	hs, delta := s.MaliciousState()
	fmt.Fprintf(w, "Malicious entries: %d (%d changed since last build)\n", snap.MaliciousSize(), delta)
	fmt.Fprintf(w, "Precedence: %s\n", precedence(snap.whitelistWins))
	fmt.Fprintf(w, "Hyperscan: %s\n", hs)
	fmt.Fprintf(w, "Table memory: %d bytes\n", snap.malicious.base.bytes()+snap.malicious.delta.bytes())
	var items []tableItem
	snap.malicious.each(func(name string, e entry) { items = append(items, tableItem{name: name, e: e}) })
	return printEntries(w, items, len(args) == 1)
}

// cliPatterns lists the pattern rules of a group, or the global ones.
func (m *Module) cliPatterns(_ context.Context, w io.Writer, args []string) error {
	if err := cli.MaxArgs(args, 1); err != nil {
		return err
	}
	s, err := m.running()
	if err != nil {
		return err
	}
	group := ""
	if len(args) == 1 {
		if _, ok := s.Snapshot().Group(args[0]); !ok {
			return fmt.Errorf("no group %q (see \"policy show groups\")", args[0])
		}
		group = args[0]
	}
	pats := s.Patterns(group)
	if len(pats) == 0 {
		_, err := fmt.Fprintln(w, "No pattern rules.")
		return err
	}
	return printPatterns(w, pats)
}

// printPatterns writes pattern rules as a table, in precedence order.
func printPatterns(w io.Writer, pats []PatternInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Pattern\tSyntax\tScope\tList\tCategory\tConfidence\tHits\n")
	for _, p := range pats {
		scope, conf := "group", "-"
		if p.Global {
			scope = "global"
		}
		if p.List == ListMalicious {
			conf = fmt.Sprint(p.Confidence)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\n", p.Pattern, p.Syntax, scope, strings.ToUpper(p.List.String()),
			p.Category, conf, p.Hits)
	}
	return tw.Flush()
}

func precedence(whitelistWins bool) string {
	if whitelistWins {
		return "whitelist > malicious > blacklist > default allow"
	}
	return "malicious > whitelist > blacklist > default allow"
}

// MatchWord is the seed's wording of a decision's table: WHITELIST,
// BLACKLIST, MALICIOUS or NOT FOUND.
func MatchWord(d Decision) string {
	if d.Table == "" {
		return "NOT FOUND"
	}
	return strings.ToUpper(d.Table)
}

func (m *Module) cliLookup(_ context.Context, w io.Writer, args []string) error {
	if err := cli.ExactArgs(args, "<group>", "<domain>"); err != nil {
		return err
	}
	s, err := m.running()
	if err != nil {
		return err
	}
	snap := s.Snapshot()
	group, name := args[0], args[1]
	d := snap.Decide(group, []byte(name))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	gdesc := group
	if g, ok := snap.Group(group); ok {
		gdesc = fmt.Sprintf("%s (id %d)", g.Name, g.ID)
	} else if snap.defGroup != nil {
		gdesc = fmt.Sprintf("%s (unknown; default group %s, id %d)", group, snap.defGroup.Name, snap.defGroup.ID)
	} else {
		gdesc = fmt.Sprintf("%s (unknown group: only the malicious table and global patterns apply)", group)
	}
	fmt.Fprintf(tw, "Group:\t%s\n", gdesc)
	fmt.Fprintf(tw, "Domain:\t%s\n", name)
	fmt.Fprintf(tw, "Result:\t%s\n", MatchWord(d))
	fmt.Fprintf(tw, "Decision:\t%s\n", d.Action)
	switch {
	case d.Pattern != "":
		fmt.Fprintf(tw, "Matched pattern:\t%s (%s)\n", d.Pattern, d.Table)
		fmt.Fprintf(tw, "Category:\t%d\n", d.Category)
		if d.Table == TableMalicious {
			fmt.Fprintf(tw, "Confidence:\t%d\n", d.Confidence)
		}
	case d.Table != "":
		fmt.Fprintf(tw, "Matched entry:\t%s (%s)\n", d.Entry, d.Table)
		fmt.Fprintf(tw, "Category:\t%d\n", d.Category)
		if d.Table == TableMalicious {
			fmt.Fprintf(tw, "Confidence:\t%d\n", d.Confidence)
		}
	default:
		fmt.Fprintf(tw, "Matched entry:\t-\n")
	}
	fmt.Fprintf(tw, "Generation:\t%d\n", snap.Generation)
	// Cross-check with Hyperscan when the group's database is compiled.
	if g, ok := snap.groups[group]; ok && g.hs != nil && snap.malicious.delta.n == 0 && (snap.malHS != nil || snap.malicious.base.n == 0) && g.tables.delta.n == 0 {
		mt := newMatcher(&fixedSnap{snap})
		var out [1]Decision
		mt.decideBurstHS(snap, []string{group}, [][]byte{[]byte(name)}, out[:])
		mt.Close()
		agree := "agrees"
		if out[0] != d {
			agree = fmt.Sprintf("DISAGREES: %s %s %q", out[0].Action, out[0].Table, out[0].Entry)
		}
		fmt.Fprintf(tw, "Hyperscan:\t%s\n", agree)
	}
	return tw.Flush()
}

// fixedSnap serves one snapshot to a matcher.
type fixedSnap struct{ snap *Snapshot }

func (f *fixedSnap) Snapshot() *Snapshot { return f.snap }

func (m *Module) cliSync(_ context.Context, w io.Writer, args []string) error {
	if err := cli.NoArgs(args); err != nil {
		return err
	}
	s, err := m.running()
	if err != nil {
		return err
	}
	snap := s.Snapshot()
	fmt.Fprintf(w, "Policy generation: %d (published %s)\n", snap.Generation, ago(snap.Published))
	fmt.Fprintf(w, "Last SYNC_COMPLETE to active: %s\n", s.LastSwap())
	if p := s.PendingGroups(); len(p) > 0 {
		fmt.Fprintf(w, "Open syncs: %s\n", strings.Join(p, ", "))
	} else {
		fmt.Fprintln(w, "Open syncs: none")
	}
	c := s.Counters()
	sources := map[string]bool{}
	for k := range c.Messages {
		sources[k] = true
	}
	for k := range c.Rejected {
		sources[k] = true
	}
	var srcs []string
	for k := range sources {
		srcs = append(srcs, k)
	}
	sort.Strings(srcs)
	fmt.Fprintln(w)
	if err := countTable(w, "SOURCE", srcs, MessageTypes, c.Messages); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := countTable(w, "REJECTED", srcs, RejectReasons, c.Rejected); err != nil {
		return err
	}
	m.mu.Lock()
	loads := append([]LoadResult(nil), m.loads...)
	rep := m.reporter
	m.mu.Unlock()
	if len(loads) > 0 {
		fmt.Fprintln(w, "\nFile loads:")
		for _, l := range loads {
			fmt.Fprintf(w, "  %s %s (%s): %d applied, %d rejected in %s\n", l.At.Format("15:04:05"), l.File, l.Source,
				l.Applied, l.Rejected, l.Took.Round(time.Millisecond))
		}
	}
	if rep != nil {
		fmt.Fprintln(w)
		rep(w)
	} else {
		fmt.Fprintln(w, "\nConsumer: policy_sync not running")
	}
	return nil
}

func (m *Module) cliLoad(_ context.Context, w io.Writer, args []string) error {
	if err := cli.ExactArgs(args, "<file>"); err != nil {
		return err
	}
	if _, err := m.running(); err != nil {
		return err
	}
	res, err := m.LoadFile(args[0], "file")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "Loaded %s: %d lines, %d applied, %d rejected in %s; generation %d\n", res.File, res.Lines,
		res.Applied, res.Rejected, res.Took.Round(time.Millisecond), m.Snapshot().Generation)
	for _, r := range RejectReasons {
		if n := res.Reasons[r]; n > 0 {
			fmt.Fprintf(w, "  rejected %s: %d\n", r, n)
		}
	}
	for _, e := range res.Errors {
		fmt.Fprintf(w, "  %s\n", e)
	}
	return nil
}

// countTable prints one row per source and one column per counter name.
func countTable[K comparable](w io.Writer, title string, srcs []string, names []K, counts map[string]map[K]uint64) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, title)
	for _, n := range names {
		fmt.Fprintf(tw, "\t%v", n)
	}
	fmt.Fprintln(tw)
	for _, src := range srcs {
		fmt.Fprint(tw, src)
		for _, n := range names {
			fmt.Fprintf(tw, "\t%d", counts[src][n])
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
