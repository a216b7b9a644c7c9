// Package decision is the vocabulary of a policy decision shared by
// res_policy (which decides), pkt_engine (which counts decisions and picks
// the ones that produce CDRs), cdr (whose Record carries one) and cdr_kafka
// (which encodes it): the Action, its names, and a set of actions.
//
// It imports only errors and strconv, so packages that use it (cdr in
// particular) do not pull in res_policy, Hyperscan or cgo.
package decision

import (
	"errors"
	"strconv"
)

// Action is what the data plane does with a query.
type Action uint8

// The actions. The zero value is Allow.
const (
	Allow Action = iota
	Block
	Sinkhole
)

// NumActions is the number of actions: every valid Action is below it, so
// arrays of per-action counters are [NumActions]T indexed by Action.
const NumActions = 3

// names are the actions' text forms, as CDRs, configuration files, the CLI
// and metrics labels spell them.
var names = [NumActions]string{"allow", "block", "sinkhole"}

// Valid reports whether a is one of the actions.
func (a Action) Valid() bool { return a < NumActions }

// String returns "allow", "block" or "sinkhole"; "action(N)" for a value
// that is not an action.
func (a Action) String() string {
	if a.Valid() {
		return names[a]
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// AppendText appends the String form of a to b without allocating (when b
// has room). It implements encoding.TextAppender; the error is always nil.
func (a Action) AppendText(b []byte) ([]byte, error) {
	if a.Valid() {
		return append(b, names[a]...), nil
	}
	b = append(b, "action("...)
	b = strconv.AppendUint(b, uint64(a), 10)
	return append(b, ')'), nil
}

// MarshalText returns the String form of a. It implements
// encoding.TextMarshaler; the error is always nil.
func (a Action) MarshalText() ([]byte, error) { return a.AppendText(nil) }

// UnmarshalText sets a to the action named by text, as Parse does. It
// implements encoding.TextUnmarshaler.
func (a *Action) UnmarshalText(text []byte) error {
	v, err := Parse(string(text))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Parse returns the action named s: exactly "allow", "block" or "sinkhole"
// (callers that accept other spellings lower-case first).
func Parse(s string) (Action, error) {
	for i, n := range names {
		if n == s {
			return Action(i), nil
		}
	}
	return 0, errors.New("unknown action " + strconv.Quote(s) + " (want allow, block or sinkhole)")
}

// ActionSet is a set of actions, one bit per action (bit 1<<a for Action
// a), such as the decisions that produce CDRs (pkt_engine's cdr_actions).
// The zero value is the empty set.
type ActionSet uint8

// AllActions is the set of every action.
const AllActions ActionSet = 1<<Allow | 1<<Block | 1<<Sinkhole

// SetOf returns the set of the given actions.
func SetOf(actions ...Action) ActionSet {
	var s ActionSet
	for _, a := range actions {
		s |= 1 << a
	}
	return s
}

// Has reports whether a is in the set.
func (s ActionSet) Has(a Action) bool { return s&(1<<a) != 0 }

// String lists the set's actions in Action order, comma separated
// ("allow,block,sinkhole"), or returns "none" for the empty set.
func (s ActionSet) String() string {
	out := ""
	for a := Action(0); a < NumActions; a++ {
		if s.Has(a) {
			if out != "" {
				out += ","
			}
			out += names[a]
		}
	}
	if out == "" {
		return "none"
	}
	return out
}
