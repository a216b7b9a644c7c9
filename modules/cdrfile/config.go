package cdrfile

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchboard-dp/switchboard/conf"
)

// ConfigFile is the module's configuration file.
const ConfigFile = "cdr_file.conf"

// File is cdr_file.conf.
type File struct {
	General Config `section:"general"`
}

// Config is the [general] section of cdr_file.conf. samples/cdr_file.conf
// documents every key.
type Config struct {
	// Enabled = no (the default) makes the module decline.
	Enabled bool `conf:"enabled" default:"no"`
	// Directory receives the files; relative to the data dir unless
	// absolute.
	Directory string `conf:"directory" default:"cdr_file"`
	// File is the file name pattern (see parsePattern).
	File string `conf:"file" default:"cdr-%Y%m%d-%H%M%S.jsonl"`
	// Format is json (cdr.AppendJSON, one object per line) or csv.
	Format string `conf:"format" default:"json" enum:"json|csv"`
	// Columns are the CSV columns, comma-separated (see columnNames).
	Columns string `conf:"columns" default:"ts,ip,subscriber_id,domain,qtype,action,group,category,id,seq"`
	// CSVHeader starts every CSV file with a line of the column names.
	CSVHeader bool `conf:"csv_header" default:"no"`
	// CSVCRLF ends CSV lines with CR LF instead of LF.
	CSVCRLF bool `conf:"csv_crlf" default:"no"`
	// RotateInterval starts a new file at every multiple of it (UTC); 0:
	// never by time.
	RotateInterval time.Duration `conf:"rotate_interval" default:"1h" min:"0" max:"168h"`
	// RotateSizeMB starts a new file before one would exceed it; 0: no
	// limit.
	RotateSizeMB int `conf:"rotate_size_mb" default:"0" min:"0" max:"1048576"`
	// MaxFiles keeps at most this many complete files (the oldest are
	// removed); 0: no limit.
	MaxFiles int `conf:"max_files" default:"0" min:"0" max:"10000000"`
	// MaxAge removes complete files older than this; 0: no limit.
	MaxAge time.Duration `conf:"max_age" default:"0" min:"0" max:"87600h"`
	// Fsync is when the open file is fsynced: always (before a batch is
	// counted delivered), interval (every fsync_ms; the maintenance loop
	// checks every 100 ms) or never (at rotation and stop only).
	Fsync   string `conf:"fsync" default:"interval" enum:"always|interval|never"`
	FsyncMs int    `conf:"fsync_ms" default:"1000" min:"100" max:"600000"`
	// BatchMax and FlushMs bound a worker's batch, as cdr_kafka's.
	BatchMax int `conf:"batch_max" default:"256" min:"1" max:"100000"`
	FlushMs  int `conf:"flush_ms" default:"100" min:"1" max:"60000"`
	// OnError is what happens to CDRs that cannot be written: spool (kept
	// in the spool and written when the files can be written again) or
	// drop (counted, reason write_error).
	OnError string `conf:"on_error" default:"spool" enum:"spool|drop"`
	// SpoolDir holds the spool; relative to the data dir unless absolute.
	SpoolDir string `conf:"spool_dir" default:"cdr_file_spool"`
	// SpoolMaxMB caps the spool; beyond it CDRs are dropped (spool_error).
	// 0: no cap.
	SpoolMaxMB int `conf:"spool_max_mb" default:"1024" min:"0" max:"1048576"`
	// SpoolFsyncMs and SpoolFsyncRecords bound what an OS crash can lose of
	// the spool.
	SpoolFsyncMs      int `conf:"spool_fsync_ms" default:"100" min:"1" max:"60000"`
	SpoolFsyncRecords int `conf:"spool_fsync_records" default:"1000" min:"1" max:"10000000"`
	// RetryMinMs and RetryMaxMs bound the backoff between attempts to write
	// the spooled CDRs to the files while writing fails.
	RetryMinMs int `conf:"retry_min_ms" default:"100" min:"1" max:"600000"`
	RetryMaxMs int `conf:"retry_max_ms" default:"10000" min:"1" max:"600000"`
}

// Validate checks what the tags cannot: the file pattern, the columns, the
// rotation interval's lower bound, the retry bounds and the spool directory.
func (f *File) Validate(cf *conf.File) error {
	var errs conf.Errors
	c := &f.General
	if _, err := parsePattern(c.File); err != nil {
		errs.At(cf, "general", "file", "%v", err)
	}
	if _, err := parseColumns(c.Columns); err != nil {
		errs.At(cf, "general", "columns", "%v", err)
	}
	if c.RotateInterval > 0 && c.RotateInterval < time.Second {
		errs.At(cf, "general", "rotate_interval", "%s is below 1s (0 turns rotation by time off)", c.RotateInterval)
	}
	if c.RetryMinMs > c.RetryMaxMs {
		errs.At(cf, "general", "retry_max_ms", "retry_max_ms %d is below retry_min_ms %d", c.RetryMaxMs, c.RetryMinMs)
	}
	if strings.TrimSpace(c.Directory) == "" {
		errs.At(cf, "general", "directory", "empty directory")
	}
	if strings.TrimSpace(c.SpoolDir) == "" {
		errs.At(cf, "general", "spool_dir", "empty spool_dir")
	} else if filepath.Clean(c.SpoolDir) == filepath.Clean(c.Directory) {
		errs.At(cf, "general", "spool_dir", "spool_dir must not be the CDR directory (readers would pick up the spool's files)")
	}
	return errs.Err()
}

// parseColumns parses the columns option: column names separated by
// commas, each at most once.
func parseColumns(s string) ([]column, error) {
	var cols []column
	seen := map[column]bool{}
	for _, name := range strings.Split(s, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		c, ok := columnByName(name)
		if !ok {
			return nil, fmt.Errorf("unknown column %q (want some of %s)", name, strings.Join(columnNames[:], ","))
		}
		if seen[c] {
			return nil, fmt.Errorf("column %q is listed twice", name)
		}
		seen[c] = true
		cols = append(cols, c)
	}
	return cols, nil
}

func columnByName(name string) (column, bool) {
	for i, n := range columnNames {
		if n == name {
			return column(i), true
		}
	}
	return 0, false
}

// pattern is a parsed file name pattern: literal text and time fields.
//
// Fields: %Y year (4 digits), %m month, %d day, %H hour, %M minute, %S
// second (2 digits each), %s Unix seconds, %% a literal %. Times are UTC.
// The name may not contain '/' nor end in ".open" (the suffix of the file
// being written).
type pattern struct {
	parts []patPart
	// The expanded name splits at the last '.' of the pattern's literal
	// text, its extension (none without a '.'): a name already in use gets
	// "_001", "_002", ... before it (after it sorts after the name itself).
	extAt int // index into parts where the extension starts, at byte extOf of its literal
	extOf int
	re    *regexp.Regexp
}

type patPart struct {
	lit   string
	field byte // 0: literal
}

// parsePattern parses a file name pattern (see pattern).
func parsePattern(s string) (*pattern, error) {
	if s == "" {
		return nil, fmt.Errorf("empty file name pattern")
	}
	if strings.ContainsAny(s, "/\x00") {
		return nil, fmt.Errorf("file name pattern %q contains '/' (set directory for the directory)", s)
	}
	if strings.HasSuffix(s, openSuffix) {
		return nil, fmt.Errorf("file name pattern %q ends in %s, the suffix of the file being written", s, openSuffix)
	}
	p := &pattern{extAt: -1}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			p.parts = append(p.parts, patPart{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return nil, fmt.Errorf("file name pattern %q ends in a lone %%", s)
		}
		i++
		switch c := s[i]; c {
		case '%':
			lit.WriteByte('%')
		case 'Y', 'm', 'd', 'H', 'M', 'S', 's':
			flush()
			p.parts = append(p.parts, patPart{field: c})
		default:
			return nil, fmt.Errorf("file name pattern %q: unknown field %%%c (want %%Y %%m %%d %%H %%M %%S %%s or %%%%)", s, c)
		}
	}
	flush()
	for i := len(p.parts) - 1; i >= 0 && p.extAt < 0; i-- {
		if p.parts[i].field == 0 {
			if j := strings.LastIndexByte(p.parts[i].lit, '.'); j >= 0 {
				p.extAt, p.extOf = i, j
			}
		}
	}
	if name := p.expand(time.Unix(0, 0), 0); name == "." || name == ".." {
		return nil, fmt.Errorf("file name pattern %q is not a file name", s)
	}
	p.re = regexp.MustCompile("^" + p.regexp() + "$")
	return p, nil
}

// expand returns the file name for time t; n > 0 adds "_n" (at least 3
// digits) before the extension.
func (p *pattern) expand(t time.Time, n int) string {
	t = t.UTC()
	var b []byte
	for i, part := range p.parts {
		lit := part.lit
		if n > 0 && i == p.extAt {
			b = append(b, lit[:p.extOf]...)
			b = appendSeq(b, n)
			lit = lit[p.extOf:]
		}
		switch part.field {
		case 0:
			b = append(b, lit...)
		case 'Y':
			b = appendPadded(b, t.Year(), 4)
		case 'm':
			b = appendPadded(b, int(t.Month()), 2)
		case 'd':
			b = appendPadded(b, t.Day(), 2)
		case 'H':
			b = appendPadded(b, t.Hour(), 2)
		case 'M':
			b = appendPadded(b, t.Minute(), 2)
		case 'S':
			b = appendPadded(b, t.Second(), 2)
		case 's':
			b = strconv.AppendInt(b, t.Unix(), 10)
		}
	}
	if n > 0 && p.extAt < 0 {
		b = appendSeq(b, n)
	}
	return string(b)
}

// appendSeq appends the collision suffix "_n", n zero-padded to 3 digits.
func appendSeq(b []byte, n int) []byte {
	return appendPadded(append(b, '_'), n, 3)
}

// regexp returns a regular expression matching every name expand can
// return (retention removes only the files it matches).
func (p *pattern) regexp() string {
	var b strings.Builder
	seq := `(_[0-9]{3,})?`
	for i, part := range p.parts {
		lit := part.lit
		if i == p.extAt {
			b.WriteString(regexp.QuoteMeta(lit[:p.extOf]))
			b.WriteString(seq)
			lit = lit[p.extOf:]
		}
		switch part.field {
		case 0:
			b.WriteString(regexp.QuoteMeta(lit))
		case 'Y':
			b.WriteString(`[0-9]{4,}`)
		case 's':
			b.WriteString(`-?[0-9]+`)
		default:
			b.WriteString(`[0-9]{2}`)
		}
	}
	if p.extAt < 0 {
		b.WriteString(seq)
	}
	return b.String()
}

// matches reports whether name is a complete file of this pattern.
func (p *pattern) matches(name string) bool { return p.re.MatchString(name) }

func appendPadded(b []byte, v, width int) []byte {
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], int64(v), 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}
