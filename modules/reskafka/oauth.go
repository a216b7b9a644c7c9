package reskafka

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/switchboard-dp/switchboard/conf"
)

// SASL/OAUTHBEARER (sasl_mechanisms = OAUTHBEARER): the options, their
// validation, their librdkafka properties, and the unsecured-JWT tokens of
// the confluent-kafka-go consumers.
//
// Where tokens come from:
//   - sasl_oauthbearer_method = oidc: librdkafka fetches them from the token
//     endpoint itself (client credentials grant) on its background thread,
//     and refreshes them before they expire, for every client: res_kafka's
//     producer, the confluent-kafka-go consumers and admin clients.
//   - sasl_oauthbearer_unsecure_jwt = yes: librdkafka makes the first token
//     from sasl_oauthbearer_config when the client is created. Refreshes
//     (at 80% of the token's life) are requests the application serves:
//     res_kafka's producer has librdkafka's background thread serve them
//     with librdkafka's own token maker (rdk.go), a consumer serves them in
//     its poll loop with unsecuredToken below (the same token). The admin
//     client of EnsureTopic lives shorter than a token.

// oauthOIDCOnly are the options only the oidc method uses.
var oauthOIDCOnly = []string{
	"sasl_oauthbearer_token_endpoint_url", "sasl_oauthbearer_client_id",
	"sasl_oauthbearer_client_secret", "sasl_oauthbearer_scope", "sasl_oauthbearer_extensions",
}

// oauthOptions are every sasl_oauthbearer_* option.
var oauthOptions = append([]string{"sasl_oauthbearer_method", "sasl_oauthbearer_unsecure_jwt", "sasl_oauthbearer_config"}, oauthOIDCOnly...)

// validateOAuthBearer checks the OAUTHBEARER options of c.
func validateOAuthBearer(s *conf.Section, c *Connection, errs *conf.Errors) {
	key := func(name string) *conf.Key { return s.Key(name) }
	if c.SASLMechanisms != "OAUTHBEARER" {
		for _, o := range oauthOptions {
			if k := key(o); k != nil {
				errs.Add(s, k, "%s needs sasl_mechanisms = OAUTHBEARER (it is %s)", o, c.SASLMechanisms)
			}
		}
		return
	}
	mk := key("sasl_mechanisms")
	if !strings.HasPrefix(c.SecurityProtocol, "sasl_") {
		errs.Add(s, mk, "sasl_mechanisms = OAUTHBEARER needs security_protocol sasl_plaintext or sasl_ssl (it is %s)", c.SecurityProtocol)
	}
	for _, o := range []string{"sasl_username", "sasl_password"} {
		if k := key(o); k != nil {
			errs.Add(s, k, "%s is not used by sasl_mechanisms = OAUTHBEARER (it takes tokens, see sasl_oauthbearer_method)", o)
		}
	}
	values := map[string]string{
		"sasl_oauthbearer_token_endpoint_url": c.SASLOAuthBearerTokenEndpointURL,
		"sasl_oauthbearer_client_id":          c.SASLOAuthBearerClientID,
		"sasl_oauthbearer_client_secret":      c.SASLOAuthBearerClientSecret,
		"sasl_oauthbearer_scope":              c.SASLOAuthBearerScope,
		"sasl_oauthbearer_extensions":         c.SASLOAuthBearerExtensions,
	}
	if c.SASLOAuthBearerMethod == "oidc" {
		where := key("sasl_oauthbearer_method")
		if c.SASLOAuthBearerUnsecureJWT {
			errs.Add(s, key("sasl_oauthbearer_unsecure_jwt"), "sasl_oauthbearer_unsecure_jwt = yes and sasl_oauthbearer_method = oidc exclude each other")
		}
		for _, o := range oauthOIDCOnly[:3] {
			if strings.TrimSpace(values[o]) == "" {
				errs.Add(s, where, "sasl_oauthbearer_method = oidc needs %s", o)
			}
		}
		if u := c.SASLOAuthBearerTokenEndpointURL; u != "" {
			if msg := checkTokenEndpoint(u); msg != "" {
				errs.Add(s, key("sasl_oauthbearer_token_endpoint_url"), "%s", msg)
			}
		}
		if c.SASLOAuthBearerExtensions != "" {
			if msg := checkExtensions(c.SASLOAuthBearerExtensions); msg != "" {
				errs.Add(s, key("sasl_oauthbearer_extensions"), "%s", msg)
			}
		}
		if k := key("sasl_oauthbearer_config"); k != nil {
			errs.Add(s, k, "sasl_oauthbearer_config describes unsecured tokens (sasl_oauthbearer_unsecure_jwt = yes); the oidc method does not use it")
		}
		return
	}
	// Method default: res_kafka sets no token callback, so the unsecured
	// JWT maker is the only source of tokens.
	for _, o := range oauthOIDCOnly {
		if k := key(o); k != nil {
			errs.Add(s, k, "%s is only used with sasl_oauthbearer_method = oidc", o)
		}
	}
	if !c.SASLOAuthBearerUnsecureJWT {
		errs.Add(s, mk, "sasl_mechanisms = OAUTHBEARER needs sasl_oauthbearer_method = oidc (a token endpoint), or sasl_oauthbearer_unsecure_jwt = yes (unsecured tokens, for tests and development only)")
		return
	}
	if _, err := parseUnsecuredConfig(c.SASLOAuthBearerConfig); err != nil {
		k := key("sasl_oauthbearer_config")
		if k == nil {
			k = key("sasl_oauthbearer_unsecure_jwt")
		}
		errs.Add(s, k, "sasl_oauthbearer_config: %v", err)
	}
}

// checkTokenEndpoint returns why u is not a usable token endpoint URL, or "".
func checkTokenEndpoint(u string) string {
	pu, err := url.Parse(u)
	if err != nil {
		return fmt.Sprintf("sasl_oauthbearer_token_endpoint_url %q is not a URL: %v", u, err)
	}
	if pu.Scheme != "https" && pu.Scheme != "http" || pu.Host == "" {
		return fmt.Sprintf("sasl_oauthbearer_token_endpoint_url %q: want https://host[:port]/path (http:// only for local tests: it sends the client secret in clear)", u)
	}
	if pu.User != nil {
		return "sasl_oauthbearer_token_endpoint_url must not carry credentials; use sasl_oauthbearer_client_id and sasl_oauthbearer_client_secret"
	}
	return ""
}

// checkExtensions checks librdkafka's sasl.oauthbearer.extensions form:
// comma-separated key=value pairs, keys of letters only (RFC 7628 3.1), the
// key "auth" reserved.
func checkExtensions(v string) string {
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return fmt.Sprintf("sasl_oauthbearer_extensions: %q is not key=value (want key=value[,key=value...])", kv)
		}
		if k == "" || strings.IndexFunc(k, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') }) >= 0 {
			return fmt.Sprintf("sasl_oauthbearer_extensions: key %q must be letters only (RFC 7628)", k)
		}
		if k == "auth" {
			return `sasl_oauthbearer_extensions: the key "auth" is reserved`
		}
		for _, r := range val {
			if r < 0x20 && r != '\t' && r != '\r' && r != '\n' || r > 0x7e {
				return fmt.Sprintf("sasl_oauthbearer_extensions: the value of %s has a character RFC 7628 does not allow (%q)", k, r)
			}
		}
	}
	return ""
}

// validateSSLClient checks the client-certificate options of c.
func validateSSLClient(s *conf.Section, c *Connection, errs *conf.Errors) {
	key := func(name string) *conf.Key { return s.Key(name) }
	tls := c.SecurityProtocol == "ssl" || c.SecurityProtocol == "sasl_ssl"
	for _, o := range []string{"ssl_certificate_location", "ssl_key_location", "ssl_key_password"} {
		if k := key(o); k != nil && !tls {
			errs.Add(s, k, "%s needs security_protocol ssl or sasl_ssl (it is %s)", o, c.SecurityProtocol)
		}
	}
	if (c.SSLCertificateLocation == "") != (c.SSLKeyLocation == "") {
		k := key("ssl_certificate_location")
		if k == nil {
			k = key("ssl_key_location")
		}
		errs.Add(s, k, "ssl_certificate_location and ssl_key_location go together (a client certificate and its private key)")
	}
	if c.SSLKeyPassword != "" && c.SSLKeyLocation == "" {
		errs.Add(s, key("ssl_key_password"), "ssl_key_password needs ssl_key_location")
	}
}

// oauthBearerConfig adds the OAUTHBEARER properties of c to cm.
func (c *Connection) oauthBearerConfig(cm kafka.ConfigMap) {
	if c.SASLOAuthBearerMethod == "oidc" {
		cm["sasl.oauthbearer.method"] = "oidc"
		cm["sasl.oauthbearer.token.endpoint.url"] = c.SASLOAuthBearerTokenEndpointURL
		cm["sasl.oauthbearer.client.id"] = c.SASLOAuthBearerClientID
		cm["sasl.oauthbearer.client.secret"] = c.SASLOAuthBearerClientSecret
		if c.SASLOAuthBearerScope != "" {
			cm["sasl.oauthbearer.scope"] = c.SASLOAuthBearerScope
		}
		if c.SASLOAuthBearerExtensions != "" {
			cm["sasl.oauthbearer.extensions"] = c.SASLOAuthBearerExtensions
		}
		return
	}
	cm["sasl.oauthbearer.method"] = "default"
	if c.SASLOAuthBearerUnsecureJWT {
		cm["enable.sasl.oauthbearer.unsecure.jwt"] = true
		cm["sasl.oauthbearer.config"] = c.SASLOAuthBearerConfig
	}
}

// unsecuredNote is the CLI's reminder next to an enabled unsecured JWT mode.
func unsecuredNote(on bool) string {
	if on {
		return " (unsigned tokens: tests and development only, not production)"
	}
	return ""
}

// unsecuredConfig is a parsed sasl_oauthbearer_config (librdkafka's
// format: space-separated principal=, principalClaimName=, scope= (comma
// separated), scopeClaimName=, lifeSeconds= and extension_NAME= entries).
type unsecuredConfig struct {
	principal, principalClaim string
	scope                     []string
	scopeClaim                string
	life                      time.Duration
	extensions                map[string]string
}

// parseUnsecuredConfig parses and checks a sasl_oauthbearer_config as
// librdkafka does: principal= is required, no value holds a '"'.
func parseUnsecuredConfig(v string) (unsecuredConfig, error) {
	u := unsecuredConfig{principalClaim: "sub", scopeClaim: "scope", life: time.Hour, extensions: map[string]string{}}
	seen := map[string]bool{}
	for _, f := range strings.Fields(v) {
		k, val, ok := strings.Cut(f, "=")
		if !ok {
			return u, fmt.Errorf("%q is not name=value", f)
		}
		if strings.Contains(val, `"`) {
			return u, fmt.Errorf(`%s: '"' is not allowed in a value`, k)
		}
		if val == "" {
			return u, fmt.Errorf("%s has no value", k)
		}
		if seen[k] {
			return u, fmt.Errorf("%s given twice", k)
		}
		seen[k] = true
		switch {
		case k == "principal":
			u.principal = val
		case k == "principalClaimName":
			u.principalClaim = val
		case k == "scope":
			u.scope = strings.Split(val, ",")
		case k == "scopeClaimName":
			u.scopeClaim = val
		case k == "lifeSeconds":
			n, err := strconv.Atoi(val)
			if err != nil || n <= 0 {
				return u, fmt.Errorf("lifeSeconds %q is not a positive number of seconds", val)
			}
			u.life = time.Duration(n) * time.Second
		case strings.HasPrefix(k, "extension_") && len(k) > len("extension_"):
			u.extensions[strings.TrimPrefix(k, "extension_")] = val
		default:
			return u, fmt.Errorf("unknown entry %q (want principal=, principalClaimName=, scope=, scopeClaimName=, lifeSeconds=, extension_NAME=)", k)
		}
	}
	if u.principal == "" {
		return u, fmt.Errorf("needs principal=NAME (for example: principal=switchboard scope=kafka)")
	}
	return u, nil
}

// unsecuredToken makes the unsecured JWT (alg "none", no signature) that
// librdkafka's enable.sasl.oauthbearer.unsecure.jwt makes from cfg, valid
// from now: the token for a consumer's refresh event.
func unsecuredToken(cfg string, now time.Time) (kafka.OAuthBearerToken, error) {
	u, err := parseUnsecuredConfig(cfg)
	if err != nil {
		return kafka.OAuthBearerToken{}, err
	}
	exp := now.Add(u.life)
	claims := map[string]any{
		u.principalClaim: u.principal,
		"iat":            float64(now.UnixMilli()) / 1000,
		"exp":            float64(exp.UnixMilli()) / 1000,
	}
	if len(u.scope) > 0 {
		claims[u.scopeClaim] = u.scope
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return kafka.OAuthBearerToken{}, err
	}
	enc := base64.RawURLEncoding
	return kafka.OAuthBearerToken{
		TokenValue: enc.EncodeToString([]byte(`{"alg":"none"}`)) + "." + enc.EncodeToString(payload) + ".",
		Expiration: exp,
		Principal:  u.principal,
		Extensions: u.extensions,
	}, nil
}
