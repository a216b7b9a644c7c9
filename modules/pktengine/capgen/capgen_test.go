package capgen

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/switchboard-dp/switchboard/modules/dataplane/dnsdecode"
	"github.com/switchboard-dp/switchboard/modules/pktengine/pcapfile"
)

func TestDeterministic(t *testing.T) {
	cfg := Config{Queries: 500, Seed: 42, IPv6Share: 0.3, TCPShare: 0.2, Blocked: []string{"bad.example"}, Responses: true}
	var a, b, c bytes.Buffer
	if _, err := Generate(&a, cfg); err != nil {
		t.Fatal(err)
	}
	Generate(&b, cfg)
	cfg.Seed = 43
	Generate(&c, cfg)
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("same seed, different output")
	}
	if bytes.Equal(a.Bytes(), c.Bytes()) {
		t.Fatal("different seed, same output")
	}
}

func TestReadBackEveryLink(t *testing.T) {
	for name := range LinkTypes {
		for _, ng := range []bool{false, true} {
			var buf bytes.Buffer
			st, err := Generate(&buf, Config{Queries: 300, Seed: 1, IPv6Share: 0.5, TCPShare: 0.3, Link: name, NG: ng, Responses: true,
				Blocked: []string{"bad.example"}, BlockedShare: 0.5})
			if err != nil {
				t.Fatal(err)
			}
			r, format, err := pcapfile.NewReader(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if (format == "pcapng") != ng {
				t.Fatalf("%s: format %s", name, format)
			}
			d, err := dnsdecode.New(r.LinkType(), dnsdecode.Options{})
			if err != nil {
				t.Fatal(err)
			}
			var res dnsdecode.Result
			var q, resp, v6, tcp, blocked int
			for {
				data, _, err := r.ZeroCopyReadPacketData()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				d.Decode(data, &res)
				switch res.Kind {
				case dnsdecode.Query:
					q++
					if res.Src.Is6() {
						v6++
					}
					if res.Transport == dnsdecode.TransportTCP {
						tcp++
					}
					if bytes.HasSuffix(res.Name, []byte("bad.example")) {
						blocked++
					}
				case dnsdecode.Response:
					resp++
				default:
					t.Fatalf("%s: %v %v", name, res.Kind, res.Reason)
				}
			}
			if q != st.Queries || resp != st.Responses || v6 != st.IPv6 || tcp != st.TCP || blocked != st.Blocked {
				t.Fatalf("%s ng=%v: read q=%d resp=%d v6=%d tcp=%d blocked=%d, wrote %+v", name, ng, q, resp, v6, tcp, blocked, st)
			}
			if v6 == 0 || tcp == 0 || blocked == 0 {
				t.Fatalf("%s: mix missing: %+v", name, st)
			}
		}
	}
}
