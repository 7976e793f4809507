package jwtwarden_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	jwtwarden "github.com/jwtwarden/jwtwarden/bindings/go"
)

// Every code the C library knows has a Go constant with the same number and
// name, and nothing else is listed.
func TestKindsMatchTheCLibrary(t *testing.T) {
	listed := map[jwtwarden.Kind]bool{}
	for _, k := range jwtwarden.Kinds {
		listed[k] = true
	}
	seen := 0
	for code := uint32(1); code < 1000; code++ {
		name := jwtwarden.Kind(code).String()
		if name == "unknown" {
			continue
		}
		seen++
		if !listed[jwtwarden.Kind(code)] {
			t.Errorf("code %d (%s) has no Go constant in Kinds", code, name)
		}
	}
	if seen != len(jwtwarden.Kinds) {
		t.Errorf("the C library knows %d codes, Kinds lists %d", seen, len(jwtwarden.Kinds))
	}
	if jwtwarden.ErrExpired.Code() != 300 || jwtwarden.ErrNullParameter.Code() != 504 || jwtwarden.ErrPanic.Code() != 901 {
		t.Error("codes differ from the documented numbers")
	}
	if jwtwarden.ErrRevocationsStale.Code() != 402 || jwtwarden.ErrRevocationNotPersisted.Code() != 510 {
		t.Error("revocation codes differ from the documented numbers")
	}
	if jwtwarden.ErrRevocationsStale.String() != "revocations_stale" || jwtwarden.ErrRevocationNotPersisted.String() != "revocation_not_persisted" {
		t.Errorf("names %q %q", jwtwarden.ErrRevocationsStale, jwtwarden.ErrRevocationNotPersisted)
	}
	if jwtwarden.ErrUnknownKid.String() != "unknown_kid" {
		t.Errorf("name %q", jwtwarden.ErrUnknownKid.String())
	}
}

func TestCategories(t *testing.T) {
	cases := map[jwtwarden.Kind]jwtwarden.Category{
		jwtwarden.ErrInvalidBase64:          jwtwarden.ErrCategoryMalformed,
		jwtwarden.ErrInvalidSignature:       jwtwarden.ErrCategoryVerification,
		jwtwarden.ErrRevoked:                jwtwarden.ErrCategoryPolicy,
		jwtwarden.ErrKeysStale:              jwtwarden.ErrCategoryKeysUnavailable,
		jwtwarden.ErrRevocationsStale:       jwtwarden.ErrCategoryKeysUnavailable,
		jwtwarden.ErrRevocationNotPersisted: jwtwarden.ErrCategoryUsage,
		jwtwarden.ErrSuspended:              jwtwarden.ErrCategoryPolicy,
		jwtwarden.ErrStatusListStale:        jwtwarden.ErrCategoryKeysUnavailable,
		jwtwarden.ErrInvalidConfig:          jwtwarden.ErrCategoryUsage,
		jwtwarden.ErrPanic:                  jwtwarden.ErrCategoryInternal,
	}
	for k, c := range cases {
		if k.Category() != c {
			t.Errorf("%s: category %s, want %s", k, k.Category(), c)
		}
	}
	if jwtwarden.ErrCategoryKeysUnavailable.String() != "keys_unavailable" {
		t.Errorf("name %q", jwtwarden.ErrCategoryKeysUnavailable.String())
	}
}

func TestErrorsIsAndAs(t *testing.T) {
	_, err := jwtwarden.New(`{"issuers": []}`)
	wrapped := fmt.Errorf("starting: %w", err)
	if !errors.Is(wrapped, jwtwarden.ErrInvalidConfig) || !errors.Is(wrapped, jwtwarden.ErrCategoryUsage) {
		t.Fatalf("errors.Is: %v", err)
	}
	if errors.Is(wrapped, jwtwarden.ErrExpired) || errors.Is(wrapped, jwtwarden.ErrCategoryPolicy) {
		t.Fatal("errors.Is matched the wrong kind")
	}
	var e *jwtwarden.Error
	if !errors.As(wrapped, &e) {
		t.Fatal("errors.As")
	}
	if e.Code != 500 || e.Kind != jwtwarden.ErrInvalidConfig || e.Category != jwtwarden.ErrCategoryUsage {
		t.Errorf("fields: %+v", e)
	}
	if !strings.Contains(e.Message, "issuers") {
		t.Errorf("message does not name the field: %q", e.Message)
	}
	if !strings.HasPrefix(e.Error(), "jwtwarden: invalid_config (500): ") {
		t.Errorf("Error(): %q", e.Error())
	}
	// Kinds and categories print as their names with %s and %v alike.
	if got := fmt.Sprintf("%s %v %s %v", e.Kind, e.Kind, e.Category, e.Category); got != "invalid_config invalid_config usage usage" {
		t.Errorf("formatting: %q", got)
	}
}
