package conf

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem found in a configuration file, located by file,
// line, section and key where those are known.
type Error struct {
	File    string // file the problem is in, "" if unknown
	Line    int    // 1-based line, 0 if unknown
	Section string // section name, "" if none
	Key     string // key name, "" if none
	Msg     string // what is wrong
}

// Error formats the problem as "file:line: [section] key: msg", leaving out
// the parts that are empty.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	switch {
	case e.Section != "" && e.Key != "":
		fmt.Fprintf(&b, "[%s] %s: ", e.Section, e.Key)
	case e.Section != "":
		fmt.Fprintf(&b, "[%s]: ", e.Section)
	case e.Key != "":
		fmt.Fprintf(&b, "%s: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is a list of problems. It is returned as the error of [Parse],
// [Load] and [Decode] when the configuration is invalid, so every problem is
// reported at once.
type Errors []*Error

// Error returns one line per problem.
func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, err := range e {
		lines[i] = err.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems as a slice of errors, for errors.As and
// errors.Is.
func (e Errors) Unwrap() []error {
	out := make([]error, len(e))
	for i, err := range e {
		out[i] = err
	}
	return out
}

// Add appends a problem located at key k of section s; either may be nil.
func (e *Errors) Add(s *Section, k *Key, format string, args ...any) {
	err := &Error{Msg: fmt.Sprintf(format, args...)}
	if s != nil {
		err.Section, err.File, err.Line = s.Name, s.File, s.Line
	}
	if k != nil {
		err.Key, err.File, err.Line = k.Name, k.File, k.Line
	}
	*e = append(*e, err)
}

// Addf appends a problem at an explicit location.
func (e *Errors) Addf(file string, line int, section, key, format string, args ...any) {
	*e = append(*e, &Error{File: file, Line: line, Section: section, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// At appends a problem located at the key called key of the section called
// section in f, for checks (such as a [Validator]'s) that know names rather
// than keys. The key is its last occurrence, its name compared
// case-insensitively as [Decode] does; when the key is "" or absent, the
// problem is located at the section header, and when the section is absent
// too, at the file. With a nil f (no file) the problem has no position.
func (e *Errors) At(f *File, section, key string, format string, args ...any) {
	err := &Error{Section: section, Key: key, Msg: fmt.Sprintf(format, args...)}
	if f != nil {
		err.File = f.Path
		if s := f.Section(section); s != nil {
			err.File, err.Line = s.File, s.Line
			if k := s.lastFold(key); k != nil {
				err.File, err.Line, err.Key = k.File, k.Line, k.Name
			}
		}
	}
	*e = append(*e, err)
}

// Err returns e as an error, or nil when e is empty (so a nil Errors never
// becomes a non-nil error interface by accident).
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

// sortByPlace orders problems by file and line, keeping the order of
// problems at the same place.
func (e Errors) sortByPlace() {
	slices.SortStableFunc(e, func(a, b *Error) int {
		if c := cmp.Compare(a.File, b.File); c != 0 {
			return c
		}
		return cmp.Compare(a.Line, b.Line)
	})
}
