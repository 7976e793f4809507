package jwtwarden_test

// The net/http middleware against the one HTTP contract table,
// tests/http_contract.json (the Python WSGI and ASGI middleware run the same
// table).

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

type contractCase struct {
	Name    string
	Request struct {
		Method  string
		Path    string
		Headers [][2]string
	}
	Repeat   int
	Verifier string
	Expect   struct {
		Status        int
		Headers       map[string]string
		AbsentHeaders []string `json:"absent_headers"`
		Body          map[string]any
	}
}

type tokenRecipe struct {
	Claims   map[string]any
	Relative map[string]int64
	Kid      string
	Tamper   string
	Literal  *string
}

type contract struct {
	Config     json.RawMessage
	Middleware struct {
		Realm      string
		SkipPaths  []string `json:"skip_paths"`
		FreshPaths []string `json:"fresh_paths"`
	}
	StatusByCategory map[string]int `json:"status_by_category"`
	RetryAfter       string         `json:"retry_after"`
	Tokens           map[string]tokenRecipe
	Cases            []contractCase
}

func loadContract(t *testing.T) contract {
	t.Helper()
	data, err := os.ReadFile("../../tests/http_contract.json")
	if err != nil {
		t.Fatal(err)
	}
	var c contract
	if err := json.Unmarshal(data, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// mint makes a token by the table's recipe (see its token_recipe).
func (is *testIssuer) mintRecipe(r tokenRecipe) string {
	is.t.Helper()
	if r.Literal != nil {
		return *r.Literal
	}
	claims := is.Claims(r.Claims)
	now := time.Now().Unix()
	for name, offset := range r.Relative {
		claims[name] = now + offset
	}
	key, alg := is.key(is.Kid)
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(alg), claims)
	tok.Header["kid"] = is.Kid
	if r.Kid != "" {
		tok.Header["kid"] = r.Kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		is.t.Fatalf("sign: %v", err)
	}
	if r.Tamper == "signature" {
		parts := strings.Split(s, ".")
		sig := []byte(parts[2])
		if sig[10] == 'A' {
			sig[10] = 'B'
		} else {
			sig[10] = 'A'
		}
		s = parts[0] + "." + parts[1] + "." + string(sig)
	}
	return s
}

// contractApp answers 200 {"sub": claims.sub or null, "cached": cached or null}.
var contractApp = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body := map[string]any{"sub": nil, "cached": nil}
	if v, ok := jwtwarden.FromContext(r.Context()); ok {
		claims, _ := v.Claims()
		body["sub"], body["cached"] = claims["sub"], v.Cached
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(body)
})

func matches(expected, actual any) bool {
	if expected == "*" {
		return actual != nil && actual != ""
	}
	if e, ok := expected.(string); ok && strings.HasSuffix(e, "*") {
		a, ok := actual.(string)
		return ok && strings.HasPrefix(a, strings.TrimSuffix(e, "*"))
	}
	return reflect.DeepEqual(expected, actual)
}

var placeholder = regexp.MustCompile(`\{([a-z0-9_:]+)\}`)

func fill(s string, subst map[string]string) string {
	return placeholder.ReplaceAllStringFunc(s, func(m string) string { return subst[m[1:len(m)-1]] })
}

func TestHTTPContract(t *testing.T) {
	c := loadContract(t)
	is := startIssuer(t)
	config := fill(string(c.Config), map[string]string{"issuer": is.URL, "jwks_uri": is.URL + "/jwks.json"})
	open, err := jwtwarden.New(config)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	closed, err := jwtwarden.New(config)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	opts := jwtwarden.MiddlewareOptions{Realm: c.Middleware.Realm, SkipPaths: c.Middleware.SkipPaths,
		FreshPaths: c.Middleware.FreshPaths}
	handlers := map[string]http.Handler{
		"":       open.MiddlewareWith(opts)(contractApp),
		"closed": closed.MiddlewareWith(opts)(contractApp),
	}
	tokens := map[string]string{}
	for name, recipe := range c.Tokens {
		tokens["token:"+name] = is.mintRecipe(recipe)
	}

	for _, tc := range c.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			var rec *httptest.ResponseRecorder
			var sent []string
			for range max(tc.Repeat, 1) {
				req := httptest.NewRequest(tc.Request.Method, tc.Request.Path, nil)
				for _, h := range tc.Request.Headers {
					value := fill(h[1], tokens)
					if strings.Contains(value, "{") {
						t.Fatalf("unfilled placeholder in %q", value)
					}
					req.Header.Add(h[0], value)
					for name, tok := range tokens {
						if strings.Contains(h[1], "{"+name+"}") {
							sent = append(sent, tok)
						}
					}
				}
				rec = httptest.NewRecorder()
				handlers[tc.Verifier].ServeHTTP(rec, req)
			}
			want := tc.Expect
			if rec.Code != want.Status {
				t.Fatalf("status %d, want %d: %s", rec.Code, want.Status, rec.Body)
			}
			for name, value := range want.Headers {
				if got := rec.Header().Get(name); !matches(value, got) {
					t.Errorf("%s: %q, want %q", name, got, value)
				}
			}
			for _, name := range want.AbsentHeaders {
				if _, ok := rec.Header()[http.CanonicalHeaderKey(name)]; ok {
					t.Errorf("%s present: %q", name, rec.Header().Get(name))
				}
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if len(body) != len(want.Body) {
				t.Errorf("body %v, want the keys of %v", body, want.Body)
			}
			for key, value := range want.Body {
				if got, ok := body[key]; !ok || !matches(value, got) {
					t.Errorf("body %s: %v, want %v", key, got, value)
				}
			}
			if rec.Code >= 400 {
				if rec.Header().Get("Cache-Control") != "no-store" {
					t.Errorf("a refusal without Cache-Control: no-store")
				}
				text := rec.Body.String() + strings.Join(rec.Header().Values("WWW-Authenticate"), "")
				for _, tok := range sent {
					if strings.Contains(text, tok) {
						t.Errorf("a refusal echoes the token")
					}
				}
			}
		})
	}
}

func TestHTTPContractTableIsTheImplementation(t *testing.T) {
	c := loadContract(t)
	got := map[string]int{}
	for category, status := range jwtwarden.StatusByCategory {
		got[category.String()] = status
	}
	if !reflect.DeepEqual(got, c.StatusByCategory) {
		t.Errorf("status by category %v, the contract says %v", got, c.StatusByCategory)
	}
	if jwtwarden.RetryAfter != c.RetryAfter {
		t.Errorf("Retry-After %q, the contract says %q", jwtwarden.RetryAfter, c.RetryAfter)
	}
	used := regexp.MustCompile(`\{token:([a-z0-9_]+)\}`)
	for _, tc := range c.Cases {
		for _, h := range tc.Request.Headers {
			for _, m := range used.FindAllStringSubmatch(h[1], -1) {
				if _, ok := c.Tokens[m[1]]; !ok {
					t.Errorf("%s: token %q is not defined", tc.Name, m[1])
				}
			}
		}
	}
}
