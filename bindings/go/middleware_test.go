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
	for _, auth := range []string{"", "Basic dXNlcjpwdw=="} {
		rec := serve(auth)
		if rec.Code != 401 || rec.Header().Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("%q: %d %q", auth, rec.Code, rec.Header().Get("WWW-Authenticate"))
		}
	}
	for _, auth := range []string{"Bearer ", "Bearer", "Bearer a b"} {
		rec := serve(auth)
		if rec.Code != 400 || !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), `Bearer error="invalid_request"`) {
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
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "5" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("keys unavailable: %d %v", rec.Code, rec.Header())
	}
}

func TestMiddlewareOptions(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verified, ok := jwtwarden.FromContext(r.Context())
		switch {
		case !ok:
			w.Write([]byte("open"))
		case verified.Cached:
			w.Write([]byte("cached"))
		default:
			w.Write([]byte("fresh"))
		}
	})
	serve := func(h http.Handler, method, path, token string, header ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	expect := func(what string, rec *httptest.ResponseRecorder, code int, body string) {
		t.Helper()
		if rec.Code != code || (body != "" && rec.Body.String() != body) {
			t.Errorf("%s: %d %q, want %d %q", what, rec.Code, rec.Body.String(), code, body)
		}
	}

	h := v.MiddlewareWith(jwtwarden.MiddlewareOptions{
		Realm:      "orders",
		SkipPaths:  []string{"/healthz", "/docs", "/docs/*"},
		SkipIf:     func(r *http.Request) bool { return r.Header.Get("X-Probe") == "1" },
		FreshPaths: []string{"/admin/*"},
		FreshIf:    func(r *http.Request) bool { return r.Method == http.MethodDelete },
	})(app)
	// Open routes: exact paths, prefixes, a predicate, and OPTIONS by default.
	for _, path := range []string{"/healthz", "/docs", "/docs/oauth2-redirect"} {
		expect(path, serve(h, "GET", path, ""), 200, "open")
	}
	for _, path := range []string{"/healthz/x", "/docsecret", "/"} {
		rec := serve(h, "GET", path, "")
		expect(path, rec, 401, "")
		if got := rec.Header().Get("WWW-Authenticate"); got != `Bearer realm="orders"` {
			t.Errorf("%s: challenge %q", path, got)
		}
	}
	expect("predicate", serve(h, "GET", "/orders", "", "X-Probe", "1"), 200, "open")
	expect("OPTIONS", serve(h, "OPTIONS", "/orders", ""), 200, "open")
	strict := v.MiddlewareWith(jwtwarden.MiddlewareOptions{AuthenticateOptions: true})(app)
	expect("OPTIONS, authenticated", serve(strict, "OPTIONS", "/orders", ""), 401, "")

	// Fresh routes: by path, by predicate, everywhere.
	token := is.Mint("", is.Claims(nil))
	expect("first", serve(h, "GET", "/orders", token), 200, "fresh")
	expect("again", serve(h, "GET", "/orders", token), 200, "cached")
	expect("fresh path", serve(h, "GET", "/admin/users", token), 200, "fresh")
	expect("fresh predicate", serve(h, "DELETE", "/orders", token), 200, "fresh")
	always := v.MiddlewareWith(jwtwarden.MiddlewareOptions{Fresh: true})(app)
	expect("fresh everywhere", serve(always, "GET", "/orders", token), 200, "fresh")

	// A pinned issuer.
	pinned := v.MiddlewareWith(jwtwarden.MiddlewareOptions{Issuer: "https://other.example"})(app)
	rec := serve(pinned, "GET", "/orders", token)
	expect("pinned elsewhere", rec, 401, "")
	if !strings.Contains(rec.Body.String(), `"error":"unknown_issuer"`) {
		t.Errorf("pinned elsewhere: %s", rec.Body)
	}
	pinnedHere := v.MiddlewareWith(jwtwarden.MiddlewareOptions{Issuer: is.URL})(app)
	expect("pinned here", serve(pinnedHere, "GET", "/orders", token), 200, "cached")

	// The realm is quoted.
	quoted := v.MiddlewareWith(jwtwarden.MiddlewareOptions{Realm: `a "b"`})(app)
	if got := serve(quoted, "GET", "/", "").Header().Get("WWW-Authenticate"); got != `Bearer realm="a \"b\""` {
		t.Errorf("quoted realm: %q", got)
	}
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{"Bearer abc": "abc", "bearer   abc ": "abc", "Bearer": "", "Bearer a b": "",
		"Basic abc": "", "": ""} {
		req := httptest.NewRequest("GET", "/", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		if got, ok := jwtwarden.BearerToken(req); got != want || ok != (want != "") {
			t.Errorf("%q: %q %v", header, got, ok)
		}
	}
}
