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
//	mkpolicyfeed [-lists testdata/blocklists] [-o policy_feed.jsonl] [-limit N]
//
// The lists are read plain or gzip-compressed (phishing-nl.txt or
// phishing-nl.txt.gz). A missing list is an error: nothing is written and the
// exit status is 1. The output appears whole or not at all. -limit keeps the
// first N domains of each list (0 = all). Lines of the lists that are not
// valid domains are skipped and counted on stderr.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/switchboard-dp/switchboard/internal/atomicfile"
	"github.com/switchboard-dp/switchboard/internal/blocklist"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
)

func main() {
	lists := flag.String("lists", blocklist.Dir, "directory of the block lists (one domain per line, plain or .gz)")
	out := flag.String("o", "policy_feed.jsonl", "output file (- for stdout)")
	limit := flag.Int("limit", 0, "at most this many domains per list (0 = all)")
	flag.Parse()
	if err := run(*lists, *out, *limit); err != nil {
		fmt.Fprintln(os.Stderr, "mkpolicyfeed:", err)
		os.Exit(1)
	}
}

type writer struct {
	w io.Writer
	n int
}

func (w *writer) msg(m respolicy.Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	w.n++
	_, err = w.w.Write(append(b, '\n'))
	return err
}

// readList returns a list's valid domains, normalised, each once, at most
// limit of them (0 = all), and how many entries were not valid domains.
func readList(path string, limit int) ([]string, int, error) {
	entries, err := blocklist.Read(path)
	if err != nil {
		return nil, 0, err
	}
	var out []string
	bad := 0
	seen := map[string]bool{}
	for _, e := range entries {
		d, err := respolicy.NormalizeDomain(e)
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
	return out, bad, nil
}

// lists are the block lists the feed is built from, by role.
type lists struct{ phishing, tracking, scam, ransomware []string }

func readLists(dir string, limit int) (lists, error) {
	var l lists
	for _, e := range []struct {
		name string
		dst  *[]string
	}{{"phishing-nl.txt", &l.phishing}, {"tracking-nl.txt", &l.tracking}, {"scam-nl.txt", &l.scam}, {"ransomware-nl.txt", &l.ransomware}} {
		d, bad, err := readList(filepath.Join(dir, e.name), limit)
		if err != nil {
			return l, err
		}
		if len(d) == 0 {
			return l, fmt.Errorf("block list %s: no valid domains", filepath.Join(dir, e.name))
		}
		fmt.Fprintf(os.Stderr, "%s: %d domains, %d invalid lines skipped\n", e.name, len(d), bad)
		*e.dst = d
	}
	return l, nil
}

func run(dir, outPath string, limit int) error {
	l, err := readLists(dir, limit)
	if err != nil {
		return err
	}
	n := 0
	write := func(out io.Writer) error {
		var err error
		n, err = writeFeed(out, l)
		return err
	}
	if outPath == "-" {
		bw := bufio.NewWriter(os.Stdout)
		if err := write(bw); err != nil {
			return err
		}
		if err := bw.Flush(); err != nil {
			return err
		}
	} else if err := atomicfile.Write(outPath, write); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "wrote %d messages to %s\n", n, outPath)
	return nil
}

// writeFeed writes the whole feed and returns its number of messages.
func writeFeed(out io.Writer, l lists) (int, error) {
	w := &writer{w: out}
	add := func(g, d string, list respolicy.List, cat uint32) error {
		return w.msg(respolicy.Message{Type: respolicy.TypeAddDomain, Group: g, Domain: d, List: list, Category: cat})
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
		return 0, err
	}
	if err := sync("enterprise_b", func() error {
		for _, d := range l.phishing {
			if err := add("enterprise_b", d, respolicy.ListBlacklist, 1); err != nil {
				return err
			}
		}
		for _, d := range l.tracking {
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
		return 0, err
	}
	if err := sync("default", func() error {
		for _, d := range l.scam {
			if err := add("default", d, respolicy.ListBlacklist, 8); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return 0, err
	}
	for _, d := range l.ransomware {
		if err := w.msg(respolicy.Message{Type: respolicy.TypeAddMalicious, Domain: d, List: respolicy.ListMalicious, Category: 4, Confidence: 95}); err != nil {
			return 0, err
		}
	}
	if err := w.msg(respolicy.Message{Type: respolicy.TypeAddMalicious, Domain: "c2.evil.example", List: respolicy.ListMalicious, Category: 4, Confidence: 98}); err != nil {
		return 0, err
	}
	return w.n, nil
}
