package jwtwarden

import (
	"encoding/json"
	"time"
)

// Verified is a successful verification. It is a plain Go value: the C
// result is copied and freed before Verify returns.
type Verified struct {
	// ClaimsJSON is the verified payload, a JSON object.
	ClaimsJSON string
	// Issuer is the configured issuer the token was verified for.
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
}

// Claims decodes the verified claims into a map.
func (v *Verified) Claims() (map[string]any, error) {
	var claims map[string]any
	err := json.Unmarshal([]byte(v.ClaimsJSON), &claims)
	return claims, err
}

// DecodeClaims decodes the verified claims into out (a pointer to a struct
// or map), like json.Unmarshal.
func (v *Verified) DecodeClaims(out any) error {
	return json.Unmarshal([]byte(v.ClaimsJSON), out)
}
