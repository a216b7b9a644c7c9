// Package conf reads switchboard's Asterisk-style configuration files (such
// as kafka.conf and modules.conf) and decodes their sections into typed
// structs.
//
// # What go-ini does and what this package adds
//
// The INI core is github.com/go-ini/ini, which reads the text of a file
// (with its includes spliced in) in a single load: it finds the sections
// and the keys, splits each key from its value at the first '=', trims
// both, reads its raw-string forms (a value written as `...` or """..."""
// is taken literally) and keeps every occurrence of a repeated key as a
// shadow. [File.INI] also returns the parsed result as a go-ini *ini.File
// for code that prefers go-ini's accessors.
//
// go-ini knows neither the Asterisk syntax switchboard's users write nor
// line numbers, so a light pre-pass of this package reads each file line by
// line before go-ini does. It records where every line came from, keeps
// what go-ini can read and rewrites the rest:
//
//   - ';' comments on their own line or after a value ("key = v ; note")
//     are removed, except "\;", which is a literal semicolon. '#' starts a
//     comment only at the start of a line, and only when the line is not an
//     #include or #tryinclude.
//   - Section headers "[name]", "[name](!)" (a template, not returned in
//     [File.Sections]), "[name](tmpl1,tmpl2)" (inherit every key of tmpl1,
//     then of tmpl2, then the section's own keys) and "[name](!,tmpl)" (a
//     template that inherits a template) are handed to go-ini as "[name]";
//     the templates and inheritance are applied after go-ini has read the
//     keys. As in Asterisk, a template must be defined before the section
//     that uses it; any earlier section, template or not, may be inherited
//     from. Section names are case-sensitive and must be unique.
//   - "key => value" is handed to go-ini as "key = value". Keys keep the
//     case they were written in ([Decode] matches them case-insensitively);
//     a value in double quotes loses its quotes ("key = " a " " keeps the
//     spaces). A key name cannot start with a quote (go-ini would read it
//     as a quoted name ending elsewhere than at the first '='), and a raw
//     value must close on its own line (go-ini would read on into the next
//     lines).
//   - Repeated keys are all kept, in order: [Section.Values] returns every
//     occurrence (a list), [Section.Key] the effective (last) one. An empty
//     value is handed to go-ini as "", since go-ini leaves empty shadows out.
//   - #include "file" and #include file (also <file>), relative to the
//     directory of the including file, are replaced by the lines of the
//     file, which continue the current section as if pasted in. A missing
//     file is an error; #tryinclude skips a missing file. Include cycles are
//     errors naming the chain of files.
//   - The file and line of every section header and key. go-ini keeps the
//     occurrences of a key in order, so the n-th line of a section with a
//     given key name is paired with go-ini's n-th value of that key. Every
//     problem, while parsing or decoding, is reported as "file:line:
//     [section] key: message". The pre-pass goes on after a problem and
//     refuses every line go-ini could not read as one key, so all problems
//     are returned together as [Errors].
//
// # Decoding
//
// [Decode] fills a struct from a section. Only fields with a `conf` tag are
// decoded; anonymous (embedded) struct fields are decoded as part of the
// parent, so a shared connection struct can be embedded in several module
// configs. The tags are:
//
//	conf:"name"          key name, matched case-insensitively; conf:"-" skips the field
//	conf:"prefix.*"      on a map[string]string: every key starting with "prefix."
//	                     (case-insensitively), stored without the prefix
//	default:"value"      used when the key is absent (parsed like a value; for a
//	                     []string it is split on commas)
//	min:"N" max:"N"      inclusive bounds for numbers and durations
//	enum:"a|b|c"         allowed values of a string (matched case-insensitively and
//	                     stored in the spelling of the tag)
//	required:"true"      the key must be present
//
// Supported field types are string, bool (yes/no, true/false, on/off, 1/0,
// case-insensitive), every int, uint and float kind (decimal only),
// time.Duration (Go syntax with a unit, such as 100ms or 1.5s; a plain number
// other than 0 is an error), []string (one element per occurrence of the key)
// and map[string]string (prefix keys only).
//
// A key of the section that no field takes is an error, with a suggestion
// when a field has a similar name. Decode reports every problem of the
// section at once, and assigns to its target only when there is none.
// Problems of the struct itself (bad tags, bad defaults, unsupported types)
// are programming errors and are returned as a plain error, never as a
// panic.
//
// # Whole files
//
// [DecodeFile] decodes a whole file into a struct whose fields stand for
// sections, chosen by a `section` tag:
//
//	section:"general"    on a struct: that section, decoded with Decode (an absent
//	                     section decodes like an empty one)
//	section:"groups"     on a *Section: the section itself, nil when absent, for
//	                     sections whose keys are free-form
//	section:"*"          on a []Named[T]: every other section, in file order, each
//	                     decoded into a T
//
// Without a "*" field, a section no field takes is reported as "unknown
// section (want [general] or [groups])". A type whose file has a shape of
// its own implements [Unmarshaler] instead; a type with rules across keys
// implements [Validator], and reports its problems with [Errors.At].
package conf
