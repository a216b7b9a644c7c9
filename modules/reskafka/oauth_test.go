package reskafka

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dp/switchboard/internal/kafkatest"
	"github.com/switchboard-dp/switchboard/internal/testwait"
)

// oauthBroker returns the shared broker, skipping the test when it has no
// OAUTHBEARER listener (the embedded broker).
func oauthBroker(t *testing.T) *kafkatest.Broker {
	t.Helper()
	b := testBroker(t)
	if !b.HasOAuth() {
		t.Skip("the broker has no OAUTHBEARER listener (embedded fallback, or an env file of an older kafka.sh); run make test")
	}
	return b
}

// collector is a subscription handler keeping the values it was handed.
type collector struct {
	mu   sync.Mutex
	vals map[string]int
}

func newCollector() *collector { return &collector{vals: map[string]int{}} }

func (c *collector) handle(_ context.Context, msg *Message) error {
	c.mu.Lock()
	c.vals[string(msg.Value)]++
	c.mu.Unlock()
	return nil
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.vals)
}

// produceSpread produces n messages on connection conn, one every gap, and
// returns how many were delivered and the first delivery error.
func produceSpread(t *testing.T, th *testHost, conn, topic, prefix string, n int, gap time.Duration) (delivered int64, firstErr error) {
	t.Helper()
	p, err := th.m.Producer(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release()
	var ok atomic.Int64
	var emu sync.Mutex
	for i := 0; i < n; i++ {
		err := p.Produce(topic, nil, []byte(fmt.Sprintf("%s-%d", prefix, i)), nil, func(d Delivery) {
			if d.Err != nil {
				emu.Lock()
				if firstErr == nil {
					firstErr = d.Err
				}
				emu.Unlock()
				return
			}
			ok.Add(1)
		})
		if err != nil {
			t.Fatalf("produce %d: %v", i, err)
		}
		time.Sleep(gap)
	}
	if left := p.Flush(30 * time.Second); left != 0 {
		t.Errorf("%d messages not delivered after 30 s", left)
	}
	emu.Lock()
	defer emu.Unlock()
	return ok.Load(), firstErr
}

// showLines returns the State and Last error lines of "kafka show connection".
func showLines(out string) string {
	var b strings.Builder
	for _, ln := range strings.Split(out, "\n") {
		if strings.HasPrefix(ln, "State") || strings.HasPrefix(ln, "Last error") {
			b.WriteString(strings.Join(strings.Fields(ln), " ") + "\n")
		}
	}
	return b.String()
}

// waitAuthFailed waits until connection name is in state auth failed with a
// last error matching re, and returns its "kafka show connection" output.
func waitAuthFailed(t *testing.T, th *testHost, name string, re *regexp.Regexp) string {
	t.Helper()
	var out string
	testwait.Until(t, 30*time.Second, name+" in state auth failed with a clear last error", func() bool {
		out = th.run("kafka show connection " + name)
		st, _ := th.m.Status(name)
		return st.State == stateAuthFailed && re.MatchString(st.LastError.Message)
	})
	t.Logf("%s:\n%s", name, showLines(out))
	return out
}

// TestOAuthBearerUnsecuredJWT: SASL_PLAINTEXT/OAUTHBEARER with librdkafka's
// unsecured JWT mode against the broker's unsecured validator. The tokens
// live 6 s and the broker ends a session when its token expires, so the
// 16 s of producing and consuming only work when both res_kafka's producer
// and the confluent-kafka-go consumer refresh their tokens and
// re-authenticate. Tokens without the scope the broker requires, or with
// the principal in another claim, fail with the broker's reason as state
// and last error.
func TestOAuthBearerUnsecuredJWT(t *testing.T) {
	b := oauthBroker(t)
	conn := func(name, cfg string, timeoutMs int) string {
		return fmt.Sprintf(`
[%s]
brokers = %s
security_protocol = sasl_plaintext
sasl_mechanisms = OAUTHBEARER
sasl_oauthbearer_unsecure_jwt = yes
sasl_oauthbearer_config = %s
group_id = oauth-%d
auto_offset_reset = earliest
auto_commit_interval_ms = 200
message_timeout_ms = %d
statistics_interval_ms = 500
debug = security
`, name, b.OAuthBootstrap, cfg, time.Now().UnixNano(), timeoutMs)
	}
	th := startHost(t, conn("oauth", "principal=switchboard-test scope="+b.OAuthScope+",extra lifeSeconds=6 extension_traceId=abc", 10000)+
		conn("noscope", "principal=switchboard-test scope=not-"+b.OAuthScope, 2000)+
		conn("noprincipal", "principal=switchboard-test principalClaimName=user scope="+b.OAuthScope, 2000))
	topic := uniqueTopic(t)
	if err := th.m.EnsureTopic(context.Background(), "oauth", topic, 1, 1); err != nil {
		t.Fatalf("EnsureTopic over OAUTHBEARER: %v", err)
	}
	col := newCollector()
	sub, err := th.m.Subscribe("oauth", []string{topic}, col.handle, SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const n = 32
	start := time.Now()
	delivered, derr := produceSpread(t, th, "oauth", topic, "jwt", n, 500*time.Millisecond)
	if delivered != n || derr != nil {
		t.Errorf("delivered %d of %d over OAUTHBEARER (first error: %v)", delivered, n, derr)
	}
	testwait.Until(t, 30*time.Second, "every message read back", func() bool { return col.count() == n })
	t.Logf("%d messages produced and read back over OAUTHBEARER across %s (tokens of 6 s)", n, time.Since(start).Round(time.Second))
	// librdkafka's security debug shows the broker bounding each session by
	// its token's lifetime (KIP-368), so the tokens were indeed refreshed.
	if !strings.Contains(th.logs.String(), "Received session lifetime") {
		t.Errorf("no session lifetime from the broker in the security debug log: the test did not exercise token refreshes")
	}
	st, _ := th.m.Status("oauth")
	if st.State != stateUp {
		t.Errorf("oauth state %q, want up (last error %q)", st.State, st.LastError.Message)
	}
	out := th.run("kafka show connection oauth")
	for _, want := range []string{"SASL mechanisms:", "OAUTHBEARER", "OAUTHBEARER unsecured JWT:    yes (unsigned tokens: tests and development only, not production)",
		"OAUTHBEARER config:           principal=switchboard-test"} {
		if !strings.Contains(out, want) {
			t.Errorf("kafka show connection oauth lacks %q:\n%s", want, out)
		}
	}

	for _, c := range []struct{ name, want string }{
		{"noscope", `insufficient_scope`},
		{"noprincipal", `invalid_token`},
	} {
		out := th.run("kafka test send connection " + c.name + " topic " + topic + " message never")
		if strings.Contains(out, "Message delivered") {
			t.Errorf("%s: delivered with a token the broker must refuse:\n%s", c.name, out)
		}
		show := waitAuthFailed(t, th, c.name, regexp.MustCompile(`SASL authentication error.*`+c.want))
		if !strings.Contains(show, "auth failed") {
			t.Errorf("%s: kafka show connection does not show the failure:\n%s", c.name, show)
		}
	}
	if !strings.Contains(th.logs.String(), "kafka authentication failed") {
		t.Errorf("no authentication error in the log")
	}
}

// jwtNone returns an unsigned JWT (alg "none") with the given claims.
func jwtNone(claims map[string]any) string {
	payload, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString(payload) + "."
}

// tokenEndpoint is an OAuth 2 token endpoint for the client credentials
// grant of one client, serving unsigned JWTs that the broker's unsecured
// validator accepts.
type tokenEndpoint struct {
	*httptest.Server
	clientID, secret, scope string

	mu       sync.Mutex
	granted  int
	refused  int
	lastForm string
}

func newTokenEndpoint(t *testing.T, clientID, secret, scope string) *tokenEndpoint {
	te := &tokenEndpoint{clientID: clientID, secret: secret, scope: scope}
	te.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		id, pw, _ := r.BasicAuth()
		te.mu.Lock()
		te.lastForm = r.PostForm.Encode()
		ok := r.Method == http.MethodPost && id == te.clientID && pw == te.secret &&
			r.PostForm.Get("grant_type") == "client_credentials"
		if ok {
			te.granted++
		} else {
			te.refused++
		}
		te.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		now := time.Now()
		_ = json.NewEncoder(w).Encode(map[string]any{
			"access_token": jwtNone(map[string]any{"sub": "sb-oidc-client", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
				"scope": strings.Fields(r.PostForm.Get("scope"))}),
			"token_type": "Bearer", "expires_in": 3600,
		})
	}))
	t.Cleanup(te.Close)
	return te
}

func (te *tokenEndpoint) counts() (granted, refused int, form string) {
	te.mu.Lock()
	defer te.mu.Unlock()
	return te.granted, te.refused, te.lastForm
}

// TestOAuthBearerOIDC: sasl_oauthbearer_method = oidc against a token
// endpoint in the test (plain http, unsigned JWTs for the broker's
// unsecured validator): librdkafka's own OIDC client fetches the tokens for
// res_kafka's producer, a consumer and EnsureTopic's admin client; a wrong
// client secret fails as auth failed with the endpoint's refusal. Neither
// secret, nor the Basic credentials carrying it, appears in the log (with
// librdkafka's security debug on) or in any CLI output.
func TestOAuthBearerOIDC(t *testing.T) {
	b := oauthBroker(t)
	const clientID = "switchboard-oidc"
	const secret = "0idc-Secret-Q7v2"
	const wrong = "Wr0ng-0idc-Secret-K3"
	te := newTokenEndpoint(t, clientID, secret, b.OAuthScope)
	conn := func(name, sec string, timeoutMs int) string {
		return fmt.Sprintf(`
[%s]
brokers = %s
security_protocol = sasl_plaintext
sasl_mechanisms = OAUTHBEARER
sasl_oauthbearer_method = oidc
sasl_oauthbearer_token_endpoint_url = %s/oauth2/token
sasl_oauthbearer_client_id = %s
sasl_oauthbearer_client_secret = %s
sasl_oauthbearer_scope = %s
sasl_oauthbearer_extensions = traceId=abc,tenant=sb
group_id = oidc-%d
auto_offset_reset = earliest
message_timeout_ms = %d
debug = security
`, name, b.OAuthBootstrap, te.URL, clientID, sec, b.OAuthScope, time.Now().UnixNano(), timeoutMs)
	}
	th := startHost(t, conn("oidc", secret, 8000)+conn("badsecret", wrong, 2000))
	var outputs []string
	run := func(line string) string {
		out := th.run(line)
		outputs = append(outputs, out)
		return out
	}
	topic := uniqueTopic(t)
	if err := th.m.EnsureTopic(context.Background(), "oidc", topic, 1, 1); err != nil {
		t.Fatalf("EnsureTopic with an OIDC token: %v", err)
	}
	col := newCollector()
	sub, err := th.m.Subscribe("oidc", []string{topic}, col.handle, SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	const n = 5
	if delivered, derr := produceSpread(t, th, "oidc", topic, "oidc", n, 0); delivered != n || derr != nil {
		t.Errorf("delivered %d of %d with OIDC tokens (first error: %v)", delivered, n, derr)
	}
	testwait.Until(t, 30*time.Second, "every message read back", func() bool { return col.count() == n })
	granted, _, form := te.counts()
	// One token each for the admin client, the producer and the consumer.
	if granted < 3 {
		t.Errorf("the token endpoint granted %d tokens, want one per client (>= 3)", granted)
	}
	if !strings.Contains(form, "scope="+b.OAuthScope) {
		t.Errorf("token request %q lacks scope=%s", form, b.OAuthScope)
	}
	run("kafka test send connection badsecret topic " + topic + " message never")
	waitAuthFailed(t, th, "badsecret", regexp.MustCompile(`(?i)token|oidc|401`))
	_, refused, _ := te.counts()
	if refused == 0 {
		t.Errorf("the token endpoint refused nothing: the wrong secret was not used")
	}
	out := run("kafka show connection oidc")
	for _, want := range []string{"OAUTHBEARER method:           oidc", "OAUTHBEARER client secret:    ********",
		"OAUTHBEARER client ID:        " + clientID, "OAUTHBEARER token endpoint:   " + te.URL} {
		if !strings.Contains(out, want) {
			t.Errorf("kafka show connection oidc lacks %q:\n%s", want, out)
		}
	}
	run("kafka show connection badsecret")
	run("kafka show status")
	all := th.logs.String() + strings.Join(outputs, "\n")
	basic := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(clientID + ":" + s)) }
	for _, s := range []string{secret, wrong, basic(secret), basic(wrong)} {
		if i := strings.Index(all, s); i >= 0 {
			t.Errorf("secret found in log/CLI: ...%s...", all[max(0, i-200):min(len(all), i+50)])
		}
	}
	t.Logf("token endpoint: %d granted, %d refused; %d bytes of log and CLI output checked", granted, refused, len(all))
}

// TestOAuthBearerValidation: the OAUTHBEARER and client-certificate options
// are checked with file:line, and no error text shows a secret.
func TestOAuthBearerValidation(t *testing.T) {
	const secret = "Client-Secret-9Zz"
	base := "[c]\nbrokers = localhost:9092\n"
	oauth := base + "security_protocol = sasl_ssl\nsasl_mechanisms = OAUTHBEARER\n"
	oidc := oauth + "sasl_oauthbearer_method = oidc\n"
	for _, tc := range []struct{ name, text, want string }{
		{"oidc needs endpoint, id, secret", oidc,
			"kafka.conf:5: [c] sasl_oauthbearer_method: sasl_oauthbearer_method = oidc needs sasl_oauthbearer_token_endpoint_url"},
		{"oidc needs client id", oidc + "sasl_oauthbearer_token_endpoint_url = https://idp/token\nsasl_oauthbearer_client_secret = " + secret + "\n",
			"kafka.conf:5: [c] sasl_oauthbearer_method: sasl_oauthbearer_method = oidc needs sasl_oauthbearer_client_id"},
		{"oidc needs client secret", oidc + "sasl_oauthbearer_token_endpoint_url = https://idp/token\nsasl_oauthbearer_client_id = x\n",
			"sasl_oauthbearer_method = oidc needs sasl_oauthbearer_client_secret"},
		{"needs a sasl protocol", base + "security_protocol = ssl\nsasl_mechanisms = OAUTHBEARER\nsasl_oauthbearer_unsecure_jwt = yes\nsasl_oauthbearer_config = principal=a\n",
			"kafka.conf:4: [c] sasl_mechanisms: sasl_mechanisms = OAUTHBEARER needs security_protocol sasl_plaintext or sasl_ssl (it is ssl)"},
		{"plaintext protocol too", base + "sasl_mechanisms = OAUTHBEARER\nsasl_oauthbearer_unsecure_jwt = yes\nsasl_oauthbearer_config = principal=a\n",
			"needs security_protocol sasl_plaintext or sasl_ssl (it is plaintext)"},
		{"default needs unsecured jwt", oauth,
			"kafka.conf:4: [c] sasl_mechanisms: sasl_mechanisms = OAUTHBEARER needs sasl_oauthbearer_method = oidc"},
		{"unsecured needs principal", oauth + "sasl_oauthbearer_unsecure_jwt = yes\nsasl_oauthbearer_config = scope=a\n",
			"kafka.conf:6: [c] sasl_oauthbearer_config: sasl_oauthbearer_config: needs principal=NAME"},
		{"unsecured config unknown entry", oauth + "sasl_oauthbearer_unsecure_jwt = yes\nsasl_oauthbearer_config = principal=a lifetime=5\n",
			`unknown entry "lifetime"`},
		{"unsecured and oidc exclude", oidc + "sasl_oauthbearer_unsecure_jwt = yes\n",
			"kafka.conf:6: [c] sasl_oauthbearer_unsecure_jwt: sasl_oauthbearer_unsecure_jwt = yes and sasl_oauthbearer_method = oidc exclude each other"},
		{"oidc-only option without oidc", oauth + "sasl_oauthbearer_unsecure_jwt = yes\nsasl_oauthbearer_config = principal=a\nsasl_oauthbearer_client_secret = " + secret + "\n",
			"kafka.conf:7: [c] sasl_oauthbearer_client_secret: sasl_oauthbearer_client_secret is only used with sasl_oauthbearer_method = oidc"},
		{"options without OAUTHBEARER", base + "security_protocol = sasl_ssl\nsasl_username = u\nsasl_oauthbearer_scope = x\n",
			"kafka.conf:5: [c] sasl_oauthbearer_scope: sasl_oauthbearer_scope needs sasl_mechanisms = OAUTHBEARER (it is PLAIN)"},
		{"username with OAUTHBEARER", oauth + "sasl_oauthbearer_unsecure_jwt = yes\nsasl_oauthbearer_config = principal=a\nsasl_username = u\n",
			"kafka.conf:7: [c] sasl_username: sasl_username is not used by sasl_mechanisms = OAUTHBEARER"},
		{"endpoint scheme", oidc + "sasl_oauthbearer_token_endpoint_url = ftp://idp/token\nsasl_oauthbearer_client_id = x\nsasl_oauthbearer_client_secret = " + secret + "\n",
			`kafka.conf:6: [c] sasl_oauthbearer_token_endpoint_url: sasl_oauthbearer_token_endpoint_url "ftp://idp/token": want https://`},
		{"extensions form", oidc + "sasl_oauthbearer_token_endpoint_url = https://idp/token\nsasl_oauthbearer_client_id = x\nsasl_oauthbearer_client_secret = " + secret + "\nsasl_oauthbearer_extensions = trace-id=1\n",
			`kafka.conf:9: [c] sasl_oauthbearer_extensions: sasl_oauthbearer_extensions: key "trace-id" must be letters only`},
		{"extensions need key=value", oidc + "sasl_oauthbearer_token_endpoint_url = https://idp/token\nsasl_oauthbearer_client_id = x\nsasl_oauthbearer_client_secret = " + secret + "\nsasl_oauthbearer_extensions = a=1,b\n",
			`"b" is not key=value`},
		{"pass-through secret refused", base + "rdkafka.sasl.oauthbearer.client.secret = " + secret + "\n",
			"kafka.conf:3: [c] rdkafka.sasl.oauthbearer.client.secret: rdkafka.sasl.oauthbearer.client.secret is set by the option sasl_oauthbearer_client_secret; use that instead"},
		{"pass-through unsecure jwt refused", base + "rdkafka.enable.sasl.oauthbearer.unsecure.jwt = true\n",
			"is set by the option sasl_oauthbearer_unsecure_jwt"},
		{"pass-through key password refused", base + "rdkafka.ssl.key.password = " + secret + "\n",
			"is set by the option ssl_key_password"},
		{"client cert needs TLS", base + "ssl_certificate_location = /c.pem\nssl_key_location = /c.key\n",
			"kafka.conf:3: [c] ssl_certificate_location: ssl_certificate_location needs security_protocol ssl or sasl_ssl (it is plaintext)"},
		{"client cert needs key", base + "security_protocol = ssl\nssl_certificate_location = /c.pem\n",
			"kafka.conf:4: [c] ssl_certificate_location: ssl_certificate_location and ssl_key_location go together"},
		{"key password needs key", base + "security_protocol = ssl\nssl_key_password = " + secret + "\n",
			"kafka.conf:4: [c] ssl_key_password: ssl_key_password needs ssl_key_location"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseConfig("kafka.conf", []byte(tc.text))
			if err == nil {
				t.Fatalf("accepted:\n%s", tc.text)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error:\n%v\nwant it to contain:\n%s", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
	// Valid ones.
	for _, text := range []string{
		oidc + "sasl_oauthbearer_token_endpoint_url = https://idp.example/oauth2/token\nsasl_oauthbearer_client_id = sb\nsasl_oauthbearer_client_secret = " + secret + "\nsasl_oauthbearer_scope = kafka\nsasl_oauthbearer_extensions = logicalCluster=lkc-1,identityPoolId=pool-2\n",
		oauth + "sasl_oauthbearer_unsecure_jwt = yes\nsasl_oauthbearer_config = principal=sb scope=a,b lifeSeconds=60 extension_traceId=1\n",
		base + "security_protocol = ssl\nssl_certificate_location = /c.pem\nssl_key_location = /c.key\nssl_key_password = " + secret + "\n",
	} {
		cfg, err := parseConfig("kafka.conf", []byte(text))
		if err != nil {
			t.Errorf("refused:\n%s\n%v", text, err)
			continue
		}
		c := cfg.Connections["c"]
		var shown strings.Builder
		for _, kv := range c.settings() {
			shown.WriteString(kv[0] + ": " + kv[1] + "\n")
		}
		if strings.Contains(shown.String(), secret) {
			t.Errorf("settings show the secret:\n%s", shown.String())
		}
		if strings.Contains(text, secret) && !strings.Contains(shown.String(), "********") {
			t.Errorf("settings show no masked secret:\n%s", shown.String())
		}
		cm := c.producerConfig("localhost:9092", nil)
		masked := (&conn{secrets: c.secrets()}).mask(fmt.Sprint(cm))
		if strings.Contains(masked, secret) {
			t.Errorf("a secret of the librdkafka configuration is not in the masking list: %s", masked)
		}
	}
}

// TestUnsecuredTokenFormat: the Go-made token of a consumer's refresh has
// librdkafka's unsecured-JWT form: header alg none, the principal in the
// principal claim, iat and exp lifeSeconds apart, the scope as a list, no
// signature; extensions travel beside it.
func TestUnsecuredTokenFormat(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	tok, err := unsecuredToken("principal=fubar principalClaimName=azp scope=role1,role2 scopeClaimName=roles lifeSeconds=60 extension_traceId=123", now)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok.TokenValue, ".")
	if len(parts) != 3 || parts[2] != "" {
		t.Fatalf("token %q is not header.payload. (unsigned)", tok.TokenValue)
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if string(hdr) != `{"alg":"none"}` {
		t.Errorf("header %s", hdr)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	if claims["azp"] != "fubar" || claims["iat"] != 1_700_000_000.0 || claims["exp"] != 1_700_000_060.0 ||
		fmt.Sprint(claims["roles"]) != "[role1 role2]" || len(claims) != 4 {
		t.Errorf("claims %s", raw)
	}
	if tok.Principal != "fubar" || !tok.Expiration.Equal(now.Add(time.Minute)) || tok.Extensions["traceId"] != "123" {
		t.Errorf("token %+v", tok)
	}
	if _, err := unsecuredToken("scope=a", now); err == nil {
		t.Errorf("a config without principal made a token")
	}
}
