package jwtwarden_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

// Issuers added, removed and replaced at runtime (issue 27): a removed
// issuer's cached token is refused on the next call; an unchanged issuer
// keeps its cached result across Reload.
func TestAddRemoveReloadIssuers(t *testing.T) {
	a, b := startIssuer(t), startIssuer(t)
	entry := func(is *testIssuer) string {
		return fmt.Sprintf(`{"issuer":%q,"jwks_uri":%q,"audiences":["api"]}`, is.URL, is.URL+"/jwks.json")
	}
	config := func(entries ...string) string {
		return fmt.Sprintf(`{"issuers":[%s],"http":{"allow_http":true}}`, strings.Join(entries, ","))
	}
	v, err := jwtwarden.New(config(entry(a)))
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	aTok, bTok := a.Mint("", a.Claims(nil)), b.Mint("", b.Claims(nil))
	cached := func(what, token string) {
		t.Helper()
		if _, err := v.Verify(token); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		r, err := v.Verify(token)
		if err != nil || !r.Cached {
			t.Fatalf("%s: not a cache hit: %+v %v", what, r, err)
		}
	}
	cached("A", aTok)
	if _, err := v.Verify(bTok); !errors.Is(err, jwtwarden.ErrUnknownIssuer) {
		t.Fatalf("B before AddIssuer: %v", err)
	}

	bad := `{"issuer":"https://x.example","jwks_uri":"https://x.example/jwks","audiences":[]}`
	if err := v.AddIssuer(bad); !errors.Is(err, jwtwarden.ErrInvalidConfig) || !strings.Contains(err.Error(), "issuers[1]") {
		t.Fatalf("invalid entry: %v", err)
	}
	if err := v.AddIssuer(entry(a)); !errors.Is(err, jwtwarden.ErrInvalidConfig) {
		t.Fatalf("duplicate entry: %v", err)
	}
	if err := v.AddIssuer(entry(b)); err != nil {
		t.Fatal(err)
	}
	cached("B after AddIssuer", bTok)

	if err := v.RemoveIssuer(a.URL); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(aTok); !errors.Is(err, jwtwarden.ErrUnknownIssuer) {
		t.Fatalf("A's cached token after RemoveIssuer: %v", err)
	}
	if r, err := v.Verify(bTok); err != nil || !r.Cached {
		t.Fatalf("B after removing A: %+v %v", r, err)
	}
	if err := v.RemoveIssuer(a.URL); !errors.Is(err, jwtwarden.ErrUnknownIssuer) {
		t.Fatalf("removing A again: %v", err)
	}

	if err := v.Reload(config(entry(b), entry(a))); err != nil {
		t.Fatal(err)
	}
	if r, err := v.Verify(bTok); err != nil || !r.Cached {
		t.Fatalf("B across Reload: %+v %v", r, err)
	}
	cached("A after Reload", aTok)
	other := `{"issuers":[` + entry(b) + `],"http":{"allow_http":true},"cache":{"capacity":7}}`
	if err := v.Reload(other); !errors.Is(err, jwtwarden.ErrInvalidConfig) {
		t.Fatalf("reload changing the cache: %v", err)
	}
	cached("A after a refused Reload", aTok)
}
