package jwtwarden_test

import (
	"testing"
	"time"
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
