package dnsfirewall

import (
	"sync"
	"sync/atomic"
)

// kind is what became of a query: the answer it got or why it got none.
type kind uint8

// The kinds, in the order the CLI lists them.
const (
	kBlocked      kind = iota // answered as [block] says
	kSinkholed                // answered with a sinkhole address
	kForwarded                // answered by an upstream, relayed
	kTruncated                // of the forwarded: relayed with TC set (the client retries over TCP)
	kServFail                 // upstreams failed or none in service: SERVFAIL
	kRefused                  // source outside the subscriber prefixes: REFUSED
	kFormErr                  // malformed: FORMERR
	kNotImp                   // opcode other than QUERY: NOTIMP
	kDropShort                // shorter than a DNS header: dropped
	kDropResponse             // a response sent to the firewall: dropped
	kDropRate                 // over the client's rate limit: dropped
	kDropUnknown              // source outside the subscriber prefixes (unknown_clients = drop)
	kDropWrite                // the answer could not be sent
	kDropTCPConns             // TCP connections closed at once: tcp_max_connections open
	kLate                     // upstream answers that matched no query waiting (late or forged)
	numKinds
)

var kindNames = [numKinds]string{"blocked", "sinkholed", "forwarded", "truncated", "servfail", "refused",
	"formerr", "notimp", "dropped_short", "dropped_response", "dropped_rate_limit", "dropped_unknown_client",
	"dropped_send_failed", "dropped_tcp_connections", "upstream_unmatched"}

// counters are one worker's (or the TCP side's) totals.
type counters struct {
	queries  atomic.Uint64
	kinds    [numKinds]atomic.Uint64
	formErrs sync.Map // reason -> *atomic.Uint64
	readErrs atomic.Uint64
}

func (c *counters) count(k kind) { c.kinds[k].Add(1) }

func (c *counters) formErr(reason string) {
	c.count(kFormErr)
	v, ok := c.formErrs.Load(reason)
	if !ok {
		v, _ = c.formErrs.LoadOrStore(reason, new(atomic.Uint64))
	}
	v.(*atomic.Uint64).Add(1)
}
