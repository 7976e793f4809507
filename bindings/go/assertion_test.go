package jwtwarden_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jwt "github.com/golang-jwt/jwt/v5"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

// edgeWorld: a test issuer that also plays the edge (one Ed25519 key,
// assertions minted with golang-jwt), and a service verifier configured
// with the edge as an issuer of kind "assertion".
type edgeWorld struct {
	is   *testIssuer
	ekid string
	v    *jwtwarden.Verifier
}

func newEdgeWorld(t *testing.T) *edgeWorld {
	is := startIssuer(t)
	ekid := is.AddKey("EdDSA")
	cfg := fmt.Sprintf(`{"issuers":[{"issuer":%q,"jwks_uri":%q,"audiences":["api"]},
		{"kind":"assertion","issuer":"edge-1","jwks_uri":%q,"audiences":["orders"],"fresh_within_secs":5}],
		"http":{"allow_http":true}}`, is.URL, is.URL+"/jwks.json", is.URL+"/jwks.json")
	v, err := jwtwarden.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return &edgeWorld{is: is, ekid: ekid, v: v}
}

// assertion mints what an edge would for method and path; verifiedAgo
// is how long ago the edge verified the original token.
func (w *edgeWorld) assertion(method, path string, verifiedAgo time.Duration) string {
	now := time.Now().Unix()
	claims := jwt.MapClaims{"iss": "edge-1", "aud": "orders", "iat": now, "exp": now + 30,
		"jti": fmt.Sprintf("a-%d", time.Now().UnixNano()), "htm": method, "htu": path,
		"verified_at": now - int64(verifiedAgo/time.Second), "cached": false, "fresh": false,
		"orig": map[string]any{"iss": w.is.URL, "sub": "alice", "jti": "t-1"}}
	key, _ := w.is.key(w.ekid)
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	tok.Header["kid"] = w.ekid
	tok.Header["typ"] = "jwtwarden-assertion+jwt"
	s, err := tok.SignedString(key)
	if err != nil {
		w.is.t.Fatalf("sign: %v", err)
	}
	return s
}

// forge is what a client would send: the edge's claims and kid, signed
// with a key of its own.
func (w *edgeWorld) forge(method, path string) string {
	now := time.Now().Unix()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, jwt.MapClaims{"iss": "edge-1", "aud": "orders",
		"iat": now, "exp": now + 30, "jti": "forged", "htm": method, "htu": path, "verified_at": now,
		"orig": map[string]any{"sub": "admin"}})
	tok.Header["kid"] = w.ekid
	tok.Header["typ"] = "jwtwarden-assertion+jwt"
	s, _ := tok.SignedString(key)
	return s
}

func TestVerifyAssertion(t *testing.T) {
	w := newEdgeWorld(t)
	a := w.assertion("GET", "/orders/7", 0)
	inh, err := w.v.VerifyAssertion(a, "GET", "/orders/7?page=2", false)
	if err != nil {
		t.Fatalf("VerifyAssertion: %v", err)
	}
	if !inh.IsInherited() || inh.Edge != "edge-1" || inh.Subject() != "alice" || inh.Cached || inh.Fresh {
		t.Fatalf("unexpected %+v", inh)
	}
	if d := time.Since(inh.VerifiedAt); d < 0 || d > 10*time.Second {
		t.Fatalf("verified_at %v", inh.VerifiedAt)
	}
	if !strings.Contains(inh.ClaimsJSON, `"htu":"/orders/7"`) {
		t.Fatalf("claims %s", inh.ClaimsJSON)
	}
	if _, err := w.v.VerifyAssertion(a, "GET", "/orders/7", false); !errors.Is(err, jwtwarden.ErrRevoked) {
		t.Fatalf("replay: %v", err)
	}
	// An assertion is not a user token, nor a user token an assertion.
	if _, err := w.v.Verify(a); !errors.Is(err, jwtwarden.ErrUnknownIssuer) {
		t.Fatalf("assertion as a token: %v", err)
	}
	user := w.is.Mint("", w.is.Claims(nil))
	if _, err := w.v.VerifyAssertion(user, "GET", "/orders/7", false); !errors.Is(err, jwtwarden.ErrUnknownIssuer) {
		t.Fatalf("token as an assertion: %v", err)
	}
	// Fresh: within fresh_within_secs only.
	old := w.assertion("POST", "/pay", time.Minute)
	if _, err := w.v.VerifyAssertion(old, "POST", "/pay", true); !errors.Is(err, jwtwarden.ErrTokenLifetimeExceeded) {
		t.Fatalf("fresh: %v", err)
	}
	if _, err := w.v.VerifyAssertion(w.assertion("POST", "/pay", 0), "POST", "/pay", true); err != nil {
		t.Fatalf("fresh enough: %v", err)
	}
}

func TestMiddlewareAcceptsAssertionsByRoute(t *testing.T) {
	w := newEdgeWorld(t)
	handler := func(rw http.ResponseWriter, r *http.Request) {
		if inh, ok := jwtwarden.InheritedFromContext(r.Context()); ok {
			fmt.Fprintf(rw, "inherited %s from %s", inh.Subject(), inh.Edge)
			return
		}
		if v, ok := jwtwarden.FromContext(r.Context()); ok {
			fmt.Fprintf(rw, "direct %s", v.Subject())
			return
		}
		fmt.Fprint(rw, "open")
	}
	mw := w.v.MiddlewareWith(jwtwarden.MiddlewareOptions{
		Realm:          "orders",
		AssertionPaths: []string{"/orders/*", "/pay"},
		FreshPaths:     []string{"/pay"},
	})
	srv := httptest.NewServer(mw(http.HandlerFunc(handler)))
	defer srv.Close()
	do := func(method, path string, headers map[string]string) (int, string, http.Header) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), resp.Header
	}
	const h = jwtwarden.DefaultAssertionHeader

	a := w.assertion("GET", "/orders/7", 0)
	if st, body, _ := do("GET", "/orders/7", map[string]string{h: a}); st != 200 || body != "inherited alice from edge-1" {
		t.Fatalf("assertion route: %d %s", st, body)
	}
	// Replayed, to the same or another path or method: refused.
	if st, body, hd := do("GET", "/orders/7", map[string]string{h: a}); st != 401 || !strings.Contains(body, `"revoked"`) ||
		!strings.Contains(hd.Get("WWW-Authenticate"), `error_description="revoked"`) {
		t.Fatalf("replay: %d %s %v", st, body, hd)
	}
	b := w.assertion("GET", "/orders/7", 0)
	if st, body, _ := do("GET", "/orders/8", map[string]string{h: b}); st != 401 || !strings.Contains(body, "invalid_audience") {
		t.Fatalf("another path: %d %s", st, body)
	}
	if st, body, _ := do("DELETE", "/orders/7", map[string]string{h: b}); st != 401 || !strings.Contains(body, "invalid_audience") {
		t.Fatalf("another method: %d %s", st, body)
	}
	// A client-supplied (forged) assertion: its own Ed25519 key, same claims.
	forged := w.forge("GET", "/orders/7")
	if st, _, _ := do("GET", "/orders/7", map[string]string{h: forged}); st != 401 {
		t.Fatalf("forged: %d", st)
	}
	// The header on a route that does not accept assertions is ignored:
	// a bearer token is required, and an assertion as one is refused.
	c := w.assertion("GET", "/admin", 0)
	if st, _, _ := do("GET", "/admin", map[string]string{h: c}); st != 401 {
		t.Fatalf("assertion on a token-only route: %d", st)
	}
	if st, body, _ := do("GET", "/admin", map[string]string{"Authorization": "Bearer " + c}); st != 401 || !strings.Contains(body, "unknown_issuer") {
		t.Fatalf("assertion as a bearer token: %d %s", st, body)
	}
	user := w.is.Mint("", w.is.Claims(map[string]any{"sub": "bob"}))
	if st, body, _ := do("GET", "/admin", map[string]string{"Authorization": "Bearer " + user}); st != 200 || body != "direct bob" {
		t.Fatalf("token route: %d %s", st, body)
	}
	// On an assertion route the original token still works.
	if st, body, _ := do("GET", "/orders/9", map[string]string{"Authorization": "Bearer " + user}); st != 200 || body != "direct bob" {
		t.Fatalf("token on an assertion route: %d %s", st, body)
	}
	// A fresh route takes inherited trust only within fresh_within_secs.
	stale := w.assertion("POST", "/pay", time.Minute)
	if st, body, _ := do("POST", "/pay", map[string]string{h: stale}); st != 401 || !strings.Contains(body, "token_lifetime_exceeded") {
		t.Fatalf("fresh route, stale trust: %d %s", st, body)
	}
	if st, _, _ := do("POST", "/pay", map[string]string{h: w.assertion("POST", "/pay", 0)}); st != 200 {
		t.Fatalf("fresh route, recent trust: %d", st)
	}
}

// Mounted under a prefix (http.StripPrefix): routes are matched on the
// path the middleware sees, the assertion on the request as received.
func TestMiddlewareAssertionUnderStripPrefix(t *testing.T) {
	w := newEdgeWorld(t)
	mw := w.v.MiddlewareWith(jwtwarden.MiddlewareOptions{AssertionPaths: []string{"/orders/*"}})
	ok := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if _, inherited := jwtwarden.InheritedFromContext(r.Context()); !inherited {
			rw.WriteHeader(500)
		}
	})
	srv := httptest.NewServer(http.StripPrefix("/api", mw(ok)))
	defer srv.Close()
	get := func(path, assertion string) int {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set(jwtwarden.DefaultAssertionHeader, assertion)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := get("/api/orders/7", w.assertion("GET", "/api/orders/7", 0)); st != 200 {
		t.Fatalf("bound to the request as received: %d", st)
	}
	if st := get("/api/orders/7", w.assertion("GET", "/orders/7", 0)); st != 401 {
		t.Fatalf("bound to the stripped path: %d", st)
	}
}
