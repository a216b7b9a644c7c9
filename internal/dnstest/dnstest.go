// Package dnstest runs the real DNS parts tests use: an unbound resolver on
// loopback that answers every name from local data (no internet needed),
// and dig as the client, with its answer read into fields.
package dnstest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// AnyA is the address unbound answers every A query with.
const AnyA = "192.0.2.1"

// Unbound is a running unbound.
type Unbound struct {
	Addr netip.AddrPort
	cmd  *exec.Cmd
}

// FreePort returns a loopback port that was free for both UDP and TCP a
// moment ago.
func FreePort(t testing.TB) uint16 {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return uint16(port)
		}
	}
	t.Fatal("no free port")
	return 0
}

// StartUnbound starts unbound on a free loopback port: every name gets
// "A 192.0.2.1" (TTL 300) unless extra (unbound server: lines such as
// `local-zone: "big.test." static` and `local-data: "..."`) says otherwise.
// It is stopped when the test ends.
func StartUnbound(t testing.TB, extra ...string) *Unbound {
	t.Helper()
	bin, err := exec.LookPath("unbound")
	if err != nil {
		bin = "/usr/sbin/unbound"
		if _, serr := os.Stat(bin); serr != nil {
			t.Fatalf("unbound is not installed (Debian package unbound; scripts/deps.sh installs it): %v", err)
		}
	}
	port := FreePort(t)
	dir := t.TempDir()
	conf := fmt.Sprintf(`server:
    interface: 127.0.0.1@%d
    port: %d
    do-ip6: no
    num-threads: 1
    do-daemonize: no
    chroot: ""
    username: ""
    pidfile: ""
    directory: "%s"
    use-syslog: no
    logfile: ""
    verbosity: 0
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    auto-trust-anchor-file: ""
    local-zone: "." redirect
    local-data: ". 300 IN A %s"
%s
remote-control:
    control-enable: no
`, port, port, dir, AnyA, "    "+strings.Join(extra, "\n    "))
	path := filepath.Join(dir, "unbound.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-d", "-c", path)
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting unbound: %v", err)
	}
	u := &Unbound{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), cmd: cmd}
	t.Cleanup(u.Stop)
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	testwait.Until(t, 15*time.Second, "unbound answering on "+u.Addr.String(), func() bool {
		select {
		case <-exited:
			t.Fatalf("unbound exited: %s", out.String())
		default:
		}
		r := Dig(t, u.Addr, "ready.example", "A", "+time=1", "+tries=1")
		return r.Status == "NOERROR" && len(r.Answer) == 1
	})
	return u
}

// Stop stops unbound (idempotent).
func (u *Unbound) Stop() {
	if u.cmd.Process != nil {
		u.cmd.Process.Kill()
	}
}

// Answer is what dig printed of one answer.
type Answer struct {
	// Raw is dig's whole output.
	Raw string
	// Status is the rcode name ("NOERROR", "NXDOMAIN"...), empty when dig
	// got no answer.
	Status string
	// ID is the message id.
	ID string
	// Flags are the header flags ("qr", "rd", "ra", "tc", "aa").
	Flags []string
	// Question, Answer and Authority are the sections' records, one line
	// each with dig's whitespace collapsed to single spaces.
	Question, Answer, Authority []string
	// EDNS is dig's OPT pseudosection line, empty without one.
	EDNS string
}

// HasFlag reports whether the header flag is set.
func (a *Answer) HasFlag(f string) bool {
	for _, x := range a.Flags {
		if x == f {
			return true
		}
	}
	return false
}

var (
	headerRe = regexp.MustCompile(`status: ([A-Z]+), id: (\d+)`)
	flagsRe  = regexp.MustCompile(`;; flags: ([a-z ]*);`)
	ednsRe   = regexp.MustCompile(`; EDNS: (.*)`)
	spaceRe  = regexp.MustCompile(`\s+`)
)

// Dig runs dig against server with the given name, type and options
// ("+tcp", "+bufsize=512", "-b", "127.0.0.2"...) and reads its answer.
func Dig(t testing.TB, server netip.AddrPort, name, qtype string, opts ...string) *Answer {
	t.Helper()
	args := append([]string{"@" + server.Addr().String(), "-p", fmt.Sprint(server.Port()), name, qtype, "+time=2", "+tries=1"}, opts...)
	out, _ := exec.Command("dig", args...).CombinedOutput()
	return parseDig(string(out))
}

func parseDig(s string) *Answer {
	a := &Answer{Raw: s}
	if m := headerRe.FindStringSubmatch(s); m != nil {
		a.Status, a.ID = m[1], m[2]
	}
	if m := flagsRe.FindStringSubmatch(s); m != nil {
		a.Flags = strings.Fields(m[1])
	}
	if m := ednsRe.FindStringSubmatch(s); m != nil {
		a.EDNS = strings.TrimSpace(m[1])
	}
	var sec *[]string
	for _, line := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(line, ";; QUESTION SECTION:"):
			sec = &a.Question
		case strings.HasPrefix(line, ";; ANSWER SECTION:"):
			sec = &a.Answer
		case strings.HasPrefix(line, ";; AUTHORITY SECTION:"):
			sec = &a.Authority
		case strings.HasPrefix(line, ";; ADDITIONAL SECTION:"), strings.HasPrefix(line, ";; Query time"):
			sec = nil
		case strings.TrimSpace(line) == "":
			sec = nil
		case sec != nil:
			*sec = append(*sec, strings.TrimSpace(spaceRe.ReplaceAllString(line, " ")))
		}
	}
	return a
}
