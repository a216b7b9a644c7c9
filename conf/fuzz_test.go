package conf

import (
	"errors"
	"io/fs"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fuzzRead serves a fixed include and reports every other file missing, so
// the fuzzer never reads the real file system.
func fuzzRead(path string) ([]byte, error) {
	switch filepath.Base(path) {
	case "inc.conf":
		return []byte("[inc](!)\nx = 1\n"), nil
	case "loop.conf":
		return []byte("#include loop.conf\n"), nil
	case "keys.conf":
		return []byte("k = v ; c\n"), nil
	}
	return nil, fs.ErrNotExist
}

// serialise writes f back as text; ok is false when a name or value has no
// faithful spelling in this syntax (values that go-ini would read as raw
// strings, names with '=', and the like).
func serialise(f *File) (text string, ok bool) {
	var b strings.Builder
	ok = true
	esc := func(s string) string { return strings.ReplaceAll(s, ";", `\;`) }
	for _, s := range f.Sections {
		if strings.ContainsAny(s.Name, "]\r\n") || s.Name != strings.TrimSpace(s.Name) || strings.Contains(s.Name, `\;`) {
			ok = false
		}
		b.WriteString("[" + esc(s.Name) + "]\n")
		for _, k := range s.Keys {
			if k.Name != strings.TrimSpace(k.Name) || strings.ContainsAny(k.Name, "=\r\n\"`") ||
				strings.ContainsAny(k.Name[:1], "[#;-") || strings.Contains(k.Name, `\;`) {
				ok = false
			}
			v := esc(k.Value)
			if v != strings.TrimSpace(v) || strings.HasPrefix(v, `"`) || strings.HasSuffix(v, `"`) || strings.HasPrefix(v, "`") {
				v = `"` + v + `"`
			}
			if strings.HasPrefix(v, `"""`) || strings.Contains(k.Value, `\;`) || strings.ContainsAny(v, "\r\n") {
				ok = false
			}
			b.WriteString(esc(k.Name) + " = " + v + "\n")
		}
	}
	return b.String(), ok
}

func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"[s]\nk = v\n",
		"; c\n# c\n[general]\na => 1 ; c\nb = x\\;y\nc = \" q \"\nd =\n",
		"[t](!)\nx = 1\n[t2](!,t)\ny = 2\n[c](t2,t)\nz = 3\n",
		"#include inc.conf\n[a](inc)\n#include \"keys.conf\"\n#tryinclude <nope.conf>\n",
		"[a]\nk = `raw`\nq = \"\"\"raw\"\"\"\n",
		"[a]\r\nk = v\r\n",
		"\xef\xbb\xbf[a]\nk=v\n",
		"k = outside\n[\n[]\n[a](\n[a](x)\njunk\n= v\n- = x\n",
		"[a]\n[a]\n#include\n#include \"\n",
		"[a]\n#include loop.conf\n",
		"[s]\nk =\nK = 1\nk = ``\nk = x\nj = \"\"\"\"\"\"\nk => y\n",
		"[DEFAULT]\na.b = 1\n[a.b]\nc:d = 2\n\"q\" = 1\nk = \"\"\"\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		file, err := parse("fuzz/main.conf", []byte(data), fuzzRead)
		if err != nil {
			if file != nil || err.Error() == "" {
				t.Fatalf("bad error result: %v %v", file, err)
			}
			// go-ini must read whatever the pre-pass hands it as the
			// pre-pass expects.
			if strings.Contains(err.Error(), "internal error") {
				t.Fatalf("parse of %q: %v", data, err)
			}
			return
		}
		for _, s := range file.Sections {
			if s.Name == "" || s.Line < 1 {
				t.Fatalf("bad section %+v", s)
			}
			for _, k := range s.Keys {
				if k.Name == "" || k.Line < 1 || k.File == "" {
					t.Fatalf("bad key %+v", k)
				}
			}
		}
		for _, s := range file.Sections {
			var v allTypes
			before := v
			if err := Decode(s, &v); err != nil && !reflect.DeepEqual(v, before) {
				t.Fatalf("Decode changed its target on error: %v", err)
			}
		}
		var whole fileConfig
		if err := DecodeFile(file, &whole); err != nil {
			var errs Errors
			if !errors.As(err, &errs) || !reflect.DeepEqual(whole, fileConfig{}) {
				t.Fatalf("DecodeFile: %v (%T), target %+v", err, err, whole)
			}
		}
		if _, err := file.INI(); err != nil {
			t.Fatalf("INI: %v", err)
		}
		text, ok := serialise(file)
		again, err := parse("fuzz/again.conf", []byte(text), fuzzRead)
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("re-parse of\n%s\nfailed: %v", text, err)
		}
		if len(again.Sections) != len(file.Sections) {
			t.Fatalf("%d sections, then %d", len(file.Sections), len(again.Sections))
		}
		for i, s := range file.Sections {
			a := again.Sections[i]
			if a.Name != s.Name || len(a.Keys) != len(s.Keys) {
				t.Fatalf("section %q (%d keys) became %q (%d keys)\n%s", s.Name, len(s.Keys), a.Name, len(a.Keys), text)
			}
			for j, k := range s.Keys {
				if a.Keys[j].Name != k.Name || a.Keys[j].Value != k.Value {
					t.Fatalf("key %q=%q became %q=%q\n%s", k.Name, k.Value, a.Keys[j].Name, a.Keys[j].Value, text)
				}
			}
		}
	})
}
