//go:build faults

package faults

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
)

// journalWindow is how long after Post returned a CDR is safe from kill -9
// with journal = yes: flush_ms (50 in these configs) for the batch to be
// handed over and journaled, plus scheduling margin on a loaded 2-core box.
const journalWindow = 50*time.Millisecond + 450*time.Millisecond

// kill9Export kills switchboard (kill -9) while it exports CDRs at rate/s,
// restarts it on the same data dir and accounts for the CDRs accepted
// before the kill (posted, then journalWindow elapsed).
func kill9Export(t *testing.T, b *kafkatest.Broker, topic string, journal bool) (tally, tally, int, string) {
	t.Helper()
	extra := []string{"on_queue_full = spool"}
	if journal {
		extra = append(extra, "journal = yes")
	}
	sb := newInstance(t, "kill9", map[string]string{
		"modules.conf":   modulesConf("res_kafka", "cdr", "cdr_kafka"),
		"kafka.conf":     kafkaConf(b.Bootstrap),
		"cdr_kafka.conf": cdrKafkaConf(topic, extra...),
	})
	sb.startReady()
	posting := make(chan struct{})
	go func() {
		defer close(posting)
		sb.rx("cdr test post 200000 rate 3000 start 1") // cut short by the kill
	}()
	time.Sleep(4 * time.Second) // export under way
	_, accepted, _, _, _ := sb.cdrCounters()
	time.Sleep(journalWindow)
	sb.kill9()
	<-posting
	var onDisk []string
	filepath.Walk(sb.data, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && strings.HasSuffix(p, ".log") && strings.Contains(p, "cdr_kafka") {
			onDisk = append(onDisk, fmt.Sprintf("%s=%dB", strings.TrimPrefix(p, sb.data+"/"), fi.Size()))
		}
		return nil
	})
	t.Logf("accepted before the kill: %d; files after kill -9: %v", accepted, onDisk)
	sb.startReady()
	status := sb.waitDrained(3 * time.Minute)
	loaded := statusValue(status, "loaded")
	tl, msgs := readBack(t, b, topic, 1, int(accepted), time.Minute)
	// Beyond the accepted ones: every id up to the highest delivered one
	// was posted before the kill too; gaps below it are CDRs that died.
	var top uint64
	for _, m := range msgs {
		if sm := seqRE.FindSubmatch(m.Value); sm != nil {
			if v, _ := strconv.ParseUint(string(sm[1]), 10, 64); v > top {
				top = v
			}
		}
	}
	full := account(msgs, 1, int(top))
	sb.stop()
	return tl, full, int(loaded), status
}

// TestKill9MidExport: with journal = yes every CDR accepted before a kill -9
// (Post returned and the journal window elapsed) is delivered after the
// restart or still in the spool. The same run without the journal shows
// what the journal protects.
func TestKill9MidExport(t *testing.T) {
	c := sharedCluster(t)
	b := c.broker()

	topic := "faults-kill9-journal"
	createTopic(t, c.bootstrap(), topic, 3, 3, map[string]string{"min.insync.replicas": "2"})
	tl, full, loaded, status := kill9Export(t, b, topic, true)
	report(t, "kill9-export-journal", tl.sent, tl.received, tl.lost, tl.dup,
		fmt.Sprintf("journal=yes, window flush_ms+450ms; %d moved from the journal at restart; up to the highest seq delivered (%d): %d gaps, %d dups, %d of them with another record ID than the first copy, %d without an ID",
			loaded, full.sent, full.lost, full.dup, full.dupOtherID, full.noID))
	if tl.lost != 0 {
		t.Errorf("journal: lost %d accepted CDRs (e.g. %v)\n%s", tl.lost, tl.missing(1, tl.sent), status)
	}
	// A consumer drops the replays by record ID: each copy of a CDR carries
	// the ID of its first copy.
	if full.dupOtherID != 0 || full.noID != 0 {
		t.Errorf("journal: %d duplicates carry another record ID than their first copy, %d records have none", full.dupOtherID, full.noID)
	}

	topic2 := "faults-kill9-nojournal"
	createTopic(t, c.bootstrap(), topic2, 3, 3, map[string]string{"min.insync.replicas": "2"})
	tl2, full2, _, _ := kill9Export(t, b, topic2, false)
	report(t, "kill9-export-no-journal", tl2.sent, tl2.received, tl2.lost, tl2.dup,
		fmt.Sprintf("contrast, not asserted: journal=no; up to the highest id delivered (%d): %d gaps (CDRs in the producer at the kill), %d dups",
			full2.sent, full2.lost, full2.dup))
}

// policyFeed is a synthetic policy feed: per group, the messages in order.
type policyFeed struct {
	groups []string
	msgs   map[string][]string // group (or "malicious") -> JSON lines
}

func feedMsg(m map[string]any) string {
	b, _ := json.Marshal(m)
	return string(b)
}

func makeFeed() *policyFeed {
	f := &policyFeed{groups: []string{"enterprise_a", "enterprise_b", "default"}, msgs: map[string][]string{}}
	add := func(g string, m map[string]any) { f.msgs[g] = append(f.msgs[g], feedMsg(m)) }
	sizes := map[string]int{"enterprise_a": 50, "enterprise_b": 6000, "default": 2000}
	for _, g := range f.groups {
		add(g, map[string]any{"type": "BEGIN_SYNC", "group_id": g})
		for i := 0; i < sizes[g]; i++ {
			action := "blacklist"
			if i%10 == 0 {
				action = "whitelist"
			}
			add(g, map[string]any{"type": "ADD_DOMAIN", "group_id": g, "domain": fmt.Sprintf("d%d.%s.example", i, g),
				"action": action, "category": 1 << (i % 4)})
		}
		add(g, map[string]any{"type": "REMOVE_DOMAIN", "group_id": g, "domain": fmt.Sprintf("d1.%s.example", g)})
		add(g, map[string]any{"type": "SYNC_COMPLETE", "group_id": g})
	}
	for i := 0; i < 1000; i++ {
		add("malicious", map[string]any{"type": "ADD_MALICIOUS", "domain": fmt.Sprintf("m%d.bad.example", i),
			"category": 4, "confidence": 90})
	}
	return f
}

const policyResConf = "[general]\nhyperscan = yes\n\n[groups]\nenterprise_a => 1001\nenterprise_b => 1002\ndefault => 1\n"

func policyFiles(bootstrap, topic string) map[string]string {
	return map[string]string{
		"modules.conf":     modulesConf("res_kafka", "res_policy", "policy_sync"),
		"kafka.conf":       kafkaConf(bootstrap),
		"res_policy.conf":  policyResConf,
		"policy_sync.conf": fmt.Sprintf("[general]\nconnection = default\ntopic = %s\n", topic),
	}
}

var (
	timeRE = regexp.MustCompile(`\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}( \([^)]* ago\))?|\(\d+ pending since \d{2}:\d{2}:\d{2}\)|[Gg]eneration:?\s+\d+`)
	// The matcher's build state and timing are not policy: a Hyperscan
	// database compiles in the background after a swap.
	hsRE = regexp.MustCompile(`(?m)(ready|compiling|queued|failed|pending|disabled|off)( \([^)]*\))?\s*$`)
)

// normPolicy blanks what legitimately differs between two instances
// holding the same policy: times and the matcher's build state.
func normPolicy(s string) string {
	var b strings.Builder
	for _, ln := range strings.Split(s, "\n") {
		ln = hsRE.ReplaceAllString(timeRE.ReplaceAllString(ln, "<time>"), "<matcher>")
		l := strings.ToLower(ln)
		if strings.HasPrefix(ln, "Last sync") || strings.Contains(l, "hyperscan") || strings.Contains(l, "compiled") || strings.Contains(l, "matcher:") || strings.HasPrefix(ln, "Table memory") {
			continue
		}
		b.WriteString(ln + "\n")
	}
	return b.String()
}

// lineDiff returns the lines that differ (at most n).
func lineDiff(a, b string, n int) (int, string) {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	diff := 0
	var out strings.Builder
	for i := 0; i < max(len(al), len(bl)); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			diff++
			if diff <= n {
				fmt.Fprintf(&out, "line %d:\n  - %s\n  + %s\n", i+1, x, y)
			}
		}
	}
	return diff, out.String()
}

// policyView is what must be identical between two instances: the groups
// table (times blanked), every group's entries and some lookups.
func policyView(s *instance, f *policyFeed) string {
	s.t.Helper()
	var b strings.Builder
	b.WriteString(s.must("policy show groups"))
	for _, g := range f.groups {
		b.WriteString(s.must("policy show group " + g + " all"))
		for _, d := range []string{"d0", "d1", "d2", "d5", "d1999", "d5999", "nosuch"} {
			b.WriteString(s.must(fmt.Sprintf("policy lookup %s %s.%s.example", g, d, g)))
		}
		b.WriteString(s.must(fmt.Sprintf("policy lookup %s m7.bad.example", g)))
	}
	return normPolicy(b.String())
}

// waitSynced waits until every group of f completed a sync and none is open.
func waitSynced(s *instance, f *policyFeed, timeout time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, _ := s.rx("policy show groups")
		done := strings.Contains(out, "malicious entries 1000")
		for _, g := range f.groups {
			row := ""
			for _, ln := range strings.Split(out, "\n") {
				if strings.HasPrefix(ln, g+" ") {
					row = ln
				}
			}
			fs := strings.Fields(row)
			if len(fs) < 6 || fs[5] == "0" || strings.Contains(row, "syncing") {
				done = false
			}
		}
		if done {
			return out
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: policy not synced within %s:\n%s", s.name, timeout, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestKill9MidPolicySync: switchboard is killed (kill -9) while a group's
// sync is open (BEGIN_SYNC and part of its domains consumed, SYNC_COMPLETE
// not yet produced); after the rest of the feed arrives and switchboard
// restarts, its policy is identical to a clean run's.
func TestKill9MidPolicySync(t *testing.T) {
	c := sharedCluster(t)
	b := c.broker()
	topic := "faults-policy-kill9"
	createTopic(t, c.bootstrap(), topic, 3, 3, map[string]string{"min.insync.replicas": "2"})
	f := makeFeed()
	// Part 1: everything except the second half of enterprise_b (which holds
	// its SYNC_COMPLETE). Keys are group ids, so each group stays in order.
	eb := f.msgs["enterprise_b"]
	half := len(eb) / 2
	for _, g := range append([]string{"malicious"}, f.groups...) {
		lines := f.msgs[g]
		if g == "enterprise_b" {
			lines = eb[:half]
		}
		kafkatest.KcatProduce(t, b, topic, lines, g)
	}
	sb := newInstance(t, "policy-kill9", policyFiles(c.bootstrap(), topic))
	sb.startReady()
	deadline := time.Now().Add(2 * time.Minute)
	var midSync string
	for {
		out, _ := sb.rx("policy show groups")
		if strings.Contains(out, "enterprise_b") && strings.Contains(out, "syncing") {
			midSync = out
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("enterprise_b never seen syncing:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	sb.kill9()
	t.Logf("killed mid-sync:\n%s", midSync)
	kafkatest.KcatProduce(t, b, topic, eb[half:], "enterprise_b")
	sb.startReady()
	waitSynced(sb, f, 3*time.Minute)
	got := policyView(sb, f)

	clean := newInstance(t, "policy-clean", policyFiles(c.bootstrap(), topic))
	clean.startReady()
	waitSynced(clean, f, 3*time.Minute)
	want := policyView(clean, f)
	total := 0
	for _, ls := range f.msgs {
		total += len(ls)
	}
	diff, diffText := lineDiff(got, want, 20)
	lines := strings.Count(want, "\n")
	report(t, "kill9-mid-policy-sync", total, total, 0, 0,
		fmt.Sprintf("killed with enterprise_b syncing; restarted view vs clean run: %d of %d lines differ", diff, lines))
	if got != want {
		t.Errorf("policy after kill -9 + restart differs from a clean run (- restarted, + clean):\n%s", diffText)
	}
}
