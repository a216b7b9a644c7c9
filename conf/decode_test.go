package conf

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Conn is a shared connection config, embedded by module configs.
type Conn struct {
	Brokers []string          `conf:"brokers" required:"true"`
	Timeout time.Duration     `conf:"timeout" default:"5s" min:"1ms" max:"1m"`
	Options map[string]string `conf:"rdkafka.*"`
}

type level int

type codec string

type hidden struct {
	Hidden string `conf:"hidden" default:"h"`
}

type allTypes struct {
	Conn
	hidden
	Name     string        `conf:"name"`
	Codec    codec         `conf:"compression" enum:"none|gzip|snappy|lz4|zstd" default:"none"`
	Enabled  bool          `conf:"enabled" default:"yes"`
	Int      int           `conf:"int"`
	Int32    int32         `conf:"int32"`
	Int64    int64         `conf:"int64"`
	Level    level         `conf:"level" min:"0" max:"7"`
	Port     uint16        `conf:"port"`
	Uint32   uint32        `conf:"uint32"`
	Uint64   uint64        `conf:"uint64"`
	Ratio    float64       `conf:"ratio" min:"0" max:"1"`
	Float32  float32       `conf:"float32"`
	Linger   time.Duration `conf:"linger"`
	Topics   []string      `conf:"topic" enum:"a|b|c"`
	Tags     []string      `conf:"tag" default:"x, y"`
	BatchMS  int           `conf:"batch_ms" default:"100" min:"1" max:"60000"`
	Skipped  string        `conf:"-"`
	Untagged string
	unexp    string
}

func section(t *testing.T, text string) *Section {
	t.Helper()
	f, err := Parse("t.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Sections) == 0 {
		t.Fatal("no section")
	}
	return f.Sections[len(f.Sections)-1]
}

func TestDecodeAllTypes(t *testing.T) {
	s := section(t, `[conn](!)
brokers = b1:9092
brokers = b2:9092
rdkafka.socket.keepalive.enable = true
[x](conn)
NAME = "hello world"
compression = LZ4
enabled = off
int = -42
int32 = 2147483647
int64 = -9223372036854775808
level = 7
port = 65535
uint32 = 4294967295
uint64 = 18446744073709551615
ratio = 0.25
float32 = 1.5
linger = 1m30s
timeout = 250ms
topic = A
topic => c
RDKafka.Queue.Buffering.Max.Ms = 5
hidden = shown
`)
	v := allTypes{Skipped: "keep", Untagged: "keep", unexp: "keep"}
	if err := Decode(s, &v); err != nil {
		t.Fatal(err)
	}
	want := allTypes{
		Conn: Conn{Brokers: []string{"b1:9092", "b2:9092"}, Timeout: 250 * time.Millisecond,
			Options: map[string]string{"socket.keepalive.enable": "true", "Queue.Buffering.Max.Ms": "5"}},
		hidden: hidden{Hidden: "shown"},
		Name:   "hello world", Codec: "lz4", Enabled: false, Int: -42, Int32: 2147483647,
		Int64: -9223372036854775808, Level: 7, Port: 65535, Uint32: 4294967295, Uint64: 18446744073709551615,
		Ratio: 0.25, Float32: 1.5, Linger: 90 * time.Second, Topics: []string{"a", "c"},
		Tags: []string{"x", "y"}, BatchMS: 100, Skipped: "keep", Untagged: "keep", unexp: "keep",
	}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("got  %+v\nwant %+v", v, want)
	}
}

func TestDecodeDefaultsAndPrefilled(t *testing.T) {
	s := section(t, "[x]\nbrokers = b\n")
	v := allTypes{Name: "prefilled", Conn: Conn{Options: map[string]string{"keep": "1"}}}
	if err := Decode(s, &v); err != nil {
		t.Fatal(err)
	}
	if v.Name != "prefilled" || v.Codec != "none" || !v.Enabled || v.Timeout != 5*time.Second ||
		v.BatchMS != 100 || !reflect.DeepEqual(v.Tags, []string{"x", "y"}) || v.Hidden != "h" ||
		!reflect.DeepEqual(v.Options, map[string]string{"keep": "1"}) {
		t.Errorf("got %+v", v)
	}
	// Prefix keys overlay a pre-filled map, without touching the original.
	orig := map[string]string{"keep": "1", "over": "old"}
	v = allTypes{Conn: Conn{Options: orig}}
	if err := Decode(section(t, "[x]\nbrokers = b\nrdkafka.over = new\nrdkafka.over = newer\n"), &v); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v.Options, map[string]string{"keep": "1", "over": "newer"}) || orig["over"] != "old" {
		t.Errorf("options %v, original %v", v.Options, orig)
	}
}

func TestDecodeBool(t *testing.T) {
	type B struct {
		B bool `conf:"b"`
	}
	for in, want := range map[string]bool{"yes": true, "YES": true, "true": true, "On": true, "1": true,
		"no": false, "False": false, "off": false, "0": false} {
		v := B{B: !want}
		if err := Decode(section(t, "[s]\nb = "+in+"\n"), &v); err != nil || v.B != want {
			t.Errorf("%q: %v, %v", in, v.B, err)
		}
	}
}

func TestDecodeNilSection(t *testing.T) {
	var v struct {
		A int `conf:"a" default:"3"`
	}
	if err := Decode(nil, &v); err != nil || v.A != 3 {
		t.Fatalf("%v %v", v, err)
	}
	var r struct {
		A int `conf:"a" required:"true"`
	}
	if err := Decode(nil, &r); err == nil || err.Error() != "a: required key is missing" {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string // whole error lines
	}{
		{"bad number", "[s]\nbrokers = b\nint = abc\n", []string{`t.conf:3: [s] int: "abc" is not a number`}},
		{"empty number", "[s]\nbrokers = b\nint =\n", []string{`t.conf:3: [s] int: "" is not a number`}},
		{"hex is not decimal", "[s]\nbrokers = b\nint = 0x10\n", []string{`t.conf:3: [s] int: "0x10" is not a number`}},
		{"uint16 out of range", "[s]\nbrokers = b\nport = 70000\n", []string{`t.conf:3: [s] port: 70000 out of range 0..65535`}},
		{"negative uint", "[s]\nbrokers = b\nport = -1\n", []string{`t.conf:3: [s] port: -1 out of range 0..65535`}},
		{"huge negative uint", "[s]\nbrokers = b\nuint64 = -99999999999999999999\n", []string{`t.conf:3: [s] uint64: -99999999999999999999 out of range 0..18446744073709551615`}},
		{"bad uint", "[s]\nbrokers = b\nport = -x\n", []string{`t.conf:3: [s] port: "-x" is not a number`}},
		{"int32 overflow", "[s]\nbrokers = b\nint32 = 2147483648\n", []string{`t.conf:3: [s] int32: 2147483648 out of range -2147483648..2147483647`}},
		{"int64 overflow", "[s]\nbrokers = b\nint64 = 9223372036854775808\n", []string{`t.conf:3: [s] int64: 9223372036854775808 out of range -9223372036854775808..9223372036854775807`}},
		{"max tag", "[s]\nbrokers = b\nbatch_ms = 70000\n", []string{`t.conf:3: [s] batch_ms: 70000 out of range 1..60000`}},
		{"min tag", "[s]\nbrokers = b\nbatch_ms = 0\n", []string{`t.conf:3: [s] batch_ms: 0 out of range 1..60000`}},
		{"named int max", "[s]\nbrokers = b\nlevel = 8\n", []string{`t.conf:3: [s] level: 8 out of range 0..7`}},
		{"float range", "[s]\nbrokers = b\nratio = 1.5\n", []string{`t.conf:3: [s] ratio: 1.5 out of range 0..1`}},
		{"float32 range", "[s]\nbrokers = b\nfloat32 = 1e39\n", []string{`t.conf:3: [s] float32: 1e39 out of range -3.4028234663852886e+38..3.4028234663852886e+38`}},
		{"float NaN", "[s]\nbrokers = b\nratio = NaN\n", []string{`t.conf:3: [s] ratio: "NaN" is not a number`}},
		{"float bad", "[s]\nbrokers = b\nratio = half\n", []string{`t.conf:3: [s] ratio: "half" is not a number`}},
		{"bad bool", "[s]\nbrokers = b\nenabled = maybe\n", []string{`t.conf:3: [s] enabled: "maybe" is not a boolean (use yes/no, true/false, on/off or 1/0)`}},
		{"duration without unit", "[s]\nbrokers = b\nlinger = 100\n", []string{`t.conf:3: [s] linger: "100" is not a duration (use a number with a unit, e.g. 100ms, 1.5s, 2m)`}},
		{"duration range", "[s]\nbrokers = b\ntimeout = 2m\n", []string{`t.conf:3: [s] timeout: 2m out of range 1ms..1m0s`}},
		{"bad enum", "[s]\nbrokers = b\ncompression = lz5\n", []string{`t.conf:3: [s] compression: "lz5" is not one of none|gzip|snappy|lz4|zstd`}},
		{"bad enum in list", "[s]\nbrokers = b\ntopic = a\ntopic = d\n", []string{`t.conf:4: [s] topic: "d" is not one of a|b|c`}},
		{"required", "[other]\n[s]\nname = x\n", []string{`t.conf:2: [s] brokers: required key is missing`}},
		{"unknown key with suggestion", "[s]\nbrokers = b\ncompresion = gzip\n", []string{`t.conf:3: [s] compresion: unknown key "compresion" (did you mean "compression"?)`}},
		{"unknown key, case-insensitive suggestion", "[s]\nbrokers = b\nBROKER = x\n", []string{`t.conf:3: [s] BROKER: unknown key "BROKER" (did you mean "brokers"?)`}},
		{"unknown key without suggestion", "[s]\nbrokers = b\nfoo = 1\n", []string{`t.conf:3: [s] foo: unknown key "foo"`}},
		{"skipped field is unknown", "[s]\nbrokers = b\nskipped = 1\nuntagged = 1\n", []string{`t.conf:3: [s] skipped: unknown key "skipped"`, `t.conf:4: [s] untagged: unknown key "untagged"`}},
		{"bare prefix", "[s]\nbrokers = b\nrdkafka. = 1\n", []string{`t.conf:3: [s] rdkafka.: missing option name after "rdkafka."`}},
		{"inherited key error points at the template", "[t](!)\nport = 99999\n[s](t)\nbrokers = b\n", []string{`t.conf:2: [s] port: 99999 out of range 0..65535`}},
		{"last occurrence wins", "[s]\nbrokers = b\nport = 99999\nport = 1\n", nil},
		{"every problem reported, in line order", "[s]\nport = x\nint = y\nnope = 1\ncompression = q\n", []string{
			`t.conf:1: [s] brokers: required key is missing`,
			`t.conf:2: [s] port: "x" is not a number`,
			`t.conf:3: [s] int: "y" is not a number`,
			`t.conf:4: [s] nope: unknown key "nope"`,
			`t.conf:5: [s] compression: "q" is not one of none|gzip|snappy|lz4|zstd`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := allTypes{Name: "untouched", Conn: Conn{Options: map[string]string{"k": "v"}}}
			before := v
			err := Decode(section(t, tt.text), &v)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error; got %+v", v)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %T is not Errors: %v", err, err)
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got:\n%s\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
			if !reflect.DeepEqual(v, before) || len(v.Options) != 1 {
				t.Errorf("target changed on error: %+v", v)
			}
		})
	}
}

func TestDecodeProgrammingErrors(t *testing.T) {
	s := section(t, "[s]\n")
	var notStruct int
	var nilPtr *allTypes
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"nil", nil, "non-nil pointer to a struct, got <nil>"},
		{"not a pointer", allTypes{}, "got conf.allTypes"},
		{"nil pointer", nilPtr, "got *conf.allTypes"},
		{"pointer to non-struct", &notStruct, "got *int"},
		{"unexported tagged", &struct {
			a int `conf:"a"`
		}{}, "conf tag on an unexported field"},
		{"empty name", &struct {
			A int `conf:""`
		}{}, `bad key name ""`},
		{"unsupported type", &struct {
			A []int `conf:"a"`
		}{}, "unsupported type []int"},
		{"prefix on non-map", &struct {
			A string `conf:"x.*"`
		}{}, `prefix key "x.*" needs a map[string]string field`},
		{"empty prefix", &struct {
			A map[string]string `conf:"*"`
		}{}, `empty prefix`},
		{"map without prefix", &struct {
			A map[string]string `conf:"a"`
		}{}, "unsupported type map[string]string"},
		{"bad min", &struct {
			A int `conf:"a" min:"x"`
		}{}, `bad min tag "x"`},
		{"min on uint below zero", &struct {
			A uint `conf:"a" min:"-1"`
		}{}, `bad min tag "-1"`},
		{"bad duration max", &struct {
			A time.Duration `conf:"a" max:"5"`
		}{}, `bad max tag "5"`},
		{"bad float min", &struct {
			A float64 `conf:"a" min:"NaN"`
		}{}, `bad min tag "NaN"`},
		{"min on string", &struct {
			A string `conf:"a" min:"1"`
		}{}, "only numbers and durations take bounds"},
		{"min > max", &struct {
			A int `conf:"a" min:"5" max:"1"`
		}{}, "min is greater than max"},
		{"enum on int", &struct {
			A int `conf:"a" enum:"1|2"`
		}{}, "enum tag on int"},
		{"empty enum", &struct {
			A string `conf:"a" enum:""`
		}{}, "empty enum tag"},
		{"bad required", &struct {
			A string `conf:"a" required:"sure"`
		}{}, `bad required tag "sure"`},
		{"bad default", &struct {
			A int `conf:"a" default:"x"`
		}{}, `bad default: "x" is not a number`},
		{"default out of range", &struct {
			A int `conf:"a" default:"9" max:"5"`
		}{}, `bad default: 9 out of range`},
		{"default not in enum", &struct {
			A []string `conf:"a" enum:"x|y" default:"x,z"`
		}{}, `bad default: "z" is not one of x|y`},
		{"default on map", &struct {
			A map[string]string `conf:"a.*" default:"x"`
		}{}, "default tag on a prefix map"},
		{"required with default", &struct {
			A int `conf:"a" required:"true" default:"1"`
		}{}, "a required key cannot have a default"},
		{"duplicate key", &struct {
			A int `conf:"a"`
			B int `conf:"A"`
		}{}, `both use key "A"`},
		{"duplicate through embedding", &struct {
			Conn
			B []string `conf:"Brokers"`
		}{}, `both use key "Brokers"`},
		{"embedded pointer", &struct {
			*Conn
		}{}, "embedded pointer *conf.Conn is not supported"},
		{"several problems", &struct {
			A int    `conf:"a" min:"x"`
			B string `conf:"b" max:"1"`
		}{}, "bad min tag"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Decode(s, tt.v)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			var errs Errors
			if errors.As(err, &errs) {
				t.Errorf("programming error returned as Errors: %v", err)
			}
		})
	}
	// Embedded pointers to structs without conf tags are simply ignored.
	type plain struct{ X int }
	v := struct {
		*plain
		A int `conf:"a"`
	}{}
	if err := Decode(section(t, "[s]\na = 1\n"), &v); err != nil || v.A != 1 {
		t.Fatalf("%v %+v", err, v)
	}
}

func TestSuggest(t *testing.T) {
	fields := []*field{{key: "bootstrap.servers"}, {key: "acks"}, {key: "rdkafka.", kind: kMap}}
	for name, want := range map[string]string{
		"bootstrap.server": ` (did you mean "bootstrap.servers"?)`,
		"ack":              ` (did you mean "acks"?)`,
		"ACKS2":            ` (did you mean "acks"?)`,
		"xyz":              "",
		"rdkafka":          "",
	} {
		if got := suggest(name, fields); got != want {
			t.Errorf("suggest(%q) = %q, want %q", name, got, want)
		}
	}
}
