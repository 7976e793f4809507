package jwtwarden

// #include <stdlib.h>
// #include "cgo_helpers.h"
import "C"

import (
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"
)

// Verifier verifies JWTs for the configured issuers. It is safe for
// concurrent use by any number of goroutines. Keys are kept fresh by a
// background thread that Close stops; a finalizer closes a Verifier that
// was not closed, but call Close when done.
type Verifier struct {
	// _ptr is the *C.jwtwarden_verifier, nil once closed (read and swapped
	// atomically, so a second Close is harmless).
	_ptr unsafe.Pointer
}

// VerifyOptions are per-call options for VerifyWith.
type VerifyOptions struct {
	// Issuer, if set, is the configured issuer to verify for, instead of
	// choosing by the token's (unverified) iss claim.
	Issuer string
	// Fresh skips the cache and checks the signature now (high-risk paths).
	Fresh bool
}

// Health is the state of one issuer's keys.
type Health uint32

// The health states.
const (
	// HealthFresh: keys within their TTL (or a static keyset).
	HealthFresh Health = C.JWTWARDEN_HEALTH_FRESH
	// HealthStale: past the TTL with refreshes failing; serving the last good keys.
	HealthStale Health = C.JWTWARDEN_HEALTH_STALE
	// HealthFailedClosed: past max_stale, or never loaded; every token is rejected.
	HealthFailedClosed Health = C.JWTWARDEN_HEALTH_FAILED_CLOSED
)

// String is the stable name ("fresh", "stale", "failed_closed").
func (h Health) String() string {
	switch h {
	case HealthFresh:
		return "fresh"
	case HealthStale:
		return "stale"
	case HealthFailedClosed:
		return "failed_closed"
	}
	return "unknown"
}

// New builds a verifier from the JSON configuration shared by every front
// end. It fetches each remote issuer's keys before returning (each bounded
// by http.timeout_ms); an unreachable issuer does not fail New, its tokens
// are rejected with ErrKeysUnavailable until a fetch succeeds. An invalid
// configuration returns an *Error of kind ErrInvalidConfig naming the field.
func New(configJSON string) (*Verifier, error) {
	ptr, n := tokenPtr(configJSON)
	var raw *C.jwtwarden_verifier
	var cerr *C.jwtwarden_error
	if rc := C.jwtwarden_verifier_new(ptr, n, &raw, &cerr); rc != C.JWTWARDEN_RESULT_OK {
		return nil, errorFrom(rc, cerr)
	}
	v := &Verifier{_ptr: unsafe.Pointer(raw)}
	runtime.SetFinalizer(v, (*Verifier).Close)
	return v, nil
}

// Close stops the background refresher and frees the verifier. It is safe
// to call more than once; later calls do nothing. It must not run while
// another goroutine is still using the verifier; calls made after Close
// return an *Error of kind ErrInvalidArgument ("the verifier is closed"),
// as in Python.
func (v *Verifier) Close() error {
	if raw := atomic.SwapPointer(&v._ptr, nil); raw != nil {
		runtime.SetFinalizer(v, nil)
		C.jwtwarden_verifier_free((*C.jwtwarden_verifier)(raw))
	}
	return nil
}

func (v *Verifier) ptr() (*C.jwtwarden_verifier, error) {
	raw := (*C.jwtwarden_verifier)(atomic.LoadPointer(&v._ptr))
	if raw == nil {
		// The same kind Python raises for a closed verifier: a usage
		// error, not a NULL pointer (the pointer is ours, not the caller's).
		return nil, newError(uint32(ErrInvalidArgument), "the verifier is closed")
	}
	return raw, nil
}

// Verify verifies a token, choosing the issuer by its iss claim. On
// rejection the error is an *Error; test it with errors.Is(err,
// jwtwarden.ErrExpired), errors.Is(err, jwtwarden.ErrCategoryPolicy), ...
func (v *Verifier) Verify(token string) (*Verified, error) {
	return v.VerifyWith(token, VerifyOptions{})
}

// VerifyWith verifies a token with options.
func (v *Verifier) VerifyWith(token string, opts VerifyOptions) (*Verified, error) {
	raw, err := v.ptr()
	if err != nil {
		return nil, err
	}
	var issuer *C.char
	if opts.Issuer != "" {
		issuer = C.CString(opts.Issuer)
		defer C.free(unsafe.Pointer(issuer))
	}
	tok, n := tokenPtr(token)
	var o C.jw_outcome
	rc := C.jw_verify(raw, tok, n, issuer, C.bool(opts.Fresh), &o)
	runtime.KeepAlive(token)
	runtime.KeepAlive(v)
	if rc != C.JWTWARDEN_RESULT_OK {
		return nil, errorFrom(rc, o.error)
	}
	out := &Verified{
		ClaimsJSON: C.GoString(o.claims_json),
		Issuer:     C.GoString(o.issuer),
		Alg:        C.GoString(o.alg),
		Cached:     bool(o.cached),
		VerifiedAt: time.UnixMilli(int64(o.verified_at_ms)),
		ExpiresAt:  time.Unix(int64(o.expires_at), 0),
	}
	if o.kid != nil {
		out.Kid = C.GoString(o.kid)
	}
	C.jw_outcome_free(&o)
	return out, nil
}

// call runs a fallible C function with the verifier's handle and turns its
// result into an error.
func (v *Verifier) call(f func(*C.jwtwarden_verifier, **C.jwtwarden_error) C.jwtwarden_result) error {
	raw, err := v.ptr()
	if err != nil {
		return err
	}
	var cerr *C.jwtwarden_error
	rc := f(raw, &cerr)
	runtime.KeepAlive(v)
	if rc != C.JWTWARDEN_RESULT_OK {
		return errorFrom(rc, cerr)
	}
	return nil
}

// withCString passes s as a NUL-terminated C string for the duration of f.
func withCString(s string, f func(*C.char) C.jwtwarden_result) C.jwtwarden_result {
	cs := C.CString(s)
	defer C.free(unsafe.Pointer(cs))
	return f(cs)
}

// RevokeJTI revokes every token with this jti, effective for all goroutines
// when it returns. expiresAt is the token's exp if known (the entry is
// dropped after it); the zero time keeps it for
// revocation.max_token_lifetime_secs.
func (v *Verifier) RevokeJTI(jti string, expiresAt time.Time) error {
	var exp uint64
	if !expiresAt.IsZero() && expiresAt.Unix() > 0 {
		exp = uint64(expiresAt.Unix())
	}
	return v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return withCString(jti, func(s *C.char) C.jwtwarden_result {
			return C.jwtwarden_verifier_revoke_jti(raw, s, C.uint64_t(exp), cerr)
		})
	})
}

// RevokeSubject revokes the tokens of subject sub issued before
// issuedBefore (tokens without iat included), effective when it returns.
func (v *Verifier) RevokeSubject(sub string, issuedBefore time.Time) error {
	before := uint64(0)
	if issuedBefore.Unix() > 0 {
		before = uint64(issuedBefore.Unix())
	}
	return v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return withCString(sub, func(s *C.char) C.jwtwarden_result {
			return C.jwtwarden_verifier_revoke_subject(raw, s, C.uint64_t(before), cerr)
		})
	})
}

// RevokeKID stops trusting key kid of the configured issuer now (emergency
// key removal), effective when it returns.
func (v *Verifier) RevokeKID(issuer, kid string) error {
	return v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return withCString(issuer, func(iss *C.char) C.jwtwarden_result {
			return withCString(kid, func(k *C.char) C.jwtwarden_result {
				return C.jwtwarden_verifier_revoke_kid(raw, iss, k, cerr)
			})
		})
	})
}

// BumpPolicyVersion invalidates every cached result and returns the new
// policy version.
func (v *Verifier) BumpPolicyVersion() (uint64, error) {
	var version C.uint64_t
	err := v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return C.jwtwarden_verifier_bump_policy_version(raw, &version, cerr)
	})
	return uint64(version), err
}

// RefreshIssuer fetches the configured issuer's keys now (coalesced with a
// fetch in flight). ErrKeysUnavailable if the fetch failed; the last good
// keys stay in use.
func (v *Verifier) RefreshIssuer(issuer string) error {
	return v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return withCString(issuer, func(iss *C.char) C.jwtwarden_result {
			return C.jwtwarden_verifier_refresh_issuer(raw, iss, cerr)
		})
	})
}

// IssuerHealth is the health of the configured issuer's keys.
func (v *Verifier) IssuerHealth(issuer string) (Health, error) {
	var health C.jwtwarden_health
	err := v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return withCString(issuer, func(iss *C.char) C.jwtwarden_result {
			return C.jwtwarden_verifier_issuer_health(raw, iss, &health, cerr)
		})
	})
	return Health(health), err
}

// MetricsJSON is a snapshot of every metric as a JSON object.
func (v *Verifier) MetricsJSON() (string, error) {
	var out *C.char
	err := v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return C.jwtwarden_verifier_metrics_json(raw, &out, cerr)
	})
	return takeString(out), err
}

// Prometheus is every metric in the Prometheus text exposition format.
func (v *Verifier) Prometheus() (string, error) {
	var out *C.char
	err := v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return C.jwtwarden_verifier_prometheus(raw, &out, cerr)
	})
	return takeString(out), err
}

func takeString(s *C.char) string {
	if s == nil {
		return ""
	}
	defer C.jwtwarden_string_free(s)
	return C.GoString(s)
}
