package respolicy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// MessageType is the type of a policy feed message: its "type" field.
type MessageType uint8

// Message types of the policy feed. The zero value is not a message type.
const (
	TypeBeginSync MessageType = iota + 1
	TypeAddDomain
	TypeRemoveDomain
	TypeSyncComplete
	TypeAddMalicious
	TypeAddPattern
	TypeRemovePattern
)

// messageTypeNames are the wire names of the message types, which are also
// the text of the CLI's columns and of the metrics' type labels.
var messageTypeNames = [...]string{
	TypeBeginSync:     "BEGIN_SYNC",
	TypeAddDomain:     "ADD_DOMAIN",
	TypeRemoveDomain:  "REMOVE_DOMAIN",
	TypeSyncComplete:  "SYNC_COMPLETE",
	TypeAddMalicious:  "ADD_MALICIOUS",
	TypeAddPattern:    "ADD_PATTERN",
	TypeRemovePattern: "REMOVE_PATTERN",
}

// MessageTypes lists the message types, in the order the CLI shows them.
var MessageTypes = []MessageType{TypeBeginSync, TypeAddDomain, TypeRemoveDomain, TypeSyncComplete, TypeAddMalicious,
	TypeAddPattern, TypeRemovePattern}

// Valid reports whether t is one of the message types.
func (t MessageType) Valid() bool { return t >= TypeBeginSync && t <= TypeRemovePattern }

// String returns the wire name of t ("BEGIN_SYNC", ...), or
// "MessageType(N)" for a value that is not a message type.
func (t MessageType) String() string {
	if t.Valid() {
		return messageTypeNames[t]
	}
	return "MessageType(" + strconv.Itoa(int(t)) + ")"
}

// ParseMessageType returns the message type whose wire name is s (exactly:
// upper case). Any other s is a *RejectError with reason ReasonUnknownType.
func ParseMessageType(s string) (MessageType, error) {
	for _, t := range MessageTypes {
		if messageTypeNames[t] == s {
			return t, nil
		}
	}
	return 0, reject(ReasonUnknownType, "type %q", truncate(s))
}

// Reasons a message is rejected (label values of the rejected counters).
const (
	ReasonMalformedJSON        = "malformed_json"
	ReasonUnknownType          = "unknown_type"
	ReasonMissingField         = "missing_field"
	ReasonInvalidField         = "invalid_field"
	ReasonCompleteWithoutBegin = "complete_without_begin"
	ReasonBeginWhileOpen       = "begin_while_open"
	// ReasonInvalidPattern: a pattern Hyperscan refuses, one that matches
	// the empty name, or one too long (ADD_PATTERN).
	ReasonInvalidPattern = "invalid_pattern"
)

// RejectReasons lists every reason, in the order the CLI shows them.
var RejectReasons = []string{ReasonMalformedJSON, ReasonUnknownType, ReasonMissingField,
	ReasonInvalidField, ReasonCompleteWithoutBegin, ReasonBeginWhileOpen, ReasonInvalidPattern}

// RejectError says why a message was skipped. The active policy is never
// touched by a rejected message.
type RejectError struct {
	Reason string // one of the Reason constants
	Detail string
}

func (e *RejectError) Error() string { return e.Reason + ": " + e.Detail }

// RejectReason returns the reason of a *RejectError in err's chain, or "".
func RejectReason(err error) string {
	var r *RejectError
	if errors.As(err, &r) {
		return r.Reason
	}
	return ""
}

func reject(reason, format string, a ...any) *RejectError {
	return &RejectError{Reason: reason, Detail: fmt.Sprintf(format, a...)}
}

// Message is one parsed, validated message of the policy feed.
type Message struct {
	// Type is one of the Type constants.
	Type MessageType
	// Group is group_id (empty for ADD_MALICIOUS, and for ADD_PATTERN and
	// REMOVE_PATTERN of a global rule).
	Group string
	// Domain is the normalised domain (ADD_DOMAIN, REMOVE_DOMAIN, ADD_MALICIOUS).
	Domain string
	// Pattern is the pattern of ADD_PATTERN and REMOVE_PATTERN, as written.
	Pattern string
	// Syntax is how Pattern is written (default SyntaxRegex).
	Syntax Syntax
	// List is the action of ADD_DOMAIN (whitelist or blacklist), of
	// ADD_PATTERN (whitelist, blacklist or malicious), or ListMalicious for
	// ADD_MALICIOUS.
	List List
	// Category is the category bitmask (optional, default 0).
	Category uint32
	// Confidence is ADD_MALICIOUS's confidence, 0-100 (optional, default 0).
	Confidence uint8
}

// wireMessage is the JSON form; pointers tell absent fields from zero ones.
type wireMessage struct {
	Type       *string `json:"type"`
	GroupID    *string `json:"group_id"`
	Domain     *string `json:"domain"`
	Pattern    *string `json:"pattern"`
	Syntax     *string `json:"syntax"`
	Action     *string `json:"action"`
	Category   *uint32 `json:"category"`
	Confidence *uint8  `json:"confidence"`
}

// ParseMessage parses and validates one JSON message. Unknown JSON fields
// are ignored (so the producer may add some); fields a type does not use are
// ignored too. Errors are *RejectError.
//
// Required fields: type everywhere; group_id for BEGIN_SYNC, ADD_DOMAIN,
// REMOVE_DOMAIN and SYNC_COMPLETE; domain for ADD_DOMAIN, REMOVE_DOMAIN and
// ADD_MALICIOUS; action ("whitelist" or "blacklist") for ADD_DOMAIN;
// pattern for ADD_PATTERN and REMOVE_PATTERN, and action ("whitelist",
// "blacklist" or "malicious") for ADD_PATTERN, whose group_id is optional
// (absent: a global rule) and whose syntax is "regex" (default) or
// "wildcard". category (0 to 4294967295) and confidence (0 to 100) are
// optional. Whether Hyperscan accepts a pattern is checked when the store
// applies it (ReasonInvalidPattern).
func ParseMessage(data []byte) (Message, error) {
	var w wireMessage
	data = bytes.TrimSpace(data)
	if len(data) == 0 || data[0] != '{' {
		return Message{}, reject(ReasonMalformedJSON, "not a JSON object")
	}
	if err := json.Unmarshal(data, &w); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return Message{}, reject(ReasonInvalidField, "field %s: %v", te.Field, err)
		}
		return Message{}, reject(ReasonMalformedJSON, "%v", err)
	}
	if w.Type == nil {
		return Message{}, reject(ReasonMissingField, "no type")
	}
	typ, err := ParseMessageType(*w.Type)
	if err != nil {
		return Message{}, err
	}
	m := Message{Type: typ}
	needGroup, needDomain := false, false
	switch m.Type {
	case TypeBeginSync, TypeSyncComplete:
		needGroup = true
	case TypeAddDomain, TypeRemoveDomain:
		needGroup, needDomain = true, true
	case TypeAddMalicious:
		needDomain = true
		m.List = ListMalicious
	case TypeAddPattern, TypeRemovePattern:
		if err := parsePatternFields(&m, &w); err != nil {
			return Message{}, err
		}
		return m, nil
	}
	if needGroup {
		if w.GroupID == nil {
			return Message{}, reject(ReasonMissingField, "%s without group_id", m.Type)
		}
		if err := validGroup(*w.GroupID); err != nil {
			return Message{}, reject(ReasonInvalidField, "%s: %v", m.Type, err)
		}
		m.Group = *w.GroupID
	}
	if needDomain {
		if w.Domain == nil {
			return Message{}, reject(ReasonMissingField, "%s without domain", m.Type)
		}
		d, err := NormalizeDomain(*w.Domain)
		if err != nil {
			return Message{}, reject(ReasonInvalidField, "%s: %v", m.Type, err)
		}
		m.Domain = d
	}
	if m.Type == TypeAddDomain {
		if w.Action == nil {
			return Message{}, reject(ReasonMissingField, "ADD_DOMAIN without action")
		}
		switch *w.Action {
		case "whitelist":
			m.List = ListWhitelist
		case "blacklist":
			m.List = ListBlacklist
		default:
			return Message{}, reject(ReasonInvalidField, "ADD_DOMAIN action %q (want whitelist or blacklist)", truncate(*w.Action))
		}
	}
	if m.Type == TypeAddDomain || m.Type == TypeAddMalicious {
		if w.Category != nil {
			m.Category = *w.Category
		}
	}
	if m.Type == TypeAddMalicious {
		if err := parseConfidence(&m, &w); err != nil {
			return Message{}, err
		}
	}
	return m, nil
}

// parseConfidence fills the optional confidence (0-100).
func parseConfidence(m *Message, w *wireMessage) error {
	if w.Confidence != nil {
		if *w.Confidence > 100 {
			return reject(ReasonInvalidField, "confidence %d (0-100)", *w.Confidence)
		}
		m.Confidence = *w.Confidence
	}
	return nil
}

// parsePatternFields fills the fields of ADD_PATTERN and REMOVE_PATTERN.
func parsePatternFields(m *Message, w *wireMessage) error {
	if w.GroupID != nil {
		if err := validGroup(*w.GroupID); err != nil {
			return reject(ReasonInvalidField, "%s: %v", m.Type, err)
		}
		m.Group = *w.GroupID
	}
	if w.Pattern == nil || *w.Pattern == "" {
		return reject(ReasonMissingField, "%s without pattern", m.Type)
	}
	if len(*w.Pattern) > MaxPatternLen {
		return reject(ReasonInvalidPattern, "%s: pattern of %d bytes (at most %d)", m.Type, len(*w.Pattern), MaxPatternLen)
	}
	m.Pattern = *w.Pattern
	if w.Syntax != nil {
		switch *w.Syntax {
		case "regex":
			m.Syntax = SyntaxRegex
		case "wildcard":
			m.Syntax = SyntaxWildcard
		default:
			return reject(ReasonInvalidField, "%s syntax %q (want regex or wildcard)", m.Type, truncate(*w.Syntax))
		}
	}
	if m.Type == TypeRemovePattern {
		return nil
	}
	if w.Action == nil {
		return reject(ReasonMissingField, "ADD_PATTERN without action")
	}
	switch *w.Action {
	case "whitelist":
		m.List = ListWhitelist
	case "blacklist":
		m.List = ListBlacklist
	case "malicious":
		m.List = ListMalicious
	default:
		return reject(ReasonInvalidField, "ADD_PATTERN action %q (want whitelist, blacklist or malicious)", truncate(*w.Action))
	}
	if w.Category != nil {
		m.Category = *w.Category
	}
	if m.List == ListMalicious {
		return parseConfidence(m, w)
	}
	return nil
}

// validGroup checks a group name: 1-128 printable ASCII bytes, no spaces
// (so the CLI can name it).
func validGroup(g string) error {
	if g == "" {
		return errors.New("empty group_id")
	}
	if len(g) > 128 {
		return fmt.Errorf("group_id of %d bytes (at most 128)", len(g))
	}
	for i := 0; i < len(g); i++ {
		if c := g[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("group_id %q: byte %q not allowed", truncate(g), c)
		}
	}
	return nil
}

// truncate shortens a string quoted in a log line or error.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// MarshalJSON writes the message in the feed's wire form.
func (m Message) MarshalJSON() ([]byte, error) {
	type out struct {
		Type       string  `json:"type"`
		GroupID    string  `json:"group_id,omitempty"`
		Domain     string  `json:"domain,omitempty"`
		Pattern    string  `json:"pattern,omitempty"`
		Syntax     string  `json:"syntax,omitempty"`
		Action     string  `json:"action,omitempty"`
		Category   *uint32 `json:"category,omitempty"`
		Confidence *uint8  `json:"confidence,omitempty"`
	}
	o := out{Type: m.Type.String(), GroupID: m.Group, Domain: m.Domain}
	switch m.Type {
	case TypeAddDomain:
		o.Action = m.List.String()
		o.Category = &m.Category
	case TypeAddMalicious:
		o.Category, o.Confidence = &m.Category, &m.Confidence
	case TypeAddPattern, TypeRemovePattern:
		o.Pattern = m.Pattern
		if m.Syntax != SyntaxRegex {
			o.Syntax = m.Syntax.String()
		}
		if m.Type == TypeAddPattern {
			o.Action = m.List.String()
			o.Category = &m.Category
			if m.List == ListMalicious {
				o.Confidence = &m.Confidence
			}
		}
	}
	return json.Marshal(o)
}
