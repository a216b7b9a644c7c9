package respolicy

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

func loadList(tb testing.TB, path string) []string {
	f, err := os.Open(path)
	if err != nil {
		tb.Skip(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' {
			continue
		}
		d, err := NormalizeDomain(l)
		if err != nil {
			continue
		}
		out = append(out, d)
	}
	return out
}
