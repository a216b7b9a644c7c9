package dnsfirewall

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/modules/dataplane"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// General is the [general] section of dns_firewall.conf.
type General struct {
	Listen         []string      `conf:"listen"`
	Workers        int           `conf:"workers" default:"0" min:"0" max:"256"`
	TCP            bool          `conf:"tcp" default:"yes"`
	Subscribers    string        `conf:"subscribers" default:"subscribers.conf"`
	CDRActions     []string      `conf:"cdr_actions" default:"allow,block,sinkhole"`
	UnknownClients string        `conf:"unknown_clients" default:"refuse" enum:"refuse|drop|allow"`
	RateLimit      int           `conf:"rate_limit" default:"0" min:"0" max:"10000000"`
	RateBurst      int           `conf:"rate_burst" default:"0" min:"0" max:"10000000"`
	Batch          int           `conf:"batch" default:"32" min:"1" max:"1024"`
	TCPIdle        time.Duration `conf:"tcp_idle_timeout" default:"10s" min:"100ms" max:"1h"`
	TCPMaxConns    int           `conf:"tcp_max_connections" default:"1024" min:"1" max:"1000000"`
}

// Block is the [block] section: how a blocked query is answered.
type Block struct {
	Answer  string        `conf:"answer" default:"nxdomain" enum:"nxdomain|refused|nodata|address"`
	A       string        `conf:"a" default:"0.0.0.0"`
	AAAA    string        `conf:"aaaa" default:"::"`
	TTL     time.Duration `conf:"ttl" default:"300s" min:"0s" max:"168h"`
	SOA     bool          `conf:"soa" default:"yes"`
	SOAName string        `conf:"soa_mname" default:"blocked.switchboard.invalid."`
	SOAMail string        `conf:"soa_rname" default:"hostmaster.switchboard.invalid."`
}

// Sinkhole is the [sinkhole] section: the addresses a sinkholed A / AAAA
// query is answered with.
type Sinkhole struct {
	A        string        `conf:"a" default:"0.0.0.0"`
	AAAA     string        `conf:"aaaa" default:"::"`
	TTL      time.Duration `conf:"ttl" default:"60s" min:"0s" max:"168h"`
	Category []string      `conf:"category"`
}

// Upstream is the [upstream] section: where allowed queries go.
type Upstream struct {
	Servers       []string      `conf:"server"`
	Policy        string        `conf:"policy" default:"order" enum:"order|roundrobin"`
	Timeout       time.Duration `conf:"timeout" default:"1s" min:"10ms" max:"30s"`
	Retries       int           `conf:"retries" default:"1" min:"0" max:"8"`
	DownAfter     int           `conf:"down_after" default:"3" min:"1" max:"1000"`
	ProbeInterval time.Duration `conf:"probe_interval" default:"1s" min:"10ms" max:"1h"`
	MaxInflight   int           `conf:"max_inflight" default:"4096" min:"16" max:"4096"`
}

// Config is the decoded dns_firewall.conf.
type Config struct {
	General  General  `section:"general"`
	Block    Block    `section:"block"`
	Sinkhole Sinkhole `section:"sinkhole"`
	Upstream Upstream `section:"upstream"`

	// Addrs are the parsed listen addresses.
	Addrs []netip.AddrPort
	// Servers are the parsed upstream servers.
	Servers []netip.AddrPort
	// CDRSet is the parsed cdr_actions.
	CDRSet decision.ActionSet
	// Answers are the parsed answer settings.
	Answers Answers
}

// Answers is how the firewall answers what it does not forward.
type Answers struct {
	BlockKind blockKind
	BlockA    [4]byte
	BlockAAAA [16]byte
	BlockTTL  uint32
	SOA       bool
	SOAMName  []byte // wire form
	SOARName  []byte // wire form
	SinkA     [4]byte
	SinkAAAA  [16]byte
	SinkTTL   uint32
	// ByCategory are per-category sinkhole addresses, first match wins.
	ByCategory []categorySink
}

type categorySink struct {
	mask uint32
	a    [4]byte
	aaaa [16]byte
}

// blockKind is the answer a blocked query gets.
type blockKind uint8

const (
	blockNXDomain blockKind = iota
	blockRefused
	blockNoData
	blockAddress
)

// parseAddrPort reads "host:port", "host" (port def) or "[v6]:port".
func parseAddrPort(s string, def uint16) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: want an IP address with an optional :port", s)
	}
	return netip.AddrPortFrom(a, def), nil
}

func parse4(s string) ([4]byte, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return [4]byte{}, fmt.Errorf("%q is not an IPv4 address", s)
	}
	return a.As4(), nil
}

func parse6(s string) ([16]byte, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is6() || a.Is4In6() {
		return [16]byte{}, fmt.Errorf("%q is not an IPv6 address", s)
	}
	return a.As16(), nil
}

// wireName encodes a dotted name ("a.b." or "a.b") in DNS wire form.
func wireName(s string) ([]byte, error) {
	s = strings.TrimSuffix(s, ".")
	var out []byte
	if s != "" {
		for _, l := range strings.Split(s, ".") {
			if l == "" || len(l) > 63 {
				return nil, fmt.Errorf("bad label %q", l)
			}
			out = append(out, byte(len(l)))
			out = append(out, l...)
		}
	}
	out = append(out, 0)
	if len(out) > 255 {
		return nil, fmt.Errorf("name longer than 255 octets")
	}
	return out, nil
}

func ttlSeconds(d time.Duration) uint32 { return uint32(d / time.Second) }

// Validate parses the addresses, the CDR actions and the answers.
func (c *Config) Validate(f *conf.File) error {
	var errs conf.Errors
	c.Addrs, c.Servers, c.CDRSet = nil, nil, 0
	for _, l := range conf.SplitList(c.General.Listen) {
		ap, err := parseAddrPort(l, 53)
		if err != nil {
			errs.At(f, "general", "listen", "%v", err)
			continue
		}
		c.Addrs = append(c.Addrs, ap)
	}
	var bad []string
	c.CDRSet, bad = dataplane.ParseCDRActions(c.General.CDRActions)
	for _, msg := range bad {
		errs.At(f, "general", "cdr_actions", "%s", msg)
	}
	for _, s := range conf.SplitList(c.Upstream.Servers) {
		ap, err := parseAddrPort(s, 53)
		if err != nil {
			errs.At(f, "upstream", "server", "%v", err)
			continue
		}
		c.Servers = append(c.Servers, ap)
	}
	if len(c.Addrs) > 0 && len(c.Servers) == 0 {
		errs.At(f, "upstream", "server", "no upstream server: allowed queries need one (server = 127.0.0.1:53)")
	}
	ans := &c.Answers
	*ans = Answers{BlockTTL: ttlSeconds(c.Block.TTL), SinkTTL: ttlSeconds(c.Sinkhole.TTL), SOA: c.Block.SOA}
	ans.BlockKind = map[string]blockKind{"nxdomain": blockNXDomain, "refused": blockRefused, "nodata": blockNoData, "address": blockAddress}[c.Block.Answer]
	var err error
	if ans.BlockA, err = parse4(c.Block.A); err != nil {
		errs.At(f, "block", "a", "%v", err)
	}
	if ans.BlockAAAA, err = parse6(c.Block.AAAA); err != nil {
		errs.At(f, "block", "aaaa", "%v", err)
	}
	if ans.SOAMName, err = wireName(c.Block.SOAName); err != nil {
		errs.At(f, "block", "soa_mname", "%q: %v", c.Block.SOAName, err)
	}
	if ans.SOARName, err = wireName(c.Block.SOAMail); err != nil {
		errs.At(f, "block", "soa_rname", "%q: %v", c.Block.SOAMail, err)
	}
	if ans.SinkA, err = parse4(c.Sinkhole.A); err != nil {
		errs.At(f, "sinkhole", "a", "%v", err)
	}
	if ans.SinkAAAA, err = parse6(c.Sinkhole.AAAA); err != nil {
		errs.At(f, "sinkhole", "aaaa", "%v", err)
	}
	for _, v := range c.Sinkhole.Category {
		fs := strings.Fields(v)
		if len(fs) < 2 || len(fs) > 3 {
			errs.At(f, "sinkhole", "category", "%q: want <category mask> <IPv4 address> [<IPv6 address>]", v)
			continue
		}
		m, err := strconv.ParseUint(fs[0], 0, 32)
		if err != nil || m == 0 {
			errs.At(f, "sinkhole", "category", "%q: category mask %q is not a non-zero 32-bit number (0x00000004)", v, fs[0])
			continue
		}
		cs := categorySink{mask: uint32(m), aaaa: ans.SinkAAAA}
		if cs.a, err = parse4(fs[1]); err != nil {
			errs.At(f, "sinkhole", "category", "%q: %v", v, err)
			continue
		}
		if len(fs) == 3 {
			if cs.aaaa, err = parse6(fs[2]); err != nil {
				errs.At(f, "sinkhole", "category", "%q: %v", v, err)
				continue
			}
		}
		ans.ByCategory = append(ans.ByCategory, cs)
	}
	return errs.Err()
}
