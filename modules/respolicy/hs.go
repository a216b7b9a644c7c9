package respolicy

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flier/gohs/hyperscan"

	"github.com/switchboard-dp/switchboard/internal/cheap"
)

// hsDelim ends every query name in a burst buffer and every literal pattern:
// a pattern ".evil.com\n" matches ".a.evil.com\n" (a label boundary, the
// end of one name) and never spans two names.
const hsDelim = '\n'

// hsDB is a Hyperscan literal database compiled from one base table. It is
// reference counted: a reader Acquires it for one scan and Releases it; the
// writer Retires it when a snapshot no longer holds it, and the last of the
// two frees the C memory. So a database is freed only after every reader
// that could have loaded it has finished with it.
type hsDB struct {
	db      hyperscan.BlockDatabase
	src     *table  // the table the ids point into
	ids     []int32 // pattern id -> slot index of src
	lens    []uint8 // pattern id -> entry length (for "most specific")
	serial  uint64  // scratch prototype version that fits this database
	size    int     // bytes of the compiled database
	compile time.Duration

	refs atomic.Int64 // readers in flight | hsRetired | hsFreed
}

const (
	hsRetired = int64(1) << 40
	hsFreed   = int64(1) << 41
)

// acquire takes a reference for one scan; false if the database is retired.
func (d *hsDB) acquire() bool {
	if d.refs.Add(1)&(hsRetired|hsFreed) != 0 {
		d.release()
		return false
	}
	return true
}

// release gives back a reference taken by acquire.
func (d *hsDB) release() {
	if d.refs.Add(-1) == hsRetired {
		d.free()
	}
}

// retire marks the database as no longer published; it is freed as soon as
// no reader holds it.
func (d *hsDB) retire() {
	for {
		old := d.refs.Load()
		if old&(hsRetired|hsFreed) != 0 {
			return
		}
		if d.refs.CompareAndSwap(old, old|hsRetired) {
			if old == 0 {
				d.free()
			}
			return
		}
	}
}

// free releases the C database exactly once.
func (d *hsDB) free() {
	if d.refs.CompareAndSwap(hsRetired, hsRetired|hsFreed) {
		_ = d.db.Close()
		hsStats.freed.Add(1)
	}
}

// hsStats counts database lifecycle events (for tests and metrics).
var hsStats struct {
	compiled, freed, failed, scanFailed atomic.Int64
}

// scratchProto is the process-wide prototype scratch: after each compile it
// is grown (hs_alloc_scratch) to fit the new database as well as all earlier
// ones, and its version rises. Nobody scans with it; a Matcher whose scratch
// is older than a database it meets clones the prototype and frees its own
// old scratch, in its own goroutine, so no scratch is ever reallocated while
// a scan may use it.
var scratchProto struct {
	mu      sync.Mutex
	s       *hyperscan.Scratch
	version uint64
}

// growProto grows the prototype scratch for db and returns the version that
// fits it.
func growProto(db hyperscan.Database) (uint64, error) {
	scratchProto.mu.Lock()
	defer scratchProto.mu.Unlock()
	if scratchProto.s == nil {
		s, err := hyperscan.NewScratch(db)
		if err != nil {
			return 0, fmt.Errorf("allocate scratch: %w", err)
		}
		scratchProto.s = s
	} else if err := scratchProto.s.Realloc(db); err != nil {
		return 0, fmt.Errorf("grow scratch: %w", err)
	}
	scratchProto.version++
	return scratchProto.version, nil
}

// cloneProto returns a private copy of the prototype scratch and its version.
func cloneProto() (*hyperscan.Scratch, uint64, error) {
	scratchProto.mu.Lock()
	defer scratchProto.mu.Unlock()
	if scratchProto.s == nil {
		return nil, 0, errors.New("no hyperscan database compiled yet")
	}
	s, err := scratchProto.s.Clone()
	if err != nil {
		return nil, 0, fmt.Errorf("clone scratch: %w", err)
	}
	return s, scratchProto.version, nil
}

// compileTable compiles a table's live entries (every list but tombstones)
// into a block database: entry "evil.com" becomes the pattern
// ".evil.com\n" with every byte but letters and digits escaped, its id the
// entry's slot index. Hyperscan recognises such an expression as a pure
// literal; the standard compile API needs no build tag (measured on the 334k
// phishing + tracking domains: 12 s and 760 MB peak resident memory).
func compileTable(t *table) (*hsDB, error) {
	if t.n == 0 {
		return nil, nil
	}
	start := time.Now()
	pats := make([]*hyperscan.Pattern, 0, t.n)
	ids := make([]int32, 0, t.n)
	lens := make([]uint8, 0, t.n)
	var buf []byte
	for i := range t.slots {
		s := &t.slots[i]
		if s.meta == 0 || s.list() == listTombstone {
			continue
		}
		buf = appendLiteral(buf[:0], '.')
		for _, c := range []byte(t.name(i)) {
			buf = appendLiteral(buf, c)
		}
		buf = appendLiteral(buf, hsDelim)
		p := hyperscan.NewPattern(string(buf), 0)
		p.Id = len(ids)
		pats = append(pats, p)
		ids = append(ids, int32(i))
		lens = append(lens, uint8(s.ln()))
	}
	bdb, err := hyperscan.NewBlockDatabase(pats...)
	cheap.Trim() // the compiler's scratch memory, freed, goes back to the OS
	if err != nil {
		hsStats.failed.Add(1)
		return nil, fmt.Errorf("compile %d literals: %w", len(pats), err)
	}
	serial, err := growProto(bdb)
	if err != nil {
		_ = bdb.Close()
		return nil, err
	}
	size, _ := bdb.Size()
	hsStats.compiled.Add(1)
	return &hsDB{db: bdb, src: t, ids: ids, lens: lens, serial: serial, size: size, compile: time.Since(start)}, nil
}

// appendLiteral appends c to a Hyperscan expression so that it matches
// exactly that byte: letters and digits as they are, anything else as \xHH.
func appendLiteral(b []byte, c byte) []byte {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return append(b, c)
	}
	const hex = "0123456789abcdef"
	return append(b, '\\', 'x', hex[c>>4], hex[c&15])
}
