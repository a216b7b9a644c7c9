package conf

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

type fileGeneral struct {
	Name    string        `conf:"name" default:"anon"`
	Timeout time.Duration `conf:"timeout" default:"1s"`
}

type fileConn struct {
	Brokers []string `conf:"brokers" required:"true"`
	Topic   string   `conf:"topic" default:"t"`
}

// fileConfig uses every tag form.
type fileConfig struct {
	General  fileGeneral       `section:"general"`
	Groups   *Section          `section:"groups"`
	Conns    []Named[fileConn] `section:"*"`
	Skipped  string            `section:"-"`
	Untagged int
}

// closedConfig has no "*" field, so other sections are unknown.
type closedConfig struct {
	General fileGeneral `section:"general"`
	Groups  *Section    `section:"groups"`
}

func parseText(t *testing.T, text string) *File {
	t.Helper()
	f, err := Parse("t.conf", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDecodeFileTagForms(t *testing.T) {
	// A template is not a section of the file, so "*" does not offer it.
	f := parseText(t, "[tmpl](!)\nbrokers = t\n[general]\nname = x\n[groups]\nops = 10\n"+
		"[c1](tmpl)\nbrokers = b1\n[c2]\nbrokers = b2\ntopic = u\n")
	v := fileConfig{Skipped: "keep", Untagged: 7}
	if err := DecodeFile(f, &v); err != nil {
		t.Fatal(err)
	}
	if v.General != (fileGeneral{Name: "x", Timeout: time.Second}) || v.Skipped != "keep" || v.Untagged != 7 {
		t.Errorf("general/others = %+v", v)
	}
	if v.Groups != f.Section("groups") || v.Groups.Key("ops").Value != "10" {
		t.Errorf("groups = %+v", v.Groups)
	}
	var got []string
	for _, n := range v.Conns {
		if n.Section != f.Section(n.Name) {
			t.Errorf("%s: Section is not the file's section", n.Name)
		}
		got = append(got, fmt.Sprintf("%s=%v/%s", n.Name, n.Value.Brokers, n.Value.Topic))
	}
	if want := []string{"c1=[t b1]/t", "c2=[b2]/u"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Conns = %v, want %v", got, want)
	}
}

func TestDecodeFileNamedOrder(t *testing.T) {
	f := parseText(t, "[z]\nbrokers = 1\n[general]\n[a]\nbrokers = 2\n[m]\nbrokers = 3\n")
	var v fileConfig
	if err := DecodeFile(f, &v); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range v.Conns {
		names = append(names, n.Name+":"+n.Value.Brokers[0])
	}
	if want := []string{"z:1", "a:2", "m:3"}; !reflect.DeepEqual(names, want) {
		t.Errorf("names = %v, want %v (file order)", names, want)
	}
	// Earlier elements are replaced, not appended to.
	v = fileConfig{Conns: []Named[fileConn]{{Name: "old"}}}
	if err := DecodeFile(parseText(t, "[general]\n"), &v); err != nil || v.Conns != nil {
		t.Errorf("Conns = %v, err %v", v.Conns, err)
	}
}

func TestDecodeFileNilFile(t *testing.T) {
	v := fileConfig{Groups: &Section{Name: "stale"}, Conns: []Named[fileConn]{{Name: "stale"}}}
	if err := DecodeFile(nil, &v); err != nil {
		t.Fatal(err)
	}
	if v.General != (fileGeneral{Name: "anon", Timeout: time.Second}) || v.Groups != nil || v.Conns != nil {
		t.Errorf("got %+v", v)
	}
}

func TestDecodeFileAbsentRequired(t *testing.T) {
	type cfg struct {
		Conn fileConn `section:"conn"`
	}
	tests := []struct {
		name string
		f    *File
		want string
	}{
		{"absent section", parseText(t, "[other]\n"), "t.conf: [conn] brokers: required key is missing"},
		{"empty section", parseText(t, "[conn]\n"), "t.conf:1: [conn] brokers: required key is missing"},
		{"nil file", nil, "[conn] brokers: required key is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v cfg
			if tt.f != nil && tt.f.Section("other") != nil {
				// [other] is unknown too; it sorts after the file-level problem.
				tt.want += "\nt.conf:1: [other]: unknown section (want [conn])"
			}
			err := DecodeFile(tt.f, &v)
			var errs Errors
			if !errors.As(err, &errs) || err.Error() != tt.want {
				t.Fatalf("err = %v (%T), want\n%s", err, err, tt.want)
			}
		})
	}
}

func TestDecodeFileUnknownSections(t *testing.T) {
	type one struct {
		G fileGeneral `section:"general"`
	}
	type three struct {
		A *Section    `section:"a"`
		G fileGeneral `section:"general"`
		B *Section    `section:"b"`
	}
	type none struct{}
	text := "[general]\n[General]\n[groups]\n[x]\n"
	tests := []struct {
		name string
		v    any
		want []string
	}{
		{"one wanted", &one{}, []string{
			"t.conf:2: [General]: unknown section (want [general])",
			"t.conf:3: [groups]: unknown section (want [general])",
			"t.conf:4: [x]: unknown section (want [general])",
		}},
		{"two wanted", &closedConfig{}, []string{
			"t.conf:2: [General]: unknown section (want [general] or [groups])",
			"t.conf:4: [x]: unknown section (want [general] or [groups])",
		}},
		{"three wanted, in field order", &three{}, []string{
			"t.conf:2: [General]: unknown section (want [a], [general] or [b])",
			"t.conf:3: [groups]: unknown section (want [a], [general] or [b])",
			"t.conf:4: [x]: unknown section (want [a], [general] or [b])",
		}},
		{"none wanted", &none{}, []string{
			"t.conf:1: [general]: unknown section (this file takes no sections)",
			"t.conf:2: [General]: unknown section (this file takes no sections)",
			"t.conf:3: [groups]: unknown section (this file takes no sections)",
			"t.conf:4: [x]: unknown section (this file takes no sections)",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := DecodeFile(parseText(t, text), tt.v)
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("err = %v (%T)", err, err)
			}
			if got := strings.Split(err.Error(), "\n"); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got:\n%s\nwant:\n%s", err, strings.Join(tt.want, "\n"))
			}
		})
	}
}

// cliConfig is shaped like cli.conf: two sections of repeated keys.
type cliConfig struct {
	Startup struct {
		Run []string `conf:"run"`
	} `section:"startup_commands"`
	Console struct {
		Try []string `conf:"try"`
	} `section:"console"`
}

func TestDecodeFileCLIShape(t *testing.T) {
	f := parseText(t, "[startup_commands]\nrun => a b\nrun => c\n[console]\ntry => d\n")
	var v cliConfig
	if err := DecodeFile(f, &v); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v.Startup.Run, []string{"a b", "c"}) || !reflect.DeepEqual(v.Console.Try, []string{"d"}) {
		t.Errorf("got %+v", v)
	}
}

func TestDecodeFileEveryProblemSorted(t *testing.T) {
	f := parseText(t, "[c1]\ntopic = x\n[general]\ntimeout = soon\n[c2]\nbrokers = b\nbogus = 1\n")
	v := fileConfig{Skipped: "untouched"}
	before := v
	err := DecodeFile(f, &v)
	want := "t.conf:1: [c1] brokers: required key is missing\n" +
		"t.conf:4: [general] timeout: \"soon\" is not a duration (use a number with a unit, e.g. 100ms, 1.5s, 2m)\n" +
		"t.conf:7: [c2] bogus: unknown key \"bogus\""
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want\n%s", err, want)
	}
	if !reflect.DeepEqual(v, before) {
		t.Errorf("target changed on error: %+v", v)
	}
}

// validated checks a rule across keys, as a module config would.
type validated struct {
	General struct {
		Journal     bool   `conf:"journal"`
		OnQueueFull string `conf:"on_queue_full" enum:"drop|spool" default:"drop"`
	} `section:"general"`
	calls *int // counts Validate calls
	fail  error
}

func (v *validated) Validate(f *File) error {
	if v.calls != nil {
		*v.calls++
	}
	if v.fail != nil {
		return v.fail
	}
	var errs Errors
	if v.General.Journal && v.General.OnQueueFull != "spool" {
		errs.At(f, "general", "journal", "journal = yes needs on_queue_full = spool")
	}
	if v.General.OnQueueFull == "spool" && !v.General.Journal {
		errs.At(f, "general", "on_queue_full", "spool needs journal = yes")
	}
	return errs.Err()
}

func TestDecodeFileValidator(t *testing.T) {
	tests := []struct {
		name  string
		f     *File
		fail  error
		want  string // "" for success
		calls int
	}{
		{"valid", parseText(t, "[general]\njournal = yes\non_queue_full = spool\n"), nil, "", 1},
		{"rule broken, at the key", parseText(t, "[general]\non_queue_full = drop\nJOURNAL = yes\n"), nil,
			"t.conf:3: [general] JOURNAL: journal = yes needs on_queue_full = spool", 1},
		{"problems sorted", parseText(t, "[general]\non_queue_full = spool\n"), Errors{
			{File: "t.conf", Line: 9, Msg: "second"}, {File: "t.conf", Line: 2, Msg: "first"}},
			"t.conf:2: first\nt.conf:9: second", 1},
		{"plain error located at the file", parseText(t, "[general]\n"), errors.New("bad"), "t.conf: bad", 1},
		{"plain error without a file", nil, errors.New("bad"), "bad", 1},
		{"one *Error", nil, &Error{Section: "general", Msg: "bad"}, "[general]: bad", 1},
		{"empty Errors is no problem", nil, Errors{}, "", 1},
		{"not called after decode problems", parseText(t, "[general]\njournal = maybe\n"), nil,
			`t.conf:2: [general] journal: "maybe" is not a boolean (use yes/no, true/false, on/off or 1/0)`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			v := validated{calls: &calls, fail: tt.fail}
			v.General.OnQueueFull = "prefilled"
			err := DecodeFile(tt.f, &v)
			if calls != tt.calls {
				t.Errorf("Validate called %d times, want %d", calls, tt.calls)
			}
			if tt.want == "" {
				if err != nil || v.General.OnQueueFull == "prefilled" {
					t.Fatalf("err = %v, v = %+v", err, v.General)
				}
				return
			}
			var errs Errors
			if !errors.As(err, &errs) || err.Error() != tt.want {
				t.Fatalf("err = %v (%T), want\n%s", err, err, tt.want)
			}
			if v.General.OnQueueFull != "prefilled" || v.General.Journal {
				t.Errorf("target changed on error: %+v", v.General)
			}
		})
	}
}

// subscribers decodes its file itself.
type subscribers struct {
	Prefixes []string
	General  fileGeneral `section:"general"` // not read: UnmarshalConf takes over
	valid    *int
}

func (s *subscribers) UnmarshalConf(f *File) error {
	if f == nil {
		return nil // no file: no subscribers
	}
	var errs Errors
	for _, sec := range f.Sections {
		k := sec.Key("prefix")
		if k == nil {
			errs.Add(sec, nil, "prefix is missing")
			continue
		}
		s.Prefixes = append(s.Prefixes, sec.Name+"="+k.Value)
	}
	return errs.Err()
}

func (s *subscribers) Validate(*File) error {
	*s.valid++
	if len(s.Prefixes) > 2 {
		return errors.New("too many subscribers")
	}
	return nil
}

func TestDecodeFileUnmarshaler(t *testing.T) {
	valid := 0
	v := subscribers{valid: &valid}
	if err := DecodeFile(parseText(t, "[general]\nprefix = p0\n[a]\nprefix = p1\n"), &v); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v.Prefixes, []string{"general=p0", "a=p1"}) || v.General != (fileGeneral{}) || valid != 1 {
		t.Errorf("got %+v, Validate called %d times", v, valid)
	}

	// Errors from UnmarshalConf come back sorted; nothing is assigned and
	// Validate is not called.
	v = subscribers{valid: &valid, Prefixes: []string{"keep"}}
	err := DecodeFile(parseText(t, "[z]\n[a]\nprefix = 1\n[b]\n"), &v)
	if err == nil || err.Error() != "t.conf:1: [z]: prefix is missing\nt.conf:4: [b]: prefix is missing" {
		t.Errorf("err = %v", err)
	}
	if !reflect.DeepEqual(v.Prefixes, []string{"keep"}) || valid != 1 {
		t.Errorf("got %+v, Validate called %d times", v, valid)
	}

	// A Validate problem after UnmarshalConf: nothing is assigned.
	err = DecodeFile(parseText(t, "[a]\nprefix = 1\n[b]\nprefix = 2\n[c]\nprefix = 3\n"), &v)
	if err == nil || err.Error() != "t.conf: too many subscribers" || !reflect.DeepEqual(v.Prefixes, []string{"keep"}) {
		t.Errorf("err = %v, got %+v", err, v)
	}

	// A nil file reaches UnmarshalConf as nil.
	v = subscribers{valid: &valid}
	if err := DecodeFile(nil, &v); err != nil || v.Prefixes != nil {
		t.Errorf("err = %v, got %+v", err, v)
	}
}

// plainUnmarshaler returns a programming error, which must come back as is.
type plainUnmarshaler struct{}

var errPlain = errors.New("plain")

func (*plainUnmarshaler) UnmarshalConf(*File) error { return fmt.Errorf("wrapped: %w", errPlain) }

func TestDecodeFileUnmarshalerPlainError(t *testing.T) {
	err := DecodeFile(nil, &plainUnmarshaler{})
	var errs Errors
	if !errors.Is(err, errPlain) || errors.As(err, &errs) {
		t.Errorf("err = %v (%T)", err, err)
	}
}

func TestErrorsAt(t *testing.T) {
	f := parseText(t, "[t](!)\ninherited = 1\n[s](t)\nKey = 1\nkey = 2\n[empty]\n")
	tests := []struct {
		name          string
		f             *File
		section, key  string
		want          string
		file, sec, ky string
		line          int
	}{
		{"last occurrence, any case", f, "s", "KEY", "t.conf:5: [s] key: msg", "t.conf", "s", "key", 5},
		{"inherited key", f, "s", "inherited", "t.conf:2: [s] inherited: msg", "t.conf", "s", "inherited", 2},
		{"absent key: the section", f, "s", "nope", "t.conf:3: [s] nope: msg", "t.conf", "s", "nope", 3},
		{"no key: the section", f, "empty", "", "t.conf:6: [empty]: msg", "t.conf", "empty", "", 6},
		{"absent section: the file", f, "general", "journal", "t.conf: [general] journal: msg", "t.conf", "general", "journal", 0},
		{"template is not a section", f, "t", "inherited", "t.conf: [t] inherited: msg", "t.conf", "t", "inherited", 0},
		{"nil file: no position", nil, "general", "journal", "[general] journal: msg", "", "general", "journal", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var errs Errors
			errs.At(tt.f, tt.section, tt.key, "%s", "msg")
			if len(errs) != 1 {
				t.Fatalf("%d errors", len(errs))
			}
			e := errs[0]
			if e.Error() != tt.want || e.File != tt.file || e.Line != tt.line || e.Section != tt.sec || e.Key != tt.ky {
				t.Errorf("got %q %+v, want %q", e.Error(), *e, tt.want)
			}
		})
	}
}

type badSection struct {
	A int `conf:"a" min:"x"`
}

func TestDecodeFileProgrammingErrors(t *testing.T) {
	var nilPtr *fileConfig
	var notStruct int
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"nil", nil, "non-nil pointer, got <nil>"},
		{"not a pointer", fileConfig{}, "non-nil pointer, got conf.fileConfig"},
		{"nil pointer", nilPtr, "non-nil pointer, got *conf.fileConfig"},
		{"pointer to non-struct", &notStruct, "pointer to a struct or an Unmarshaler, got *int"},
		{"empty name", &struct {
			A *Section `section:""`
		}{}, `bad section name ""`},
		{"padded name", &struct {
			A *Section `section:" a"`
		}{}, `bad section name " a"`},
		{"unexported", &struct {
			a *Section `section:"a"`
		}{}, "section tag on an unexported field"},
		{"duplicate section", &struct {
			A *Section    `section:"a"`
			B fileGeneral `section:"a"`
		}{}, `.A and .B both take section "a"`},
		{"two stars", &struct {
			A []Named[fileConn] `section:"*"`
			B []Named[fileConn] `section:"*"`
		}{}, `both take section "*"`},
		{"star on a non-Named", &struct {
			A []fileConn `section:"*"`
		}{}, `section:"*" needs a []conf.Named[T] field, not []conf.fileConn`},
		{"Named without star", &struct {
			A []Named[fileConn] `section:"a"`
		}{}, `takes every other section: tag it section:"*"`},
		{"Named of a non-struct", &struct {
			A []Named[int] `section:"*"`
		}{}, "Named needs a struct type, not int"},
		{"unsupported type", &struct {
			A int `section:"a"`
		}{}, `unsupported type int for section "a"`},
		{"pointer to a struct", &struct {
			A *fileGeneral `section:"a"`
		}{}, `unsupported type *conf.fileGeneral`},
		{"Section value", &struct {
			A Section `section:"a"`
		}{}, "use *conf.Section"},
		{"bad section struct, section absent", &struct {
			A badSection `section:"a"`
		}{}, `bad min tag "x"`},
		{"bad Named struct, no section", &struct {
			A []Named[badSection] `section:"*"`
		}{}, `bad min tag "x"`},
		{"conf tag at the top", &struct {
			A string `conf:"a"`
		}{}, "conf tag on a field of a DecodeFile struct"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panic: %v", r)
					}
				}()
				err = DecodeFile(nil, tt.v)
			}()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			var errs Errors
			if errors.As(err, &errs) {
				t.Errorf("programming error returned as Errors: %v", err)
			}
		})
	}
}
