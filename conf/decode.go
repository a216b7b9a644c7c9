package conf

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

var durationType = reflect.TypeFor[time.Duration]()

// kind is how a field's value is read.
type kind int

const (
	kString kind = iota
	kBool
	kInt
	kUint
	kFloat
	kDuration
	kList // []string: one element per occurrence
	kMap  // map[string]string: every key with a prefix
)

// field describes one decodable struct field, from its tags.
type field struct {
	goName   string // for programming errors: Type.Field
	key      string // key name (or prefix, without the '*') as in the tag
	index    []int  // path for reflect.Value.FieldByIndex
	kind     kind
	bits     int
	def      string
	hasDef   bool
	required bool
	enum     []string
	// Inclusive bounds; which pair is used depends on kind.
	imin, imax int64
	umin, umax uint64
	fmin, fmax float64
}

// Decode decodes section s into the struct v points to (see the package
// documentation for the tags). It reports every problem of the section as
// [Errors], each with the file and line of the key (or of the section
// header, for a missing required key), and leaves v untouched unless there
// is none. A nil s is taken as an empty section, so defaults and required
// keys still apply. Problems of the struct itself (v not a pointer to a
// struct, bad tags, bad defaults) are returned as a plain error.
//
// A key absent from the section sets its field to the default when there is
// one, and leaves the field as it was otherwise. A repeated key sets a
// scalar field to its last (effective) value.
func Decode(s *Section, v any) error {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("conf: Decode needs a non-nil pointer to a struct, got %T", v)
	}
	t := rv.Elem().Type()
	fields, err := fieldsOf(t)
	if err != nil {
		return err
	}
	if s == nil {
		s = &Section{}
	}

	byKey := map[string]*field{}
	var prefixes []*field
	for _, f := range fields {
		if f.kind == kMap {
			prefixes = append(prefixes, f)
		} else {
			byKey[strings.ToLower(f.key)] = f
		}
	}
	// The longest prefix wins.
	slices.SortStableFunc(prefixes, func(a, b *field) int { return cmp.Compare(len(b.key), len(a.key)) })

	var errs Errors
	found := map[*field][]*Key{}
	for _, k := range s.Keys {
		if f := byKey[strings.ToLower(k.Name)]; f != nil {
			found[f] = append(found[f], k)
			continue
		}
		if f := matchPrefix(prefixes, k.Name); f != nil {
			if len(k.Name) == len(f.key) {
				errs.Add(s, k, "missing option name after %q", f.key)
				continue
			}
			found[f] = append(found[f], k)
			continue
		}
		errs.Add(s, k, "unknown key %q%s", k.Name, suggest(k.Name, fields))
	}

	tmp := reflect.New(t).Elem()
	tmp.Set(rv.Elem())
	for _, f := range fields {
		fv := tmp.FieldByIndex(f.index)
		keys := found[f]
		if len(keys) == 0 {
			switch {
			case f.required:
				errs = append(errs, &Error{File: s.File, Line: s.Line, Section: s.Name, Key: f.key, Msg: "required key is missing"})
			case f.hasDef:
				// Checked by fieldsOf, so it cannot fail here.
				if msg := f.setDefault(fv); msg != "" {
					errs = append(errs, &Error{File: s.File, Line: s.Line, Section: s.Name, Key: f.key, Msg: "bad default: " + msg})
				}
			}
			continue
		}
		switch f.kind {
		case kList:
			list := reflect.MakeSlice(fv.Type(), 0, len(keys))
			for _, k := range keys {
				val, msg := f.checkEnum(k.Value)
				if msg != "" {
					errs.Add(s, k, "%s", msg)
					continue
				}
				list = reflect.Append(list, reflect.ValueOf(val).Convert(fv.Type().Elem()))
			}
			fv.Set(list)
		case kMap:
			m := reflect.MakeMapWithSize(fv.Type(), fv.Len()+len(keys))
			iter := fv.MapRange()
			for iter.Next() {
				m.SetMapIndex(iter.Key(), iter.Value())
			}
			for _, k := range keys {
				m.SetMapIndex(reflect.ValueOf(k.Name[len(f.key):]).Convert(fv.Type().Key()),
					reflect.ValueOf(k.Value).Convert(fv.Type().Elem()))
			}
			fv.Set(m)
		default:
			k := keys[len(keys)-1]
			if msg := f.set(fv, k.Value); msg != "" {
				errs.Add(s, k, "%s", msg)
			}
		}
	}
	if len(errs) > 0 {
		errs.sortByPlace()
		return errs
	}
	rv.Elem().Set(tmp)
	return nil
}

// matchPrefix returns the prefix field whose prefix starts name
// (case-insensitively), or nil.
func matchPrefix(prefixes []*field, name string) *field {
	for _, f := range prefixes {
		if len(name) >= len(f.key) && strings.EqualFold(name[:len(f.key)], f.key) {
			return f
		}
	}
	return nil
}

// suggest returns ` (did you mean "x"?)` when a field's key is close to
// name, or "".
func suggest(name string, fields []*field) string {
	lname := strings.ToLower(name)
	best, bestD := "", math.MaxInt
	for _, f := range fields {
		if f.kind == kMap {
			continue
		}
		d := distance(lname, strings.ToLower(f.key))
		if d < bestD {
			best, bestD = f.key, d
		}
	}
	limit := max(1, min(3, len(lname)/3))
	if best == "" || bestD > limit {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// distance is the Levenshtein distance between a and b, in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// fieldsOf reads the decodable fields of struct type t, embedded structs
// included, and checks their tags and defaults.
func fieldsOf(t reflect.Type) ([]*field, error) {
	var fields []*field
	var errs []error
	collect(t, nil, &fields, &errs)
	seen := map[string]*field{}
	for _, f := range fields {
		id := strings.ToLower(f.key)
		if f.kind == kMap {
			id += "*"
		}
		if g, dup := seen[id]; dup {
			errs = append(errs, fmt.Errorf("%s and %s both use key %q", g.goName, f.goName, f.key))
		}
		seen[id] = f
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("conf: bad struct %s: %w", t, errors.Join(errs...))
	}
	return fields, nil
}

// hasConfTags reports whether struct type t has a conf-tagged field, at any
// depth of embedding.
func hasConfTags(t reflect.Type, depth int) bool {
	if t.Kind() != reflect.Struct || depth > 8 {
		return false
	}
	for i := range t.NumField() {
		sf := t.Field(i)
		if _, ok := sf.Tag.Lookup("conf"); ok {
			return true
		}
		if sf.Anonymous && hasConfTags(sf.Type, depth+1) {
			return true
		}
	}
	return false
}

func collect(t reflect.Type, index []int, fields *[]*field, errs *[]error) {
	for i := range t.NumField() {
		sf := t.Field(i)
		tag, tagged := sf.Tag.Lookup("conf")
		if tag == "-" {
			continue
		}
		idx := append(append([]int(nil), index...), i)
		goName := t.Name() + "." + sf.Name
		if sf.Anonymous && !tagged {
			switch {
			case sf.Type.Kind() == reflect.Struct:
				collect(sf.Type, idx, fields, errs)
			case sf.Type.Kind() == reflect.Pointer && hasConfTags(sf.Type.Elem(), 0):
				*errs = append(*errs, fmt.Errorf("%s: embedded pointer %s is not supported (embed the struct itself)", goName, sf.Type))
			}
			continue
		}
		if !tagged {
			continue
		}
		f, err := newField(sf, tag)
		if err != nil {
			*errs = append(*errs, fmt.Errorf("%s: %w", goName, err))
			continue
		}
		f.goName, f.index = goName, idx
		*fields = append(*fields, f)
	}
}

// newField reads the tags of one conf-tagged struct field.
func newField(sf reflect.StructField, name string) (*field, error) {
	if !sf.IsExported() {
		return nil, errors.New("conf tag on an unexported field")
	}
	if name == "" || strings.TrimSpace(name) != name {
		return nil, fmt.Errorf("bad key name %q in conf tag", name)
	}
	f := &field{key: name}
	t := sf.Type
	switch {
	case strings.HasSuffix(name, "*"):
		if t.Kind() != reflect.Map || t.Key().Kind() != reflect.String || t.Elem().Kind() != reflect.String {
			return nil, fmt.Errorf("prefix key %q needs a map[string]string field, not %s", name, t)
		}
		f.kind, f.key = kMap, strings.TrimSuffix(name, "*")
		if f.key == "" {
			return nil, fmt.Errorf("empty prefix in conf tag %q", name)
		}
	case t == durationType:
		f.kind, f.imin, f.imax = kDuration, math.MinInt64, math.MaxInt64
	case t.Kind() == reflect.String:
		f.kind = kString
	case t.Kind() == reflect.Bool:
		f.kind = kBool
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		f.kind, f.bits = kInt, t.Bits()
		f.imin, f.imax = -1<<(f.bits-1), 1<<(f.bits-1)-1
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		f.kind, f.bits = kUint, t.Bits()
		f.umin, f.umax = 0, math.MaxUint64>>(64-f.bits)
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		f.kind, f.bits = kFloat, t.Bits()
		f.fmax = math.MaxFloat64
		if f.bits == 32 {
			f.fmax = math.MaxFloat32
		}
		f.fmin = -f.fmax
	case t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.String:
		f.kind = kList
	default:
		return nil, fmt.Errorf("unsupported type %s for key %q", t, name)
	}

	if r, ok := sf.Tag.Lookup("required"); ok {
		b, err := strconv.ParseBool(r)
		if err != nil {
			return nil, fmt.Errorf("bad required tag %q", r)
		}
		f.required = b
	}
	if e, ok := sf.Tag.Lookup("enum"); ok {
		if f.kind != kString && f.kind != kList {
			return nil, fmt.Errorf("enum tag on %s (only strings take one)", t)
		}
		if e == "" {
			return nil, errors.New("empty enum tag")
		}
		for v := range strings.SplitSeq(e, "|") {
			f.enum = append(f.enum, strings.TrimSpace(v))
		}
	}
	for _, b := range []string{"min", "max"} {
		tv, ok := sf.Tag.Lookup(b)
		if !ok {
			continue
		}
		if err := f.bound(b == "min", tv); err != nil {
			return nil, fmt.Errorf("bad %s tag %q: %w", b, tv, err)
		}
	}
	if f.imin > f.imax || f.umin > f.umax || f.fmin > f.fmax {
		return nil, errors.New("min is greater than max")
	}
	if d, ok := sf.Tag.Lookup("default"); ok {
		if f.kind == kMap {
			return nil, errors.New("default tag on a prefix map")
		}
		if f.required {
			return nil, errors.New("a required key cannot have a default")
		}
		f.def, f.hasDef = d, true
		if msg := f.setDefault(reflect.New(t).Elem()); msg != "" {
			return nil, fmt.Errorf("bad default: %s", msg)
		}
	}
	return f, nil
}

// bound sets the min (or max) bound from a tag.
func (f *field) bound(isMin bool, s string) error {
	switch f.kind {
	case kInt:
		n, err := strconv.ParseInt(s, 10, f.bits)
		if err != nil {
			return err
		}
		if isMin {
			f.imin = n
		} else {
			f.imax = n
		}
	case kDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		if isMin {
			f.imin = int64(d)
		} else {
			f.imax = int64(d)
		}
	case kUint:
		n, err := strconv.ParseUint(s, 10, f.bits)
		if err != nil {
			return err
		}
		if isMin {
			f.umin = n
		} else {
			f.umax = n
		}
	case kFloat:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(x) {
			return fmt.Errorf("not a number")
		}
		if isMin {
			f.fmin = x
		} else {
			f.fmax = x
		}
	default:
		return errors.New("only numbers and durations take bounds")
	}
	return nil
}

// setDefault applies the default to fv; it returns a message on failure.
func (f *field) setDefault(fv reflect.Value) string {
	if f.kind != kList {
		return f.set(fv, f.def)
	}
	var list []string
	for v := range strings.SplitSeq(f.def, ",") {
		if v = strings.TrimSpace(v); v == "" {
			continue
		}
		val, msg := f.checkEnum(v)
		if msg != "" {
			return msg
		}
		list = append(list, val)
	}
	out := reflect.MakeSlice(fv.Type(), len(list), len(list))
	for i, v := range list {
		out.Index(i).SetString(v)
	}
	fv.Set(out)
	return ""
}

// checkEnum returns s in its canonical spelling, or a message when s is
// not one of the enum values. Without an enum any s is fine.
func (f *field) checkEnum(s string) (string, string) {
	if f.enum == nil {
		return s, ""
	}
	for _, e := range f.enum {
		if strings.EqualFold(e, s) {
			return e, ""
		}
	}
	return "", fmt.Sprintf("%q is not one of %s", s, strings.Join(f.enum, "|"))
}

// set parses s into the scalar field fv; it returns a message on failure.
func (f *field) set(fv reflect.Value, s string) string {
	switch f.kind {
	case kString:
		val, msg := f.checkEnum(s)
		if msg != "" {
			return msg
		}
		fv.SetString(val)
	case kBool:
		switch strings.ToLower(s) {
		case "yes", "true", "on", "1":
			fv.SetBool(true)
		case "no", "false", "off", "0":
			fv.SetBool(false)
		default:
			return fmt.Sprintf("%q is not a boolean (use yes/no, true/false, on/off or 1/0)", s)
		}
	case kInt:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return fmt.Sprintf("%q is not a number", s)
		}
		if err != nil || n < f.imin || n > f.imax {
			return fmt.Sprintf("%s out of range %d..%d", s, f.imin, f.imax)
		}
		fv.SetInt(n)
	case kUint:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil && strings.HasPrefix(s, "-") {
			if _, ierr := strconv.ParseInt(s, 10, 64); ierr == nil || errors.Is(ierr, strconv.ErrRange) {
				err = strconv.ErrRange
			}
		}
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return fmt.Sprintf("%q is not a number", s)
		}
		if err != nil || n < f.umin || n > f.umax {
			return fmt.Sprintf("%s out of range %d..%d", s, f.umin, f.umax)
		}
		fv.SetUint(n)
	case kFloat:
		x, err := strconv.ParseFloat(s, 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) || math.IsNaN(x) {
			return fmt.Sprintf("%q is not a number", s)
		}
		if err != nil || x < f.fmin || x > f.fmax {
			return fmt.Sprintf("%s out of range %s..%s", s,
				strconv.FormatFloat(f.fmin, 'g', -1, 64), strconv.FormatFloat(f.fmax, 'g', -1, 64))
		}
		fv.SetFloat(x)
	case kDuration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Sprintf("%q is not a duration (use a number with a unit, e.g. 100ms, 1.5s, 2m)", s)
		}
		if int64(d) < f.imin || int64(d) > f.imax {
			return fmt.Sprintf("%s out of range %s..%s", s, time.Duration(f.imin), time.Duration(f.imax))
		}
		fv.SetInt(int64(d))
	default:
		return fmt.Sprintf("cannot set a %s from one value", fv.Type())
	}
	return ""
}

// SplitList splits the values of a repeated key whose values may also be
// comma-separated ("a, b" and "a" + "b" both give [a b]); empty items are
// dropped.
func SplitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				out = append(out, f)
			}
		}
	}
	return out
}
