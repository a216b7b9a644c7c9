package conf

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Named is one section taken by the `section:"*"` field of a [DecodeFile]
// target: the section's name, the section itself and its keys decoded with
// [Decode] into Value.
type Named[T any] struct {
	Name    string
	Section *Section
	Value   T
}

// Unmarshaler is implemented by configuration types whose file has a shape
// of its own; [DecodeFile] calls UnmarshalConf instead of decoding sections
// into fields. f is nil when the file does not exist. Problems in the file
// should be returned as [Errors].
type Unmarshaler interface {
	UnmarshalConf(f *File) error
}

// Validator is implemented by configuration types with rules across keys or
// sections; [DecodeFile] calls Validate once the file has been decoded
// without problem. f is nil when the file does not exist. Problems should
// be returned as [Errors], located with [Errors.At] or [Errors.Add].
type Validator interface {
	Validate(f *File) error
}

var (
	sectionPtrType = reflect.TypeFor[*Section]()
	sectionType    = reflect.TypeFor[Section]()
	namedPkgPath   = reflect.TypeFor[Named[struct{}]]().PkgPath()
)

// sectionKind is how a section field of a DecodeFile target is filled.
type sectionKind int

const (
	sStruct sectionKind = iota // a struct decoded with Decode
	sRaw                       // a *Section, nil when absent
	sRest                      // a []Named[T]: every section no other field takes
)

// sectionField is one `section`-tagged field of a DecodeFile target.
type sectionField struct {
	name  string // section name, "*" for sRest
	index int
	kind  sectionKind
}

// DecodeFile decodes a whole parsed file into v, a non-nil pointer to a
// struct whose fields stand for sections. f may be nil (the file does not
// exist): every section is then absent.
//
// Fields are chosen by their `section` tag; untagged fields and
// section:"-" are left alone:
//
//	section:"general"  on a struct: that section, decoded with [Decode]; an
//	                   absent section decodes like an empty one (defaults
//	                   apply, required keys are problems)
//	section:"groups"   on a *Section: the section itself, nil when absent
//	section:"*"        on a []Named[T] (T a struct): every section no other
//	                   field takes, in file order, each decoded with Decode
//
// Section names match exactly, as [File.Section] does. Without a "*" field,
// a section that no field takes is a problem, reported as "unknown section
// (want [general] or [groups])" with the sections the struct takes, in
// field order.
//
// If v implements [Unmarshaler], DecodeFile calls its UnmarshalConf instead
// of reading tags, and returns its error as it is (sorted by place if it is
// [Errors]). Once the file is decoded without problem, if v implements
// [Validator], DecodeFile calls its Validate; an error that is not [Errors]
// is turned into one problem located at the file.
//
// DecodeFile works on a copy of *v and assigns it to *v only when decoding
// and validation succeed; problems in the file are returned together as
// [Errors], sorted by place. Problems of the struct itself (bad tags,
// unsupported field types, two "*" fields) are returned as a plain error.
func DecodeFile(f *File, v any) error {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("conf: DecodeFile needs a non-nil pointer, got %T", v)
	}
	fresh := reflect.New(rv.Elem().Type())
	fresh.Elem().Set(rv.Elem())
	if u, ok := fresh.Interface().(Unmarshaler); ok {
		if err := u.UnmarshalConf(f); err != nil {
			errs, ok := err.(Errors)
			if !ok {
				return err
			}
			if len(errs) > 0 {
				errs = slices.Clone(errs)
				errs.sortByPlace()
				return errs
			}
		}
	} else {
		if rv.Elem().Kind() != reflect.Struct {
			return fmt.Errorf("conf: DecodeFile needs a pointer to a struct or an Unmarshaler, got %T", v)
		}
		if err := decodeSections(f, fresh.Elem()); err != nil {
			return err
		}
	}
	if val, ok := fresh.Interface().(Validator); ok {
		if err := val.Validate(f); err != nil {
			if errs := asErrors(err, f); len(errs) > 0 {
				return errs
			}
		}
	}
	rv.Elem().Set(fresh.Elem())
	return nil
}

// decodeSections fills the section fields of the struct dst from f.
func decodeSections(f *File, dst reflect.Value) error {
	t := dst.Type()
	fields, err := sectionFieldsOf(t)
	if err != nil {
		return err
	}
	var errs Errors
	add := func(err error) error {
		if err == nil {
			return nil
		}
		var ce Errors
		if !errors.As(err, &ce) {
			return err // a programming error, which sectionFieldsOf should have caught
		}
		errs = append(errs, ce...)
		return nil
	}
	taken := map[string]bool{}
	var want []string
	var rest *sectionField
	for i := range fields {
		sf := &fields[i]
		if sf.kind == sRest {
			rest = sf
			continue
		}
		taken[sf.name] = true
		want = append(want, "["+sf.name+"]")
		s := f.Section(sf.name)
		fv := dst.Field(sf.index)
		switch sf.kind {
		case sRaw:
			fv.Set(reflect.ValueOf(s))
		case sStruct:
			if s == nil {
				s = &Section{Name: sf.name}
				if f != nil {
					s.File = f.Path
				}
			}
			if err := add(Decode(s, fv.Addr().Interface())); err != nil {
				return err
			}
		}
	}
	var others []*Section
	if f != nil {
		for _, s := range f.Sections {
			if !taken[s.Name] {
				others = append(others, s)
			}
		}
	}
	switch {
	case rest != nil:
		fv := dst.Field(rest.index)
		list := reflect.Zero(fv.Type())
		for _, s := range others {
			// Named's fields, in declaration order: Name, Section, Value.
			n := reflect.New(fv.Type().Elem()).Elem()
			n.Field(0).SetString(s.Name)
			n.Field(1).Set(reflect.ValueOf(s))
			if err := add(Decode(s, n.Field(2).Addr().Interface())); err != nil {
				return err
			}
			list = reflect.Append(list, n)
		}
		fv.Set(list)
	case len(others) > 0:
		msg := "unknown section (this file takes no sections)"
		if len(want) > 0 {
			msg = "unknown section (want " + orList(want) + ")"
		}
		for _, s := range others {
			errs = append(errs, &Error{File: s.File, Line: s.Line, Section: s.Name, Msg: msg})
		}
	}
	if len(errs) > 0 {
		errs.sortByPlace()
		return errs
	}
	return nil
}

// orList joins items as "a", "a or b", "a, b or c".
func orList(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// sectionFieldsOf reads the section fields of struct type t and checks
// their tags and types, and the structs they decode into.
func sectionFieldsOf(t reflect.Type) ([]sectionField, error) {
	var fields []sectionField
	var errs []error
	byName := map[string]string{} // section name -> Go field
	for i := range t.NumField() {
		sf := t.Field(i)
		goName := t.Name() + "." + sf.Name
		name, tagged := sf.Tag.Lookup("section")
		if !tagged {
			if _, ok := sf.Tag.Lookup("conf"); ok {
				errs = append(errs, fmt.Errorf("%s: conf tag on a field of a DecodeFile struct (its fields take section tags; use Decode for one section)", goName))
			}
			continue
		}
		if name == "-" {
			continue
		}
		if !sf.IsExported() {
			errs = append(errs, fmt.Errorf("%s: section tag on an unexported field", goName))
			continue
		}
		if name == "" || strings.TrimSpace(name) != name {
			errs = append(errs, fmt.Errorf("%s: bad section name %q in section tag", goName, name))
			continue
		}
		if other, dup := byName[name]; dup {
			errs = append(errs, fmt.Errorf("%s and %s both take section %q", other, goName, name))
			continue
		}
		byName[name] = goName
		kind, err := sectionKindOf(sf.Type, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", goName, err))
			continue
		}
		fields = append(fields, sectionField{name: name, index: i, kind: kind})
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("conf: bad struct %s: %w", t, errors.Join(errs...))
	}
	return fields, nil
}

// sectionKindOf returns how a field of type t tagged section:"name" is
// filled, checking the struct it decodes into.
func sectionKindOf(t reflect.Type, name string) (sectionKind, error) {
	isNamed := t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Struct &&
		t.Elem().PkgPath() == namedPkgPath && strings.HasPrefix(t.Elem().Name(), "Named[")
	switch {
	case name == "*" && isNamed:
		v := t.Elem().Field(2).Type
		if v.Kind() != reflect.Struct {
			return 0, fmt.Errorf("%s: Named needs a struct type, not %s", t, v)
		}
		_, err := fieldsOf(v)
		return sRest, err
	case name == "*":
		return 0, fmt.Errorf(`section:"*" needs a []conf.Named[T] field, not %s`, t)
	case isNamed:
		return 0, fmt.Errorf(`%s takes every other section: tag it section:"*"`, t)
	case t == sectionPtrType:
		return sRaw, nil
	case t == sectionType:
		return 0, errors.New("a conf.Section field: use *conf.Section for the raw section")
	case t.Kind() == reflect.Struct:
		_, err := fieldsOf(t)
		return sStruct, err
	}
	return 0, fmt.Errorf("unsupported type %s for section %q (want a struct, *conf.Section or, for \"*\", []conf.Named[T])", t, name)
}

// asErrors returns err, from a Validate method, as Errors sorted by place;
// an error that is not Errors becomes one problem located at the file.
func asErrors(err error, f *File) Errors {
	var errs Errors
	if errors.As(err, &errs) {
		errs = slices.Clone(errs)
		errs.sortByPlace()
		return errs
	}
	var e *Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	out := &Error{Msg: err.Error()}
	if f != nil {
		out.File = f.Path
	}
	return Errors{out}
}
