package respolicy

import (
	"errors"
	"fmt"
	"strings"
)

// lower maps every byte to its ASCII lower-case form (other bytes unchanged).
var lower = func() (t [256]byte) {
	for i := range t {
		b := byte(i)
		if b >= 'A' && b <= 'Z' {
			b += 'a' - 'A'
		}
		t[i] = b
	}
	return t
}()

// MaxNameLen is the longest domain name (without the trailing dot) a policy
// entry or a query may have; longer query names never match.
const MaxNameLen = 253

// FNV-1a constants; the hash runs over the name from its last byte to its
// first so that one pass yields the hash of every label-boundary suffix.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// finish mixes the running FNV state of a suffix with its length into the
// final 64-bit hash (murmur3 finaliser), so that short suffixes spread over
// the whole table.
func finish(h uint64, n int) uint64 {
	h ^= uint64(n) * 0x9E3779B97F4A7C15
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

// hashName returns the hash of a normalised (lower-case) name, equal to the
// hash the suffix walk computes for the same bytes.
func hashName(s string) uint64 {
	h := uint64(fnvOffset)
	for i := len(s) - 1; i >= 0; i-- {
		h = (h ^ uint64(lower[s[i]])) * fnvPrime
	}
	return finish(h, len(s))
}

// errBadDomain is wrapped by NormalizeDomain's errors.
var errBadDomain = errors.New("invalid domain")

// NormalizeDomain returns the canonical form of a policy entry: lower case,
// no trailing dot, a leading "*." removed (an entry already covers every
// subdomain). It rejects empty names and labels, names longer than
// MaxNameLen, labels longer than 63 bytes and bytes other than letters,
// digits, '-' and '_'.
func NormalizeDomain(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	s = strings.TrimPrefix(s, "*.")
	if s == "" {
		return "", fmt.Errorf("%w: empty", errBadDomain)
	}
	if len(s) > MaxNameLen {
		return "", fmt.Errorf("%w: %d bytes long (at most %d)", errBadDomain, len(s), MaxNameLen)
	}
	needLower := false
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", fmt.Errorf("%w: empty label in %q", errBadDomain, s)
			}
			label = 0
			continue
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c >= 'A' && c <= 'Z':
			needLower = true
		default:
			return "", fmt.Errorf("%w: byte %q in %q", errBadDomain, c, s)
		}
		label++
		if label > 63 {
			return "", fmt.Errorf("%w: label longer than 63 bytes in %q", errBadDomain, s)
		}
	}
	if label == 0 {
		return "", fmt.Errorf("%w: empty label in %q", errBadDomain, s)
	}
	if needLower {
		s = strings.ToLower(s)
	}
	return s, nil
}

// countLabels returns the number of labels of a normalised name.
func countLabels(s string) int {
	return strings.Count(s, ".") + 1
}
