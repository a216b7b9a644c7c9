package dnsdecode

import (
	"bufio"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/switchboard-dp/switchboard/modules/pktengine/pcapfile"
)

// captureDirs are the directories holding capture files with tcpdump's own
// decoding beside them (<name>.pcap + <name>[-v...].out): real DNS captures
// from tcpdump's test suite (testdata/tcpdump, BSD licence beside them) and
// our synthetic captures of the other link types (regenerate with:
// go run ./cmd/mkcapture -testdata modules/dataplane/dnsdecode/testdata/captures).
func captureDirs() []string {
	return []string{filepath.Join("testdata", "captures"), filepath.Join("testdata", "tcpdump")}
}

// expectation is what tcpdump printed for one packet.
type expectation struct {
	num      int
	text     string
	kind     Kind   // Query, Response or Ignored (tcpdump printed no DNS)
	name     string // question name, "" if tcpdump did not print one
	qtype    uint16
	typeText string
}

var (
	pktStart = regexp.MustCompile(`^\s*(\d+)\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ `)
	// "q: A? name." (responses at -vv) or "A? name." (queries); the class is
	// printed between type and '?' only when it is not IN.
	respQuestion = regexp.MustCompile(` q: (\S+)\? (\S+) `)
	question     = regexp.MustCompile(` (\S+)\? (\S+) `)
	respCounts   = regexp.MustCompile(` \d+/\d+/\d+[ ,]| \d+/\d+/\d+$`)
)

// typeNumbers maps tcpdump's type mnemonics to numbers (ns_type2str).
var typeNumbers = map[string]uint16{
	"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "HINFO": 13, "MX": 15, "TXT": 16,
	"AAAA": 28, "LOC": 29, "SRV": 33, "NAPTR": 35, "A6": 38, "DNAME": 39, "OPT": 41,
	"DS": 43, "SSHFP": 44, "RRSIG": 46, "NSEC": 47, "DNSKEY": 48, "NSEC3": 50,
	"TLSA": 52, "SVCB": 64, "HTTPS": 65, "SPF": 99, "TKEY": 249, "TSIG": 250,
	"IXFR": 251, "AXFR": 252, "ANY": 255, "URI": 256, "CAA": 257,
}

func parseType(t testing.TB, s string) uint16 {
	if n, ok := typeNumbers[s]; ok {
		return n
	}
	if strings.HasPrefix(s, "Type") {
		if n, err := strconv.Atoi(s[4:]); err == nil {
			return uint16(n)
		}
	}
	t.Fatalf("unknown tcpdump type mnemonic %q: add it to typeNumbers", s)
	return 0
}

// normaliseName turns tcpdump's printed name into our presentation form:
// lower case, no trailing dot, "." for the root.
func normaliseName(s string) string {
	if s != "." {
		s = strings.TrimSuffix(s, ".")
	}
	return strings.ToLower(s)
}

func parseOut(t testing.TB, path string) []expectation {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var exps []expectation
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := pktStart.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			exps = append(exps, expectation{num: n, text: line})
			continue
		}
		if len(exps) == 0 {
			t.Fatalf("%s: continuation line before first packet: %q", path, line)
		}
		exps[len(exps)-1].text += " " + strings.TrimSpace(line)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for i := range exps {
		e := &exps[i]
		if e.num != i+1 {
			t.Fatalf("%s: packet %d numbered %d", path, i+1, e.num)
		}
		text := e.text + " "
		switch m := respQuestion.FindStringSubmatch(text); {
		case m != nil:
			e.kind, e.typeText, e.name = Response, m[1], normaliseName(m[2])
			e.qtype = parseType(t, m[1])
		default:
			if m := question.FindStringSubmatch(text); m != nil {
				e.kind, e.typeText, e.name = Query, m[1], normaliseName(m[2])
				e.qtype = parseType(t, m[1])
			} else if respCounts.MatchString(e.text) {
				e.kind = Response
			} else {
				e.kind = Ignored
			}
		}
	}
	return exps
}

// pcapFor returns the capture that an .out file decodes: same base name, or
// the base name without tcpdump's "-v", "-vv" flag suffix.
func pcapFor(out string) (string, bool) {
	base := strings.TrimSuffix(out, ".out")
	cands := []string{base}
	if i := strings.LastIndex(base, "-v"); i > 0 && strings.Trim(base[i+1:], "v") == "" {
		cands = append(cands, base[:i])
	}
	for _, c := range cands {
		for _, ext := range []string{".pcap", ".pcapng"} {
			if _, err := os.Stat(c + ext); err == nil {
				return c + ext, true
			}
		}
	}
	return "", false
}

// portsFromName lets a synthetic capture declare a non-standard DNS port in
// its name ("...-port8053.pcap"); tcpdump was run with "-T domain" for those.
func portsFromName(path string) []uint16 {
	m := regexp.MustCompile(`-port(\d+)`).FindStringSubmatch(filepath.Base(path))
	if m == nil {
		return nil
	}
	n, _ := strconv.Atoi(m[1])
	return []uint16{uint16(n)}
}

func TestMatchesTcpdump(t *testing.T) {
	total := 0
	for _, dir := range captureDirs() {
		outs, _ := filepath.Glob(filepath.Join(dir, "*.out"))
		if len(outs) == 0 {
			t.Errorf("no .out files in %s", dir)
		}
		for _, out := range outs {
			pcapPath, ok := pcapFor(out)
			if !ok {
				t.Errorf("%s: no matching capture", out)
				continue
			}
			t.Run(filepath.Base(out), func(t *testing.T) {
				exps := parseOut(t, out)
				f, err := pcapfile.Open(pcapPath)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				d, err := New(f.LinkType(), Options{Ports: portsFromName(pcapPath)})
				if err != nil {
					t.Fatal(err)
				}
				var r Result
				i := 0
				for ; ; i++ {
					data, _, err := f.ZeroCopyReadPacketData()
					if errors.Is(err, io.EOF) {
						break
					}
					if err != nil {
						t.Fatalf("packet %d: %v", i+1, err)
					}
					if i >= len(exps) {
						t.Fatalf("capture has more packets than %s (%d)", out, len(exps))
					}
					e := exps[i]
					d.Decode(data, &r)
					total++
					if r.Kind != e.kind {
						t.Errorf("packet %d: kind %v (reason %v), tcpdump: %v: %s", e.num, r.Kind, r.Reason, e.kind, e.text)
						continue
					}
					if e.name == "" {
						continue
					}
					if string(r.Name) != e.name || r.QType != e.qtype {
						t.Errorf("packet %d: got %s %q, tcpdump %s %q: %s", e.num, typeName(r.QType), r.Name, e.typeText, e.name, e.text)
					}
				}
				if i != len(exps) {
					t.Errorf("capture has %d packets, %s lists %d", i, out, len(exps))
				}
			})
		}
	}
	t.Logf("%d packets checked against tcpdump", total)
}

func typeName(q uint16) string {
	for k, v := range typeNumbers {
		if v == q {
			return k
		}
	}
	return "Type" + strconv.Itoa(int(q))
}
