// Command mkcapture writes synthetic DNS captures for benchmarks, demos and
// decoder tests: N queries from many subscribers for names drawn from real
// block lists plus benign names, deterministic for a given seed.
//
//	mkcapture -n 1000000 -blocklists testdata/blocklists -o /tmp/dns-1m.pcap
//	mkcapture -testdata modules/dataplane/dnsdecode/testdata/captures
//
// -testdata writes a small capture per supported link type/variant and, with
// tcpdump installed, tcpdump's own decoding of each beside it (<name>.out),
// which the decoder's table-driven test compares against.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/switchboard-dp/switchboard/internal/atomicfile"
	"github.com/switchboard-dp/switchboard/internal/blocklist"
	"github.com/switchboard-dp/switchboard/modules/pktengine/capgen"
)

func main() {
	var (
		cfg        capgen.Config
		out        = flag.String("o", "", "output file (.pcapng writes pcapng)")
		blocklists = flag.String("blocklists", "", "block-list files or directories (comma separated) to draw blocked names from")
		vlans      = flag.String("vlan", "", "802.1Q tags, comma separated (two = QinQ)")
		testdata   = flag.String("testdata", "", "write the decoder test suite (captures + tcpdump .out) into this directory")
		port       = flag.Uint("port", 53, "DNS server port")
	)
	flag.IntVar(&cfg.Queries, "n", 1000, "number of queries")
	flag.Uint64Var(&cfg.Seed, "seed", 1, "random seed")
	flag.IntVar(&cfg.Subscribers, "subscribers", 10000, "distinct subscriber addresses")
	flag.Float64Var(&cfg.IPv6Share, "ipv6", 0.2, "share of IPv6 subscribers")
	flag.Float64Var(&cfg.BlockedShare, "blocked", 0.3, "share of queries for block-list names")
	flag.Float64Var(&cfg.TCPShare, "tcp", 0, "share of queries over TCP")
	flag.BoolVar(&cfg.Responses, "responses", false, "write a response after each query")
	flag.Float64Var(&cfg.MixedCaseShare, "mixed-case", 0.05, "share of names in random case (0x20)")
	flag.StringVar(&cfg.Link, "link", "ether", "link type: ether, sll, raw, null, loop")
	flag.Float64Var(&cfg.PPS, "pps", 10000, "timestamp pace, packets per second")
	flag.Parse()
	cfg.Port = uint16(*port)

	if *testdata != "" {
		if err := writeSuite(*testdata); err != nil {
			fmt.Fprintln(os.Stderr, "mkcapture:", err)
			os.Exit(1)
		}
		return
	}
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mkcapture: -o FILE is required")
		flag.Usage()
		os.Exit(2)
	}
	for _, v := range splitList(*vlans) {
		n, err := strconv.ParseUint(v, 10, 12)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mkcapture: bad VLAN %q\n", v)
			os.Exit(2)
		}
		cfg.VLANs = append(cfg.VLANs, uint16(n))
	}
	for _, p := range splitList(*blocklists) {
		doms, err := loadBlocklists(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mkcapture:", err)
			os.Exit(1)
		}
		cfg.Blocked = append(cfg.Blocked, doms...)
	}
	cfg.NG = strings.HasSuffix(*out, ".pcapng")
	st, err := writeFile(*out, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkcapture:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "mkcapture: %s: %d packets, %d queries (%d blocked-list, %d benign, %d tcp, %d ipv6), %d responses\n",
		*out, st.Packets, st.Queries, st.Blocked, st.Benign, st.TCP, st.IPv6, st.Responses)
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// loadBlocklists reads one list file, or every list of a directory (plain
// or gzip-compressed); a missing file or an empty directory is an error.
func loadBlocklists(p string) ([]string, error) {
	fi, err := os.Stat(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	files := []string{p}
	if err == nil && fi.IsDir() {
		if files, err = blocklist.Files(p); err != nil {
			return nil, err
		}
	}
	var all []string
	for _, f := range files {
		d, err := blocklist.Read(f)
		if err != nil {
			return nil, err
		}
		all = append(all, d...)
	}
	return all, nil
}

// writeFile writes the capture whole or not at all.
func writeFile(path string, cfg capgen.Config) (st capgen.Stats, err error) {
	err = atomicfile.Write(path, func(w io.Writer) error {
		st, err = capgen.Generate(w, cfg)
		return err
	})
	return st, err
}

// suite is the decoder test suite: one small capture per variant.
var suite = []struct {
	file    string
	tcpdump []string // extra tcpdump flags; "-vv" also names the .out file
	cfg     capgen.Config
}{
	{"ether-vlan.pcap", nil, capgen.Config{Queries: 12, Seed: 11, IPv6Share: 0.5, VLANs: []uint16{100}, Responses: true}},
	{"ether-qinq.pcap", nil, capgen.Config{Queries: 12, Seed: 12, IPv6Share: 0.5, VLANs: []uint16{100, 200}}},
	{"sll.pcap", []string{"-vv"}, capgen.Config{Queries: 12, Seed: 13, IPv6Share: 0.5, Link: "sll", Responses: true}},
	{"raw.pcap", nil, capgen.Config{Queries: 12, Seed: 14, IPv6Share: 0.5, Link: "raw"}},
	{"null.pcap", nil, capgen.Config{Queries: 12, Seed: 15, IPv6Share: 0.5, Link: "null"}},
	{"loop.pcap", nil, capgen.Config{Queries: 12, Seed: 16, IPv6Share: 0.5, Link: "loop"}},
	{"tcp.pcap", []string{"-vv"}, capgen.Config{Queries: 12, Seed: 17, IPv6Share: 0.5, TCPShare: 1, Responses: true}},
	{"ipv6.pcapng", nil, capgen.Config{Queries: 12, Seed: 18, IPv6Share: 1, NG: true, Responses: true}},
	{"udp-port8053.pcap", []string{"-T", "domain"}, capgen.Config{Queries: 12, Seed: 19, IPv6Share: 0.5, Port: 8053}},
	{"mixed-case.pcap", nil, capgen.Config{Queries: 12, Seed: 20, MixedCaseShare: 1}},
}

func writeSuite(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	blocked := []string{"0-google.com", "malware-c2.example.ru", "tracker.ads.example"}
	tcpdump, tcpdumpErr := exec.LookPath("tcpdump")
	for _, s := range suite {
		cfg := s.cfg
		cfg.Blocked = blocked
		cfg.Subscribers = 50
		path := filepath.Join(dir, s.file)
		if _, err := writeFile(path, cfg); err != nil {
			return fmt.Errorf("%s: %w", s.file, err)
		}
		if tcpdumpErr != nil {
			fmt.Fprintf(os.Stderr, "mkcapture: %s written; tcpdump not found, no .out\n", path)
			continue
		}
		base := strings.TrimSuffix(strings.TrimSuffix(path, ".pcapng"), ".pcap")
		for _, f := range s.tcpdump {
			if f == "-vv" {
				base += "-vv"
			}
		}
		args := append([]string{"-#", "-n", "-tttt", "-r", path}, s.tcpdump...)
		cmd := exec.Command(tcpdump, args...)
		cmd.Env = append(os.Environ(), "TZ=UTC")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("tcpdump %s: %v: %s", strings.Join(args, " "), err, stderr.String())
		}
		if err := atomicfile.Write(base+".out", func(w io.Writer) error { _, err := w.Write(stdout.Bytes()); return err }); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "mkcapture: %s + %s.out\n", path, filepath.Base(base))
	}
	return nil
}
