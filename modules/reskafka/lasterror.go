package reskafka

import "time"

// LastError is the last error a connection or a subscription recorded, kept
// with its time and, once the condition has cleared, the time it cleared:
//
//   - a subscription's error clears with a later successful partition
//     assignment (of at least one partition), a message received or a
//     successful offset commit;
//   - a connection's error clears when, after it, the connection is
//     confirmed up: a message delivered, a partition assignment, a message
//     received or an offset committed by one of its subscriptions, or a
//     broker UP in its statistics;
//   - a connection's last fatal error clears when a producer created after
//     it (the rebuilt one) delivered a message.
//
// A new error replaces the last one and is "still failing" until it clears.
type LastError struct {
	// Message is the error text (secrets masked); "" when nothing failed.
	Message string
	// At is when the error was recorded.
	At time.Time
	// Recovered reports that the condition cleared after At.
	Recovered bool
	// RecoveredAt is when it cleared (zero unless Recovered).
	RecoveredAt time.Time
}

// String returns the error as the CLI shows it:
// "<message> (at <RFC 3339 time>, recovered at 15:04:05)" or
// "<message> (at <RFC 3339 time>, still failing)"; "" when there is none.
// The recovery time is given in full when it is on another day.
func (e LastError) String() string {
	if e.Message == "" {
		return ""
	}
	at := e.At.Format(time.RFC3339)
	if !e.Recovered {
		return e.Message + " (at " + at + ", still failing)"
	}
	r := e.RecoveredAt.In(e.At.Location())
	rec := r.Format(time.RFC3339)
	y1, m1, d1 := e.At.Date()
	if y2, m2, d2 := r.Date(); y1 == y2 && m1 == m2 && d1 == d2 {
		rec = r.Format(time.TimeOnly)
	}
	return e.Message + " (at " + at + ", recovered at " + rec + ")"
}

// set records msg as the last error, failing since now.
func (e *LastError) set(msg string, now time.Time) {
	*e = LastError{Message: msg, At: now}
}

// recover marks the last error recovered at now; it reports whether there
// was an error still failing.
func (e *LastError) recover(now time.Time) bool {
	if e.Message == "" || e.Recovered {
		return false
	}
	e.Recovered, e.RecoveredAt = true, now
	return true
}
