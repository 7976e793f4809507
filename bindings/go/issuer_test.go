package jwtwarden_test

// Test helpers: a real jwtwarden-testissuer process driven through its admin
// API, and tokens minted with golang-jwt using the issuer's private keys.

import (
	"bufio"
	"bytes"
	"crypto"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

// issuerBin is the test issuer binary: $JWTWARDEN_TESTISSUER, or the release
// build in the repository's target directory.
func issuerBin() string {
	if p := os.Getenv("JWTWARDEN_TESTISSUER"); p != "" {
		return p
	}
	p, _ := filepath.Abs("../../target/release/jwtwarden-testissuer")
	return p
}

func TestMain(m *testing.M) {
	if _, err := os.Stat(issuerBin()); err != nil {
		fmt.Fprintf(os.Stderr, "test issuer not found (%v); run cargo build --release -p jwtwarden-testissuer\n", err)
		os.Exit(1)
	}
	os.Exit(m.Run())
}

type testIssuer struct {
	t    testing.TB
	URL  string
	Kid  string
	cmd  *exec.Cmd
	stop io.Closer

	mu   sync.Mutex
	keys map[string]crypto.Signer
	algs map[string]string
}

// startIssuer runs a test issuer (one RS256 key) until the test ends.
func startIssuer(t testing.TB) *testIssuer {
	t.Helper()
	cmd := exec.Command(issuerBin())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var banner struct{ URL, Kid string }
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &banner)
	}
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("test issuer did not start: %v", err)
	}
	is := &testIssuer{t: t, URL: banner.URL, Kid: banner.Kid, cmd: cmd, stop: stdin,
		keys: map[string]crypto.Signer{}, algs: map[string]string{}}
	t.Cleanup(func() {
		_ = is.stop.Close() // stdin EOF: the issuer exits
		_ = cmd.Wait()
	})
	return is
}

// admin calls the admin API and decodes the JSON answer into out.
func (is *testIssuer) admin(method, path string, body any, out any) {
	is.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, is.URL+path, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		is.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		is.t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			is.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// AddKey publishes a new key and returns its kid.
func (is *testIssuer) AddKey(alg string) string {
	var r struct{ Kid string }
	is.admin("POST", "/admin/keys", map[string]any{"alg": alg}, &r)
	return r.Kid
}

// RetireKey stops publishing kid.
func (is *testIssuer) RetireKey(kid string) { is.admin("DELETE", "/admin/keys/"+kid, nil, nil) }

// key returns kid's private key (from the admin API's PEM) and algorithm.
func (is *testIssuer) key(kid string) (crypto.Signer, string) {
	is.mu.Lock()
	defer is.mu.Unlock()
	if k, ok := is.keys[kid]; ok {
		return k, is.algs[kid]
	}
	var r struct{ Pem, Alg string }
	is.admin("GET", "/admin/keys/"+kid+"/private", nil, &r)
	var key crypto.Signer
	var err error
	switch r.Alg[:2] {
	case "RS", "PS":
		key, err = jwt.ParseRSAPrivateKeyFromPEM([]byte(r.Pem))
	case "ES":
		key, err = jwt.ParseECPrivateKeyFromPEM([]byte(r.Pem))
	default:
		var k crypto.PrivateKey
		if k, err = jwt.ParseEdPrivateKeyFromPEM([]byte(r.Pem)); err == nil {
			key = k.(crypto.Signer)
		}
	}
	if err != nil {
		is.t.Fatalf("private key of %s: %v", kid, err)
	}
	is.keys[kid], is.algs[kid] = key, r.Alg
	return key, r.Alg
}

// Claims are the issuer's default claims (sub "user", aud "api", exp in an
// hour, a fresh jti) with overrides applied; a nil override deletes.
func (is *testIssuer) Claims(overrides map[string]any) jwt.MapClaims {
	now := time.Now().Unix()
	c := jwt.MapClaims{"iss": is.URL, "sub": "user", "aud": "api", "iat": now, "nbf": now,
		"exp": now + 3600, "jti": fmt.Sprintf("jti-%d", time.Now().UnixNano())}
	for k, v := range overrides {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// Mint signs claims with golang-jwt using kid's private key ("" for the first key).
func (is *testIssuer) Mint(kid string, claims jwt.MapClaims) string {
	is.t.Helper()
	if kid == "" {
		kid = is.Kid
	}
	key, alg := is.key(kid)
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(alg), claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		is.t.Fatalf("sign: %v", err)
	}
	return s
}

// Config is the standard test configuration for this issuer.
func (is *testIssuer) Config() string {
	return fmt.Sprintf(`{"issuers":[{"issuer":%q,"jwks_uri":%q,"audiences":["api"]}],"http":{"allow_http":true}}`,
		is.URL, is.URL+"/jwks.json")
}

// Verifier builds a verifier for this issuer, closed when the test ends.
func (is *testIssuer) Verifier() *jwtwarden.Verifier {
	is.t.Helper()
	v, err := jwtwarden.New(is.Config())
	if err != nil {
		is.t.Fatalf("New: %v", err)
	}
	is.t.Cleanup(func() { _ = v.Close() })
	return v
}

// JWKSRequests is the issuer's JWKS request count.
func (is *testIssuer) JWKSRequests() int {
	var r struct {
		JWKSRequests int `json:"jwks_requests"`
	}
	is.admin("GET", "/admin/stats", nil, &r)
	return r.JWKSRequests
}
