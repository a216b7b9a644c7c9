package dnsfirewall

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/core"
	"github.com/switchboard-dp/switchboard/internal/dnstest"
	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/testwait"
	"github.com/switchboard-dp/switchboard/modules/cdr"
	"github.com/switchboard-dp/switchboard/modules/policysync"
	"github.com/switchboard-dp/switchboard/modules/reskafka"
	"github.com/switchboard-dp/switchboard/modules/respolicy"
)

// syncLines is a full sync of group family blocking prefix0..prefix(n-1).example.
func syncLines(prefix string, n int) []string {
	lines := []string{`{"type":"BEGIN_SYNC","group_id":"family"}`}
	for i := range n {
		lines = append(lines, fmt.Sprintf(`{"type":"ADD_DOMAIN","group_id":"family","domain":"%s%d.example","action":"blacklist","category":2}`, prefix, i))
	}
	return append(lines, `{"type":"SYNC_COMPLETE","group_id":"family"}`)
}

// rawQuery is an A query for name with the given id.
func rawQuery(id uint16, name string) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	b = append(b, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0)
	for _, l := range strings.Split(name, ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0, 0, 1, 0, 1)
}

// TestPolicySyncFromKafkaSwapsAnswersAtomically: a client queries names of
// the old and the new block list in turn while a new full sync arrives from
// Kafka. Each answer shows the old policy (old names NXDOMAIN, new names
// answered) or the new one (the reverse); in the order the queries were
// sent, every old-policy answer comes before every new-policy answer: no
// query saw part of the sync.
func TestPolicySyncFromKafkaSwapsAnswersAtomically(t *testing.T) {
	b := kafkatest.Shared(t)
	topic := fmt.Sprintf("fw-policy-%d", time.Now().UnixNano())
	const n = 3000
	kafkatest.KcatProduce(t, b, topic, syncLines("old", n), "family")
	ub := dnstest.StartUnbound(t)
	dir := t.TempDir()
	write(t, dir, "kafka.conf", fmt.Sprintf("[general]\n[main]\nbrokers = %s\n", b.Bootstrap))
	write(t, dir, "res_policy.conf", "[general]\n[groups]\nfamily = 3\n")
	write(t, dir, "policy_sync.conf", fmt.Sprintf("[general]\nconnection = main\ntopic = %s\ngroup_id = fw-test-%d\n", topic, time.Now().UnixNano()))
	write(t, dir, "subscribers.conf", "[general]\ndefault_group = default\n[home]\ngroup = family\nprefix = 127.0.0.1/32\n")
	write(t, dir, ConfigFile, "[general]\nlisten = 127.0.0.1:0\nworkers = 2\n[upstream]\nserver = "+ub.Addr.String()+"\n")
	reg := core.NewRegistry()
	if err := reg.Register(reskafka.Info(), respolicy.Info(), policysync.Info(), cdr.Info(), Info()); err != nil {
		t.Fatal(err)
	}
	h := core.New(core.Options{Registry: reg, ConfigDir: dir, DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := h.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer h.Stop(core.StopGracefully)
	inst, _ := h.Instance(Name)
	addr := inst.(*Module).Addrs()[0]
	testwait.Until(t, 60*time.Second, "the first sync applied", func() bool {
		return dnstest.Dig(t, addr, fmt.Sprintf("old%d.example", n-1), "A").Status == "NXDOMAIN"
	})

	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// ask returns whether name was blocked (NXDOMAIN).
	buf := make([]byte, 1500)
	var id uint16
	ask := func(name string) bool {
		id++
		if _, err := c.Write(rawQuery(id, name)); err != nil {
			t.Fatal(err)
		}
		for {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			m, err := c.Read(buf)
			if err != nil {
				t.Fatalf("query %s: %v", name, err)
			}
			if m >= 12 && binary.BigEndian.Uint16(buf) == id {
				return buf[3]&0xf == rcodeNXDomain
			}
		}
	}

	produced := make(chan struct{})
	go func() {
		defer close(produced)
		kafkatest.KcatProduce(t, b, topic, syncLines("new", n), "family")
	}()
	// Each answer, in the order the queries were sent, shows the old
	// policy or the new one; the sequence must be old... new... .
	var states []bool // true: the new policy
	var names []string
	first := -1
	deadline := time.Now().Add(90 * time.Second)
	for i := 0; first < 0 || len(states)-first < 1000; i++ {
		o, nw := fmt.Sprintf("old%d.example", i%n), fmt.Sprintf("new%d.example", (i*7)%n)
		states = append(states, !ask(o), ask(nw))
		names = append(names, o, nw)
		if first < 0 {
			for j := len(states) - 2; j < len(states); j++ {
				if states[j] {
					first = j
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no swap to the new policy after %d queries", len(states))
		}
	}
	<-produced
	for i := first; i < len(states); i++ {
		if !states[i] {
			t.Fatalf("query %d (%s) saw the old policy after query %d (%s) saw the new one", i, names[i], first, names[first])
		}
	}
	if first < 1 {
		t.Errorf("no query saw the old policy before the swap (first new at %d)", first)
	}
	t.Logf("%d queries, the new policy from query %d on", len(states), first)
}
