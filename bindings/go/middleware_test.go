package jwtwarden_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

func TestMiddleware(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	handler := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, ok := jwtwarden.ClaimsFromContext(r.Context())
		verified, ok2 := jwtwarden.FromContext(r.Context())
		if !ok || !ok2 {
			http.Error(w, "no claims in context", 500)
			return
		}
		w.Write([]byte(claims["sub"].(string) + " " + verified.Issuer))
	}))
	serve := func(auth string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "/", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		return rec
	}

	good := is.Mint("", is.Claims(map[string]any{"sub": "carol"}))
	if rec := serve("Bearer " + good); rec.Code != 200 || rec.Body.String() != "carol "+is.URL {
		t.Errorf("good token: %d %q", rec.Code, rec.Body.String())
	}
	if rec := serve("bearer " + good); rec.Code != 200 {
		t.Errorf("lower-case scheme: %d", rec.Code)
	}
	for _, auth := range []string{"", "Basic dXNlcjpwdw==", "Bearer ", "Bearer"} {
		rec := serve(auth)
		if rec.Code != 401 || rec.Header().Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("%q: %d %q", auth, rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	}
	expired := is.Mint("", is.Claims(map[string]any{"exp": 1000}))
	for token, kind := range map[string]string{"garbage": "malformed_token", expired: "expired", good + "x": "invalid_base64"} {
		rec := serve("Bearer " + token)
		want := `Bearer error="invalid_token", error_description="` + kind + `"`
		if rec.Code != 401 || rec.Header().Get("WWW-Authenticate") != want {
			t.Errorf("%s: %d %q", kind, rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
		if strings.Contains(rec.Body.String(), token) {
			t.Errorf("%s: the body echoes the token", kind)
		}
	}

	down, err := jwtwarden.New(`{"issuers":[{"issuer":"https://down.example","jwks_uri":"http://127.0.0.1:1/jwks.json",
		"audiences":["api"]}],"http":{"allow_http":true,"connect_timeout_ms":500,"timeout_ms":1000}}`)
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer "+is.Mint("", is.Claims(map[string]any{"iss": "https://down.example"})))
	down.Middleware(http.NotFoundHandler()).ServeHTTP(rec, req)
	if rec.Code != 503 {
		t.Errorf("keys unavailable: %d", rec.Code)
	}
}
