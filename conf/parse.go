package conf

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-ini/ini"
)

// maxIncludeDepth bounds #include nesting, which also stops paths that grow
// without repeating (through symbolic links, say).
const maxIncludeDepth = 32

// maxInherited bounds the keys copied from templates in one Parse, so that a
// small file whose templates each inherit an earlier one twice cannot
// expand to billions of keys.
const maxInherited = 200_000

// File is a parsed configuration file with its includes resolved and its
// template inheritance applied.
type File struct {
	Path     string     // path given to Load, or name given to Parse
	Sections []*Section // concrete (non-template) sections in file order, with template inheritance already applied
}

// Section returns the concrete section called name (case-sensitive), or nil
// if there is none.
func (f *File) Section(name string) *Section {
	if f == nil {
		return nil
	}
	for _, s := range f.Sections {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Names returns the names of the concrete sections, in file order.
func (f *File) Names() []string {
	if f == nil {
		return nil
	}
	names := make([]string, len(f.Sections))
	for i, s := range f.Sections {
		names[i] = s.Name
	}
	return names
}

// Section is one concrete section of a file.
type Section struct {
	Name      string
	File      string   // file the section header was in
	Line      int      // line of the header
	Templates []string // templates it inherited from, in order, as written in its header
	Keys      []*Key   // in order: inherited keys first (template order), then own keys
}

// Key returns the effective (last) occurrence of the key called name, or nil
// if the section has no such key. Names are compared exactly (as written).
func (s *Section) Key(name string) *Key {
	if s == nil {
		return nil
	}
	for i := len(s.Keys) - 1; i >= 0; i-- {
		if s.Keys[i].Name == name {
			return s.Keys[i]
		}
	}
	return nil
}

// Values returns every occurrence of the key called name, in order
// (inherited ones first). Repeated keys build lists this way.
func (s *Section) Values(name string) []*Key {
	if s == nil {
		return nil
	}
	var out []*Key
	for _, k := range s.Keys {
		if k.Name == name {
			out = append(out, k)
		}
	}
	return out
}

// lastFold returns the last occurrence of the key called name, compared
// case-insensitively, or nil.
func (s *Section) lastFold(name string) *Key {
	for i := len(s.Keys) - 1; i >= 0; i-- {
		if strings.EqualFold(s.Keys[i].Name, name) {
			return s.Keys[i]
		}
	}
	return nil
}

// Key is one "key = value" line. Inherited keys keep the file and line of
// the template they come from.
type Key struct {
	Name  string // as written
	Value string // trimmed, unquoted, with \; turned into ;
	File  string
	Line  int
}

// Load reads the file at path, following #include directives (relative to
// the directory of the including file; include cycles are an error naming
// the chain). A missing file is reported with an error satisfying
// errors.Is(err, fs.ErrNotExist); problems in the text are reported as
// [Errors].
func Load(path string) (*File, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, fmt.Errorf("conf: %w", err)
	}
	return Parse(path, data)
}

// Parse parses data as if read from a file called name; includes are
// resolved relative to the directory of name and read with os.ReadFile.
func Parse(name string, data []byte) (*File, error) {
	return parse(name, data, readFile)
}

// readFile reads a regular file (a device such as /dev/zero is refused so an
// include cannot hang the reader).
func readFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	return os.ReadFile(path)
}

// iniOptions are the go-ini options for the text the pre-pass hands over.
var iniOptions = ini.LoadOptions{
	KeyValueDelimiters:         "=",  // ':' belongs to the key name, as in Asterisk
	AllowShadows:               true, // a repeated key keeps every occurrence, in order
	AllowDuplicateShadowValues: true, // ... even when two occurrences have the same value
	IgnoreInlineComment:        true, // comments are already gone; a ';' or '#' left in a value is literal
	IgnoreContinuation:         true, // a trailing '\' is part of the value
	PreserveSurroundedQuote:    true, // double quotes are stripped by unquote; single quotes stay
}

// rawSection is a section (concrete or template) while parsing.
type rawSection struct {
	sec      *Section
	template bool
	bases    []*rawSection // templates it inherits from, in header order
	own      []keyLine     // its own key lines, in order
	size     int           // keys it will have: inherited ones plus own ones
}

// keyLine is where one key of a section was written.
type keyLine struct {
	name string // as go-ini reads it: the trimmed text before '=', escapes kept
	file string
	line int
}

// laterRef is a template reference that was unknown where it was used.
type laterRef struct {
	name string
	err  *Error
}

// parser holds the state of one Parse call. Its pre-pass reads the files
// line by line, splicing includes in as if their text were pasted, and
// writes the plain INI text go-ini then loads in one go; it records where
// every section and key of that text came from.
type parser struct {
	read    func(string) ([]byte, error)
	errs    Errors
	stack   []string // absolute paths of the files being read, outermost first
	shown   []string // the same paths as displayed
	all     []*rawSection
	byName  map[string]*rawSection
	cur     *rawSection // section receiving keys; nil before the first header
	unknown []laterRef
	copied  int          // keys inherited from templates so far
	text    bytes.Buffer // the INI text for go-ini
}

func parse(name string, data []byte, read func(string) ([]byte, error)) (*File, error) {
	p := &parser{read: read, byName: map[string]*rawSection{}}
	p.file(name, data)
	for _, u := range p.unknown {
		if rs, ok := p.byName[u.name]; ok {
			u.err.Msg += fmt.Sprintf(" (it is defined later, at %s:%d; define a template before the sections that use it)", rs.sec.File, rs.sec.Line)
		}
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	in, err := ini.LoadSources(iniOptions, p.text.Bytes())
	if err != nil {
		// The pre-pass only hands over text go-ini accepts.
		return nil, Errors{{File: name, Msg: fmt.Sprintf("internal error: go-ini cannot read the file: %v", err)}}
	}
	f := &File{Path: name}
	for _, rs := range p.all {
		for _, b := range rs.bases {
			for _, k := range b.sec.Keys {
				c := *k
				rs.sec.Keys = append(rs.sec.Keys, &c)
			}
		}
		p.ownKeys(rs, in)
		if !rs.template {
			f.Sections = append(f.Sections, rs.sec)
		}
	}
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return f, nil
}

// ownKeys appends to rs the keys go-ini read in its section. go-ini keeps
// one key per name, in order of first occurrence, with every later
// occurrence as a shadow, so the n-th line of rs with a given name is the
// n-th value go-ini has for that name.
func (p *parser) ownKeys(rs *rawSection, in *ini.File) {
	s := rs.sec
	gs, err := in.GetSection(s.Name)
	if err != nil {
		p.errs.Add(s, nil, "internal error: go-ini lost the section: %v", err)
		return
	}
	keys := gs.Keys()
	values := make(map[string][]string, len(keys))
	for _, k := range keys {
		values[k.Name()] = k.ValueWithShadows()
	}
	used := map[string]int{}
	for _, kl := range rs.own {
		i := used[kl.name]
		used[kl.name]++
		if i >= len(values[kl.name]) {
			p.errs.Addf(kl.file, kl.line, s.Name, unescape(kl.name), "internal error: go-ini did not read this key")
			continue
		}
		s.Keys = append(s.Keys, &Key{Name: unescape(kl.name), Value: unescape(unquote(values[kl.name][i])), File: kl.file, Line: kl.line})
	}
	for _, k := range keys {
		if n := len(values[k.Name()]); n != used[k.Name()] {
			p.errs.Add(s, nil, "internal error: go-ini read %d values of key %q, the file has %d", n, k.Name(), used[k.Name()])
		}
	}
}

// file reads the text of one file.
func (p *parser) file(name string, data []byte) {
	abs, err := filepath.Abs(name)
	if err != nil {
		abs = filepath.Clean(name)
	}
	p.stack = append(p.stack, abs)
	p.shown = append(p.shown, name)
	defer func() {
		p.stack = p.stack[:len(p.stack)-1]
		p.shown = p.shown[:len(p.shown)-1]
	}()

	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	for i, raw := range strings.Split(string(data), "\n") {
		p.line(name, i+1, strings.TrimSuffix(raw, "\r"))
	}
}

func (p *parser) errorf(file string, line int, key, format string, args ...any) *Error {
	e := &Error{File: file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)}
	if p.cur != nil {
		e.Section = p.cur.sec.Name
	}
	p.errs = append(p.errs, e)
	return e
}

// line reads one line of a file: a comment, a directive, a section header
// or a key.
func (p *parser) line(file string, n int, raw string) {
	text := strings.TrimSpace(raw)
	switch {
	case text == "", text[0] == ';':
		return
	case text[0] == '#':
		word, arg := directive(text)
		switch word {
		case "#include", "#tryinclude":
			p.include(file, n, word, arg)
		}
		return // any other '#' line is a comment
	}
	text = strings.TrimSpace(stripComment(text))
	switch {
	case text == "":
	case text[0] == '[':
		p.header(file, n, text)
	case p.cur == nil:
		p.errorf(file, n, "", "line outside of any section: %q (a [section] header must come first)", text)
	default:
		p.key(file, n, text)
	}
}

// key reads a "key = value" or "key => value" line (comment removed) and
// hands it to go-ini as "key = value".
func (p *parser) key(file string, n int, text string) {
	eq := strings.IndexByte(text, '=')
	if eq < 0 {
		p.errorf(file, n, "", "expected \"key = value\" or \"key => value\", got %q", text)
		return
	}
	name := strings.TrimSpace(text[:eq])
	switch {
	case name == "":
		p.errorf(file, n, "", "missing key name before %q", text[eq:])
		return
	case name == "-": // go-ini would number it "#1", "#2"...
		p.errorf(file, n, "", "invalid key name in %q", text)
		return
	case name[0] == '"' || name[0] == '`': // go-ini would take the name as quoted, ending at its closing quote
		p.errorf(file, n, "", "cannot read %q: a key name cannot start with %c", text, name[0])
		return
	}
	value := strings.TrimPrefix(text[eq+1:], ">") // "=>" is a synonym of "="
	value, err := iniValue(strings.TrimSpace(value))
	if err != nil {
		p.errorf(file, n, "", "cannot read %q: %v", text, err)
		return
	}
	p.cur.own = append(p.cur.own, keyLine{name: name, file: file, line: n})
	p.cur.size++
	p.text.WriteString(name + " = " + value + "\n")
}

// iniValue returns the value v (trimmed) as it is handed to go-ini. A value
// go-ini reads as empty is handed over as "" (which unquote makes empty),
// because go-ini's ValueWithShadows leaves out empty occurrences of a
// repeated key. go-ini reads a value opening with """ or ` up to the last
// such quote, even on later lines; here a raw value must close on its own
// line, so that every line keeps its meaning and its place.
func iniValue(v string) (string, error) {
	var quote string
	switch {
	case strings.HasPrefix(v, `"""`):
		quote = `"""`
	case strings.HasPrefix(v, "`"):
		quote = "`"
	}
	if quote != "" {
		switch strings.LastIndex(v[len(quote):], quote) {
		case -1:
			return "", fmt.Errorf("the raw value opened by %s is not closed on the same line", quote)
		case 0:
			return `""`, nil
		}
	}
	if v == "" {
		return `""`, nil
	}
	return v, nil
}

// unquote removes the double quotes around a value.
func unquote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return v[1 : len(v)-1]
	}
	return v
}

// directive splits a '#' line into its directive word and argument.
func directive(text string) (word, arg string) {
	end := 1
	for end < len(text) && (text[end] >= 'a' && text[end] <= 'z' || text[end] >= 'A' && text[end] <= 'Z') {
		end++
	}
	return text[:end], text[end:]
}

// stripComment removes a ';' comment, leaving "\;" escapes in place.
func stripComment(s string) string {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) && s[i+1] == ';' {
				i++
			}
		case ';':
			return s[:i]
		}
	}
	return s
}

// unescape turns "\;" into ";".
func unescape(s string) string {
	return strings.ReplaceAll(s, `\;`, ";")
}

// header reads a "[name]" or "[name](options)" line and hands it to go-ini
// as "[name]".
func (p *parser) header(file string, n int, text string) {
	// Until the header is known to be good, keys go to a section that is
	// never returned, so that one problem is reported once.
	p.cur = &rawSection{sec: &Section{}}
	end := strings.IndexByte(text, ']')
	if end < 0 {
		p.errorf(file, n, "", "unclosed section header %q (missing ']')", text)
		return
	}
	name := unescape(strings.TrimSpace(text[1:end]))
	rest := strings.TrimSpace(text[end+1:])
	if name == "" {
		p.errorf(file, n, "", "empty section name in %q", text)
		return
	}
	rs := &rawSection{sec: &Section{Name: name, File: file, Line: n}}
	p.cur = rs
	var templates []string
	if rest != "" {
		if rest[0] != '(' || rest[len(rest)-1] != ')' {
			p.errorf(file, n, "", "unexpected %q after section header (want \"(!)\" or \"(template, ...)\")", rest)
			return
		}
		if opts := strings.TrimSpace(rest[1 : len(rest)-1]); opts != "" {
			for _, o := range strings.Split(opts, ",") {
				o = strings.TrimSpace(o)
				switch {
				case o == "!":
					rs.template = true
				case o == "":
					p.errorf(file, n, "", "empty template name in %q", rest)
					return
				case o == "+":
					p.errorf(file, n, "", "adding to an earlier section with (+) is not supported; section names are unique")
					return
				default:
					templates = append(templates, o)
				}
			}
		}
	}
	if first, dup := p.byName[name]; dup {
		p.errorf(file, n, "", "duplicate section [%s] (first defined at %s:%d)", name, first.sec.File, first.sec.Line)
		return
	}
	for _, t := range templates {
		base, ok := p.byName[t]
		if t == name {
			p.errorf(file, n, "", "section [%s] cannot inherit from itself", name)
			continue
		}
		if !ok {
			e := p.errorf(file, n, "", "unknown template %q", t)
			p.unknown = append(p.unknown, laterRef{name: t, err: e})
			continue
		}
		// Every earlier section is complete, so its size is final.
		if p.copied += base.size; p.copied > maxInherited {
			if p.copied-base.size <= maxInherited { // report it once
				p.errorf(file, n, "", "template %q: templates expand to more than %d inherited keys", t, maxInherited)
			}
			break
		}
		rs.sec.Templates = append(rs.sec.Templates, t)
		rs.bases = append(rs.bases, base)
		rs.size += base.size
	}
	p.byName[name] = rs
	p.all = append(p.all, rs)
	p.text.WriteString("[" + name + "]\n")
}

// include handles an #include or #tryinclude line.
func (p *parser) include(file string, n int, word, arg string) {
	arg = strings.TrimSpace(unescape(stripComment(arg)))
	switch {
	case arg == "":
		p.errorf(file, n, "", "%s: missing file name", word)
		return
	case arg[0] == '"' || arg[0] == '<':
		closer := map[byte]byte{'"': '"', '<': '>'}[arg[0]]
		if len(arg) < 2 || arg[len(arg)-1] != closer {
			p.errorf(file, n, "", "%s %s: unbalanced %c", word, arg, arg[0])
			return
		}
		arg = strings.TrimSpace(arg[1 : len(arg)-1])
		if arg == "" {
			p.errorf(file, n, "", "%s: missing file name", word)
			return
		}
	}
	target := arg
	if !filepath.IsAbs(target) {
		target = filepath.Join(filepath.Dir(file), target)
	}
	abs, err := filepath.Abs(target)
	if err != nil {
		abs = filepath.Clean(target)
	}
	for i, s := range p.stack {
		if s == abs {
			chain := append(append([]string(nil), p.shown[i:]...), target)
			p.errorf(file, n, "", "%s %q: include cycle: %s", word, arg, strings.Join(chain, " -> "))
			return
		}
	}
	if len(p.stack) >= maxIncludeDepth {
		p.errorf(file, n, "", "%s %q: includes nested more than %d deep", word, arg, maxIncludeDepth)
		return
	}
	data, err := p.read(target)
	if err != nil {
		if word == "#tryinclude" && errors.Is(err, fs.ErrNotExist) {
			return
		}
		p.errorf(file, n, "", "%s %q: %v", word, arg, err)
		return
	}
	p.file(target, data)
}
