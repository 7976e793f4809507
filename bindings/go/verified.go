package jwtwarden

// #include "cgo_helpers.h"
import "C"

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"time"
)

// Verified is a successful verification. It is a plain Go value: the C
// result is copied (or found in the verifier's memo) and freed before Verify
// returns.
//
// The claims are read with the accessors (Subject, Audience, Scopes, ID,
// Claim, ClaimString, ClaimsInto). Every cache hit of the same token shares
// one decoded, read-only form of its claims, so on a hit they cost a map
// lookup, not a JSON decode; what they return is the caller's own (slices
// are copies), so no caller can change what another sees. Claims and
// DecodeClaims still decode the whole payload on every call.
type Verified struct {
	// ClaimsJSON is the verified payload, a JSON object.
	ClaimsJSON string
	// Issuer is the configured issuer the token was verified for (the
	// token's iss claim, which the engine checked against it).
	Issuer string
	// Kid is the kid of the verifying key ("" if the token had none).
	Kid string
	// Alg is the signature algorithm ("RS256").
	Alg string
	// Cached is true if the result came from the cache (trust reused), false
	// if the signature was checked during this call (trust fresh).
	Cached bool
	// VerifiedAt is when the signature was checked (for a cache hit, the
	// original check).
	VerifiedAt time.Time
	// ExpiresAt is the token's exp.
	ExpiresAt time.Time

	// claims is the decoded form of ClaimsJSON, shared by every hit of the
	// same result; nil for a Verified not made by Verify.
	claims *claimSet
}

// claimSet is one result's claims, decoded once (on first use) and then
// only read. Nothing in it is handed out without a copy.
type claimSet struct {
	json string
	// result is what every hit of the result returns, but for Cached
	// (copied into each caller's own Verified).
	result Verified
	// key is the address of the result's claims JSON in C, handle the memo's
	// reference to the result (see claimsMemo); zero for a set not made by
	// Verify.
	key    uintptr
	handle *C.jwtwarden_verified

	once   sync.Once
	raw    map[string]json.RawMessage
	str    map[string]string // the claims whose value is a JSON string
	aud    []string
	scopes []string
	err    error
}

func newClaimSet(claimsJSON string) *claimSet {
	return &claimSet{json: claimsJSON}
}

func (s *claimSet) decoded() *claimSet {
	s.once.Do(s.decode)
	return s
}

func (s *claimSet) decode() {
	if s.err = json.Unmarshal([]byte(s.json), &s.raw); s.err != nil {
		return
	}
	s.str = make(map[string]string, len(s.raw))
	for name, raw := range s.raw {
		var str string
		if len(raw) > 0 && raw[0] == '"' && json.Unmarshal(raw, &str) == nil {
			s.str[name] = str
		}
	}
	s.aud = stringOrList(s.raw["aud"])
	// scope: space-separated (RFC 8693); scp: an array (Okta) or a
	// space-separated string (Microsoft Entra ID).
	if scope, ok := s.str["scope"]; ok {
		s.scopes = strings.Fields(scope)
	} else if scp, ok := s.str["scp"]; ok {
		s.scopes = strings.Fields(scp)
	} else {
		s.scopes = stringOrList(s.raw["scp"])
	}
}

// stringOrList reads a claim that is a string or an array of strings (aud):
// nil if absent or of another shape.
func stringOrList(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	return nil
}

// set is the decoded claims of v: the shared form when Verify made v, else
// one decoded now from ClaimsJSON.
func (v *Verified) set() *claimSet {
	if v.claims != nil && v.claims.json == v.ClaimsJSON {
		return v.claims.decoded()
	}
	return newClaimSet(v.ClaimsJSON).decoded()
}

// Subject is the sub claim ("" if absent or not a string).
func (v *Verified) Subject() string {
	return v.set().str["sub"]
}

// ID is the jti claim ("" if absent or not a string).
func (v *Verified) ID() string {
	return v.set().str["jti"]
}

// Audience is the aud claim as a list (a single string becomes one
// element); nil if absent. The slice is the caller's own.
func (v *Verified) Audience() []string {
	return slices.Clone(v.set().aud)
}

// Scopes are the token's scopes: the scope claim split at spaces, or else
// the scp claim (an array, or a space-separated string); nil if neither.
// The slice is the caller's own.
func (v *Verified) Scopes() []string {
	return slices.Clone(v.set().scopes)
}

// HasScope reports whether scope is one of Scopes, without allocating.
func (v *Verified) HasScope(scope string) bool {
	return slices.Contains(v.set().scopes, scope)
}

// Claim is the JSON text of one claim (a copy: the caller may keep or
// change it), and whether the token has it.
func (v *Verified) Claim(name string) (json.RawMessage, bool) {
	raw, ok := v.set().raw[name]
	if !ok {
		return nil, false
	}
	return slices.Clone(raw), true
}

// ClaimString is a claim whose value is a JSON string, and whether the
// token has one by that name (false for a missing claim or another type).
func (v *Verified) ClaimString(name string) (string, bool) {
	s, ok := v.set().str[name]
	return s, ok
}

// ClaimsInto decodes the verified claims into out (a pointer to a struct
// or map), like json.Unmarshal. It decodes the whole payload on every call:
// on a hot path prefer the accessors.
func (v *Verified) ClaimsInto(out any) error {
	return json.Unmarshal([]byte(v.ClaimsJSON), out)
}

// Claims decodes the verified claims into a new map. It decodes the whole
// payload on every call: on a hot path prefer the accessors (Subject,
// Audience, Scopes, Claim, ClaimString).
func (v *Verified) Claims() (map[string]any, error) {
	var claims map[string]any
	err := json.Unmarshal([]byte(v.ClaimsJSON), &claims)
	return claims, err
}

// DecodeClaims is ClaimsInto (its earlier name).
func (v *Verified) DecodeClaims(out any) error {
	return v.ClaimsInto(out)
}
