package jwtwarden

// #include <stdlib.h>
// #include "cgo_helpers.h"
import "C"

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
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
	// memo holds the decoded claims of recent results (see claimsMemo).
	memo claimsMemo
}

// memoCap bounds the results a Verifier's claims memo holds; when full it
// is emptied and refills with the tokens still in use.
const memoCap = 4096

// claimsMemo maps a result's claims JSON, by the address of the C string
// the library memoizes per result (every cache hit of a token borrows the
// same one), to its decoded claims, so a hit decodes nothing. An address
// alone proves nothing (freed memory is reused), so an entry is only used
// when its copy of the JSON equals the C string byte for byte; equal JSON
// decodes to equal claims, whichever result it came from.
type claimsMemo struct {
	m sync.Map // uintptr -> *claimSet
	n atomic.Int64
}

// lookup returns the claims of o's result: the memo's entry if its bytes
// are the same, else a new entry (stored). o must not be freed yet.
func (m *claimsMemo) lookup(o *C.jw_outcome) *claimSet {
	p, n := o.claims_json, int(o.claims_json_len)
	key := uintptr(unsafe.Pointer(p))
	var now string
	if n > 0 {
		// Borrowed only for the comparison; copied before it is kept.
		now = unsafe.String((*byte)(unsafe.Pointer(p)), n)
	}
	if e, ok := m.m.Load(key); ok {
		if s := e.(*claimSet); s.json == now {
			return s
		}
	}
	s := newClaimSet(strings.Clone(now))
	// Set before the entry is shared, never changed after.
	s.issuer = C.GoString(o.issuer)
	s.alg = C.GoString(o.alg)
	if o.kid != nil {
		s.kid = C.GoString(o.kid)
	}
	if m.n.Add(1) > memoCap {
		m.m.Clear()
		m.n.Store(1)
	}
	m.m.Store(key, s)
	return s
}

// cString is the C string p as a Go string: known, if it has the same
// bytes (no allocation), else a copy.
func cString(p *C.char, known string) string {
	b := unsafe.Slice((*byte)(unsafe.Pointer(p)), len(known)+1)
	// Compared byte by byte up to the first difference, so a shorter C
	// string is never read past its NUL.
	for i := 0; i < len(known); i++ {
		if b[i] != known[i] {
			return C.GoString(p)
		}
	}
	if b[len(known)] != 0 {
		return C.GoString(p)
	}
	return known
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
	out := v.outcome(&o)
	C.jw_outcome_free(&o)
	return out, nil
}

// outcome is the Go result for a successful verification's outcome (before
// it is freed): on a cache hit, the memo's strings and decoded claims.
func (v *Verifier) outcome(o *C.jw_outcome) *Verified {
	claims := v.memo.lookup(o)
	out := &Verified{
		ClaimsJSON: claims.json,
		Issuer:     cString(o.issuer, claims.issuer),
		Alg:        cString(o.alg, claims.alg),
		Cached:     bool(o.cached),
		VerifiedAt: time.UnixMilli(int64(o.verified_at_ms)),
		ExpiresAt:  time.Unix(int64(o.expires_at), 0),
		claims:     claims,
	}
	if o.kid != nil {
		out.Kid = cString(o.kid, claims.kid)
	}
	return out
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

// AnyIssuer is the issuer scope of a revocation that covers every
// configured issuer. A jti or sub is unique only within its issuer (RFC 7519
// §4.1.2, §4.1.7), so every revocation names one issuer exactly as
// configured, or AnyIssuer.
const AnyIssuer = "*"

// Propagation says how far a revocation has reached when RevokeJTI,
// RevokeSubject or RevokeKID returns. In every case it is already in force
// for all goroutines of this process (and journaled, with state_dir).
type Propagation uint32

// The propagations (numbers from jwtwarden.h).
const (
	// PropagationLocal: no fleet feed (revocation.redis) is configured; this
	// process only.
	PropagationLocal Propagation = C.JWTWARDEN_PROPAGATION_LOCAL
	// PropagationFleet: written to the fleet's Redis and published to every
	// process.
	PropagationFleet Propagation = C.JWTWARDEN_PROPAGATION_FLEET
	// PropagationPending: a fleet feed is configured but Redis was
	// unreachable, so the revocation is NOT YET fleet-wide. It is published
	// in the background once Redis is back.
	PropagationPending Propagation = C.JWTWARDEN_PROPAGATION_PENDING
)

// String is the stable lower-case name: "local", "fleet" or "pending".
func (p Propagation) String() string {
	switch p {
	case PropagationLocal:
		return "local"
	case PropagationFleet:
		return "fleet"
	case PropagationPending:
		return "pending"
	}
	return fmt.Sprintf("Propagation(%d)", uint32(p))
}

// revoke runs one revoke_* call with the issuer as a C string and returns
// how far the revocation reached.
func (v *Verifier) revoke(issuer string, f func(raw *C.jwtwarden_verifier, iss *C.char, p *C.jwtwarden_propagation, cerr **C.jwtwarden_error) C.jwtwarden_result) (Propagation, error) {
	var p C.jwtwarden_propagation
	err := v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return withCString(issuer, func(iss *C.char) C.jwtwarden_result {
			return f(raw, iss, &p, cerr)
		})
	})
	if err != nil {
		return PropagationLocal, err
	}
	return Propagation(p), nil
}

// RevokeJTI revokes every token of issuer (as configured, or AnyIssuer)
// with this jti, in force for all goroutines when it returns. expiresAt is
// the token's exp if known (the entry is dropped after it); the zero time
// keeps it for revocation.max_token_lifetime_secs. An issuer that is not
// configured is ErrUnknownIssuer. The Propagation says how far it reached:
// PropagationPending means not yet fleet-wide. With an error, nothing was
// revoked (except ErrRevocationNotPersisted: in force here, not journaled)
// and the Propagation means nothing.
func (v *Verifier) RevokeJTI(issuer, jti string, expiresAt time.Time) (Propagation, error) {
	var exp uint64
	if !expiresAt.IsZero() && expiresAt.Unix() > 0 {
		exp = uint64(expiresAt.Unix())
	}
	return v.revoke(issuer, func(raw *C.jwtwarden_verifier, iss *C.char, p *C.jwtwarden_propagation, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return withCString(jti, func(s *C.char) C.jwtwarden_result {
			return C.jwtwarden_verifier_revoke_jti(raw, iss, s, C.uint64_t(exp), p, cerr)
		})
	})
}

// RevokeSubject revokes the tokens of issuer (as configured, or AnyIssuer)
// for subject sub issued before issuedBefore (tokens without iat
// included), in force when it returns; reports as RevokeJTI.
func (v *Verifier) RevokeSubject(issuer, sub string, issuedBefore time.Time) (Propagation, error) {
	before := uint64(0)
	if issuedBefore.Unix() > 0 {
		before = uint64(issuedBefore.Unix())
	}
	return v.revoke(issuer, func(raw *C.jwtwarden_verifier, iss *C.char, p *C.jwtwarden_propagation, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return withCString(sub, func(s *C.char) C.jwtwarden_result {
			return C.jwtwarden_verifier_revoke_subject(raw, iss, s, C.uint64_t(before), p, cerr)
		})
	})
}

// RevokeKID stops trusting key kid of issuer (as configured, or AnyIssuer)
// now and in later fetches (emergency key removal), in force when it
// returns; reports as RevokeJTI.
func (v *Verifier) RevokeKID(issuer, kid string) (Propagation, error) {
	return v.revoke(issuer, func(raw *C.jwtwarden_verifier, iss *C.char, p *C.jwtwarden_propagation, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return withCString(kid, func(k *C.char) C.jwtwarden_result {
			return C.jwtwarden_verifier_revoke_kid(raw, iss, k, p, cerr)
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

// FeedState is the state of the fleet revocation feed (revocation.redis).
type FeedState int

// Fleet revocation feed states (the C library's jwtwarden_feed_state).
const (
	// FeedNone: no fleet feed is configured.
	FeedNone FeedState = C.JWTWARDEN_FEED_STATE_NONE
	// FeedConnected: subscribed and in sync.
	FeedConnected FeedState = C.JWTWARDEN_FEED_STATE_CONNECTED
	// FeedLagging: cut off from Redis, still serving (within max_stale_secs).
	FeedLagging FeedState = C.JWTWARDEN_FEED_STATE_LAGGING
	// FeedFailedClosed: cut off for longer than max_stale_secs; every
	// verification fails with ErrRevocationsStale.
	FeedFailedClosed FeedState = C.JWTWARDEN_FEED_STATE_FAILED_CLOSED
)

// String is the state's stable name: none, connected, lagging, failed_closed.
func (s FeedState) String() string {
	switch s {
	case FeedNone:
		return "none"
	case FeedConnected:
		return "connected"
	case FeedLagging:
		return "lagging"
	case FeedFailedClosed:
		return "failed_closed"
	}
	return fmt.Sprintf("FeedState(%d)", int(s))
}

// RevocationFeedState is the state of the fleet revocation feed (FeedNone
// without revocation.redis). Its counters are in MetricsJSON
// (revocations.fleet).
func (v *Verifier) RevocationFeedState() (FeedState, error) {
	var state C.jwtwarden_feed_state
	err := v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return C.jwtwarden_verifier_revocation_feed_state(raw, &state, cerr)
	})
	return FeedState(state), err
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
