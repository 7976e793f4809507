package jwtwarden_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

func TestVerifiedCarriesTheResult(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	exp := time.Now().Add(time.Hour).Unix()
	token := is.Mint("", is.Claims(map[string]any{"sub": "alice", "exp": exp, "roles": []string{"admin"}}))

	before := time.Now().Add(-time.Second)
	got, err := v.Verify(token)
	if err != nil {
		t.Fatal(err)
	}
	if got.Issuer != is.URL || got.Kid != is.Kid || got.Alg != "RS256" || got.Cached {
		t.Errorf("result: %+v", got)
	}
	if got.VerifiedAt.Before(before) || got.VerifiedAt.After(time.Now().Add(time.Second)) {
		t.Errorf("VerifiedAt %v", got.VerifiedAt)
	}
	if got.ExpiresAt.Unix() != exp {
		t.Errorf("ExpiresAt %v, want %d", got.ExpiresAt, exp)
	}
	claims, err := got.Claims()
	if err != nil || claims["sub"] != "alice" || claims["aud"] != "api" {
		t.Errorf("claims %v %v", claims, err)
	}
	var typed struct {
		Sub   string   `json:"sub"`
		Roles []string `json:"roles"`
	}
	if err := got.DecodeClaims(&typed); err != nil || typed.Sub != "alice" || len(typed.Roles) != 1 {
		t.Errorf("DecodeClaims %+v %v", typed, err)
	}

	again, err := v.Verify(token)
	if err != nil || !again.Cached || !again.VerifiedAt.Equal(got.VerifiedAt) {
		t.Errorf("second verify: %+v %v", again, err)
	}
}

// A cache hit whose result the caller keeps to itself (reads it, drops it:
// what a handler does) allocates nothing: Verify and VerifyWith are inlined
// and the *Verified lives on the caller's stack. One allocation more is
// about a third of a Go hit again (issue 29: a Go hit within 3x a Rust hit).
func TestHitAllocatesNothing(t *testing.T) {
	if testing.CoverMode() != "" {
		t.Skip("coverage instrumentation changes inlining")
	}
	is := startIssuer(t)
	v := is.Verifier()
	token := is.Mint("", is.Claims(map[string]any{"sub": "alice", "tenant": "acme"}))
	if _, err := v.Verify(token); err != nil {
		t.Fatal(err)
	}
	pinned := jwtwarden.VerifyOptions{Issuer: is.URL}
	if _, err := v.VerifyWith(token, pinned); err != nil {
		t.Fatal(err)
	}
	var bad int
	allocs := testing.AllocsPerRun(500, func() {
		r, err := v.Verify(token)
		if err != nil || !r.Cached || r.Subject() != "alice" || r.Issuer != is.URL {
			bad++
		}
		tenant, _ := r.ClaimString("tenant")
		if tenant != "acme" {
			bad++
		}
	})
	if bad != 0 {
		t.Fatalf("%d bad hits", bad)
	}
	if allocs != 0 {
		t.Errorf("Verify hit: %v allocations, want 0", allocs)
	}
	if allocs := testing.AllocsPerRun(500, func() {
		if r, err := v.VerifyWith(token, pinned); err != nil || !r.Cached {
			bad++
		}
	}); allocs != 0 || bad != 0 {
		t.Errorf("VerifyWith hit (pinned issuer): %v allocations, %d bad, want 0", allocs, bad)
	}
}

// Each call returns the caller's own *Verified, however it is allocated: its
// fields are exported, so a caller that changes one (or keeps it while other
// goroutines verify, the same token or others) must not change what any
// other call sees. A result shared between calls, or a per-verifier buffer
// reused by the next call, would fail here.
func TestResultsAreTheCallersOwn(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	alice := is.Mint("", is.Claims(map[string]any{"sub": "alice"}))
	bob := is.Mint("", is.Claims(map[string]any{"sub": "bob"}))

	first, err := v.Verify(alice)
	if err != nil {
		t.Fatal(err)
	}
	hit, err := v.Verify(alice)
	if err != nil || !hit.Cached || hit == first {
		t.Fatalf("hit %p (first %p): %v", hit, first, err)
	}
	hit.ClaimsJSON = `{"sub":"mallory"}`
	hit.Issuer, hit.Kid, hit.Alg, hit.Cached = "https://evil.example", "evil", "none", false
	hit.ExpiresAt = time.Now().Add(1000 * time.Hour)
	if hit.Subject() != "mallory" {
		t.Errorf("the changed result reads its own ClaimsJSON: %q", hit.Subject())
	}
	again, err := v.Verify(alice)
	if err != nil || again.Subject() != "alice" || strings.Contains(again.ClaimsJSON, "mallory") ||
		again.Issuer != is.URL || again.Kid != is.Kid || again.Alg != "RS256" || !again.Cached ||
		!again.ExpiresAt.Equal(first.ExpiresAt) {
		t.Fatalf("after changing another result: %+v %v", again, err)
	}

	// Results kept while other goroutines verify stay as they were.
	kept := []*jwtwarden.Verified{first, again}
	for _, tok := range []string{bob, alice, bob} {
		r, err := v.Verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, r)
	}
	snap := make([]jwtwarden.Verified, len(kept))
	for i, r := range kept {
		snap[i] = *r
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 0; n < 500; n++ {
				tok, sub := alice, "alice"
				if (n+g)%2 == 0 {
					tok, sub = bob, "bob"
				}
				r, err := v.VerifyWith(tok, jwtwarden.VerifyOptions{Fresh: n%50 == 0})
				if err != nil || r.Subject() != sub {
					t.Errorf("goroutine %d: %v %v", g, r, err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	for i, r := range kept {
		if *r != snap[i] {
			t.Errorf("kept result %d changed: %+v, was %+v", i, *r, snap[i])
		}
	}
	if kept[2].Subject() != "bob" || kept[3].Subject() != "alice" {
		t.Errorf("kept results: %q %q", kept[2].Subject(), kept[3].Subject())
	}
}

// A rejection returns a nil *Verified, never a zero or half-filled one.
func TestRejectionReturnsNoResult(t *testing.T) {
	is := startIssuer(t)
	v := is.Verifier()
	expired := is.Mint("", is.Claims(map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}))
	for _, tok := range []string{"", "not.a.token", expired} {
		if r, err := v.Verify(tok); r != nil || err == nil {
			t.Errorf("Verify(%.20q): %+v, %v", tok, r, err)
		}
		if r, err := v.VerifyWith(tok, jwtwarden.VerifyOptions{Issuer: is.URL}); r != nil || err == nil {
			t.Errorf("VerifyWith(%.20q): %+v, %v", tok, r, err)
		}
	}
}
