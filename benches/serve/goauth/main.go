// Command goauth is the usual alternative to `jwtwarden serve` in the
// forward-auth benchmark: a minimal net/http service that verifies the
// bearer token with golang-jwt and a keyfunc JWKS cache, and answers 200
// with X-Auth-Subject or 401. It does what such a service typically does
// and no more (no result cache, no routes, no metrics).
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"strings"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8500", "listen address")
	jwksURL := flag.String("jwks", "", "JWKS URL")
	issuer := flag.String("issuer", "", "expected iss")
	audience := flag.String("audience", "api", "expected aud")
	flag.Parse()

	kf, err := keyfunc.NewDefaultCtx(context.Background(), []string{*jwksURL})
	if err != nil {
		log.Fatalf("keyfunc: %v", err)
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256", "ES256", "EdDSA"}),
		jwt.WithIssuer(*issuer),
		jwt.WithAudience(*audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(30e9),
	)
	http.HandleFunc("/auth", func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if len(h) < 7 || !strings.EqualFold(h[:7], "bearer ") {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		tok, err := parser.Parse(strings.TrimSpace(h[7:]), kf.Keyfunc)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="api", error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if sub, err := tok.Claims.GetSubject(); err == nil {
			w.Header().Set("X-Auth-Subject", sub)
		}
		w.WriteHeader(http.StatusOK)
	})
	log.Printf("listening on %s", *listen)
	log.Fatal(http.ListenAndServe(*listen, nil))
}
