package dnsfirewall

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
)

// The answer path against github.com/miekg/dns, the Go DNS message library
// (used here only as this benchmark's peer): read an A query with EDNS and
// build the NXDOMAIN answer with its SOA and OPT, as a blocked query gets.
//
//	go test -run '^$' -bench BlockAnswer -count 5 ./modules/dnsfirewall

func benchQuery() []byte {
	m := new(dns.Msg)
	m.SetQuestion("www.tracker.example.com.", dns.TypeA)
	m.SetEdns0(1232, false)
	b, _ := m.Pack()
	return b
}

func BenchmarkBlockAnswerSwitchboard(b *testing.B) {
	msg := benchQuery()
	ans := fuzzAnswers()[0]
	dec := dnsdecode.NewMessageDecoder()
	var r dnsdecode.Result
	var q query
	dst := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		parse(dec, &r, msg, &q)
		dst = blockAnswer(dst[:0], msg, &q, ans)
	}
}

func BenchmarkBlockAnswerMiekg(b *testing.B) {
	msg := benchQuery()
	buf := make([]byte, 0, 1024)
	soa := &dns.SOA{Hdr: dns.RR_Header{Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 300}, Ns: "a.invalid.", Mbox: "b.invalid.", Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, Minttl: 300}
	b.ReportAllocs()
	for b.Loop() {
		var m dns.Msg
		if err := m.Unpack(msg); err != nil {
			b.Fatal(err)
		}
		r := new(dns.Msg)
		r.SetRcode(&m, dns.RcodeNameError)
		s := *soa
		s.Hdr.Name = m.Question[0].Name
		r.Ns = []dns.RR{&s}
		if o := m.IsEdns0(); o != nil {
			r.SetEdns0(1232, o.Do())
		}
		var err error
		if buf, err = r.PackBuffer(buf); err != nil {
			b.Fatal(err)
		}
	}
}
