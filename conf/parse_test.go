package conf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeFiles writes name -> content under a new temporary directory and
// returns the directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// dump renders a file as "[name](templates) file:line" lines and
// "key=value@file:line" lines, with paths relative to dir.
func dump(f *File, dir string) string {
	rel := func(p string) string {
		if r, err := filepath.Rel(dir, p); err == nil && dir != "" {
			return filepath.ToSlash(r)
		}
		return p
	}
	var b strings.Builder
	for _, s := range f.Sections {
		fmt.Fprintf(&b, "[%s]", s.Name)
		if len(s.Templates) > 0 {
			fmt.Fprintf(&b, "(%s)", strings.Join(s.Templates, ","))
		}
		fmt.Fprintf(&b, " %s:%d\n", rel(s.File), s.Line)
		for _, k := range s.Keys {
			fmt.Fprintf(&b, "%s=%s@%s:%d\n", k.Name, k.Value, rel(k.File), k.Line)
		}
	}
	return b.String()
}

func TestParse(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // "main.conf" is loaded
		want  string
	}{
		{
			name: "basic syntax",
			files: map[string]string{"main.conf": "; leading comment\n# hash comment\n\n[general]\n" +
				"a = 1\n" +
				"b => two\n" +
				"c=>3\n" +
				"d = v ; inline comment\n" +
				"e = x\\;y ; escaped semicolon\n" +
				"f = \" spaced \"\n" +
				"g =\n" +
				"H = keeps case\n" +
				"i = a#b\n" +
				"  j   =   padded   \n" +
				"k = a=b\n" +
				"l = 'single'\n" +
				"m = `raw\\;yes`\n" +
				"[second] ; comment after header\n" +
				"x = 1\n"},
			want: "[general] main.conf:4\n" +
				"a=1@main.conf:5\nb=two@main.conf:6\nc=3@main.conf:7\nd=v@main.conf:8\ne=x;y@main.conf:9\n" +
				"f= spaced @main.conf:10\ng=@main.conf:11\nH=keeps case@main.conf:12\ni=a#b@main.conf:13\n" +
				"j=padded@main.conf:14\nk=a=b@main.conf:15\nl='single'@main.conf:16\nm=raw;yes@main.conf:17\n" +
				"[second] main.conf:18\nx=1@main.conf:19\n",
		},
		{
			name:  "CRLF and BOM",
			files: map[string]string{"main.conf": "\xef\xbb\xbf[s]\r\nk = v\r\n"},
			want:  "[s] main.conf:1\nk=v@main.conf:2\n",
		},
		{
			name:  "repeated keys are kept",
			files: map[string]string{"main.conf": "[s]\nbroker = a\nbroker => b\nbroker = c\n"},
			want:  "[s] main.conf:1\nbroker=a@main.conf:2\nbroker=b@main.conf:3\nbroker=c@main.conf:4\n",
		},
		{
			name:  "case-sensitive section names",
			files: map[string]string{"main.conf": "[a]\n[A]\n"},
			want:  "[a] main.conf:1\n[A] main.conf:2\n",
		},
		{
			name: "templates and multiple inheritance",
			files: map[string]string{"main.conf": "[t1](!)\n" +
				"x = t1\ny = t1\n" +
				"[t2](!, t1)\n" + // template inheriting a template
				"z = t2\n" +
				"[t3](!)\n" +
				"x = t3\n" +
				"[c](t2,t3)\n" +
				"own = 1\n" +
				"[plain]()\n" +
				"[base]\nb = 1\n" +
				"[derived](base)\n"}, // inheriting a concrete section
			want: "[c](t2,t3) main.conf:8\n" +
				"x=t1@main.conf:2\ny=t1@main.conf:3\nz=t2@main.conf:5\nx=t3@main.conf:7\nown=1@main.conf:9\n" +
				"[plain] main.conf:10\n" +
				"[base] main.conf:11\nb=1@main.conf:12\n" +
				"[derived](base) main.conf:13\nb=1@main.conf:12\n",
		},
		{
			name:  "repeated keys with empty values, interleaved",
			files: map[string]string{"main.conf": "[s]\nk =\nK = 1\nk = \"\"\nk = ``\nk = x\nk = ; c\nj = `` ; raw empty\nk => y\nk = \"\"\"\"\"\"\n"},
			want: "[s] main.conf:1\nk=@main.conf:2\nK=1@main.conf:3\nk=@main.conf:4\nk=@main.conf:5\nk=x@main.conf:6\n" +
				"k=@main.conf:7\nj=@main.conf:8\nk=y@main.conf:9\nk=@main.conf:10\n",
		},
		{
			name:  "names go-ini could read otherwise",
			files: map[string]string{"main.conf": "[DEFAULT]\nd = 1\n[a]\nx = 1\n[a.b]\ny = 2\na:b = c:d\nz = a\\\nw = 2\n"},
			want: "[DEFAULT] main.conf:1\nd=1@main.conf:2\n[a] main.conf:3\nx=1@main.conf:4\n" +
				"[a.b] main.conf:5\ny=2@main.conf:6\na:b=c:d@main.conf:7\nz=a\\@main.conf:8\nw=2@main.conf:9\n",
		},
		{
			name: "includes",
			files: map[string]string{
				"main.conf": "#include \"tmpl.conf\"\n" +
					"[a](t)\n" +
					"#include sub/more.conf ; comment\n" +
					"after = 1\n" +
					"#tryinclude \"missing.conf\"\n" +
					"#include <sub/angle.conf>\n",
				"tmpl.conf":        "[t](!)\nfrom = tmpl\n",
				"sub/more.conf":    "in_a = yes\n#include \"sibling.conf\"\n",
				"sub/sibling.conf": "[b]\nsib = 1\n",
				"sub/angle.conf":   "angle = 1\n",
			},
			want: "[a](t) main.conf:2\nfrom=tmpl@tmpl.conf:2\nin_a=yes@sub/more.conf:1\n" +
				"[b] sub/sibling.conf:1\nsib=1@sub/sibling.conf:2\nafter=1@main.conf:4\nangle=1@sub/angle.conf:1\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			f, err := Load(filepath.Join(dir, "main.conf"))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := dump(f, dir); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		want  []string // substrings, one per expected error, in order
	}{
		{"key outside section", map[string]string{"main.conf": "; c\nk = v\n[s]\n"},
			[]string{`main.conf:2: line outside of any section: "k = v"`}},
		{"garbage line", map[string]string{"main.conf": "[s]\njunk\n"},
			[]string{`main.conf:2: [s]: expected "key = value" or "key => value", got "junk"`}},
		{"missing key name", map[string]string{"main.conf": "[s]\n = v\n"},
			[]string{`main.conf:2: [s]: missing key name`}},
		{"invalid key name", map[string]string{"main.conf": "[s]\n- = v\n"},
			[]string{`main.conf:2: [s]: invalid key name`}},
		{"unterminated raw value", map[string]string{"main.conf": "[s]\nk = \"\"\"abc\n"},
			[]string{`main.conf:2: [s]: cannot read`}},
		{"unterminated backtick value", map[string]string{"main.conf": "[s]\nk = `abc\nj = x`\n"},
			[]string{"main.conf:2: [s]: cannot read \"k = `abc\": the raw value opened by ` is not closed on the same line"}},
		{"lone triple quote", map[string]string{"main.conf": "[s]\nk = \"\"\"\nj = \"\"\"\n"},
			[]string{`main.conf:2: [s]: cannot read "k = \"\"\"": the raw value opened by """ is not closed`, `main.conf:3: [s]: cannot read`}},
		{"quoted key name", map[string]string{"main.conf": "[s]\n\"a b\" = 1\n`c` = 2\n"},
			[]string{`main.conf:2: [s]: cannot read "\"a b\" = 1": a key name cannot start with "`, "main.conf:3: [s]: cannot read \"`c` = 2\": a key name cannot start with `"}},
		{"unclosed header", map[string]string{"main.conf": "[s\nk = v\n"},
			[]string{`main.conf:1: unclosed section header "[s"`}},
		{"empty section name", map[string]string{"main.conf": "[ ]\nk = v\n"},
			[]string{`main.conf:1: empty section name`}},
		{"junk after header", map[string]string{"main.conf": "[s] x\n"},
			[]string{`main.conf:1: [s]: unexpected "x" after section header`}},
		{"empty template name", map[string]string{"main.conf": "[t](!)\n[s](t,)\n"},
			[]string{`main.conf:2: [s]: empty template name`}},
		{"plus option", map[string]string{"main.conf": "[s]\n[s](+)\n"},
			[]string{`main.conf:2: [s]: adding to an earlier section with (+) is not supported`}},
		{"unknown template", map[string]string{"main.conf": "[s](nope)\n"},
			[]string{`main.conf:1: [s]: unknown template "nope"`}},
		{"template defined later", map[string]string{"main.conf": "[s](t)\n[t](!)\n"},
			[]string{`main.conf:1: [s]: unknown template "t" (it is defined later, at main.conf:2`}},
		{"self inheritance", map[string]string{"main.conf": "[s](s)\n"},
			[]string{`main.conf:1: [s]: section [s] cannot inherit from itself`}},
		{"duplicate section", map[string]string{"main.conf": "[s]\na = 1\n[s]\nb = 2\n"},
			[]string{`main.conf:3: [s]: duplicate section [s] (first defined at main.conf:1)`}},
		{"duplicate template", map[string]string{"main.conf": "[t](!)\n[t]\n"},
			[]string{`main.conf:2: [t]: duplicate section [t] (first defined at main.conf:1)`}},
		{"missing include", map[string]string{"main.conf": "[s]\n#include \"nope.conf\"\n"},
			[]string{`main.conf:2: [s]: #include "nope.conf": `, "no such file"}},
		{"include without name", map[string]string{"main.conf": "#include\n#include \"\"\n#tryinclude ; c\n"},
			[]string{`main.conf:1: #include: missing file name`, `main.conf:2: #include: missing file name`, `main.conf:3: #tryinclude: missing file name`}},
		{"unbalanced include quote", map[string]string{"main.conf": "#include \"x.conf\n"},
			[]string{`main.conf:1: #include "x.conf: unbalanced "`}},
		{"include a directory", map[string]string{"main.conf": "#include sub\n#tryinclude sub\n", "sub/x": ""},
			[]string{`main.conf:1: #include "sub": `, "not a regular file", `main.conf:2: #tryinclude "sub": `}},
		{"include cycle", map[string]string{"main.conf": "#include a.conf\n", "a.conf": "[a]\n#include b.conf\n", "b.conf": "#include \"a.conf\"\n"},
			[]string{`b.conf:1: [a]: #include "a.conf": include cycle: `, "a.conf -> ", "b.conf -> ", "a.conf"}},
		{"self include", map[string]string{"main.conf": "#include main.conf\n"},
			[]string{`main.conf:1: #include "main.conf": include cycle: `}},
		{"errors in included file", map[string]string{"main.conf": "[s]\n#include inc.conf\nbad\n", "inc.conf": "k = v\nalso bad\n"},
			[]string{`inc.conf:2: [s]: expected`, `main.conf:3: [s]: expected`}},
		{"every error is reported", map[string]string{"main.conf": "x = 1\n[a](zz)\n[b\nnoeq\n[a]\n"},
			[]string{`main.conf:1: line outside`, `main.conf:2: [a]: unknown template "zz"`, `main.conf:3: unclosed`, `main.conf:4: expected`, `main.conf:5: [a]: duplicate section`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeFiles(t, tt.files)
			f, err := Load(filepath.Join(dir, "main.conf"))
			if err == nil {
				t.Fatalf("no error; parsed:\n%s", dump(f, dir))
			}
			if f != nil {
				t.Errorf("File returned with an error")
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, not Errors: %v", err, err)
			}
			msg := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q does not contain %q (in order)", msg, w)
				}
				rest = rest[i+len(w):]
			}
			if n := strings.Count(msg, "\n") + 1; n != len(errs) {
				t.Errorf("%d lines for %d errors: %q", n, len(errs), msg)
			}
		})
	}
}

func TestIncludeCycleNamesBothFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{"a.conf": "#include b.conf\n", "b.conf": "#include a.conf\n"})
	_, err := Load(filepath.Join(dir, "a.conf"))
	if err == nil {
		t.Fatal("no error")
	}
	a, b := filepath.Join(dir, "a.conf"), filepath.Join(dir, "b.conf")
	want := fmt.Sprintf("%s:1: #include %q: include cycle: %s -> %s -> %s", b, "a.conf", a, b, a)
	if err.Error() != want {
		t.Errorf("got  %s\nwant %s", err, want)
	}
}

func TestIncludeDepth(t *testing.T) {
	files := map[string]string{}
	for i := range maxIncludeDepth + 5 {
		files[fmt.Sprintf("f%d.conf", i)] = fmt.Sprintf("#include f%d.conf\n", i+1)
	}
	files[fmt.Sprintf("f%d.conf", maxIncludeDepth+5)] = ""
	dir := writeFiles(t, files)
	_, err := Load(filepath.Join(dir, "f0.conf"))
	if err == nil || !strings.Contains(err.Error(), "nested more than") {
		t.Fatalf("err = %v", err)
	}
}

func TestInheritanceBlowUp(t *testing.T) {
	var b strings.Builder
	b.WriteString("[t0](!)\nx = 1\n")
	for i := 1; i < 40; i++ {
		fmt.Fprintf(&b, "[t%d](!,t%d,t%d)\n", i, i-1, i-1)
	}
	_, err := Parse("x.conf", []byte(b.String()))
	if err == nil || err.Error() != "x.conf:19: [t17]: template \"t16\": templates expand to more than 200000 inherited keys" {
		t.Fatalf("err = %v", err)
	}
}

func TestLoadMissing(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.conf"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
	// A missing include is not fs.ErrNotExist: the file itself exists.
	dir := writeFiles(t, map[string]string{"main.conf": "#include nope.conf\n"})
	_, err = Load(filepath.Join(dir, "main.conf"))
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want a non-ErrNotExist error", err)
	}
}

func TestParseRelativeToName(t *testing.T) {
	dir := writeFiles(t, map[string]string{"inc.conf": "k = from include\n"})
	f, err := Parse(filepath.Join(dir, "virtual.conf"), []byte("[s]\n#include inc.conf\n"))
	if err != nil {
		t.Fatal(err)
	}
	if k := f.Section("s").Key("k"); k == nil || k.Value != "from include" || k.File != filepath.Join(dir, "inc.conf") || k.Line != 1 {
		t.Fatalf("key = %+v", k)
	}
}

func TestAccessors(t *testing.T) {
	f, err := Parse("x.conf", []byte("[t](!)\nlist = a\n[one](t)\nlist = b\nLIST = c\nk = 1\n[two]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.Names(); !reflect.DeepEqual(got, []string{"one", "two"}) {
		t.Errorf("Names = %v", got)
	}
	if f.Section("t") != nil || f.Section("ONE") != nil || f.Section("missing") != nil {
		t.Error("Section found a template, a wrong-case or a missing section")
	}
	s := f.Section("one")
	if k := s.Key("list"); k == nil || k.Value != "b" || k.Line != 4 {
		t.Errorf("Key(list) = %+v", k)
	}
	if s.Key("nope") != nil {
		t.Error("Key(nope) != nil")
	}
	var vals []string
	for _, k := range s.Values("list") {
		vals = append(vals, k.Value)
	}
	if !reflect.DeepEqual(vals, []string{"a", "b"}) {
		t.Errorf("Values(list) = %v", vals)
	}
	if got := s.Values("LIST"); len(got) != 1 || got[0].Value != "c" {
		t.Errorf("Values(LIST) = %v", got)
	}
	// nil receivers are safe.
	var nf *File
	var ns *Section
	if nf.Section("x") != nil || nf.Names() != nil || ns.Key("x") != nil || ns.Values("x") != nil {
		t.Error("nil receivers")
	}
}

func TestINI(t *testing.T) {
	f, err := Parse("x.conf", []byte("[t](!)\nb = 0\n[s](t)\na = 1\nb => 2\nb = 3\n[u]\n"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := f.INI()
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Section("s").Key("a").MustInt(); got != 1 {
		t.Errorf("a = %d", got)
	}
	if got := in.Section("s").Key("b").ValueWithShadows(); !reflect.DeepEqual(got, []string{"0", "2", "3"}) {
		t.Errorf("b = %v", got)
	}
	if !in.HasSection("u") || in.HasSection("t") {
		t.Errorf("sections = %v", in.SectionStrings())
	}
	var nf *File
	if _, err := nf.INI(); err != nil {
		t.Error(err)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "a.conf", Line: 3, Section: "s", Key: "k", Msg: "bad"}, "a.conf:3: [s] k: bad"},
		{Error{File: "a.conf", Line: 3, Section: "s", Msg: "bad"}, "a.conf:3: [s]: bad"},
		{Error{File: "a.conf", Line: 3, Msg: "bad"}, "a.conf:3: bad"},
		{Error{File: "a.conf", Msg: "bad"}, "a.conf: bad"},
		{Error{Line: 7, Msg: "bad"}, "line 7: bad"},
		{Error{Section: "s", Key: "k", Msg: "bad"}, "[s] k: bad"},
		{Error{Key: "k", Msg: "bad"}, "k: bad"},
		{Error{Msg: "bad"}, "bad"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
	}
	var errs Errors
	if errs.Err() != nil {
		t.Error("empty Errors.Err() != nil")
	}
	errs.Add(&Section{Name: "s", File: "f", Line: 1}, nil, "missing %s", "x")
	errs.Add(&Section{Name: "s", File: "f", Line: 1}, &Key{Name: "k", File: "g", Line: 2}, "bad")
	errs.Addf("h", 3, "", "", "plain")
	if got, want := errs.Err().Error(), "f:1: [s]: missing x\ng:2: [s] k: bad\nh:3: plain"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	var one *Error
	if !errors.As(error(errs), &one) || one.Msg != "missing x" {
		t.Errorf("errors.As = %v", one)
	}
}
