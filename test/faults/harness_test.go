//go:build faults

// Package faults holds system tests of the real switchboard binary against
// real Apache Kafka brokers: broker bounces, outages, kill -9, reloads under
// load, network faults, scale-out and security. Run them with
// `make test-faults` (build tag "faults"; `make test` does not run them).
//
// Every scenario prints a summary line
//
//	scenario=<name> sent=N received=N lost=N duplicated=N
//
// and the run ends with a table of all of them. Brokers: one 3-node KRaft
// cluster shared by the cluster scenarios and a few private single-node
// brokers, all under FAULTS_DIR (default: a temporary directory); TestMain
// stops every one of them, and `make test-faults` stops them again should
// the test binary die.
package faults

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
)

var (
	repoRoot  string
	faultsDir string
	bin       string

	resultsMu sync.Mutex
	results   []result

	brokersMu sync.Mutex
	started   []func() // stop functions of brokers still running, for TestMain
)

// result is one scenario's numeric outcome.
type result struct {
	name                      string
	sent, received, lost, dup int
	note                      string
	t                         *testing.T
}

// report records and prints a scenario's outcome.
func report(t *testing.T, name string, sent, received, lost, dup int, note string) {
	t.Helper()
	line := fmt.Sprintf("scenario=%s sent=%d received=%d lost=%d duplicated=%d", name, sent, received, lost, dup)
	if note != "" {
		line += " (" + note + ")"
	}
	fmt.Println(line)
	t.Log(line)
	resultsMu.Lock()
	results = append(results, result{name: name, sent: sent, received: received, lost: lost, dup: dup, note: note, t: t})
	resultsMu.Unlock()
}

func printTable() {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("\n=== fault scenarios\n")
	fmt.Fprintf(&b, "%-28s %9s %9s %6s %6s  %-6s %s\n", "scenario", "sent", "received", "lost", "dup", "result", "notes")
	for _, r := range results {
		res := "PASS"
		if r.t != nil && r.t.Failed() {
			res = "FAIL"
		}
		fmt.Fprintf(&b, "%-28s %9d %9d %6d %6d  %-6s %s\n", r.name, r.sent, r.received, r.lost, r.dup, res, r.note)
	}
	fmt.Print(b.String())
	if p := os.Getenv("FAULTS_SUMMARY"); p != "" {
		os.WriteFile(p, []byte(b.String()), 0o644)
	}
}

func TestMain(m *testing.M) {
	var err error
	repoRoot, err = kafkatest.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	faultsDir = os.Getenv("FAULTS_DIR")
	tempFaultsDir := faultsDir == ""
	if tempFaultsDir {
		faultsDir, err = os.MkdirTemp("", "sbfaults")
		if err != nil {
			fmt.Fprintln(os.Stderr, "faults:", err)
			os.Exit(1)
		}
	}
	os.MkdirAll(faultsDir, 0o755)
	binDir, err := os.MkdirTemp("", "sbfaultsbin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
		os.Exit(1)
	}
	os.Chmod(binDir, 0o755) // the security scenario runs the client as nobody
	bin = filepath.Join(binDir, "switchboard")
	t0 := time.Now()
	build := exec.Command("go", "build", "-o", bin, "./cmd/switchboard")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "faults: go build: %v\n%s", err, out)
		os.Exit(1)
	}
	fmt.Printf("faults: built %s in %s; brokers under %s\n", bin, time.Since(t0).Round(time.Millisecond), faultsDir)
	rc := m.Run()
	brokersMu.Lock()
	stops := started
	started = nil
	brokersMu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	printTable()
	os.RemoveAll(binDir)
	if tempFaultsDir {
		os.RemoveAll(faultsDir)
	}
	os.Exit(rc)
}

// ---------------------------------------------------------------- brokers

// kafkaSh runs scripts/kafka.sh (kafkatest.KafkaSh) within timeout.
func kafkaSh(timeout time.Duration, extraEnv []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return kafkatest.KafkaSh(ctx, extraEnv, args...)
}

func requireTools(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"java", "kcat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not on PATH: fault tests need a real broker and kcat", tool)
		}
	}
}

// clusterInfo is the shared 3-node cluster.
type clusterInfo struct {
	dir string
	env map[string]string
}

var (
	clusterOnce sync.Once
	theCluster  *clusterInfo
	clusterErr  error
)

// sharedCluster starts (once) the 3-node KRaft cluster the cluster scenarios
// share; TestMain stops it.
func sharedCluster(t *testing.T) *clusterInfo {
	t.Helper()
	requireTools(t)
	clusterOnce.Do(func() {
		dir := filepath.Join(faultsDir, "cluster")
		extra := []string{"KAFKA_CLUSTER_DIR=" + dir}
		brokersMu.Lock()
		started = append(started, func() { kafkaSh(2*time.Minute, extra, "cluster-down") })
		brokersMu.Unlock()
		t0 := time.Now()
		out, err := kafkaSh(10*time.Minute, extra, "cluster-up")
		if err != nil {
			clusterErr = err
			return
		}
		env, err := kafkatest.ReadEnvFile(kafkatest.LastLine(out))
		if err != nil {
			clusterErr = err
			return
		}
		theCluster = &clusterInfo{dir: dir, env: env}
		fmt.Printf("faults: 3-node cluster ready in %s at %s\n", time.Since(t0).Round(time.Millisecond), theCluster.bootstrap())
	})
	if clusterErr != nil {
		t.Fatalf("cluster: %v", clusterErr)
	}
	return theCluster
}

func (c *clusterInfo) bootstrap() string { return c.env["KAFKA_CLUSTER_BOOTSTRAP"] }

func (c *clusterInfo) broker() *kafkatest.Broker {
	return &kafkatest.Broker{Bootstrap: c.bootstrap(), Real: true, Version: c.env["KAFKA_VERSION"]}
}

func (c *clusterInfo) stopNode(t *testing.T, n int) {
	t.Helper()
	if _, err := kafkaSh(time.Minute, []string{"KAFKA_CLUSTER_DIR=" + c.dir}, "node-stop", strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
}

func (c *clusterInfo) startNode(t *testing.T, n int) {
	t.Helper()
	if _, err := kafkaSh(3*time.Minute, []string{"KAFKA_CLUSTER_DIR=" + c.dir}, "node-start", strconv.Itoa(n)); err != nil {
		t.Fatal(err)
	}
}

// dedicatedBroker is a private single-node broker (PLAINTEXT + SASL_SSL).
type dedicatedBroker struct {
	dir   string
	extra []string
	env   map[string]string
}

// dedicated starts a private broker in FAULTS_DIR/name; it is removed when
// the test ends. extra adds environment for scripts/kafka.sh up.
func dedicated(t *testing.T, name string, extra ...string) *dedicatedBroker {
	t.Helper()
	requireTools(t)
	dir := filepath.Join(faultsDir, name)
	d := &dedicatedBroker{dir: dir, extra: append([]string{"KAFKA_INSTANCE_DIR=" + dir, "KAFKA_HEAP=384m"}, extra...)}
	var once sync.Once
	down := func() { once.Do(func() { kafkaSh(2*time.Minute, d.extra, "down") }) }
	brokersMu.Lock()
	started = append(started, down)
	brokersMu.Unlock()
	t.Cleanup(down)
	t0 := time.Now()
	out, err := kafkaSh(10*time.Minute, d.extra, "up")
	if err != nil {
		t.Fatal(err)
	}
	if d.env, err = kafkatest.ReadEnvFile(kafkatest.LastLine(out)); err != nil {
		t.Fatal(err)
	}
	t.Logf("dedicated broker %s ready in %s at %s", name, time.Since(t0).Round(time.Millisecond), d.env["KAFKA_BOOTSTRAP"])
	return d
}

func (d *dedicatedBroker) bootstrap() string { return d.env["KAFKA_BOOTSTRAP"] }

func (d *dedicatedBroker) broker() *kafkatest.Broker {
	e := d.env
	return &kafkatest.Broker{Bootstrap: e["KAFKA_BOOTSTRAP"], SASLBootstrap: e["KAFKA_SASL_BOOTSTRAP"],
		SASLUsername: e["KAFKA_SASL_USERNAME"], SASLPassword: e["KAFKA_SASL_PASSWORD"],
		SASLMechanism: e["KAFKA_SASL_MECHANISM"], CALocation: e["KAFKA_CA_LOCATION"], Real: true,
		Version: e["KAFKA_VERSION"], KcatLibraryPath: e["KAFKA_KCAT_LIBRARY_PATH"]}
}

// stop kills the broker (kill -9), keeping data and ports.
func (d *dedicatedBroker) stop(t *testing.T) {
	t.Helper()
	if _, err := kafkaSh(time.Minute, d.extra, "stop-broker"); err != nil {
		t.Fatal(err)
	}
}

// start restarts it and waits until it answers metadata requests.
func (d *dedicatedBroker) start(t *testing.T) {
	t.Helper()
	if _, err := kafkaSh(3*time.Minute, d.extra, "start-broker"); err != nil {
		t.Fatal(err)
	}
}

// createTopic creates a topic with configs (e.g. min.insync.replicas) and
// waits until every partition has a leader.
func createTopic(t *testing.T, bootstrap, topic string, partitions, rf int, configs map[string]string) {
	t.Helper()
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		res, err := a.CreateTopics(ctx, []kafka.TopicSpecification{{Topic: topic, NumPartitions: partitions,
			ReplicationFactor: rf, Config: configs}}, kafka.SetAdminOperationTimeout(30*time.Second))
		if err == nil && len(res) == 1 {
			if c := res[0].Error.Code(); c == kafka.ErrNoError || c == kafka.ErrTopicAlreadyExists {
				break
			}
			err = res[0].Error
		}
		if ctx.Err() != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
		time.Sleep(500 * time.Millisecond) // retry interval while the cluster settles
	}
	kafkatest.CreateTopic(t, bootstrap, topic, partitions, rf) // exists: waits for leaders
}

// leaderOf returns the node id leading partition p of topic.
func leaderOf(t *testing.T, bootstrap, topic string, p int) int {
	t.Helper()
	a, err := kafka.NewAdminClient(&kafka.ConfigMap{"bootstrap.servers": bootstrap})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		md, err := a.GetMetadata(&topic, false, 5000)
		if err == nil {
			if tm, ok := md.Topics[topic]; ok {
				for _, pm := range tm.Partitions {
					if int(pm.ID) == p && pm.Leader > 0 {
						return int(pm.Leader)
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no leader for %s/%d: %v", topic, p, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- switchboard

// instance is one switchboard daemon with its own config, data dir and
// control socket, which may be killed and restarted.
type instance struct {
	t                      *testing.T
	name                   string
	conf, data, sock, logf string
	cmd                    *exec.Cmd
	done                   chan struct{}
	startedAt              time.Time
}

// newInstance writes files (name -> content) into a fresh config dir.
func newInstance(t *testing.T, name string, files map[string]string) *instance {
	t.Helper()
	base := t.TempDir()
	sockDir, err := os.MkdirTemp("", "sbf")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	s := &instance{t: t, name: name, conf: filepath.Join(base, "conf"), data: filepath.Join(base, "data"),
		sock: filepath.Join(sockDir, "ctl"), logf: filepath.Join(base, "switchboard.log")}
	os.MkdirAll(s.conf, 0o755)
	s.writeFiles(files)
	t.Cleanup(func() {
		if s.running() {
			s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(30 * time.Second):
				s.cmd.Process.Kill()
				<-s.done
			}
		}
		if t.Failed() {
			t.Logf("%s log tail:\n%s", s.name, tail(s.log(), 60))
		}
	})
	return s
}

func (s *instance) writeFiles(files map[string]string) {
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(s.conf, n), []byte(c), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
}

func (s *instance) running() bool {
	if s.cmd == nil {
		return false
	}
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// start runs "switchboard -f" (log appended to s.logf) without waiting.
func (s *instance) start() {
	s.t.Helper()
	lf, err := os.OpenFile(s.logf, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	s.cmd = exec.Command(bin, "-f", "-C", s.conf, "-D", s.data, "-s", s.sock)
	s.cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR=", "HOME="+filepath.Dir(s.conf))
	s.cmd.Stdout, s.cmd.Stderr = lf, lf
	s.startedAt = time.Now()
	if err := s.cmd.Start(); err != nil {
		lf.Close()
		s.t.Fatal(err)
	}
	lf.Close()
	s.done = make(chan struct{})
	cmd, done := s.cmd, s.done
	go func() { cmd.Wait(); close(done) }()
}

// startReady starts the daemon and waits until it answers; it returns the
// time from exec to the first answer.
func (s *instance) startReady() time.Duration {
	s.t.Helper()
	s.start()
	return s.waitReady(60 * time.Second)
}

func (s *instance) waitReady(timeout time.Duration) time.Duration {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, code := s.rx("core show version"); code == 0 {
			return time.Since(s.startedAt)
		}
		if !s.running() {
			s.t.Fatalf("%s exited while starting:\n%s", s.name, tail(s.log(), 40))
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s did not answer within %s:\n%s", s.name, timeout, tail(s.log(), 40))
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// rx runs one command on the daemon: output and exit status.
func (s *instance) rx(command string) (string, int) {
	cmd := exec.Command(bin, "-s", s.sock, "-rx", command)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR=")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		return string(out) + err.Error(), -1
	}
	return string(out), 0
}

// must runs a command that must succeed.
func (s *instance) must(command string) string {
	s.t.Helper()
	out, code := s.rx(command)
	if code != 0 {
		s.t.Fatalf("%s: -rx %q exit %d:\n%s", s.name, command, code, out)
	}
	return out
}

// kill9 kills the daemon with SIGKILL.
func (s *instance) kill9() {
	s.t.Helper()
	s.cmd.Process.Kill()
	<-s.done
}

// stop stops the daemon with SIGTERM (graceful) and waits.
func (s *instance) stop() {
	s.t.Helper()
	if !s.running() {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(90 * time.Second):
		s.t.Errorf("%s did not stop within 90s; killing", s.name)
		s.cmd.Process.Kill()
		<-s.done
	}
}

func (s *instance) log() string {
	b, _ := os.ReadFile(s.logf)
	return string(b)
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// statusValue reads "<label>  <value>" from "cdr show status" output.
func statusValue(out, label string) int64 {
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		l := strings.Fields(label)
		if len(f) > len(l) && strings.Join(f[:len(l)], " ") == label {
			v, err := strconv.ParseInt(f[len(l)], 10, 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// cdrStatus returns "cdr show status" and its posted/delivered/queued
// counters.
func (s *instance) cdrCounters() (out string, posted, delivered, queued, spooled int64) {
	out, _ = s.rx("cdr show status")
	return out, statusValue(out, "posted"), statusValue(out, "delivered"), statusValue(out, "queued"), statusValue(out, "spooled")
}

// waitDrained waits until the backend has nothing queued and delivered
// counts want (posted + loaded, when known).
func (s *instance) waitDrained(timeout time.Duration) string {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, posted, _, queued, _ := s.cdrCounters()
		if queued == 0 && posted >= 0 && strings.Contains(out, ": ok") {
			return out
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: CDRs still queued after %s:\n%s", s.name, timeout, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- configs

func modulesConf(mods ...string) string {
	var b strings.Builder
	b.WriteString("[modules]\nautoload = no\n")
	for _, m := range mods {
		fmt.Fprintf(&b, "load => %s\n", m)
	}
	return b.String()
}

// kafkaConf is kafka.conf with one connection [cdr] (and [default] for
// consumers) to brokers, plus extra lines in [cdr].
func kafkaConf(brokers string, extra ...string) string {
	return fmt.Sprintf("[general]\n\n[cdr]\ntype = connection\nbrokers = %s\nacks = -1\nenable_idempotence = yes\n%s\n\n"+
		"[default]\ntype = connection\nbrokers = %s\ngroup_id = faults\nauto_offset_reset = earliest\n",
		brokers, strings.Join(extra, "\n"), brokers)
}

func cdrKafkaConf(topic string, extra ...string) string {
	return fmt.Sprintf("[general]\nconnection = cdr\ntopic = %s\nkey = ip_text\nbatch_max = 256\nflush_ms = 50\n%s\n",
		topic, strings.Join(extra, "\n"))
}

// ---------------------------------------------------------------- load and accounting

// loader posts sequence-numbered CDRs through "cdr test post" in chunks of
// one second until stopped.
type loader struct {
	s        *instance
	rate     int
	mu       sync.Mutex
	next     uint64
	posted   int
	failures []string
	stop     chan struct{}
	done     chan struct{}
}

var postedRE = regexp.MustCompile(`posted (\d+) CDRs seq (\d+)\.\.(\d+)`)

// startLoad starts posting rate CDRs per second with ids from start.
func startLoad(s *instance, start uint64, rate int) *loader {
	l := &loader{s: s, rate: rate, next: start, stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l
}

func (l *loader) run() {
	defer close(l.done)
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		l.mu.Lock()
		next := l.next
		l.mu.Unlock()
		out, code := l.s.rx(fmt.Sprintf("cdr test post %d rate %d start %d", l.rate, l.rate, next))
		m := postedRE.FindStringSubmatch(out)
		l.mu.Lock()
		if m != nil {
			n, _ := strconv.Atoi(m[1])
			l.posted += n
			l.next += uint64(n)
		}
		if code != 0 {
			l.failures = append(l.failures, fmt.Sprintf("exit %d: %s", code, strings.TrimSpace(out)))
		}
		l.mu.Unlock()
		if code != 0 {
			time.Sleep(100 * time.Millisecond) // daemon busy or gone; the scenario decides
		}
	}
}

// finish stops posting and returns how many CDRs were posted.
func (l *loader) finish() int {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.posted
}

var (
	seqRE = regexp.MustCompile(`"seq":(\d+)`)
	idRE  = regexp.MustCompile(`"id":"([0-9a-f]{16}-\d+)"`)
)

// tally counts, for ids [first, first+n), how many were read back, lost
// and duplicated; msgs outside the range are ignored.
type tally struct {
	sent, received, lost, dup int
	counts                    map[uint64]int
	// ids holds the record ID each id was first read with; dupOtherID
	// counts copies that carry another ID than the first (a duplicate a
	// consumer could not drop by ID), noID the records without one.
	ids              map[uint64]string
	dupOtherID, noID int
}

func account(msgs []kafkatest.KcatMessage, first uint64, n int) tally {
	tl := tally{sent: n, counts: make(map[uint64]int, n), ids: make(map[uint64]string, n)}
	for _, m := range msgs {
		sm := seqRE.FindSubmatch(m.Value)
		if sm == nil {
			continue
		}
		seq, _ := strconv.ParseUint(string(sm[1]), 10, 64)
		if seq < first || seq >= first+uint64(n) {
			continue
		}
		tl.counts[seq]++
		id := ""
		if im := idRE.FindSubmatch(m.Value); im != nil {
			id = string(im[1])
		} else {
			tl.noID++
		}
		if prev, seen := tl.ids[seq]; !seen {
			tl.ids[seq] = id
		} else if prev != id {
			tl.dupOtherID++
		}
	}
	for _, c := range tl.counts {
		tl.received += c
		if c > 1 {
			tl.dup += c - 1
		}
	}
	tl.lost = n - len(tl.counts)
	return tl
}

// readBack reads topic with kcat until the ids [first, first+n) are all
// there or timeout passes, and accounts for them.
func readBack(t *testing.T, b *kafkatest.Broker, topic string, first uint64, n int, timeout time.Duration) (tally, []kafkatest.KcatMessage) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := kafkatest.KcatConsume(t, b, topic, 0, 2*time.Minute)
		tl := account(msgs, first, n)
		if tl.lost == 0 || time.Now().After(deadline) {
			return tl, msgs
		}
		time.Sleep(time.Second) // between full reads of the topic
	}
}

// missing lists up to 10 ids of [first, first+n) not read back.
func (tl tally) missing(first uint64, n int) []uint64 {
	var out []uint64
	for i := 0; i < n && len(out) < 10; i++ {
		if tl.counts[first+uint64(i)] == 0 {
			out = append(out, first+uint64(i))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}
