package lograte

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLimiterSuppressesAndReportsCount(t *testing.T) {
	var buf bytes.Buffer
	l := New(slog.New(slog.NewTextHandler(&buf, nil)), time.Hour)
	if !l.Warn("k", "first") {
		t.Fatal("first line suppressed")
	}
	for i := 0; i < 5; i++ {
		if l.Warn("k", "again") {
			t.Fatal("repeat within interval logged")
		}
	}
	if !l.Error("other", "different key") {
		t.Fatal("other key suppressed")
	}
	l.mu.Lock()
	l.keys["k"].last = time.Now().Add(-2 * time.Hour)
	l.mu.Unlock()
	if !l.Warn("k", "after interval") {
		t.Fatal("line after interval suppressed")
	}
	out := buf.String()
	if strings.Count(out, "\n") != 3 || !strings.Contains(out, `msg="after interval" suppressed=5`) {
		t.Fatalf("log:\n%s", out)
	}
}
