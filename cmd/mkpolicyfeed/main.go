// Command mkpolicyfeed writes a policy feed (JSON lines, the format of the
// policy_updates topic, res_policy's seed_file and "policy load") built from
// the seed demo and real block lists:
//
//   - enterprise_a: the seed demo (google.com whitelisted, facebook.com
//     blacklisted, youtube.com added then removed, a few more);
//   - enterprise_b: the phishing list (category 1) and the tracking list
//     (category 2) as blacklists, plus a couple of whitelist entries;
//   - default: the scam list (category 8) as a blacklist;
//   - the malicious table: the ransomware list (category 4, confidence 95).
//
// Usage:
//
//	mkpolicyfeed [-lists ../shared/data/blocklists] [-o samples/policy_feed.jsonl] [-limit N]
//
// -limit keeps the first N domains of each list (0 = all). Lines of the lists
// that are comments or not valid domains are skipped and counted on stderr.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/switchboard-dp/switchboard/modules/respolicy"
)

func main() {
	lists := flag.String("lists", "../shared/data/blocklists", "directory of the block lists (one domain per line)")
	out := flag.String("o", "samples/policy_feed.jsonl", "output file (- for stdout)")
	limit := flag.Int("limit", 0, "at most this many domains per list (0 = all)")
	flag.Parse()
	if err := run(*lists, *out, *limit); err != nil {
		fmt.Fprintln(os.Stderr, "mkpolicyfeed:", err)
		os.Exit(1)
	}
}

type writer struct {
	w *bufio.Writer
	n int
}

func (w *writer) msg(m respolicy.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	w.n++
	if _, err := w.w.Write(b); err != nil {
		return err
	}
	return w.w.WriteByte('\n')
}

func readList(path string, limit int) ([]string, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	var out []string
	bad := 0
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if fields := strings.Fields(l); len(fields) == 2 { // hosts format "0.0.0.0 domain"
			l = fields[1]
		}
		d, err := respolicy.NormalizeDomain(l)
		if err != nil {
			bad++
			continue
		}
		if seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, d)
		if limit > 0 && len(out) >= limit {
			break
		}
	}
	return out, bad, sc.Err()
}

func run(dir, outPath string, limit int) error {
	var f *os.File
	if outPath == "-" {
		f = os.Stdout
	} else {
		var err error
		if f, err = os.Create(outPath); err != nil {
			return err
		}
		defer f.Close()
	}
	w := &writer{w: bufio.NewWriterSize(f, 1<<20)}
	add := func(g, d string, l respolicy.List, cat uint32) error {
		return w.msg(respolicy.Message{Type: respolicy.TypeAddDomain, Group: g, Domain: d, List: l, Category: cat})
	}
	sync := func(g string, body func() error) error {
		if err := w.msg(respolicy.Message{Type: respolicy.TypeBeginSync, Group: g}); err != nil {
			return err
		}
		if err := body(); err != nil {
			return err
		}
		return w.msg(respolicy.Message{Type: respolicy.TypeSyncComplete, Group: g})
	}
	// The seed demo.
	if err := sync("enterprise_a", func() error {
		for _, e := range []struct {
			d   string
			l   respolicy.List
			cat uint32
		}{
			{"google.com", respolicy.ListWhitelist, 1}, {"facebook.com", respolicy.ListBlacklist, 2},
			{"youtube.com", respolicy.ListBlacklist, 2}, {"tiktok.com", respolicy.ListBlacklist, 2},
			{"github.com", respolicy.ListWhitelist, 1}, {"doubleclick.net", respolicy.ListBlacklist, 16},
		} {
			if err := add("enterprise_a", e.d, e.l, e.cat); err != nil {
				return err
			}
		}
		return w.msg(respolicy.Message{Type: respolicy.TypeRemoveDomain, Group: "enterprise_a", Domain: "youtube.com"})
	}); err != nil {
		return err
	}
	load := func(name string) []string {
		d, bad, err := readList(filepath.Join(dir, name), limit)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mkpolicyfeed: %s: %v (skipped)\n", name, err)
			return nil
		}
		fmt.Fprintf(os.Stderr, "%s: %d domains, %d invalid lines skipped\n", name, len(d), bad)
		return d
	}
	phishing, tracking, scam, ransomware := load("phishing-nl.txt"), load("tracking-nl.txt"), load("scam-nl.txt"), load("ransomware-nl.txt")
	if err := sync("enterprise_b", func() error {
		for _, d := range phishing {
			if err := add("enterprise_b", d, respolicy.ListBlacklist, 1); err != nil {
				return err
			}
		}
		for _, d := range tracking {
			if err := add("enterprise_b", d, respolicy.ListBlacklist, 2); err != nil {
				return err
			}
		}
		for _, d := range []string{"google.com", "wikipedia.org"} {
			if err := add("enterprise_b", d, respolicy.ListWhitelist, 1); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := sync("default", func() error {
		for _, d := range scam {
			if err := add("default", d, respolicy.ListBlacklist, 8); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	for _, d := range ransomware {
		if err := w.msg(respolicy.Message{Type: respolicy.TypeAddMalicious, Domain: d, List: respolicy.ListMalicious, Category: 4, Confidence: 95}); err != nil {
			return err
		}
	}
	if err := w.msg(respolicy.Message{Type: respolicy.TypeAddMalicious, Domain: "c2.evil.example", List: respolicy.ListMalicious, Category: 4, Confidence: 98}); err != nil {
		return err
	}
	if err := w.w.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %d messages to %s\n", w.n, outPath)
	return nil
}
