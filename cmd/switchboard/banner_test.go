package main

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestConsoleBannerEmbedded: on the embedded broker the console banner
// prints the broker's address and the kcat command that reads the CDRs,
// with the address "kafka show status" reports.
func TestConsoleBannerEmbedded(t *testing.T) {
	e := newEnv(t)
	write(t, filepath.Join(e.conf, "modules.conf"), "[modules]\nautoload = no\nload => res_kafka\nload => cdr\nload => cdr_kafka\n")
	write(t, filepath.Join(e.conf, "kafka.conf"), "[default]\ntype = connection\nbrokers = embedded\n")
	write(t, filepath.Join(e.conf, "cdr_kafka.conf"), "[general]\nconnection = default\ntopic = cdr_banner\n")
	tm := newTmux(t, e, fmt.Sprintf("%s -c -C %s -D %s -s %s; echo EXIT=$?; sleep 60", e.bin, e.conf, e.data, e.sock))
	tm.waitScreen("console banner", "'help' lists every command")
	screen := tm.screen()
	m := regexp.MustCompile(`Read them with: kcat -C -b (127\.0\.0\.1:\d+) -t cdr_banner -e`).FindStringSubmatch(screen)
	if m == nil {
		t.Fatalf("no kcat command in the banner:\n%s", screen)
	}
	if !strings.Contains(screen, "Embedded Kafka broker at "+m[1]) || !strings.Contains(screen, "the newest 256 MB of records") {
		t.Errorf("banner does not name the embedded broker at %s:\n%s", m[1], screen)
	}
	out, errOut, rc := e.rx("kafka show status")
	if rc != 0 || !strings.Contains(out, "embedded ("+m[1]+"; keeps the newest 256 MB") {
		t.Errorf("kafka show status (exit %d) does not report %s: %s%s", rc, m[1], out, errOut)
	}
	tm.send("exit", "Enter")
	tm.waitScreen("daemon exit status", "EXIT=0")
}
