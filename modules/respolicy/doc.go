// Package respolicy is res_policy: per-group DNS policy tables, the global
// malicious table, the matcher the data plane asks for a decision per query,
// and the "policy" CLI.
//
// # Policy and decisions
//
// Each group (group_id on the feed; numeric id from res_policy.conf's
// [groups], or AutoGroupID) has a whitelist and a blacklist, each entry with
// a category bitmask; a domain is on at most one list of a group (a later
// ADD_DOMAIN moves it). The malicious table is global: entries with a
// category and a confidence, fed by ADD_MALICIOUS.
//
// An entry matches the domain itself and every subdomain on a label
// boundary ("evil.com" matches "a.evil.com", never "notevil.com"). Query
// names are matched case-insensitively, a trailing dot ignored; entries are
// normalised when parsed (NormalizeDomain: lower case, no trailing dot, a
// leading "*." dropped). Within a table the most specific (longest) entry
// wins. Across tables the precedence decides, whatever the specificity:
//
//	malicious -> sinkhole, whitelist -> allow, blacklist -> block, else allow
//
// with whitelist_vs_malicious = whitelist swapping the first two. A query of
// a group res_policy does not know uses default_group's lists if configured
// (Decision.Group is then its id), else only the malicious table (Group 0).
//
// # Snapshots and syncs
//
// Readers take no lock: Module.Snapshot (and every Matcher call) loads one
// immutable *Snapshot from an atomic pointer; a writer publishes a new
// snapshot with one pointer store, so a reader sees the whole old policy or
// the whole new one. Writers (the feed, file loads) serialise on the
// Store's mutex. BEGIN_SYNC opens a pending table (a Go map, invisible to
// readers); SYNC_COMPLETE builds it into a table and publishes. ADD_DOMAIN
// and REMOVE_DOMAIN outside a sync, and ADD_MALICIOUS, change the active
// policy at once: they go to a small delta table (adds and tombstones) in
// front of the base, rebuilt per change, and folded into a new base once it
// holds about 2*sqrt(base) entries (at least 1024), so a stream of single
// changes costs O(sqrt n) each. A file load (ApplyBatch) publishes once.
//
// # Matching engine: what the benchmark decided
//
// The issue asks for Hyperscan (gohs) and for the faster of the designs it
// lists, measured side by side (BENCH_NOTES.md, BenchmarkLookup). Measured on
// the 2-core VM with phishing (190k) + tracking (144k) in one group:
//
//   - One Hyperscan scan of a burst of 64 names (".name\n" each, literals
//     ".entry\n") costs about 4 microseconds of CPU per name against the
//     334k-literal database: large literal sets make Hyperscan's literal
//     matcher verify much, and each scan crosses cgo and allocates a
//     cgo.Handle. Compiling the 334k literals took 45-50 s through the
//     literal API, 12 s as escaped expressions (the way it is done now).
//   - The hash tier below decides a name in 0.4-0.8 microseconds when the
//     names spread uniformly over the lists (the tables do not fit the
//     caches) and in about 0.2 microseconds for traffic-like mixes, 1.4-2x
//     faster than a plain Go map suffix walk on the same data except for a
//     single hot name, allocates nothing, uses 47 bytes per domain against
//     the map's 87, and builds 334k entries in 0.1-0.3 s.
//
// So every decision is made by the hash tier, and literal tables are never
// compiled into Hyperscan unless asked: with hyperscan = yes (a diagnostic,
// off by default) each group's base and the malicious base are compiled into
// databases after every sync, in one background goroutine (newest table per
// key; a superseded compile is discarded), never delaying the swap. With
// burst_engine = hyperscan, DecideBurst then matches through them (names
// touching a delta, or whose databases are not compiled yet, take the hash
// walk; decisions are identical, which the tests check); "policy lookup"
// cross-checks every answer against the database. Each entry is compiled as
// an expression with every byte but letters and digits escaped, which
// Hyperscan takes as a pure literal (12 s and 760 MB peak for 334k domains).
//
// Hyperscan memory rules: one scratch per Matcher (worker), cloned from a
// process-wide prototype that the compiler grows for every new database, so
// no scratch is ever reallocated while a scan may use it; a database is
// reference counted and freed only when it is no longer in the published
// snapshot and no reader holds it (acquire/release around every scan).
//
// # Pattern rules
//
// ADD_PATTERN adds a rule to a group (group_id) or to the global set: a
// Hyperscan regular expression over the query name (matched
// case-insensitively, without the trailing dot, anywhere unless anchored)
// or a wildcard (SyntaxWildcard, translated to an anchored expression). A
// group's rules follow its syncs exactly as its domains do; global rules
// apply at once. Each changed set is compiled when the change is published,
// before the new snapshot is stored, so one snapshot holds a group's
// literal tables and its compiled rules together. A group with rules of its
// own gets one database of its rules followed by the global ones; other
// groups share the global database; with neither, a decision costs nothing
// more. A Matcher scans the name once with its own scratch and merges the
// result into the literal decision: a rule joins the list its action names,
// the lists keep their precedence, a literal entry beats a rule of its own
// list, and among rules the lowest id (own before global, then sorted by
// syntax and pattern) decides. A pattern database is freed by the garbage
// collector once no snapshot holds its set, so a reader of an old snapshot
// always scans a live database.
//
// # The hash tier
//
// A table is an immutable open-addressing hash set: 16-byte slots (four to a
// cache line) packing a 40-bit tag, the name's length, list, confidence,
// category and the offset of the name in one string holding all names back
// to back. Load factor at most 3/4, linear probing. The hash is FNV-1a run
// from the name's last byte to its first, so one pass over a query name
// yields the hash of every label-boundary suffix ("com", "evil.com",
// "a.evil.com"), lower-casing as it goes: no copy, no allocation. A bit mask
// of the label counts present lets the walk skip suffixes no entry can have
// and stop past the deepest entry. Tables of 16k entries or more have a
// blocked Bloom filter (one cache line per probe, ~12 bits per entry) in
// front of the slots, so a probe for a name not in the table usually costs
// one access to a small, cache-resident array. A tag match is always
// confirmed by comparing the name.
//
// Decide walks one name in one pass. DecideBurst walks a burst in four
// passes (hash and prefetch filter lines; check filters and prefetch slots;
// probe by tag and prefetch the picked entry; verify) so that the cache
// misses of all its names are in flight together; it wins when the tables
// are much larger than the caches and the names spread over them, and costs
// a little more than Decide when the names are hot.
//
// # Feed and files
//
// ParseMessage parses one JSON message of the feed (the policy_updates topic,
// seed_file, "policy load" files: one object per line). Rejected messages are
// counted per source and reason (switchboard_policy_rejected_total), logged
// rate-limited, and skipped. policy_sync (modules/policysync) consumes the
// topic; see its package documentation for offsets and consumer groups.
package respolicy
