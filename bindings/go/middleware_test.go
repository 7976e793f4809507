package jwtwarden_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path"
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

	// A realm the challenge could not carry as it is (a quote, a backslash,
	// a control character) is a configuration error, as in serve and the C
	// ABI: MiddlewareWith panics, naming the field.
	for _, realm := range []string{`a "b"`, `a\b`, "a\nb"} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "realm") {
					t.Errorf("realm %q: %v", realm, r)
				}
			}()
			v.MiddlewareWith(jwtwarden.MiddlewareOptions{Realm: realm})
		}()
	}
}

// TestMiddlewarePathSpellings is the attacker's test of open routes: every
// spelling of a protected path that passes through an open prefix
// (SkipPaths "/docs/*") must need a token, or be refused when no reading
// of it is safe, even when the router behind the middleware resolves dot
// segments and strips ";" parameters (as a Tomcat-style backend does).
func TestMiddlewarePathSpellings(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	// The application behind: a router that resolves the path, so
	// "/docs/../orders" is served as "/orders".
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clean := path.Clean(strings.ReplaceAll(r.URL.Path, ";", "/"))
		if _, ok := jwtwarden.FromContext(r.Context()); !ok && !strings.HasPrefix(clean, "/docs") && clean != "/healthz" {
			t.Errorf("%s (%s) served without a token", r.URL.Path, clean)
		}
		w.Write([]byte(clean))
	})
	h := v.MiddlewareWith(jwtwarden.MiddlewareOptions{Realm: "api", SkipPaths: []string{"/healthz", "/docs/*"}})(app)
	srv := httptest.NewServer(h)
	defer srv.Close()
	// raw sends a request line as written (no client-side cleaning).
	raw := func(target, auth string) (int, string) {
		t.Helper()
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req := "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
		if auth != "" {
			req += "Authorization: " + auth + "\r\n"
		}
		if _, err := conn.Write([]byte(req + "\r\n")); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for _, target := range []string{
		"/docs/oauth2-redirect", "/docs/", "/healthz", "/healthz?x=1",
	} {
		if code, _ := raw(target, ""); code != 200 {
			t.Errorf("%s: %d, want 200 (open)", target, code)
		}
	}
	for _, target := range []string{
		"/docs/../orders", "/docs/%2e%2e/orders", "/docs/%2E./orders", "/docs/./../orders",
		"/docs/x/../../orders", "//docs/../orders", "/docs/..//orders", "/HEALTHZ", "/Docs/x",
		"/healthz/", "/healthz/x", "/healthz;x=1", "/healthz/.", "/docs", "/docsecret", "/",
	} {
		if code, body := raw(target, ""); code != 401 {
			t.Errorf("%s: %d %s, want 401 (a token is needed)", target, code, body)
		}
	}
	for _, target := range []string{
		"/docs/..;/orders", "/docs/..;x=1/orders", "/docs/..%3b/orders", "/docs/.%2e;/orders",
		"/docs%2f..%2forders", "/docs/%252e%252e/orders", "/docs/..%5corders", "/docs/%00/x", "/../orders",
		"/docs/x./", "/docs/%C3%A9",
	} {
		code, body := raw(target, "")
		if code != 403 || !strings.Contains(body, `"invalid_request"`) {
			t.Errorf("%s: %d %s, want 403 invalid_request", target, code, body)
		}
	}
	// With a good token the protected spelling reaches the application with
	// the verified result (never as an open route); the unsafe one not at all.
	good := is.Mint("", is.Claims(nil))
	if code, body := raw("/docs/../orders", "Bearer "+good); code != 200 || body != "/orders" {
		t.Errorf("/docs/../orders with a token: %d %s", code, body)
	}
	if code, _ := raw("/docs/..;/orders", "Bearer "+good); code != 403 {
		t.Errorf("/docs/..;/orders with a token: %d, want 403", code)
	}
	// RFC 6750 2.1: "Bearer" 1*SP b64token. A tab (or another control
	// character) is neither a token nor "no credentials".
	for _, auth := range []string{"Bearer\t" + good, "Bearer\x0b" + good, "bearer\t\t" + good} {
		req := httptest.NewRequest("GET", "/orders", nil)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 400 || !strings.Contains(rec.Header().Get("WWW-Authenticate"), `error="invalid_request"`) ||
			strings.Contains(rec.Body.String(), good) {
			t.Errorf("%q: %d %q %s", auth[:7], rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body)
		}
	}
	// Mounted under http.StripPrefix, SkipPaths are the paths the
	// middleware's handler serves (r.URL), as before.
	mounted := http.StripPrefix("/api", h)
	for target, want := range map[string]int{"/api/healthz": 200, "/api/docs/x": 200, "/api/docs/../orders": 401,
		"/api/orders": 401, "/api/../healthz": 403} {
		req := httptest.NewRequest("GET", target, nil)
		rec := httptest.NewRecorder()
		mounted.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("StripPrefix %s: %d, want %d", target, rec.Code, want)
		}
	}
}

// A SkipPaths or FreshPaths pattern that is not a path in normal form is a
// configuration error: it panics when the middleware is built, never
// opening (or failing to protect) a path at request time.
func TestMiddlewareBadPatterns(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	for _, opts := range []jwtwarden.MiddlewareOptions{
		{SkipPaths: []string{"healthz"}}, {SkipPaths: []string{"/docs/../admin"}}, {SkipPaths: []string{"/a//b"}},
		{FreshPaths: []string{"/admin/./*"}}, {SkipPaths: []string{"/a%2fb"}},
	} {
		func() {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("%+v: no panic", opts)
				}
			}()
			v.MiddlewareWith(opts)
		}()
	}
}

func TestBearerToken(t *testing.T) {
	for header, want := range map[string]string{"Bearer abc": "abc", "bearer   abc ": "abc", "Bearer": "", "Bearer a b": "",
		"Basic abc": "", "": "", "Bearer\tabc": "", "Bearer a,b": "", "Bearerabc": ""} {
		req := httptest.NewRequest("GET", "/", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		if got, ok := jwtwarden.BearerToken(req); got != want || ok != (want != "") {
			t.Errorf("%q: %q %v", header, got, ok)
		}
	}
}
