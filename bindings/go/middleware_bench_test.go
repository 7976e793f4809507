package jwtwarden_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

// discard is a ResponseWriter that keeps nothing (the benchmark measures
// the middleware, not a recorder).
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkMiddlewareHit is the middleware's hit path: a cached token on a
// protected route (with open routes configured, so the path is matched),
// through to the application, which reads the subject from the context.
//
//	go test -run '^$' -bench MiddlewareHit -benchmem
func BenchmarkMiddlewareHit(b *testing.B) {
	is := startIssuer(b)
	v := is.Verifier()
	var sub string
	h := v.MiddlewareWith(jwtwarden.MiddlewareOptions{Realm: "api", SkipPaths: []string{"/healthz", "/docs/*"}})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			verified, ok := jwtwarden.FromContext(r.Context())
			if !ok {
				b.Fatal("no verified result")
			}
			sub = verified.Subject()
		}))
	req := httptest.NewRequest("GET", "/orders/42?x=1", nil)
	req.Header.Set("Authorization", "Bearer "+is.Mint("", is.Claims(map[string]any{"sub": "alice"})))
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, req) // the miss: fills the cache
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h.ServeHTTP(w, req)
	}
	if sub != "alice" {
		b.Fatalf("sub %q", sub)
	}
}

// BenchmarkMiddlewareMintHit is BenchmarkMiddlewareHit with the middleware
// as the edge (MiddlewareOptions.Mint, Ed25519): the same cached token,
// plus one assertion minted and set on the request for the application.
//
//	go test -run '^$' -bench 'MiddlewareHit|MiddlewareMintHit' -benchmem
func BenchmarkMiddlewareMintHit(b *testing.B) {
	is := startIssuer(b)
	v := is.Verifier()
	minter, err := jwtwarden.NewMinter([]byte(edgeConfigJSON(b, is)))
	if err != nil {
		b.Fatal(err)
	}
	defer minter.Close()
	var got string
	h := v.MiddlewareWith(jwtwarden.MiddlewareOptions{Realm: "api", SkipPaths: []string{"/healthz", "/docs/*"},
		Mint: &jwtwarden.MintOptions{Minter: minter, Audience: "orders"}})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got = r.Header.Get(jwtwarden.DefaultAssertionHeader)
		}))
	req := httptest.NewRequest("GET", "/orders/42?x=1", nil)
	req.Header.Set("Authorization", "Bearer "+is.Mint("", is.Claims(map[string]any{"sub": "alice"})))
	w := &discard{h: http.Header{}}
	h.ServeHTTP(w, req) // the miss: fills the cache
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		h.ServeHTTP(w, req)
	}
	if got == "" {
		b.Fatal("no assertion")
	}
}
