package jwtwarden_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	jwt "github.com/golang-jwt/jwt/v5"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

// goEdge: a Go middleware as the edge (verifies the client's token against
// the test issuer, mints with an Ed25519 key of its own) in front of an
// httputil.ReverseProxy to an upstream that verifies the assertion with a
// second Verifier configured with the edge as an issuer of kind
// "assertion" (its public key inline).
type goEdge struct {
	is       *testIssuer
	edge     *httptest.Server
	upstream *jwtwarden.Verifier
	pub      ed25519.PublicKey
	mu       sync.Mutex
	seen     []http.Header // the headers each upstream request carried
	results  []string      // what the upstream made of each
}

func newGoEdge(t *testing.T) *goEdge {
	t.Helper()
	g := &goEdge{is: startIssuer(t)}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	g.pub = pub
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	edgeCfg, _ := json.Marshal(map[string]any{
		"issuers":   []any{map[string]any{"issuer": g.is.URL, "jwks_uri": g.is.URL + "/jwks.json", "audiences": []string{"api"}}},
		"http":      map[string]any{"allow_http": true},
		"assertion": map[string]any{"name": "go-edge", "current": map[string]any{"kid": "ge-1", "pem": pemText}},
	})
	ev, err := jwtwarden.New(string(edgeCfg))
	if err != nil {
		t.Fatalf("edge New: %v", err)
	}
	t.Cleanup(func() { _ = ev.Close() })
	minter, err := jwtwarden.NewMinter(edgeCfg)
	if err != nil {
		t.Fatalf("NewMinter: %v", err)
	}
	t.Cleanup(func() { _ = minter.Close() })

	jwks := map[string]any{"keys": []any{map[string]any{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
		"kid": "ge-1", "x": base64.RawURLEncoding.EncodeToString(pub)}}}
	upCfg, _ := json.Marshal(map[string]any{"issuers": []any{map[string]any{"kind": "assertion", "issuer": "go-edge",
		"jwks": jwks, "audiences": []string{"orders"}}}})
	if g.upstream, err = jwtwarden.New(string(upCfg)); err != nil {
		t.Fatalf("upstream New: %v", err)
	}
	t.Cleanup(func() { _ = g.upstream.Close() })

	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		res := "none"
		if a := r.Header.Values(jwtwarden.DefaultAssertionHeader); len(a) > 0 {
			inh, err := g.upstream.VerifyAssertion(strings.Join(a, ","), r.Method, r.RequestURI, false)
			if err != nil {
				res = "refused " + err.Error()
			} else {
				res = "inherited " + inh.Subject() + " from " + inh.Edge
			}
		}
		g.mu.Lock()
		g.seen = append(g.seen, r.Header.Clone())
		g.results = append(g.results, res)
		g.mu.Unlock()
		fmt.Fprint(w, res)
	}))
	t.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	mw := ev.MiddlewareWith(jwtwarden.MiddlewareOptions{
		SkipPaths: []string{"/healthz"},
		Mint:      &jwtwarden.MintOptions{Minter: minter, Audience: "orders"},
	})
	g.edge = httptest.NewServer(mw(httputil.NewSingleHostReverseProxy(target)))
	t.Cleanup(g.edge.Close)
	return g
}

func (g *goEdge) do(t *testing.T, method, path string, h map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, g.edge.URL+path, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (g *goEdge) last() (http.Header, string, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.seen) == 0 {
		return nil, "", 0
	}
	return g.seen[len(g.seen)-1], g.results[len(g.results)-1], len(g.seen)
}

func TestGoEdgeMintsForTheUpstream(t *testing.T) {
	g := newGoEdge(t)
	user := g.is.Mint("", g.is.Claims(map[string]any{"sub": "alice"}))
	bearer := "Bearer " + user
	const h = jwtwarden.DefaultAssertionHeader

	// An allowed request reaches the upstream with an assertion that
	// verifies there, bound to the method and path as received (cache
	// miss, then hit: each its own assertion).
	for i := 0; i < 2; i++ {
		if st, body := g.do(t, "GET", "/orders/7?page=2", map[string]string{"Authorization": bearer}); st != 200 ||
			body != "inherited alice from go-edge" {
			t.Fatalf("request %d: %d %s", i, st, body)
		}
	}
	hd, _, _ := g.last()
	a := hd.Get(h)
	// A standard compact JWS: golang-jwt checks it with the edge's key.
	parsed, err := jwt.Parse(a, func(*jwt.Token) (any, error) { return g.pub, nil },
		jwt.WithValidMethods([]string{"EdDSA"}), jwt.WithAudience("orders"), jwt.WithIssuer("go-edge"))
	if err != nil || parsed.Header["kid"] != "ge-1" {
		t.Fatalf("golang-jwt: %v %v", err, parsed)
	}
	if c := parsed.Claims.(jwt.MapClaims); c["htm"] != "GET" || c["htu"] != "/orders/7" {
		t.Fatalf("binding: %v", c)
	}
	// Replayed by the upstream (or anyone holding it) to another path or
	// method, or twice: refused.
	if _, err := g.upstream.VerifyAssertion(a, "GET", "/orders/8", false); !errors.Is(err, jwtwarden.ErrInvalidAudience) {
		t.Fatalf("another path: %v", err)
	}
	if _, err := g.upstream.VerifyAssertion(a, "DELETE", "/orders/7", false); !errors.Is(err, jwtwarden.ErrInvalidAudience) {
		t.Fatalf("another method: %v", err)
	}
	if _, err := g.upstream.VerifyAssertion(a, "GET", "/orders/7", false); !errors.Is(err, jwtwarden.ErrRevoked) {
		t.Fatalf("twice: %v", err)
	}

	// A client-set assertion header (any spelling) is replaced by the
	// edge's own, and removed on an open route.
	forged := "forged.assertion.value"
	if st, body := g.do(t, "POST", "/orders", map[string]string{"Authorization": bearer, h: forged,
		"x-JWTWARDEN-assertion": forged}); st != 200 || body != "inherited alice from go-edge" {
		t.Fatalf("client header: %d %s", st, body)
	}
	if hd, _, _ := g.last(); len(hd.Values(h)) != 1 || hd.Get(h) == forged {
		t.Fatalf("client header reached the upstream: %v", hd.Values(h))
	}
	if st, body := g.do(t, "GET", "/healthz", map[string]string{h: forged}); st != 200 || body != "none" {
		t.Fatalf("open route: %d %s", st, body)
	}
	if hd, _, _ := g.last(); len(hd.Values(h)) != 0 {
		t.Fatalf("client header reached the upstream on an open route: %v", hd.Values(h))
	}

	// A refused token (or none) reaches nothing, whatever header it sent.
	_, _, before := g.last()
	bad := user[:len(user)-4] + "AAAA"
	for _, hdrs := range []map[string]string{
		{"Authorization": "Bearer " + bad, h: forged},
		{h: forged},
		{"Authorization": "Bearer " + g.is.Mint("", g.is.Claims(map[string]any{"aud": "other"}))},
	} {
		if st, _ := g.do(t, "GET", "/orders/7", hdrs); st != 401 {
			t.Fatalf("refused token: %d", st)
		}
	}
	if _, _, after := g.last(); after != before {
		t.Fatalf("a refused request reached the upstream (%d -> %d)", before, after)
	}
}

func TestNewMinterRefusesAConfigWithoutAssertion(t *testing.T) {
	_, err := jwtwarden.NewMinter([]byte(`{"issuers":[]}`))
	if !errors.Is(err, jwtwarden.ErrInvalidConfig) {
		t.Fatalf("NewMinter: %v", err)
	}
}

// A closed minter never lets a request on without its assertion: 500.
func TestGoEdgeClosedMinterRefuses(t *testing.T) {
	is := startIssuer(t)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	cfg, _ := json.Marshal(map[string]any{
		"issuers":   []any{map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/jwks.json", "audiences": []string{"api"}}},
		"http":      map[string]any{"allow_http": true},
		"assertion": map[string]any{"name": "go-edge", "current": map[string]any{"kid": "k", "pem": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}},
	})
	v, err := jwtwarden.New(string(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	m, err := jwtwarden.NewMinter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	reached := false
	mw := v.MiddlewareWith(jwtwarden.MiddlewareOptions{Mint: &jwtwarden.MintOptions{Minter: m, Audience: "orders"}})
	h := mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	_ = m.Close()
	_ = m.Close()
	req := httptest.NewRequest("GET", "/orders/1", nil)
	req.Header.Set("Authorization", "Bearer "+is.Mint("", is.Claims(nil)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 500 || reached {
		t.Fatalf("closed minter: %d reached=%v", rec.Code, reached)
	}
}

// The assertion's header may not be one the decision reads or a client
// controls end to end (the core's policy check), and a Mint without a
// Minter is a configuration error: MiddlewareWith panics, naming it.
func TestMintOptionsRefusedAtConfiguration(t *testing.T) {
	is := startIssuer(t)
	v, err := jwtwarden.New(fmt.Sprintf(`{"issuers":[{"issuer":%q,"jwks_uri":%q,"audiences":["api"]}],"http":{"allow_http":true}}`,
		is.URL, is.URL+"/jwks.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	cfg, _ := json.Marshal(map[string]any{
		"issuers":   []any{map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/jwks.json", "audiences": []string{"api"}}},
		"http":      map[string]any{"allow_http": true},
		"assertion": map[string]any{"name": "go-edge", "current": map[string]any{"kid": "k", "pem": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}},
	})
	m, err := jwtwarden.NewMinter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for name, mint := range map[string]*jwtwarden.MintOptions{
		"Authorization": {Minter: m, Header: "Authorization", Audience: "orders"},
		"Cookie":        {Minter: m, Header: "Cookie", Audience: "orders"},
		"no minter":     {Audience: "orders"},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: MiddlewareWith did not panic", name)
				}
			}()
			v.MiddlewareWith(jwtwarden.MiddlewareOptions{Mint: mint})
		}()
	}
}

// edgeConfigJSON is is's verifier configuration plus an assertion section
// with a new Ed25519 key (kid "k").
func edgeConfigJSON(tb testing.TB, is *testIssuer) string {
	tb.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{
		"issuers":   []any{map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/jwks.json", "audiences": []string{"api"}}},
		"http":      map[string]any{"allow_http": true},
		"assertion": map[string]any{"name": "go-edge", "current": map[string]any{"kid": "k", "pem": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))}},
	})
	return string(cfg)
}
