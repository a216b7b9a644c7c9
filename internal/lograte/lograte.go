// Package lograte rate-limits repetitive log lines: each key logs at most once
// per interval, and the next line that gets through says how many were
// suppressed meanwhile. Counting what happened is the caller's job; this only
// keeps a flood of identical problems from drowning the log.
package lograte

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Limiter logs through a slog.Logger at most once per interval per key.
type Limiter struct {
	logger   *slog.Logger
	interval time.Duration

	mu   sync.Mutex
	keys map[string]*state
}

type state struct {
	last       time.Time
	suppressed int
}

// New returns a Limiter writing to logger, at most once per interval per key.
func New(logger *slog.Logger, interval time.Duration) *Limiter {
	return &Limiter{logger: logger, interval: interval, keys: make(map[string]*state)}
}

// Log logs msg at level unless key logged less than an interval ago. It
// reports whether the line was written.
func (l *Limiter) Log(level slog.Level, key, msg string, args ...any) bool {
	now := time.Now()
	l.mu.Lock()
	s := l.keys[key]
	if s == nil {
		s = &state{}
		l.keys[key] = s
	}
	if !s.last.IsZero() && now.Sub(s.last) < l.interval {
		s.suppressed++
		l.mu.Unlock()
		return false
	}
	suppressed := s.suppressed
	s.last, s.suppressed = now, 0
	l.mu.Unlock()
	if suppressed > 0 {
		args = append(args, slog.Int("suppressed", suppressed))
	}
	l.logger.Log(context.Background(), level, msg, args...)
	return true
}

// Warn logs at warning level, rate-limited by key.
func (l *Limiter) Warn(key, msg string, args ...any) bool {
	return l.Log(slog.LevelWarn, key, msg, args...)
}

// Error logs at error level, rate-limited by key.
func (l *Limiter) Error(key, msg string, args ...any) bool {
	return l.Log(slog.LevelError, key, msg, args...)
}
