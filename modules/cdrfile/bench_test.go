package cdrfile

import (
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/modules/cdr"
)

// benchFormats are the configurations the benchmarks compare.
var benchFormats = []struct {
	name string
	cfg  func() *Config
}{
	{"json", defaults},
	{"csv", func() *Config {
		c := defaults()
		c.Format, c.File = "csv", "cdr-%Y%m%d-%H%M%S.csv"
		return c
	}},
}

// BenchmarkPost is the whole path per CDR: Poster.Post -> Batcher.Add (the
// binary form, into a reused buffer) -> Flush every batch_max records ->
// the line encoded in the file's format -> write(2) to a file in a temp
// dir (fsync = interval; files rotate at 64 MiB, two kept). One op is one
// CDR.
func BenchmarkPost(b *testing.B) {
	for _, f := range benchFormats {
		b.Run(f.name, func(b *testing.B) {
			cfg := f.cfg()
			cfg.MaxFiles = 2
			r := newRig(b, cfg, &fakeClock{t: time.Now()}, sizeLimit(64<<20))
			p := r.e.NewPoster()
			recs := make([]*cdr.Record, 1024)
			for i := range recs {
				recs[i] = record(i + 1)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.Post(recs[i&1023])
			}
			p.Flush()
			b.StopTimer()
			p.Close()
			r.stop()
			if s := r.reg.Snapshot(); s.Delivered != uint64(b.N) {
				b.Fatalf("%+v", s)
			}
		})
	}
}

// BenchmarkBatcherAdd is the posting goroutine's share alone: encoding a
// record into the batch (the engine's Add), emptied every 256 records
// without writing.
func BenchmarkBatcherAdd(b *testing.B) {
	t := &batcher{b: newBackend(mustResolve(b, defaults()), nil, nil)}
	rec := record(42)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if t.Add(rec) {
			t.rs.reset()
		}
	}
}

// BenchmarkEncodeLine is the writer's share per record: the binary form
// decoded and encoded as a line of the format.
func BenchmarkEncodeLine(b *testing.B) {
	for _, f := range benchFormats {
		b.Run(f.name, func(b *testing.B) {
			s := mustResolve(b, f.cfg())
			bin := appendRecord(nil, record(42))
			var rec cdr.Record
			var line []byte
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if err := decodeRecord(&rec, bin); err != nil {
					b.Fatal(err)
				}
				line = s.format.appendLine(line[:0], &rec)
			}
		})
	}
}

func mustResolve(tb testing.TB, cfg *Config) *settings {
	s, err := resolve(cfg, tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
