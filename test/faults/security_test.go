//go:build faults

package faults

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
)

// TestControlSocketRefusesOthers: the control socket is mode 0660, owned
// by the daemon's user, and a client running as another user (nobody) is
// refused.
func TestControlSocketRefusesOthers(t *testing.T) {
	sb := newInstance(t, "socket", map[string]string{
		"modules.conf":        modulesConf("res_prometheus"),
		"res_prometheus.conf": "[general]\nbind = 127.0.0.1:0\n",
	})
	// The socket's directory is traversable by anyone, so only the
	// socket's own mode and owner decide.
	os.Chmod(filepath.Dir(sb.sock), 0o755)
	sb.startReady()
	fi, err := os.Stat(sb.sock)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	mode := fi.Mode().Perm()
	note := fmt.Sprintf("socket mode %#o uid %d", mode, st.Uid)
	if mode != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("control socket mode %v, want socket 0660", fi.Mode())
	}
	if int(st.Uid) != os.Getuid() {
		t.Errorf("control socket owned by uid %d, want the daemon's %d", st.Uid, os.Getuid())
	}
	refused := 0
	if os.Getuid() == 0 {
		cmd := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", bin, "-s", sb.sock, "-rx", "core show version")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			t.Errorf("a client running as nobody was served:\n%s", out)
		case errAs(err, &ee) && ee.ExitCode() == 3 && strings.Contains(strings.ToLower(string(out)), "permission denied"):
			refused = 1
			note += "; nobody refused: " + strings.TrimSpace(string(out))
		default:
			t.Errorf("client as nobody: %v\n%s (want exit 3, permission denied)", err, out)
		}
	} else {
		note += "; not root: nobody client not tried"
	}
	if _, code := sb.rx("core show version"); code != 0 {
		t.Errorf("the owner's client was refused")
	}
	report(t, "security-control-socket", 1, refused, 0, 0, note)
}

func errAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}

// makeCA writes a throw-away CA (cert and key PEM) into dir.
func makeCA(t *testing.T, dir, name string) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	path := filepath.Join(dir, name+".pem")
	os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	return cert, key, path
}

// expiredServer serves TLS on localhost with a certificate for localhost,
// signed by ca, that expired yesterday.
func expiredServer(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-72 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }() // handshake, then nothing
		}
	}()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return "localhost:" + port
}

// TestSASLFailuresAndSecrets: SASL_SSL connections with a wrong password, a
// CA that did not sign the broker's certificate, and a broker certificate
// that has expired each fail with a clear error in the CLI, without a crash;
// a correct one works. No password appears in the log, the CLI, the
// metrics, --check-config output or a SIGQUIT goroutine dump.
func TestSASLFailuresAndSecrets(t *testing.T) {
	d := dedicated(t, "sasl")
	b := d.broker()
	dir := t.TempDir()
	otherCA, _, otherCAPath := makeCA(t, dir, "other-ca")
	_ = otherCA
	expCA, expKey, expCAPath := makeCA(t, dir, "expired-test-ca")
	expiredAddr := expiredServer(t, expCA, expKey)
	const wrongPassword = "Wr0ng-Secret-7Qx9"
	conn := func(name, brokers, user, pass, ca string) string {
		return fmt.Sprintf("[%s]\ntype = connection\nbrokers = %s\nsecurity_protocol = sasl_ssl\nsasl_mechanisms = %s\n"+
			"sasl_username = %s\nsasl_password = %s\nssl_ca_location = %s\nmessage_timeout_ms = 8000\n\n", name, brokers, b.SASLMechanism, user, pass, ca)
	}
	kconf := "[general]\n\n" +
		conn("good", b.SASLBootstrap, b.SASLUsername, b.SASLPassword, b.CALocation) +
		conn("wrongpw", b.SASLBootstrap, b.SASLUsername, wrongPassword, b.CALocation) +
		conn("wrongca", b.SASLBootstrap, b.SASLUsername, b.SASLPassword, otherCAPath) +
		conn("expired", expiredAddr, b.SASLUsername, b.SASLPassword, expCAPath)
	sb := newInstance(t, "sasl", map[string]string{
		"modules.conf":        modulesConf("res_kafka", "res_prometheus"),
		"kafka.conf":          kconf,
		"res_prometheus.conf": "[general]\nbind = 127.0.0.1:0\n",
	})
	sb.startReady()
	topic := "faults-sasl"
	createTopic(t, d.bootstrap(), topic, 1, 1, nil)
	var captured strings.Builder // everything an operator can see
	capture := func(s string) string { captured.WriteString(s + "\n"); return s }

	if out, code := sb.rx("kafka test send connection good topic " + topic + " message hello"); code != 0 {
		t.Errorf("good SASL_SSL connection: exit %d\n%s", code, capture(out))
	} else {
		capture(out)
	}
	want := map[string]*regexp.Regexp{
		"wrongpw": regexp.MustCompile(`(?i)authenticat`),
		"wrongca": regexp.MustCompile(`(?i)certificate verify failed|unable to get local issuer|self.signed`),
		// librdkafka words an expired broker certificate like an untrusted
		// one ("certificate verify failed"); the handshake failure is what
		// the operator sees.
		"expired": regexp.MustCompile(`(?i)certificate has expired|certificate expired|certificate verify failed`),
	}
	nClear := 0
	var notes []string
	for _, name := range []string{"wrongpw", "wrongca", "expired"} {
		out, code := sb.rx("kafka test send connection " + name + " topic " + topic + " message hello")
		capture(out)
		// (kafka test send reports a failed delivery in its output and
		// exits 0.)
		if code == 0 && !regexp.MustCompile(`failed|not delivered|not queued`).MatchString(out) {
			t.Errorf("%s: kafka test send succeeded:\n%s", name, out)
		}
		// The connection's state and last error, as the operator sees them.
		var conn, stateLines string
		deadline := time.Now().Add(30 * time.Second)
		for {
			conn = capture(sb.must("kafka show connection " + name))
			stateLines = ""
			for _, ln := range strings.Split(conn, "\n") {
				if strings.HasPrefix(ln, "State") || strings.HasPrefix(ln, "Last error") {
					stateLines += strings.Join(strings.Fields(ln), " ") + "\n"
				}
			}
			if want[name].MatchString(stateLines) || time.Now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("%s: kafka test send: %s; kafka show connection:\n%s", name, strings.TrimSpace(out), stateLines)
		if !want[name].MatchString(stateLines) {
			t.Errorf("%s: no clear error in State / Last error (want %s):\n%s", name, want[name], conn)
		} else {
			nClear++
		}
		notes = append(notes, name+": "+firstMatch(stateLines, want[name]))
	}
	capture(sb.must("kafka show status"))
	if !sb.running() {
		t.Fatal("switchboard died")
	}
	// Metrics.
	prom := sb.must("prometheus show status")
	url := regexp.MustCompile(`http://\S+`).FindString(prom)
	if resp, err := http.Get(url); err != nil {
		t.Errorf("scrape %s: %v", url, err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		capture(string(body))
		if !strings.Contains(string(body), "switchboard_") {
			t.Errorf("scrape returned no switchboard metrics")
		}
	}
	// --check-config on the same directory.
	cc, _ := exec.Command(bin, "--check-config", "-C", sb.conf).CombinedOutput()
	capture(string(cc))
	// Crash output: SIGQUIT makes the Go runtime dump every goroutine.
	sb.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-sb.done:
	case <-time.After(30 * time.Second):
		t.Error("switchboard did not exit on SIGQUIT")
		sb.kill9()
	}
	logText := sb.log()
	if !strings.Contains(logText, "goroutine ") {
		t.Errorf("no goroutine dump in the log after SIGQUIT")
	}
	all := captured.String() + logText
	leaks := 0
	for _, secret := range []string{b.SASLPassword, wrongPassword} {
		if n := strings.Count(all, secret); n > 0 {
			leaks += n
			t.Errorf("secret %q appears %d times in logs/CLI/metrics/crash output", secret[:3]+"...", n)
		}
	}
	report(t, "security-sasl-and-secrets", 3, nClear, 0, 0,
		fmt.Sprintf("%d/3 failures clear, no crash; %d secret occurrences in %d bytes of log+CLI+metrics+SIGQUIT dump; %s",
			nClear, leaks, len(all), strings.Join(notes, "; ")))
}

func firstMatch(s string, re *regexp.Regexp) string {
	for _, ln := range strings.Split(s, "\n") {
		if re.MatchString(ln) {
			ln = strings.Join(strings.Fields(ln), " ")
			if len(ln) > 90 {
				ln = ln[:90]
			}
			return ln
		}
	}
	return "?"
}

// oidcEndpoint serves the client credentials grant of one client: unsigned
// JWTs (alg "none") that the broker's unsecured validator accepts, with the
// requested scope; other credentials get 401.
func oidcEndpoint(t *testing.T, clientID, secret string) string {
	t.Helper()
	enc := base64.RawURLEncoding
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		w.Header().Set("Content-Type", "application/json")
		if id, pw, _ := r.BasicAuth(); id != clientID || pw != secret {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		now := time.Now()
		claims, _ := json.Marshal(map[string]any{"sub": clientID, "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
			"scope": strings.Fields(r.PostForm.Get("scope"))})
		json.NewEncoder(w).Encode(map[string]any{"token_type": "Bearer", "expires_in": 3600,
			"access_token": enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString(claims) + "."})
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/oauth2/token"
}

// TestOAuthMTLSFailuresAndSecrets: the cloud-broker options on the real
// binary. An OIDC connection (token endpoint in the test) and an mTLS
// connection with an encrypted key work; a wrong client secret, no client
// certificate and one of a foreign CA each fail with a clear error in the
// CLI, without a crash. Neither the OIDC client secret (nor its HTTP Basic
// form) nor the key password appears in the log, the CLI, the metrics,
// --check-config output (also of a file the check refuses) or a SIGQUIT
// goroutine dump.
func TestOAuthMTLSFailuresAndSecrets(t *testing.T) {
	d := dedicated(t, "oauth")
	b := kafkatest.BrokerFromEnv(d.env)
	if !b.HasOAuth() || !b.HasMTLS() {
		t.Fatalf("scripts/kafka.sh up gave no OAUTHBEARER / mTLS listener: %v", d.env)
	}
	const clientID = "switchboard-faults"
	const secret = "0idc-Faults-Secret-8Rw"
	const wrongSecret = "Wr0ng-0idc-Faults-5Tq"
	tokenURL := oidcEndpoint(t, clientID, secret)
	oidc := func(name, sec string) string {
		return fmt.Sprintf("[%s]\ntype = connection\nbrokers = %s\nsecurity_protocol = sasl_plaintext\nsasl_mechanisms = OAUTHBEARER\n"+
			"sasl_oauthbearer_method = oidc\nsasl_oauthbearer_token_endpoint_url = %s\nsasl_oauthbearer_client_id = %s\n"+
			"sasl_oauthbearer_client_secret = %s\nsasl_oauthbearer_scope = %s\nmessage_timeout_ms = 8000\ndebug = security\n\n",
			name, b.OAuthBootstrap, tokenURL, clientID, sec, b.OAuthScope)
	}
	mtls := func(name, keys string) string {
		return fmt.Sprintf("[%s]\ntype = connection\nbrokers = %s\nsecurity_protocol = ssl\nssl_ca_location = %s\n%smessage_timeout_ms = 8000\n\n",
			name, b.MTLSBootstrap, b.CALocation, keys)
	}
	kconf := "[general]\n\n" + oidc("oidc", secret) + oidc("wrongsecret", wrongSecret) +
		mtls("mtls", fmt.Sprintf("ssl_certificate_location = %s\nssl_key_location = %s\nssl_key_password = %s\n", b.ClientCert, b.ClientKeyEncrypted, b.ClientKeyPassword)) +
		mtls("nocert", "") +
		mtls("foreign", fmt.Sprintf("ssl_certificate_location = %s\nssl_key_location = %s\n", b.ForeignClientCert, b.ForeignClientKey))
	sb := newInstance(t, "oauth", map[string]string{
		"modules.conf":        modulesConf("res_kafka", "res_prometheus"),
		"kafka.conf":          kconf,
		"res_prometheus.conf": "[general]\nbind = 127.0.0.1:0\n",
	})
	sb.startReady()
	topic := "faults-oauth"
	createTopic(t, d.bootstrap(), topic, 1, 1, nil)
	var captured strings.Builder // everything an operator can see
	capture := func(s string) string { captured.WriteString(s + "\n"); return s }
	okN := 0
	for _, name := range []string{"oidc", "mtls"} {
		out, code := sb.rx("kafka test send connection " + name + " topic " + topic + " message hello")
		capture(out)
		if code != 0 || !strings.Contains(out, "Message delivered") {
			t.Errorf("%s: kafka test send: exit %d\n%s", name, code, out)
		} else {
			okN++
		}
	}
	want := map[string]*regexp.Regexp{
		"wrongsecret": regexp.MustCompile(`Failed to acquire SASL OAUTHBEARER token.*invalid_client`),
		"nocert":      regexp.MustCompile(`SSL alert number 42`),
		"foreign":     regexp.MustCompile(`SSL alert number 42`),
	}
	nClear := 0
	var notes []string
	for _, name := range []string{"wrongsecret", "nocert", "foreign"} {
		out, code := sb.rx("kafka test send connection " + name + " topic " + topic + " message hello")
		capture(out)
		if code == 0 && !regexp.MustCompile(`failed|not delivered|not queued`).MatchString(out) {
			t.Errorf("%s: kafka test send succeeded:\n%s", name, out)
		}
		var stateLines string
		for deadline := time.Now().Add(30 * time.Second); ; {
			conn := capture(sb.must("kafka show connection " + name))
			stateLines = ""
			for _, ln := range strings.Split(conn, "\n") {
				if strings.HasPrefix(ln, "State") || strings.HasPrefix(ln, "Last error") {
					stateLines += strings.Join(strings.Fields(ln), " ") + "\n"
				}
			}
			if strings.Contains(stateLines, "auth failed") && want[name].MatchString(stateLines) || time.Now().After(deadline) {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("%s: %s", name, stateLines)
		if strings.Contains(stateLines, "auth failed") && want[name].MatchString(stateLines) {
			nClear++
		} else {
			t.Errorf("%s: no clear error in State / Last error (want auth failed and %s):\n%s", name, want[name], stateLines)
		}
		notes = append(notes, name+": "+firstMatch(stateLines, regexp.MustCompile(`Last error`)))
	}
	capture(sb.must("kafka show connection oidc"))
	capture(sb.must("kafka show connection mtls"))
	capture(sb.must("kafka show status"))
	if !sb.running() {
		t.Fatal("switchboard died")
	}
	prom := sb.must("prometheus show status")
	if resp, err := http.Get(regexp.MustCompile(`http://\S+`).FindString(prom)); err != nil {
		t.Errorf("scrape: %v", err)
	} else {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		capture(string(body))
	}
	cc, _ := exec.Command(bin, "--check-config", "-C", sb.conf).CombinedOutput()
	capture(string(cc))
	// A file --check-config refuses: the secrets are in it, not in its errors.
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "modules.conf"), []byte(modulesConf("res_kafka")), 0o644)
	os.WriteFile(filepath.Join(bad, "kafka.conf"), []byte("[general]\n\n[x]\nbrokers = localhost:9092\nsecurity_protocol = sasl_ssl\nsasl_mechanisms = OAUTHBEARER\n"+
		"sasl_oauthbearer_method = oidc\nsasl_oauthbearer_client_secret = "+secret+"\n"+
		"ssl_key_password = "+b.ClientKeyPassword+"\n"), 0o644)
	cc, err := exec.Command(bin, "--check-config", "-C", bad).CombinedOutput()
	capture(string(cc))
	if err == nil || !strings.Contains(string(cc), "sasl_oauthbearer_method = oidc needs sasl_oauthbearer_token_endpoint_url") {
		t.Errorf("--check-config of an oidc connection without endpoint: %v\n%s", err, cc)
	}
	sb.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-sb.done:
	case <-time.After(30 * time.Second):
		t.Error("switchboard did not exit on SIGQUIT")
		sb.kill9()
	}
	all := captured.String() + sb.log()
	basic := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(clientID + ":" + s)) }
	leaks := 0
	for _, s := range []string{secret, wrongSecret, basic(secret), basic(wrongSecret), b.ClientKeyPassword} {
		if n := strings.Count(all, s); n > 0 {
			leaks += n
			t.Errorf("secret %q appears %d times in logs/CLI/metrics/check-config/crash output", s[:3]+"...", n)
		}
	}
	report(t, "security-oauth-mtls-secrets", 5, okN+nClear, 0, 0,
		fmt.Sprintf("%d/2 good connections delivered, %d/3 failures clear, no crash; %d secret occurrences in %d bytes of log+CLI+metrics+check-config+SIGQUIT dump; %s",
			okN, nClear, leaks, len(all), strings.Join(notes, "; ")))
}
