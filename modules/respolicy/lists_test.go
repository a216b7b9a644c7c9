package respolicy

import (
	"testing"

	"github.com/switchboard-dp/switchboard/internal/blocklist"
)

func loadList(tb testing.TB, path string) []string {
	tb.Helper()
	entries, err := blocklist.Read(path)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if d, err := NormalizeDomain(e); err == nil {
			out = append(out, d)
		}
	}
	return out
}
