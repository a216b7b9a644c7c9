package cdrfile

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/conf"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// tricky are records whose fields need escaping or quoting.
func tricky() []*cdr.Record {
	return []*cdr.Record{
		{TS: 1717430400123, IP: netip.MustParseAddr("192.168.1.42"), SubscriberID: "subscriber-42", Domain: []byte("malware.ru"),
			QType: 1, Action: decision.Sinkhole, Group: 3, Category: 1},
		{TS: 1717430400124, IP: netip.MustParseAddr("2001:db8::1"), SubscriberID: "sub,with,commas", Domain: []byte(`quo"te.example`),
			QType: 28, Action: decision.Block, Group: 4294967295, Category: 0xdeadbeef, Seq: 77},
		{TS: -5, IP: netip.MustParseAddr("::ffff:10.0.0.1"), SubscriberID: " leading space", Domain: []byte("line\nbreak\r.example"),
			QType: 65535, Action: decision.Allow, Group: 0, Category: 0, Seq: 18446744073709551615},
		{TS: 0, SubscriberID: "", Domain: []byte("bad\xffutf8\xc3.example"), Action: decision.Action(9), Seq: 1},
		{TS: 1, IP: netip.MustParseAddr("fe80::1%eth,0"), SubscriberID: "\ttab", Domain: []byte("é.example"), QType: 16, Action: decision.Allow, Seq: 2},
	}
}

// Every record survives the batch's binary form: its JSON line is
// cdr.AppendJSON of the original.
func TestRecordRoundTrip(t *testing.T) {
	for i, r := range append(tricky(), record(1), record(300)) {
		bin := appendRecord(nil, r)
		var got cdr.Record
		if err := decodeRecord(&got, bin); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if a, b := cdr.AppendJSON(nil, r), cdr.AppendJSON(nil, &got); !bytes.Equal(a, b) {
			t.Fatalf("%d: round trip changed the record:\n%s\n%s", i, a, b)
		}
		if got.IP != r.IP {
			t.Fatalf("%d: ip %v, want %v", i, got.IP, r.IP)
		}
		// Truncated or extended forms are refused, never misread.
		for n := 0; n < len(bin); n++ {
			if decodeRecord(&got, bin[:n]) == nil {
				t.Fatalf("%d: truncated to %d bytes decodes", i, n)
			}
		}
		if decodeRecord(&got, append(bin, 0)) == nil {
			t.Fatalf("%d: trailing byte decodes", i)
		}
	}
}

// The JSON format is exactly cdr.AppendJSON's text, one record per line.
func TestJSONOutputExact(t *testing.T) {
	cfg := defaults()
	r := newRig(t, cfg, nil)
	p := r.e.NewPoster()
	posted := tricky()
	for _, rec := range posted {
		p.Post(rec)
	}
	p.Close()
	r.stop()
	names, got := complete(t, r.dir)
	// Post gave the records IDs: the engine's random instance (written here
	// as <instance>) and 1, 2, ...
	got = strings.ReplaceAll(got, fmt.Sprintf("%016x", r.e.Instance()), "<instance>")
	want := `{"ts":1717430400123,"ip":"192.168.1.42","subscriber_id":"subscriber-42","domain":"malware.ru","qtype":1,"action":"sinkhole","group":3,"category":"0x00000001","id":"<instance>-1"}
{"ts":1717430400124,"ip":"2001:db8::1","subscriber_id":"sub,with,commas","domain":"quo\"te.example","qtype":28,"action":"block","group":4294967295,"category":"0xdeadbeef","id":"<instance>-2","seq":77}
{"ts":-5,"ip":"::ffff:10.0.0.1","subscriber_id":" leading space","domain":"line\nbreak\r.example","qtype":65535,"action":"allow","group":0,"category":"0x00000000","id":"<instance>-3","seq":18446744073709551615}
{"ts":0,"ip":"","subscriber_id":"","domain":"bad\ufffdutf8\ufffd.example","qtype":0,"action":"action(9)","group":0,"category":"0x00000000","id":"<instance>-4","seq":1}
{"ts":1,"ip":"fe80::1%eth,0","subscriber_id":"\ttab","domain":"é.example","qtype":16,"action":"allow","group":0,"category":"0x00000000","id":"<instance>-5","seq":2}
`
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	// The same text as cdr.AppendJSON of each record as posted.
	var viaEncoder strings.Builder
	for _, rec := range posted {
		viaEncoder.Write(append(cdr.AppendJSON(nil, rec), '\n'))
	}
	if _, raw := complete(t, r.dir); raw != viaEncoder.String() {
		t.Fatal("the file differs from cdr.AppendJSON's text")
	}
	if len(names) != 1 || names[0] != "cdr-20240603-140000.jsonl" {
		t.Fatalf("files %v", names)
	}
	s := r.check()
	if s.Delivered != 5 || s.Queued != 0 {
		t.Fatalf("%+v", s)
	}
}

// The CSV format: the configured columns in their order, RFC 4180 quoting,
// a header line per file when asked, LF or CRLF line ends.
func TestCSVOutputExact(t *testing.T) {
	for _, tc := range []struct {
		name, columns string
		header, crlf  bool
		want          string
	}{
		{name: "default columns", columns: defaults().Columns, want: `1717430400123,192.168.1.42,subscriber-42,malware.ru,1,sinkhole,3,0x00000001,<instance>-1,
1717430400124,2001:db8::1,"sub,with,commas","quo""te.example",28,block,4294967295,0xdeadbeef,<instance>-2,77
-5,::ffff:10.0.0.1," leading space","line
break` + "\r" + `.example",65535,allow,0,0x00000000,<instance>-3,18446744073709551615
0,,,bad` + "\uFFFD" + `utf8` + "\uFFFD" + `.example,0,action(9),0,0x00000000,<instance>-4,1
1,"fe80::1%eth,0","	tab",é.example,16,allow,0,0x00000000,<instance>-5,2
`},
		{name: "some columns, header, CRLF", columns: " Domain , action,seq,ts", header: true, crlf: true,
			want: "domain,action,seq,ts\r\n" +
				"malware.ru,sinkhole,,1717430400123\r\n" +
				"\"quo\"\"te.example\",block,77,1717430400124\r\n" +
				"\"line\nbreak\r.example\",allow,18446744073709551615,-5\r\n" +
				"bad\uFFFDutf8\uFFFD.example,action(9),1,0\r\n" +
				"é.example,allow,2,1\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := defaults()
			cfg.Format, cfg.Columns, cfg.CSVHeader, cfg.CSVCRLF, cfg.File = "csv", tc.columns, tc.header, tc.crlf, "cdr-%Y%m%d-%H%M%S.csv"
			r := newRig(t, cfg, nil)
			p := r.e.NewPoster()
			for _, rec := range tricky() {
				p.Post(rec)
			}
			p.Close()
			r.stop()
			names, raw := complete(t, r.dir)
			got := strings.ReplaceAll(raw, fmt.Sprintf("%016x", r.e.Instance()), "<instance>")
			if got != tc.want {
				t.Fatalf("got:\n%q\nwant:\n%q", got, tc.want)
			}
			if len(names) != 1 || names[0] != "cdr-20240603-140000.csv" {
				t.Fatalf("files %v", names)
			}
			// encoding/csv reads it back field for field (valid UTF-8 input).
			rd := csv.NewReader(strings.NewReader(raw))
			rows, err := rd.ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if n := len(tricky()) + map[bool]int{true: 1}[tc.header]; len(rows) != n {
				t.Fatalf("%d rows, want %d", len(rows), n)
			}
		})
	}
}

// For valid UTF-8 fields the quoting is encoding/csv's, byte for byte.
func TestCSVFieldMatchesEncodingCSV(t *testing.T) {
	for _, f := range []string{"", "plain", "a,b", `a"b`, "a\nb", "a\rb", " lead", "\tlead", "trail ", `""`, "é", "x\u2028y", `\.`, "a;b"} {
		var want bytes.Buffer
		w := csv.NewWriter(&want)
		w.Write([]string{f, "x"})
		w.Flush()
		got := append(appendCSVField(nil, []byte(f)), ",x\n"...)
		if f == `\.` {
			continue // encoding/csv quotes it for PostgreSQL's sake; RFC 4180 does not
		}
		if string(got) != want.String() {
			t.Errorf("%q: got %q, encoding/csv %q", f, got, want.String())
		}
	}
}

// Periods are multiples of the interval since the Unix epoch, in UTC.
func TestPeriodStart(t *testing.T) {
	at := time.Date(2024, 6, 3, 14, 20, 7, 5e8, time.FixedZone("X", -5*3600))
	for d, want := range map[time.Duration]string{
		time.Second:     "2024-06-03T19:20:07Z",
		time.Hour:       "2024-06-03T19:00:00Z",
		24 * time.Hour:  "2024-06-03T00:00:00Z",
		7 * time.Minute: time.Unix(at.Unix()/420*420, 0).UTC().Format(time.RFC3339),
	} {
		if got := periodStart(at, d).Format(time.RFC3339); got != want {
			t.Errorf("%v: %s, want %s", d, got, want)
		}
	}
}

func TestPattern(t *testing.T) {
	tm := time.Date(2024, 6, 3, 4, 5, 6, 0, time.FixedZone("X", 3600))
	for pat, want := range map[string][2]string{
		"cdr-%Y%m%d-%H%M%S.jsonl": {"cdr-20240603-030506.jsonl", "cdr-20240603-030506_002.jsonl"},
		"%s.csv":                  {"1717383906.csv", "1717383906_002.csv"},
		"cdr_%Y-%m-%d.%H%%.log":   {"cdr_2024-06-03.03%.log", "cdr_2024-06-03.03%_002.log"},
		"plain":                   {"plain", "plain_002"},
	} {
		p, err := parsePattern(pat)
		if err != nil {
			t.Fatalf("%s: %v", pat, err)
		}
		if got := p.expand(tm, 0); got != want[0] {
			t.Errorf("%s: %s, want %s", pat, got, want[0])
		}
		if got := p.expand(tm, 2); got != want[1] {
			t.Errorf("%s: %s, want %s", pat, got, want[1])
		}
		for _, n := range want {
			if !p.matches(n) {
				t.Errorf("%s does not match %s", pat, n)
			}
			if p.matches(n + openSuffix) {
				t.Errorf("%s matches %s", pat, n+openSuffix)
			}
		}
	}
	p, _ := parsePattern("cdr-%Y%m%d.jsonl")
	for _, n := range []string{"cdr-2024060.jsonl", "cdr-20240603.json", "x-20240603.jsonl", "cdr-20240603-1.jsonl"} {
		if p.matches(n) {
			t.Errorf("matches %s", n)
		}
	}
	for pat, want := range map[string]string{
		"":              "empty",
		"a/b-%Y":        "contains '/'",
		"cdr-%Q.jsonl":  "unknown field %Q",
		"cdr-%":         "lone %",
		"x.jsonl.open":  "ends in .open",
		"..":            "not a file name",
		"%Y%m%d.%H%M%S": "", // fine: the extension is after the last '.'
	} {
		_, err := parsePattern(pat)
		if want == "" {
			if err != nil {
				t.Errorf("%q: %v", pat, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", pat, err, want)
		}
	}
}

// Problems are reported with file:line, all at once.
func TestConfigErrors(t *testing.T) {
	text := "[general]\n" +
		"enabled = yes\n" +
		"format = csv\n" +
		"columns = ts,ip,bogus\n" +
		"file = cdr-%Q.csv\n" +
		"rotate_interval = 500ms\n" +
		"retry_min_ms = 5000\n" +
		"retry_max_ms = 100\n" +
		"spool_dir = cdr_file\n"
	f, err := conf.Parse("cdr_file.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var cfg File
	err = conf.DecodeFile(f, &cfg)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`cdr_file.conf:4: [general] columns: unknown column "bogus"`,
		`cdr_file.conf:5: [general] file: file name pattern "cdr-%Q.csv": unknown field %Q`,
		`cdr_file.conf:6: [general] rotate_interval: 500ms is below 1s`,
		`cdr_file.conf:8: [general] retry_max_ms: retry_max_ms 100 is below retry_min_ms 5000`,
		`cdr_file.conf:9: [general] spool_dir: spool_dir must not be the CDR directory`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	f, _ = conf.Parse("cdr_file.conf", []byte("[general]\ncolumns = ts,ts\nformat = xml\n"))
	err = conf.DecodeFile(f, &cfg)
	if err == nil || !strings.Contains(err.Error(), `cdr_file.conf:3: [general] format`) {
		t.Errorf("format: %v", err)
	}
	f, _ = conf.Parse("cdr_file.conf", []byte("[general]\ncolumns = ts,ts\n"))
	if err = conf.DecodeFile(f, &cfg); err == nil || !strings.Contains(err.Error(), `cdr_file.conf:2: [general] columns: column "ts" is listed twice`) {
		t.Errorf("duplicate column: %v", err)
	}
}

// The sample documents the defaults: decoded, it is the missing file's
// configuration.
func TestSampleConfigDecodes(t *testing.T) {
	path := filepath.Join("..", "..", "samples", ConfigFile)
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
	f, err := conf.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg File
	if err := conf.DecodeFile(f, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.General != *defaults() {
		t.Fatalf("sample differs from the defaults:\n%+v\n%+v", cfg.General, *defaults())
	}
	if cfg.General.Enabled {
		t.Fatal("the sample enables the module; the demo must not write files unasked")
	}
}
