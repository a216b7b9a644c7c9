package reskafka

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The module whose librdkafka the binary links, and where in it the
// library's own header is.
const (
	rdkafkaGoModule  = "github.com/confluentinc/confluent-kafka-go/v2"
	rdkafkaGoHeader  = "kafka/librdkafka_vendor/rdkafka.h"
	ourRdkafkaHeader = "sb_rdkafka.h"
)

// rdkDecls is what sb_rdkafka.h declares.
type rdkDecls struct {
	constants []string    // object-like macros
	handles   []string    // typedefs of incomplete struct types
	scalars   []string    // typedefs of integer types
	structs   []rdkStruct // typedefs of complete struct types
	functions []string    // prototypes
}

type rdkStruct struct {
	name   string
	fields []rdkField
}

type rdkField struct {
	typ, name string
}

var (
	cCommentRE   = regexp.MustCompile(`(?s)/\*.*?\*/|//[^\n]*`)
	cDefineRE    = regexp.MustCompile(`^#\s*define\s+(\w+)(\(?)`)
	cHandleRE    = regexp.MustCompile(`^typedef\s+struct\s+\w+\s+(\w+)$`)
	cStructRE    = regexp.MustCompile(`(?s)^typedef\s+struct\s+\w+\s*\{(.*)\}\s*(\w+)$`)
	cScalarRE    = regexp.MustCompile(`^typedef\s+((?:unsigned\s+|signed\s+)?\w+)\s+(\w+)$`)
	cFieldRE     = regexp.MustCompile(`^([\w\s]*\w[\s*]+)(\w+)$`)
	cFunctionRE  = regexp.MustCompile(`(?s)^[\w\s*]*?(\w+)\s*\((.*)\)$`)
	cVersionRE   = regexp.MustCompile(`(?m)^#define\s+RD_KAFKA_VERSION\s+(0x[0-9a-fA-F]+)\s*$`)
	cSpaceRE     = regexp.MustCompile(`\s+`)
	cPointerSpRE = regexp.MustCompile(`\s*\*\s*`)
)

// parseRdkDecls reads the declarations of sb_rdkafka.h (its layout rules are
// at its top). Anything it does not recognise is an error, so that no
// declaration escapes the comparison.
func parseRdkDecls(text string) (rdkDecls, error) {
	var d rdkDecls
	text = cCommentRE.ReplaceAllString(text, " ")
	var code strings.Builder
	for _, line := range strings.Split(text, "\n") {
		l := strings.TrimSpace(line)
		if !strings.HasPrefix(l, "#") {
			code.WriteString(line + "\n")
			continue
		}
		m := cDefineRE.FindStringSubmatch(l)
		switch {
		case m == nil:
			// #include, #ifndef, #endif
		case m[1] == "SB_RDKAFKA_H":
		case m[2] != "":
			return d, fmt.Errorf("function-like macro %s", m[1])
		case !strings.HasPrefix(m[1], "RD_KAFKA_"):
			return d, fmt.Errorf("macro %s: constants are named RD_KAFKA_*", m[1])
		default:
			d.constants = append(d.constants, m[1])
		}
	}
	// Top-level statements end at a semicolon outside braces.
	var stmts []string
	depth, start := 0, 0
	src := code.String()
	for i, c := range src {
		switch c {
		case '{':
			depth++
		case '}':
			depth--
		case ';':
			if depth == 0 {
				stmts = append(stmts, strings.TrimSpace(src[start:i]))
				start = i + 1
			}
		}
	}
	if rest := strings.TrimSpace(src[start:]); rest != "" {
		return d, fmt.Errorf("unterminated declaration %q", rest)
	}
	for _, s := range stmts {
		if m := cHandleRE.FindStringSubmatch(s); m != nil {
			d.handles = append(d.handles, m[1])
		} else if m := cStructRE.FindStringSubmatch(s); m != nil {
			st := rdkStruct{name: m[2]}
			for _, f := range strings.Split(m[1], ";") {
				if f = strings.TrimSpace(f); f == "" {
					continue
				}
				fm := cFieldRE.FindStringSubmatch(f)
				if fm == nil {
					return d, fmt.Errorf("struct %s: field %q not understood", st.name, f)
				}
				typ := cSpaceRE.ReplaceAllString(strings.TrimSpace(fm[1]), " ")
				typ = cPointerSpRE.ReplaceAllString(typ, " *")
				st.fields = append(st.fields, rdkField{typ: strings.ReplaceAll(typ, "* *", "**"), name: fm[2]})
			}
			if len(st.fields) == 0 {
				return d, fmt.Errorf("struct %s without fields", st.name)
			}
			d.structs = append(d.structs, st)
		} else if m := cScalarRE.FindStringSubmatch(s); m != nil && m[1] != "struct" {
			d.scalars = append(d.scalars, m[2])
		} else if m := cFunctionRE.FindStringSubmatch(s); m != nil && !strings.HasPrefix(s, "typedef") {
			d.functions = append(d.functions, m[1])
		} else {
			return d, fmt.Errorf("declaration %q not understood", s)
		}
	}
	return d, nil
}

// rdkProbe returns a C program that prints one line per fact of d: the
// value, size and signedness of each constant; size, alignment,
// signedness and compatibility with int and unsigned int of each scalar
// type; size and alignment of each struct and offset and size of each of
// its fields, and whether the field has the declared type; and it refers
// to each handle type and each function, so it does not compile where one
// is missing. The program is the same text whichever header include
// names, so two runs can be compared line by line.
func rdkProbe(include string, d rdkDecls) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#include <stdio.h>\n#include <stddef.h>\n#include %s\n\n", include)
	b.WriteString("typedef unsigned long long sb_u;\n\nint main(void) {\n")
	for _, c := range d.constants {
		fmt.Fprintf(&b, "\tprintf(\"constant %s value=%%lld size=%%llu signed=%%d\\n\", (long long)(%s), (sb_u)sizeof(%s), (int)((%s) - (%s) - 1 < 0));\n", c, c, c, c, c)
	}
	for _, h := range d.handles {
		fmt.Fprintf(&b, "\tprintf(\"handle %s pointer-size=%%llu\\n\", (sb_u)sizeof(%s *));\n", h, h)
	}
	for _, s := range d.scalars {
		fmt.Fprintf(&b, "\tprintf(\"type %s size=%%llu align=%%llu signed=%%d int=%%d unsigned-int=%%d\\n\", (sb_u)sizeof(%s), (sb_u)_Alignof(%s), (int)((%s)-1 < (%s)0), __builtin_types_compatible_p(%s, int), __builtin_types_compatible_p(%s, unsigned int));\n", s, s, s, s, s, s, s)
	}
	for _, st := range d.structs {
		fmt.Fprintf(&b, "\tprintf(\"struct %s size=%%llu align=%%llu\\n\", (sb_u)sizeof(%s), (sb_u)_Alignof(%s));\n", st.name, st.name, st.name)
		for _, f := range st.fields {
			fmt.Fprintf(&b, "\tprintf(\"field %s.%s offset=%%llu size=%%llu type-is-%s=%%d\\n\", (sb_u)offsetof(%s, %s), (sb_u)sizeof(((%s *)0)->%s), __builtin_types_compatible_p(__typeof__(((%s *)0)->%s), %s));\n",
				st.name, f.name, strings.ReplaceAll(f.typ, " ", ""), st.name, f.name, st.name, f.name, st.name, f.name, f.typ)
		}
	}
	for _, f := range d.functions {
		fmt.Fprintf(&b, "\t(void)sizeof(&%s);\n\tprintf(\"function %s\\n\");\n", f, f)
	}
	b.WriteString("\treturn 0;\n}\n")
	return b.String()
}

// cCompiler returns the C compiler cgo uses, with the flags go passes it.
func cCompiler(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("go", "env", "CC", "GOGCCFLAGS").Output()
	if err != nil {
		t.Fatalf("go env CC GOGCCFLAGS: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 || strings.TrimSpace(lines[0]) == "" {
		t.Fatalf("go env CC GOGCCFLAGS: %q", out)
	}
	return append(strings.Fields(lines[0]), strings.Fields(lines[1])...)
}

// compileC compiles src (written to dir/name.c) with cc and extra flags
// and returns the compiler's output.
func compileC(cc []string, dir, name, src string, flags ...string) (string, error) {
	file := filepath.Join(dir, name+".c")
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		return "", err
	}
	args := append(append(append([]string{}, cc[1:]...), flags...), file)
	out, err := exec.Command(cc[0], args...).CombinedOutput()
	return string(out), err
}

// runRdkProbe compiles and runs the probe for one header and returns its
// lines.
func runRdkProbe(t *testing.T, cc []string, dir, name, incDir, include string, d rdkDecls) []string {
	t.Helper()
	bin := filepath.Join(dir, name)
	if out, err := compileC(cc, dir, name, rdkProbe(include, d), "-std=gnu11", "-I", incDir, "-o", bin); err != nil {
		t.Fatalf("compiling the probe with %s: %v\n%s", include, err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("running the probe with %s: %v", include, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// realRdkafkaHeader returns the path of librdkafka's header in the module
// cache, from the confluent-kafka-go version go.mod selects.
func realRdkafkaHeader(t *testing.T) (path, modVersion string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}\n{{.Version}}", rdkafkaGoModule).Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", rdkafkaGoModule, err)
	}
	dir, ver, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if dir == "" {
		t.Fatalf("%s %s is not in the module cache (go mod download)", rdkafkaGoModule, ver)
	}
	return filepath.Join(dir, rdkafkaGoHeader), ver
}

// TestRdkafkaDeclarationsMatchLinked proves that sb_rdkafka.h, which rdk.go
// compiles against, declares librdkafka's ABI as the linked library has
// it. It reads librdkafka's own header from the module cache (that of the
// confluent-kafka-go in go.mod, whose library the binary links: their
// versions must agree) and compares the two with the C compiler:
//   - one probe program (rdkProbe), built once against each header, prints
//     every declared constant's value, every type's size, alignment and
//     signedness, every struct's size and every field's offset, size and
//     type; the outputs must be equal line for line;
//   - a file including librdkafka's header and then only the prototypes of
//     sb_rdkafka.h must compile: C rejects a redeclared function whose type
//     differs (return type, parameter types and their qualifiers, "...").
func TestRdkafkaDeclarationsMatchLinked(t *testing.T) {
	realPath, modVersion := realRdkafkaHeader(t)
	realText, err := os.ReadFile(realPath)
	if err != nil {
		t.Fatal(err)
	}
	m := cVersionRE.FindSubmatch(realText)
	if m == nil {
		t.Fatalf("no RD_KAFKA_VERSION in %s", realPath)
	}
	realVersion, err := strconv.ParseInt(string(m[1]), 0, 64)
	if err != nil {
		t.Fatal(err)
	}
	linked := rdkafkaLinkedVersion()
	if linked>>8 != int(realVersion)>>8 {
		t.Fatalf("linked librdkafka %s, but %s %s's header is %s", rdkafkaVersionString(linked),
			rdkafkaGoModule, modVersion, rdkafkaVersionString(int(realVersion)))
	}
	if err := checkRdkafkaVersion(int(realVersion)); err != nil {
		t.Fatalf("%s %s: %v", rdkafkaGoModule, modVersion, err)
	}

	ourText, err := os.ReadFile(ourRdkafkaHeader)
	if err != nil {
		t.Fatal(err)
	}
	d, err := parseRdkDecls(string(ourText))
	if err != nil {
		t.Fatalf("%s: %v", ourRdkafkaHeader, err)
	}
	fields := 0
	for _, s := range d.structs {
		fields += len(s.fields)
	}
	t.Logf("%s: %d functions, %d constants, %d handle types, %d scalar types, %d structs (%d fields); librdkafka %s from %s %s",
		ourRdkafkaHeader, len(d.functions), len(d.constants), len(d.handles), len(d.scalars), len(d.structs), fields,
		rdkafkaVersionString(int(realVersion)), rdkafkaGoModule, modVersion)
	if len(d.functions) == 0 || len(d.constants) == 0 || len(d.structs) == 0 {
		t.Fatalf("%s: declarations not found", ourRdkafkaHeader)
	}

	cc := cCompiler(t)
	dir := t.TempDir()
	ourDir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	ours := runRdkProbe(t, cc, dir, "ours", ourDir, `"`+ourRdkafkaHeader+`"`, d)
	theirs := runRdkProbe(t, cc, dir, "librdkafka", filepath.Dir(realPath), `"rdkafka.h"`, d)
	if len(ours) != len(theirs) {
		t.Fatalf("probe printed %d lines with %s, %d with librdkafka's header", len(ours), ourRdkafkaHeader, len(theirs))
	}
	for i := range ours {
		if ours[i] != theirs[i] {
			t.Errorf("%s:\n\t%s\nlibrdkafka %s:\n\t%s", ourRdkafkaHeader, ours[i], rdkafkaVersionString(int(realVersion)), theirs[i])
		}
	}

	both := "#include \"rdkafka.h\"\n#define SB_RDKAFKA_PROTOTYPES_ONLY\n#include \"" + ourRdkafkaHeader + "\"\n"
	if out, err := compileC(cc, dir, "prototypes", both, "-std=gnu11", "-fsyntax-only",
		"-I", filepath.Dir(realPath), "-I", ourDir); err != nil {
		t.Errorf("the prototypes of %s do not match librdkafka's: %v\n%s", ourRdkafkaHeader, err, out)
	}
}

// TestParseRdkDeclsRefusesUnknown: a declaration the parser does not know
// fails the ABI test instead of escaping it.
func TestParseRdkDeclsRefusesUnknown(t *testing.T) {
	for _, text := range []string{
		"typedef enum { A, B } rd_kafka_x_t;",
		"#define SB_OTHER 1",
		"#define RD_KAFKA_F(x) (x)",
		"typedef struct s { int a[2]; } rd_kafka_y_t;",
		"int rd_kafka_z(void)",
	} {
		if _, err := parseRdkDecls(text); err == nil {
			t.Errorf("%q: accepted", text)
		}
	}
	d, err := parseRdkDecls("#define RD_KAFKA_A 1\ntypedef struct h rd_kafka_h_t;\ntypedef unsigned int rd_kafka_u_t;\n" +
		"typedef struct m {\n\tint32_t a;\n\tconst char **b;\n} rd_kafka_m_t;\nconst char *rd_kafka_f(const rd_kafka_h_t *h, ...);\n")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(d.constants, d.handles, d.scalars, d.structs, d.functions)
	if want := "[RD_KAFKA_A] [rd_kafka_h_t] [rd_kafka_u_t] [{rd_kafka_m_t [{int32_t a} {const char ** b}]}] [rd_kafka_f]"; got != want {
		t.Errorf("parsed %s, want %s", got, want)
	}
}
