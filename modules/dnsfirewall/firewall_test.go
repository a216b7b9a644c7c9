package dnsfirewall

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/dnstest"
	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// keepBackend is a CDR backend that keeps every record.
type keepBackend struct {
	mu   sync.Mutex
	recs []cdr.Record
}

func (b *keepBackend) Name() string              { return "test_keep" }
func (b *keepBackend) Attach(*cdr.Registration)  {}
func (b *keepBackend) FlushAfter() time.Duration { return 5 * time.Millisecond }
func (b *keepBackend) NewBatcher() cdr.Batcher   { return &keepBatcher{b: b} }

type keepBatcher struct {
	b    *keepBackend
	recs []cdr.Record
}

func (k *keepBatcher) Add(r *cdr.Record) bool {
	c := *r
	c.Domain = append([]byte(nil), r.Domain...)
	k.recs = append(k.recs, c)
	return len(k.recs) >= 64
}
func (k *keepBatcher) Len() int { return len(k.recs) }
func (k *keepBatcher) Flush() {
	k.b.mu.Lock()
	k.b.recs = append(k.b.recs, k.recs...)
	k.b.mu.Unlock()
	k.recs = k.recs[:0]
}

func (b *keepBackend) find(domain string) []cdr.Record {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []cdr.Record
	for _, r := range b.recs {
		if string(r.Domain) == domain {
			out = append(out, r)
		}
	}
	return out
}

func write(t testing.TB, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// bigTXT is a zone line set whose TXT answer is larger than 512 bytes, for
// the truncation paths.
func bigTXT() []string {
	lines := []string{`local-zone: "big.example." static`}
	for i := range 12 {
		lines = append(lines, fmt.Sprintf(`local-data: "big.example. 300 IN TXT \"%02d-%s\""`, i, strings.Repeat("x", 90)))
	}
	return lines
}

type fixture struct {
	h     *core.Host
	dir   string
	addr  netip.AddrPort
	addrs []netip.AddrPort
	be    *keepBackend
	ub    *dnstest.Unbound
}

// start runs res_policy, cdr and dns_firewall in a host against a real
// unbound. Subscriber 127.0.0.1 is in group "family", which blocks
// blocked.example (and below) and sees the global malicious list.
func start(t *testing.T, fwConf string, upstreams ...netip.AddrPort) *fixture {
	t.Helper()
	dir := t.TempDir()
	write(t, dir, "seed.jsonl", strings.Join([]string{
		`{"type":"BEGIN_SYNC","group_id":"family"}`,
		`{"type":"ADD_DOMAIN","group_id":"family","domain":"blocked.example","action":"blacklist","category":4}`,
		`{"type":"ADD_DOMAIN","group_id":"family","domain":"white.example","action":"whitelist"}`,
		`{"type":"SYNC_COMPLETE","group_id":"family"}`,
		`{"type":"ADD_MALICIOUS","domain":"evil-c2.example","category":1,"confidence":99}`,
		`{"type":"ADD_MALICIOUS","domain":"phish.example","category":8,"confidence":99}`,
	}, "\n")+"\n")
	write(t, dir, "res_policy.conf", "[general]\nseed_file = seed.jsonl\n[groups]\nfamily = 3\n")
	write(t, dir, "subscribers.conf", "[general]\ndefault_group = default\n[home]\ngroup = family\nprefix = 127.0.0.1/32\nprefix = ::1/128\n[other]\ngroup = default\nprefix = 127.0.0.3/32\n")
	f := &fixture{dir: dir, be: &keepBackend{}}
	if len(upstreams) == 0 {
		f.ub = dnstest.StartUnbound(t, bigTXT()...)
		upstreams = []netip.AddrPort{f.ub.Addr}
	}
	var servers []string
	for _, u := range upstreams {
		servers = append(servers, "server = "+u.String())
	}
	write(t, dir, ConfigFile, "[general]\nlisten = 127.0.0.1:0\nworkers = 2\n"+fwConf+"\n[upstream]\n"+strings.Join(servers, "\n")+"\ntimeout = 300ms\n")
	reg := core.NewRegistry()
	for _, info := range []core.ModuleInfo{respolicy.Info(), cdr.Info(), Info()} {
		if err := reg.Register(info); err != nil {
			t.Fatal(err)
		}
	}
	f.h = core.New(core.Options{Registry: reg, ConfigDir: dir, DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := f.h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.h.Stop(core.StopMode(0)) })
	inst, _ := f.h.Instance(cdr.Name)
	if _, err := inst.(*cdr.Engine).Register(f.be); err != nil {
		t.Fatal(err)
	}
	fw, _ := f.h.Instance(Name)
	addrs := fw.(*Module).Addrs()
	if len(addrs) == 0 {
		t.Fatal("no address bound")
	}
	f.addr, f.addrs = addrs[0], addrs
	return f
}

func (f *fixture) status(t *testing.T) Status {
	inst, _ := f.h.Instance(Name)
	return inst.(*Module).Firewall().Status()
}

func (f *fixture) cli(t *testing.T, cmd string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := f.h.Run(context.Background(), cmd, &buf); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, buf.String())
	}
	return buf.String()
}

func wantOne(t *testing.T, what string, got []string, want string) {
	t.Helper()
	if len(got) != 1 || got[0] != want {
		t.Errorf("%s: got %q, want [%q]", what, got, want)
	}
}

// TestAnswersFieldByField checks with dig, over UDP and TCP, the answer to
// each decision: block (NXDOMAIN with the question and the negative-caching
// SOA), sinkhole (the category's address; NODATA for other types), allow
// (unbound's answer relayed), a source outside the subscribers (REFUSED),
// and EDNS echoed. Each decision gave one CDR.
func TestAnswersFieldByField(t *testing.T) {
	f := start(t, "[block]\nttl = 120s\n[sinkhole]\na = 192.0.2.53\naaaa = 2001:db8::53\nttl = 30s\ncategory = 0x8 192.0.2.88 2001:db8::88\n")
	for _, proto := range []string{"+notcp", "+tcp"} {
		t.Run(proto, func(t *testing.T) {
			r := dnstest.Dig(t, f.addr, "Sub.Blocked.Example", "A", proto, "+bufsize=1232")
			if r.Status != "NXDOMAIN" || !r.HasFlag("qr") || !r.HasFlag("rd") || !r.HasFlag("ra") || r.HasFlag("aa") || r.HasFlag("tc") {
				t.Fatalf("blocked: status %q flags %v\n%s", r.Status, r.Flags, r.Raw)
			}
			wantOne(t, "blocked question", r.Question, ";Sub.Blocked.Example. IN A")
			if len(r.Answer) != 0 {
				t.Errorf("blocked: answers %q", r.Answer)
			}
			wantOne(t, "blocked SOA", r.Authority, "Sub.Blocked.Example. 120 IN SOA blocked.switchboard.invalid. hostmaster.switchboard.invalid. 1 3600 600 86400 120")
			if !strings.Contains(r.EDNS, "udp: 1232") {
				t.Errorf("blocked: EDNS %q, want udp: 1232", r.EDNS)
			}

			r = dnstest.Dig(t, f.addr, "evil-c2.example", "A", proto)
			wantOne(t, "sinkhole A", r.Answer, "evil-c2.example. 30 IN A 192.0.2.53")
			r = dnstest.Dig(t, f.addr, "evil-c2.example", "AAAA", proto)
			wantOne(t, "sinkhole AAAA", r.Answer, "evil-c2.example. 30 IN AAAA 2001:db8::53")
			r = dnstest.Dig(t, f.addr, "phish.example", "A", proto)
			wantOne(t, "sinkhole A of category 0x8", r.Answer, "phish.example. 30 IN A 192.0.2.88")
			r = dnstest.Dig(t, f.addr, "evil-c2.example", "TXT", proto)
			if r.Status != "NOERROR" || len(r.Answer) != 0 || len(r.Authority) != 1 {
				t.Errorf("sinkhole TXT: want NODATA with a SOA, got %s %q %q", r.Status, r.Answer, r.Authority)
			}

			r = dnstest.Dig(t, f.addr, "allowed.example", "A", proto)
			if r.Status != "NOERROR" {
				t.Fatalf("allowed: %s\n%s", r.Status, r.Raw)
			}
			wantOne(t, "allowed (from unbound)", r.Answer, "allowed.example. 300 IN A "+dnstest.AnyA)
			r = dnstest.Dig(t, f.addr, "white.example", "A", proto)
			wantOne(t, "whitelisted", r.Answer, "white.example. 300 IN A "+dnstest.AnyA)

			r = dnstest.Dig(t, f.addr, "allowed.example", "A", proto, "-b", "127.0.0.2")
			if r.Status != "REFUSED" || len(r.Answer) != 0 {
				t.Errorf("source outside the subscribers: %s %q, want REFUSED", r.Status, r.Answer)
			}
			wantOne(t, "refused question", r.Question, ";allowed.example. IN A")
			// 127.0.0.3 is a subscriber of group default: blocked.example is not blocked there.
			r = dnstest.Dig(t, f.addr, "blocked.example", "A", proto, "-b", "127.0.0.3")
			wantOne(t, "group default", r.Answer, "blocked.example. 300 IN A "+dnstest.AnyA)
		})
	}
	testwait.Until(t, 5*time.Second, "CDRs", func() bool { return len(f.be.find("sub.blocked.example")) == 2 })
	for _, r := range f.be.find("sub.blocked.example") {
		if r.Action != decision.Block || r.SubscriberID != "home" || r.Category != 4 || r.QType != 1 || r.IP != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("blocked CDR %+v", r)
		}
	}
	testwait.Until(t, 5*time.Second, "CDRs", func() bool { return len(f.be.find("evil-c2.example")) == 6 })
	if n := len(f.be.find("allowed.example")); n != 2 {
		t.Errorf("%d CDRs for allowed.example, want 2 (the refused queries get none)", n)
	}
	st := f.status(t)
	k := st.Kinds
	if k[kBlocked] != 2 || k[kSinkholed] != 8 || k[kForwarded] != 6 || k[kRefused] != 2 || k[kServFail] != 0 {
		t.Errorf("counts: blocked %d sinkholed %d forwarded %d refused %d servfail %d", k[kBlocked], k[kSinkholed], k[kForwarded], k[kRefused], k[kServFail])
	}
	if st.Queries != 18 {
		t.Errorf("%d queries counted, want 18", st.Queries)
	}
	out := f.cli(t, "dns show status")
	if !regexp.MustCompile(`Sockets:\s+3\s`).MatchString(out) {
		t.Errorf("dns show status: want 3 sockets:\n%s", out)
	}
	for _, want := range []string{"udp " + f.addr.String() + " x2", "tcp " + f.addr.String(),
		"blocked 2, sinkholed 8, forwarded 6", "refused 2", f.ub.Addr.String() + "  up"} {
		if !strings.Contains(out, want) {
			t.Errorf("dns show status lacks %q:\n%s", want, out)
		}
	}
}

// TestTruncation: a UDP answer larger than the client's buffer reaches the
// client with TC set (dig +ignore shows it); over TCP the client gets the
// whole answer.
func TestTruncation(t *testing.T) {
	f := start(t, "")
	r := dnstest.Dig(t, f.addr, "big.example", "TXT", "+ignore", "+noedns")
	if r.Status != "NOERROR" || !r.HasFlag("tc") {
		t.Fatalf("UDP: want NOERROR with tc, got %s %v\n%s", r.Status, r.Flags, r.Raw)
	}
	r = dnstest.Dig(t, f.addr, "big.example", "TXT", "+tcp")
	if r.Status != "NOERROR" || r.HasFlag("tc") || len(r.Answer) != 12 {
		t.Fatalf("TCP: want 12 TXT records without tc, got %s %v %d\n%s", r.Status, r.Flags, len(r.Answer), r.Raw)
	}
	// Without +ignore dig retries over TCP itself, as a resolver would.
	r = dnstest.Dig(t, f.addr, "big.example", "TXT", "+noedns")
	if len(r.Answer) != 12 {
		t.Fatalf("UDP then TCP: %d TXT records\n%s", len(r.Answer), r.Raw)
	}
	st := f.status(t)
	if st.Kinds[kTruncated] < 2 {
		t.Errorf("truncated counted %d, want >= 2", st.Kinds[kTruncated])
	}
	if st.Upstreams[0].TCP == 0 {
		t.Errorf("the TCP client's query did not go over TCP to the upstream after TC: %+v", st.Upstreams[0])
	}
}

// TestUpstreamFailover: with the first upstream dead, queries are answered
// by the second one and the first goes down after down_after timeouts;
// with both dead the answer is SERVFAIL, counted.
func TestUpstreamFailover(t *testing.T) {
	ub := dnstest.StartUnbound(t)
	dead := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), dnstest.FreePort(t))
	f := start(t, "", dead, ub.Addr)
	for i := range 5 {
		r := dnstest.Dig(t, f.addr, fmt.Sprintf("n%d.example", i), "A")
		wantOne(t, "answer through the second upstream", r.Answer, fmt.Sprintf("n%d.example. 300 IN A %s", i, dnstest.AnyA))
	}
	st := f.status(t)
	if st.Upstreams[0].Up || st.Upstreams[0].Timeouts+st.Upstreams[0].Errors < 3 {
		t.Errorf("dead upstream: %+v, want down after 3 failures", st.Upstreams[0])
	}
	if !st.Upstreams[1].Up || st.Upstreams[1].Answered != 5 {
		t.Errorf("live upstream: %+v, want up with 5 answers", st.Upstreams[1])
	}
	ub.Stop()
	for _, proto := range []string{"+notcp", "+tcp"} {
		r := dnstest.Dig(t, f.addr, "after.example", "A", proto)
		if r.Status != "SERVFAIL" {
			t.Fatalf("%s with both upstreams dead: %s, want SERVFAIL\n%s", proto, r.Status, r.Raw)
		}
		wantOne(t, "servfail question", r.Question, ";after.example. IN A")
	}
	if n := f.status(t).Kinds[kServFail]; n != 2 {
		t.Errorf("servfail counted %d, want 2", n)
	}
}

// exchangeRaw sends msg over UDP and returns the answer (nil after wait
// without one).
func exchangeRaw(t *testing.T, to netip.AddrPort, msg []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// TestMalformed: a message shorter than a header or a response gets no
// answer; a header without its question gets FORMERR; a NOTIFY gets NOTIMP;
// every one is counted by reason.
func TestMalformed(t *testing.T) {
	f := start(t, "")
	if got := exchangeRaw(t, f.addr, []byte{1, 2, 3}, 300*time.Millisecond); got != nil {
		t.Errorf("short message answered: %x", got)
	}
	resp := []byte{0, 1, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	if got := exchangeRaw(t, f.addr, resp, 300*time.Millisecond); got != nil {
		t.Errorf("response answered: %x", got)
	}
	noQ := []byte{0xab, 0xcd, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0} // QDCOUNT 1, no question
	got := exchangeRaw(t, f.addr, noQ, 2*time.Second)
	if len(got) < 12 || binary.BigEndian.Uint16(got) != 0xabcd || got[3]&0xf != rcodeFormErr || got[2]&0x80 == 0 {
		t.Errorf("header without its question: %x, want FORMERR with id abcd", got)
	}
	notify := []byte{0x12, 0x34, 0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1}
	got = exchangeRaw(t, f.addr, notify, 2*time.Second)
	if len(got) < 12 || got[3]&0xf != rcodeNotImp {
		t.Errorf("NOTIFY: %x, want NOTIMP", got)
	}
	st := f.status(t)
	k := st.Kinds
	if k[kDropShort] != 1 || k[kDropResponse] != 1 || k[kFormErr] != 1 || k[kNotImp] != 1 || st.FormErrs["truncated"] != 1 {
		t.Errorf("counts: short %d response %d formerr %d (%v) notimp %d", k[kDropShort], k[kDropResponse], k[kFormErr], st.FormErrs, k[kNotImp])
	}
	if out := f.cli(t, "dns show status"); !strings.Contains(out, "by reason: truncated 1") || !strings.Contains(out, "short 1, response 1") {
		t.Errorf("dns show status:\n%s", out)
	}
}

// TestRateLimit: a client over rate_limit + rate_burst is dropped, counted.
func TestRateLimit(t *testing.T) {
	f := start(t, "rate_limit = 1\nrate_burst = 5\n")
	answered := 0
	for i := range 12 {
		msg := []byte{0, byte(i), 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'b', 'l', 'o', 'c', 'k', 'e', 'd', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0, 0, 1, 0, 1}
		if exchangeRaw(t, f.addr, msg, 200*time.Millisecond) != nil {
			answered++
		}
	}
	// 12 queries in well under 3 s: the burst of 5 plus at most 2 refills.
	if answered < 5 || answered > 7 {
		t.Errorf("%d of 12 answered, want the burst of 5 (plus refills)", answered)
	}
	if n := f.status(t).Kinds[kDropRate]; n != uint64(12-answered) {
		t.Errorf("rate-limit drops counted %d, want %d", n, 12-answered)
	}
}

// TestReloadKeepsSockets: a reload changes the block answer and the
// upstreams while the sockets stay bound.
func TestReloadKeepsSockets(t *testing.T) {
	f := start(t, "")
	second := dnstest.StartUnbound(t, `local-zone: "moved.example." static`, `local-data: "moved.example. 60 IN A 192.0.2.77"`)
	r := dnstest.Dig(t, f.addr, "blocked.example", "A")
	if r.Status != "NXDOMAIN" {
		t.Fatalf("before reload: %s", r.Status)
	}
	write(t, f.dir, ConfigFile, "[general]\nlisten = 127.0.0.1:0\nworkers = 2\n[block]\nanswer = address\na = 192.0.2.99\n[upstream]\nserver = "+second.Addr.String()+"\n")
	f.cli(t, "module reload "+Name)
	r = dnstest.Dig(t, f.addr, "blocked.example", "A")
	wantOne(t, "blocked after reload (answer = address)", r.Answer, "blocked.example. 300 IN A 192.0.2.99")
	r = dnstest.Dig(t, f.addr, "moved.example", "A")
	wantOne(t, "allowed after reload (the new upstream)", r.Answer, "moved.example. 60 IN A 192.0.2.77")
	r = dnstest.Dig(t, f.addr, "blocked.example", "TXT")
	if r.Status != "NOERROR" || len(r.Answer) != 0 {
		t.Errorf("blocked TXT with answer = address: %s %q, want NODATA", r.Status, r.Answer)
	}
}

// TestIPv6AndSeveralAddresses: a second listen address on IPv6 loopback
// serves the same answers, over UDP and TCP, with its own sockets.
func TestIPv6AndSeveralAddresses(t *testing.T) {
	f := start(t, "listen = [::1]:0\n")
	if len(f.addrs) != 2 || !f.addrs[1].Addr().Is6() {
		t.Fatalf("bound %v, want 127.0.0.1 and ::1", f.addrs)
	}
	for _, proto := range []string{"+notcp", "+tcp"} {
		r := dnstest.Dig(t, f.addrs[1], "blocked.example", "AAAA", proto)
		if r.Status != "NXDOMAIN" {
			t.Errorf("%s over IPv6: %s\n%s", proto, r.Status, r.Raw)
		}
		r = dnstest.Dig(t, f.addrs[1], "allowed.example", "A", proto)
		wantOne(t, "allowed over IPv6", r.Answer, "allowed.example. 300 IN A "+dnstest.AnyA)
	}
	if n := len(f.status(t).Sockets); n != 6 {
		t.Errorf("%d sockets, want 6 (2 UDP + 1 TCP per address)", n)
	}
}
