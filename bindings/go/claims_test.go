package jwtwarden_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

// The typed accessors read a token minted by golang-jwt, on the first
// verification and on cache hits.
func TestClaimAccessors(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	token := is.Mint("", is.Claims(map[string]any{
		"sub": "alice", "aud": []string{"api", "web"}, "jti": "id-1", "scope": "orders:read  orders:write",
		"tenant": "acme", "roles": []string{"admin"}, "level": 3,
	}))
	for i := 0; i < 3; i++ {
		got, err := v.Verify(token)
		if err != nil {
			t.Fatal(err)
		}
		if got.Cached != (i > 0) {
			t.Errorf("verify %d: cached %v", i, got.Cached)
		}
		if got.Subject() != "alice" || got.ID() != "id-1" || got.Issuer != is.URL {
			t.Errorf("sub %q jti %q iss %q", got.Subject(), got.ID(), got.Issuer)
		}
		if aud := got.Audience(); !reflect.DeepEqual(aud, []string{"api", "web"}) {
			t.Errorf("aud %q", aud)
		}
		if s := got.Scopes(); !reflect.DeepEqual(s, []string{"orders:read", "orders:write"}) {
			t.Errorf("scopes %q", s)
		}
		if !got.HasScope("orders:write") || got.HasScope("orders") {
			t.Error("HasScope")
		}
		if s, ok := got.ClaimString("tenant"); !ok || s != "acme" {
			t.Errorf("tenant %q %v", s, ok)
		}
		if _, ok := got.ClaimString("level"); ok {
			t.Error("ClaimString of a number")
		}
		if raw, ok := got.Claim("roles"); !ok || string(raw) != `["admin"]` {
			t.Errorf("roles %s %v", raw, ok)
		}
		if raw, ok := got.Claim("level"); !ok || string(raw) != "3" {
			t.Errorf("level %s %v", raw, ok)
		}
		if _, ok := got.Claim("nope"); ok {
			t.Error("a missing claim")
		}
		var mine struct {
			Sub    string   `json:"sub"`
			Roles  []string `json:"roles"`
			Tenant string   `json:"tenant"`
		}
		if err := got.ClaimsInto(&mine); err != nil || mine.Sub != "alice" || mine.Tenant != "acme" || len(mine.Roles) != 1 {
			t.Errorf("ClaimsInto %+v %v", mine, err)
		}
	}

	// aud as one string; scp as an array, then as a space-separated string.
	one, err := v.Verify(is.Mint("", is.Claims(map[string]any{"scp": []string{"a", "b"}})))
	if err != nil {
		t.Fatal(err)
	}
	if aud := one.Audience(); !reflect.DeepEqual(aud, []string{"api"}) || !reflect.DeepEqual(one.Scopes(), []string{"a", "b"}) {
		t.Errorf("aud %q scopes %q", aud, one.Scopes())
	}
	spaced, err := v.Verify(is.Mint("", is.Claims(map[string]any{"scp": "x y"})))
	if err != nil || !reflect.DeepEqual(spaced.Scopes(), []string{"x", "y"}) {
		t.Errorf("scp string: %v %v", spaced, err)
	}
	none, err := v.Verify(is.Mint("", is.Claims(map[string]any{"jti": nil})))
	if err != nil || none.Scopes() != nil || none.ID() != "" || none.HasScope("") {
		t.Errorf("no scope, no jti: %v", err)
	}

	// A Verified made by hand (not by Verify) decodes its ClaimsJSON.
	hand := &jwtwarden.Verified{ClaimsJSON: `{"sub":"bob","aud":"x","scope":"s"}`}
	if hand.Subject() != "bob" || !reflect.DeepEqual(hand.Audience(), []string{"x"}) || !hand.HasScope("s") {
		t.Errorf("hand-made: %q %q", hand.Subject(), hand.Audience())
	}
}

// What one caller gets cannot change what another gets: every hit shares
// one decoded form, and everything handed out is a copy.
func TestClaimsAreNotShared(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	token := is.Mint("", is.Claims(map[string]any{"sub": "alice", "aud": []string{"api", "web"},
		"scope": "read write", "roles": []string{"admin"}}))
	first, err := v.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	aud := first.Audience()
	aud[0] = "evil"
	_ = append(aud[:1], "more")
	scopes := first.Scopes()
	scopes[0] = "admin"
	raw, _ := first.Claim("roles")
	raw[2] = 'X'
	m, _ := first.Claims()
	m["sub"] = "mallory"
	m["roles"].([]any)[0] = "root"
	first.ClaimsJSON = `{"sub":"mallory"}`
	if first.Subject() != "mallory" {
		t.Errorf("a changed ClaimsJSON is what its own Verified reads: %q", first.Subject())
	}

	for _, fresh := range []bool{false, true} {
		again, err := v.VerifyWith(token, jwtwarden.VerifyOptions{Fresh: fresh})
		if err != nil {
			t.Fatal(err)
		}
		if again.Subject() != "alice" || !reflect.DeepEqual(again.Audience(), []string{"api", "web"}) ||
			!reflect.DeepEqual(again.Scopes(), []string{"read", "write"}) || again.HasScope("admin") {
			t.Errorf("fresh=%v: %q %q %q", fresh, again.Subject(), again.Audience(), again.Scopes())
		}
		if raw, _ := again.Claim("roles"); string(raw) != `["admin"]` {
			t.Errorf("fresh=%v: roles %s", fresh, raw)
		}
		if m, _ := again.Claims(); m["sub"] != "alice" || m["roles"].([]any)[0] != "admin" {
			t.Errorf("fresh=%v: Claims %v", fresh, m)
		}
	}
}

// Results are freed and their memory reused: claims found by address are
// checked byte for byte, so no token ever gets another's claims.
func TestClaimsMemoSurvivesReuse(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	tokens := make([]string, 8)
	for i := range tokens {
		tokens[i] = is.Mint("", is.Claims(map[string]any{"sub": fmt.Sprintf("user-%d", i)}))
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 0; n < 300; n++ {
				i := (n + g) % len(tokens)
				if n%50 == 0 {
					if _, err := v.BumpPolicyVersion(); err != nil {
						t.Error(err)
					}
				}
				got, err := v.Verify(tokens[i])
				if err != nil {
					t.Error(err)
					return
				}
				var c struct{ Sub string }
				if err := json.Unmarshal([]byte(got.ClaimsJSON), &c); err != nil || got.Subject() != c.Sub ||
					c.Sub != fmt.Sprintf("user-%d", i) {
					t.Errorf("token %d: Subject %q, ClaimsJSON sub %q", i, got.Subject(), c.Sub)
					return
				}
			}
		}(g)
	}
	wg.Wait()
}

// The middleware puts the *Verified in the context: handlers read the
// claims with the accessors (ClaimsFromContext still decodes a map).
func TestMiddlewareContextAccessors(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	handler := v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		verified, ok := jwtwarden.FromContext(r.Context())
		claims, ok2 := jwtwarden.ClaimsFromContext(r.Context())
		if !ok || !ok2 {
			http.Error(w, "no claims in context", 500)
			return
		}
		tenant, _ := verified.ClaimString("tenant")
		fmt.Fprintf(w, "%s %v %v %s %v", verified.Subject(), verified.Audience(), verified.Scopes(), tenant, claims["sub"])
	}))
	token := is.Mint("", is.Claims(map[string]any{"sub": "dave", "scope": "a b", "tenant": "acme"}))
	for i := 0; i < 2; i++ {
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Body.String() != "dave [api] [a b] acme dave" {
			t.Errorf("request %d: %d %q", i, rec.Code, rec.Body.String())
		}
	}
}

// The claims memo at its worst: every result in one slot, so each new
// result evicts and releases the previous one while other goroutines are
// verifying, and policy bumps make fresh results (new addresses, old ones
// freed and reused). A hit must never hand out another token's claims,
// issuer or kid, whatever the interleaving (run with -race).
func TestClaimsMemoOneSlotChurn(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	jwtwarden.MemoInOneSlot(v)
	tokens := make([]string, 6)
	for i := range tokens {
		tokens[i] = is.Mint("", is.Claims(map[string]any{"sub": fmt.Sprintf("user-%d", i), "n": i}))
	}
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 0; n < 400; n++ {
				i := (n*7 + g) % len(tokens)
				if g == 0 && n%40 == 0 {
					if _, err := v.BumpPolicyVersion(); err != nil {
						t.Error(err)
					}
				}
				opts := jwtwarden.VerifyOptions{Fresh: n%13 == 0}
				if n%2 == 1 {
					opts.Issuer = is.URL
				}
				got, err := v.VerifyWith(tokens[i], opts)
				if err != nil {
					t.Error(err)
					return
				}
				var c struct {
					Sub string
					N   int
				}
				want := fmt.Sprintf("user-%d", i)
				if err := json.Unmarshal([]byte(got.ClaimsJSON), &c); err != nil || c.Sub != want || c.N != i ||
					got.Subject() != want || got.Issuer != is.URL || got.Kid == "" || got.Alg == "" {
					t.Errorf("token %d: ClaimsJSON %s, Subject %q, Issuer %q, Kid %q", i, got.ClaimsJSON,
						got.Subject(), got.Issuer, got.Kid)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	// Close releases the memo's references (valgrind/ASan cover the C side);
	// the verifier refuses calls after.
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tokens[0]); !errors.Is(err, jwtwarden.ErrInvalidArgument) {
		t.Fatalf("after Close: %v", err)
	}
}

// An issuer is passed to C as a NUL-terminated string without a C
// allocation: a NUL inside it would name a shorter issuer in C (the
// configured one, for "URL\x00anything"), so it is refused; issuers longer
// than the stack buffer still work.
func TestVerifyWithIssuerBytes(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	token := is.Mint("", is.Claims(nil))
	if _, err := v.VerifyWith(token, jwtwarden.VerifyOptions{Issuer: is.URL + "\x00https://other.example"}); !errors.Is(err, jwtwarden.ErrInvalidArgument) {
		t.Fatalf("issuer with a NUL: %v, want ErrInvalidArgument", err)
	}
	long := "https://" + strings.Repeat("a", 300) + ".example"
	if _, err := v.VerifyWith(token, jwtwarden.VerifyOptions{Issuer: long}); !errors.Is(err, jwtwarden.ErrUnknownIssuer) {
		t.Fatalf("long unknown issuer: %v, want ErrUnknownIssuer", err)
	}
	for _, fresh := range []bool{true, false, false} {
		if r, err := v.VerifyWith(token, jwtwarden.VerifyOptions{Issuer: is.URL, Fresh: fresh}); err != nil || r.Issuer != is.URL {
			t.Fatalf("configured issuer (fresh=%v): %v", fresh, err)
		}
	}
}

// The memo slot depends on every bit of a result's address. The core keeps
// per-thread copies of hot results in per-thread malloc arenas, so copies of
// one token can sit a multiple of 64 MiB apart with equal low bits (seen:
// 0x7f1e8a2fd0d0 and 0x7f1e9a2fd0d0, 2^28 apart); in one slot, goroutines
// on two threads would evict each other's entry on every hit and pay a copy
// of the claims each time.
func TestMemoSlotUsesEveryAddressBit(t *testing.T) {
	for _, base := range []uintptr{0x7f1e8a2fd0d0, 0x55d4c3a01230, 0x7ffc00001000} {
		s0 := jwtwarden.MemoSlot(base)
		for shift := 4; shift < 47; shift++ {
			if s := jwtwarden.MemoSlot(base ^ 1<<shift); s == s0 {
				t.Errorf("%#x and %#x (bit %d flipped) share slot %d", base, base^1<<shift, shift, s)
			}
		}
		for k := uintptr(1); k <= 16; k++ {
			if s := jwtwarden.MemoSlot(base + k<<26); s == s0 {
				t.Errorf("%#x and %#x (%d x 64 MiB apart) share slot %d", base, base+k<<26, k, s)
			}
		}
	}
}
