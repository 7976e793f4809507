// Package jwtwarden verifies JWTs against issuers' JWKS endpoints, fast,
// without turning a cached "valid" into an allowlist. It wraps the jwtwarden
// C library (a Rust core) with cgo.
//
//	v, err := jwtwarden.New(`{"issuers": [{"issuer": "https://idp.example.com",
//	    "jwks_uri": "https://idp.example.com/.well-known/jwks.json", "audiences": ["orders-api"]}]}`)
//	if err != nil { ... }
//	defer v.Close()
//	verified, err := v.Verify(token)
//	switch {
//	case err == nil:
//		// verified.Subject(), verified.Audience(), verified.Scopes(),
//		// verified.ClaimString("tenant"): no JSON decode on a cache hit;
//		// verified.ClaimsJSON, verified.Cached, verified.VerifiedAt
//	case errors.Is(err, jwtwarden.ErrExpired):
//	case errors.Is(err, jwtwarden.ErrCategoryKeysUnavailable):
//	}
//
// Error codes are the same numbers in Rust, C, Python and Go. The package
// links the installed C library, found with pkg-config (jwtwarden-static, or
// jwtwarden with -tags jwtwarden_shared); install it first with
// `make -C ffi install PREFIX=...` and point PKG_CONFIG_PATH at
// PREFIX/lib/pkgconfig. In a checkout, -tags jwtwarden_checkout links
// target/release/libjwtwarden.a instead.
package jwtwarden
