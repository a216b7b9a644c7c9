package subscribers

import (
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-dp/switchboard/conf"
)

func TestLongestPrefix(t *testing.T) {
	def := &Subscriber{ID: "unknown", Group: "default"}
	a := &Subscriber{ID: "a", Group: "g1"}
	b := &Subscriber{ID: "b", Group: "g2"}
	c := &Subscriber{ID: "c", Group: "g3"}
	d := &Subscriber{ID: "d", Group: "g4"}
	all := &Subscriber{ID: "all6", Group: "g5"}
	tab, err := Build(def, []Entry{
		{netip.MustParsePrefix("10.0.0.0/8"), a},
		{netip.MustParsePrefix("10.1.0.0/16"), b},
		{netip.MustParsePrefix("10.1.2.3/32"), c},
		{netip.MustParsePrefix("255.255.255.0/24"), d},
		{netip.MustParsePrefix("2001:db8::/32"), b},
		{netip.MustParsePrefix("2001:db8:42::/48"), c},
		{netip.MustParsePrefix("ffff::/16"), d},
		{netip.MustParsePrefix("::/0"), all},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ addr, want string }{
		{"9.255.255.255", "unknown"}, {"10.0.0.0", "a"}, {"10.1.0.0", "b"}, {"10.1.2.2", "b"},
		{"10.1.2.3", "c"}, {"10.1.2.4", "b"}, {"10.1.255.255", "b"}, {"10.2.0.0", "a"},
		{"10.255.255.255", "a"}, {"11.0.0.0", "unknown"}, {"255.255.255.255", "d"}, {"255.255.254.255", "unknown"},
		{"::ffff:10.1.2.3", "c"}, {"2001:db8::1", "b"}, {"2001:db8:42:ffff::1", "c"}, {"2001:db8:43::", "b"},
		{"2001:db9::", "all6"}, {"::", "all6"}, {"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "d"}, {"fffe::", "all6"},
	} {
		if got := tab.Lookup(netip.MustParseAddr(c.addr)); got.ID != c.want {
			t.Errorf("%s: got %s, want %s", c.addr, got.ID, c.want)
		}
	}
	if tab.Prefixes() != 8 || tab.Subscribers() != 5 {
		t.Errorf("prefixes %d subscribers %d", tab.Prefixes(), tab.Subscribers())
	}
}

// TestRandomAgainstNaive compares lookups with a brute-force longest match
// over random nested prefixes.
func TestRandomAgainstNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20; round++ {
		var entries []Entry
		seen := map[netip.Prefix]bool{}
		for i := 0; i < 300; i++ {
			var p netip.Prefix
			if rng.IntN(2) == 0 {
				a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
				p = netip.PrefixFrom(a, 8+rng.IntN(25)).Masked()
			} else {
				var b [16]byte
				b[0], b[1], b[2] = 0x20, 0x01, byte(rng.IntN(4))
				for j := 3; j < 16; j++ {
					b[j] = byte(rng.IntN(256))
				}
				p = netip.PrefixFrom(netip.AddrFrom16(b), 16+rng.IntN(113)).Masked()
			}
			if seen[p] {
				continue
			}
			seen[p] = true
			entries = append(entries, Entry{p, &Subscriber{ID: p.String()}})
		}
		def := &Subscriber{ID: "default"}
		tab, err := Build(def, append([]Entry(nil), entries...))
		if err != nil {
			t.Fatal(err)
		}
		probe := func(a netip.Addr) {
			want, bits := def, -1
			for _, e := range entries {
				if e.Prefix.Contains(a) && e.Prefix.Bits() > bits {
					want, bits = e.Subscriber, e.Prefix.Bits()
				}
			}
			if got := tab.Lookup(a); got != want {
				t.Fatalf("%v: got %s, want %s", a, got.ID, want.ID)
			}
		}
		for _, e := range entries {
			// Edges of every prefix and their neighbours.
			first := e.Prefix.Addr()
			probe(first)
			probe(first.Prev())
			l := lastAddr(e.Prefix)
			probe(l)
			probe(l.Next())
		}
		for i := 0; i < 2000; i++ {
			probe(netip.AddrFrom4([4]byte{10, byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))}))
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

const sample = `
[general]
default_group = default
default_subscriber = unknown

[family](!)
group = family

[subscriber-42](family)
prefix = 192.168.1.42/32
prefix = 2001:db8:42::/48

[business-pool]
id = acme
group = business
prefix = 10.20.0.0/16
prefix = 10.20.5.7          ; a bare address is a host prefix

[catch-all]
prefix = 10.0.0.0/8
`

func TestFromFile(t *testing.T) {
	f, err := conf.Parse("subscribers.conf", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	tab, err := FromFile(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ addr, id, group string }{
		{"192.168.1.42", "subscriber-42", "family"},
		{"2001:db8:42::9", "subscriber-42", "family"},
		{"10.20.1.1", "acme", "business"},
		{"10.20.5.7", "acme", "business"},
		{"10.9.9.9", "catch-all", "default"},
		{"192.168.1.43", "unknown", "default"},
	} {
		s := tab.Lookup(netip.MustParseAddr(c.addr))
		if s.ID != c.id || s.Group != c.group {
			t.Errorf("%s: got %s/%s, want %s/%s", c.addr, s.ID, s.Group, c.id, c.group)
		}
	}
	if g := strings.Join(tab.Groups(), ","); g != "default,family,business" {
		t.Errorf("groups %s", g)
	}
}

func TestFromFileErrors(t *testing.T) {
	f, err := conf.Parse("subscribers.conf", []byte(`
[a]
prefix = 10.0.0.0/33
[b]
group = x
[c]
prefix = 10.1.0.0/16
[d]
prefix = 10.1.0.0/16
pefix = 1.2.3.4
`))
	if err != nil {
		t.Fatal(err)
	}
	_, err = FromFile(f)
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"subscribers.conf:3: [a] prefix: bad prefix", "subscribers.conf:4: [b] prefix: required", "subscribers.conf:10: [d] pefix: unknown key"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	f, _ = conf.Parse("subscribers.conf", []byte("[c]\nprefix = 10.1.0.0/16\n[d]\nprefix = 10.1.0.0/16\n"))
	if _, err := FromFile(f); err == nil || !strings.Contains(err.Error(), "subscribers.conf:4: [d] prefix: prefix 10.1.0.0/16 already given for [c]") {
		t.Errorf("duplicate: %v", err)
	}
}

func TestSampleConf(t *testing.T) {
	path := filepath.Join("..", "..", "..", "samples", "subscribers.conf")
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
}

func TestHolderSwap(t *testing.T) {
	h := NewHolder(nil)
	if h.Load().Lookup(netip.MustParseAddr("1.2.3.4")).Group != "default" {
		t.Fatal("empty default")
	}
	nt, _ := Build(&Subscriber{ID: "u", Group: "g"}, nil)
	old := h.Swap(nt)
	if old == nt || h.Load() != nt {
		t.Fatal("swap")
	}
}

func TestLookupZeroAlloc(t *testing.T) {
	tab := bigTable(b10k)
	a := netip.MustParseAddr("10.0.0.7")
	if n := testing.AllocsPerRun(100, func() { tab.Lookup(a) }); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

const b10k = 10000

func bigTable(n int) *Table {
	var es []Entry
	for i := 0; i < n*4; i += 4 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		es = append(es, Entry{netip.PrefixFrom(a, 30).Masked(), &Subscriber{ID: a.String(), Group: "g"}})
	}
	t, err := Build(&Subscriber{ID: "u", Group: "default"}, es)
	if err != nil {
		panic(err)
	}
	return t
}

func BenchmarkLookup(b *testing.B) {
	tab := bigTable(100000)
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, byte(i * 7), byte(i * 13), byte(i)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tab.Lookup(addrs[i&1023])
	}
}
