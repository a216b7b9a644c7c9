package cdr

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/switchboard-dp/switchboard/cli"
	"github.com/switchboard-dp/switchboard/modules/respolicy/decision"
)

// testPostUsage documents "cdr test post".
const testPostUsage = "cdr test post <count> [rate <per_second>] [start <seq>] [subscribers <n>]\n" +
	"  Posts <count> synthetic CDRs (domain test-post.invalid, action allow) through\n" +
	"  the engine, counted like any other CDR, for load and fault tests. Each carries\n" +
	"  a sequence id \"seq\": start, start+1, ... (default: the next value of a counter\n" +
	"  that starts at <unix ms at engine start> << 20, so ids stay unique across\n" +
	"  restarts). Subscriber IPs cycle through 10.77.0.1 .. n (default 64), so the\n" +
	"  records spread over partitions keyed by IP. rate paces posting (default: as\n" +
	"  fast as the backends accept). The command returns when every record is\n" +
	"  posted, printing the count and the sequence range; batches are handed over\n" +
	"  afterwards as usual (flush_ms)."

// testPostOptions maps each option of "cdr test post" to its value's name in
// testPostUsage.
var testPostOptions = map[string]string{"rate": "<per_second>", "start": "<seq>", "subscribers": "<n>"}

// testPostMax bounds one "cdr test post".
const testPostMax = 100_000_000

// testSeq is the default sequence counter of "cdr test post".
var testSeq atomic.Uint64

func init() { testSeq.Store(uint64(time.Now().UnixMilli()) << 20) }

// TestPostResult is what PostSynthetic did.
type TestPostResult struct {
	Posted     int
	First, End uint64 // sequence ids [First, End)
	Elapsed    time.Duration
}

// PostSynthetic posts count synthetic records with sequence ids from start
// (0: the next free ids of the default counter), at rate per second (0: no
// pacing), cycling subscriber IPs through n addresses. It stops early when
// ctx is done.
func (e *Engine) PostSynthetic(ctx context.Context, count int, rate float64, start uint64, n int) TestPostResult {
	if start == 0 {
		start = testSeq.Add(uint64(count)) - uint64(count) + 1
	}
	if n <= 0 {
		n = 64
	}
	p := e.NewPoster()
	defer p.Close()
	base := netip.AddrFrom4([4]byte{10, 77, 0, 0})
	rec := Record{Domain: []byte("test-post.invalid"), QType: 1, Action: decision.Allow, Group: 1}
	var sub [32]byte
	t0 := time.Now()
	res := TestPostResult{First: start, End: start}
	for i := 0; i < count; i++ {
		if rate > 0 {
			due := t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				// Pace in steps of at least 1 ms (posting stays batched).
				select {
				case <-ctx.Done():
					res.Elapsed = time.Since(t0)
					return res
				case <-time.After(max(d, time.Millisecond)):
				}
			}
		}
		if i&1023 == 0 && ctx.Err() != nil {
			break
		}
		k := uint32(i%n) + 1
		a := base.As4()
		a[2], a[3] = byte(k>>8), byte(k)
		rec.IP = netip.AddrFrom4(a)
		rec.SubscriberID = string(strconv.AppendUint(append(sub[:0], "subscriber-"...), uint64(k), 10))
		rec.TS = time.Now().UnixMilli()
		rec.Seq = start + uint64(i)
		p.Post(&rec)
		res.Posted++
		res.End = rec.Seq + 1
	}
	res.Elapsed = time.Since(t0)
	return res
}

func (e *Engine) testPostCommand() *cli.Command {
	return &cli.Command{
		Path:    "cdr test post",
		Summary: "Post synthetic sequence-numbered CDRs (load and fault tests)",
		Usage:   testPostUsage,
		Run: func(ctx context.Context, w io.Writer, args []string) error {
			if err := cli.MinArgs(args, "<count>"); err != nil {
				return err
			}
			count, err := strconv.Atoi(args[0])
			if err != nil || count < 1 || count > testPostMax {
				return cli.Usagef("count %q is not a whole number from 1 to %d", args[0], testPostMax)
			}
			var rate float64
			var start uint64
			subs := 64
			for i := 1; i < len(args); i += 2 {
				kw := args[i]
				value, ok := testPostOptions[kw]
				if !ok {
					return cli.Unexpected(kw)
				}
				if err := cli.Keyword(args, i, kw, value); err != nil {
					return err
				}
				v := args[i+1]
				switch kw {
				case "rate":
					rate, err = strconv.ParseFloat(v, 64)
					if err != nil || rate <= 0 || rate > 1e9 {
						return cli.Usagef("rate %q is not a positive number of CDRs per second (at most 1e9)", v)
					}
				case "start":
					start, err = strconv.ParseUint(v, 10, 64)
					if err != nil || start == 0 || start > ^uint64(0)-uint64(count) {
						return cli.Usagef("start %q is not a positive sequence id (at most %d)", v, ^uint64(0)-uint64(count))
					}
				case "subscribers":
					subs, err = strconv.Atoi(v)
					if err != nil || subs < 1 || subs > 65535 {
						return cli.Usagef("subscribers %q is not a whole number from 1 to 65535", v)
					}
				}
			}
			r := e.PostSynthetic(ctx, count, rate, start, subs)
			fmt.Fprintf(w, "posted %d CDRs seq %d..%d in %s\n", r.Posted, r.First, r.End-1, r.Elapsed.Round(time.Millisecond))
			if r.Posted < count {
				return fmt.Errorf("cdr test post: interrupted after %d of %d CDRs", r.Posted, count)
			}
			return nil
		},
		Complete: func(args []string, prefix string) []string {
			if len(args)%2 == 1 {
				return []string{"rate", "start", "subscribers"}
			}
			return nil
		},
	}
}
