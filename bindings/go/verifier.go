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
	// issuers holds VerifyOptions.Issuer values as C strings.
	issuers issuerStrings
}

// issuerStrings keeps the first few issuers passed to VerifyWith as C
// strings for the verifier's life, so a pinned issuer costs no C
// allocation per call (others get one per call). Freed by Close.
type issuerStrings struct {
	slots [8]atomic.Pointer[issuerString]
	mu    sync.Mutex
}

type issuerString struct {
	s string
	c *C.char
}

// get is issuer as a C string owned by the verifier, or nil when all the
// slots hold others.
func (is *issuerStrings) get(issuer string) *C.char {
	for i := range is.slots {
		e := is.slots[i].Load()
		if e == nil {
			break
		}
		if e.s == issuer {
			return e.c
		}
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	for i := range is.slots {
		e := is.slots[i].Load()
		if e == nil {
			e = &issuerString{s: strings.Clone(issuer), c: C.CString(issuer)}
			is.slots[i].Store(e)
			return e.c
		}
		if e.s == issuer {
			return e.c
		}
	}
	return nil
}

// release frees the C strings (Close).
func (is *issuerStrings) release() {
	is.mu.Lock()
	defer is.mu.Unlock()
	for i := range is.slots {
		if e := is.slots[i].Swap(nil); e != nil {
			C.free(unsafe.Pointer(e.c))
		}
	}
}

// memoSlots is the size of a Verifier's claims memo (a power of two, at
// most 4096: jw_memo_slot picks from 12 bits).
const memoSlots = 4096

// memoSlot is the memo slot of a result whose claims JSON is at address key
// (jw_memo_slot, for tests).
func memoSlot(key uintptr) int {
	return int(C.jw_memo_slot(C.uintptr_t(key), C.size_t(memoSlots-1)))
}

// claimsMemo maps results to their claims decoded in Go, so a cache hit
// copies and decodes nothing. A result is known by the address of its
// claims JSON, a C string the library keeps per result and shares with
// every cache hit of it. An address alone proves nothing once the result
// is freed (the memory is reused), so each entry holds its own reference to
// the result: while an entry is in the memo its address cannot be reused,
// and a result at that address is that result.
//
// The memo is direct-mapped: slot jw_memo_slot(address) holds at most one
// entry; a new result replaces the slot's entry, whose reference is then
// released. keys mirrors the slots' addresses in memory that holds no Go
// pointers, so jw_verify (C) can read it during the call and release a hit's
// handle at once, in the same cgo call. keys is only a hint: the entry in
// sets decides (verifyWith retries without the memo when they disagree).
// Holding references keeps at most memoSlots results alive beyond the
// verifier's cache; trust is never taken from the memo, every Verify asks
// the library.
type claimsMemo struct {
	keys [memoSlots]uintptr // read by C with __atomic_load_n
	sets [memoSlots]atomic.Pointer[claimSet]
	mu   sync.Mutex // serializes installs and release
	// mask picks the slot (memoSlots-1; tests make it 0: every result in
	// one slot, so each new one evicts the last).
	mask uintptr
}

// install puts the result of o (a full outcome, whose handle it takes) in
// its slot and returns its claims. o.verified is owned by the memo after.
func (m *claimsMemo) install(o *C.jw_outcome) *claimSet {
	n := int(o.claims_json_len)
	var claims string
	if n > 0 {
		claims = C.GoStringN(o.claims_json, C.int(n))
	}
	s := newClaimSet(claims)
	s.result = Verified{
		ClaimsJSON: claims,
		Issuer:     C.GoString(o.issuer),
		Alg:        C.GoString(o.alg),
		VerifiedAt: time.UnixMilli(int64(o.verified_at_ms)),
		ExpiresAt:  time.Unix(int64(o.expires_at), 0),
		claims:     s,
	}
	if o.kid != nil {
		s.result.Kid = C.GoString(o.kid)
	}
	s.key = uintptr(unsafe.Pointer(o.claims_json))
	s.handle = o.verified
	slot := int(o.memo_slot)
	m.mu.Lock()
	old := m.sets[slot].Swap(s)
	atomic.StoreUintptr(&m.keys[slot], s.key)
	m.mu.Unlock()
	// Released only after the slot stopped naming it: from here the address
	// may be reused, and no entry says it is old's.
	if old != nil {
		C.jwtwarden_verified_free(old.handle)
	}
	return s
}

// release drops every entry and its reference (Close).
func (m *claimsMemo) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.sets {
		atomic.StoreUintptr(&m.keys[i], 0)
		if old := m.sets[i].Swap(nil); old != nil {
			C.jwtwarden_verified_free(old.handle)
		}
	}
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
	v.memo.mask = memoSlots - 1
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
		v.memo.release()
		C.jwtwarden_verifier_free((*C.jwtwarden_verifier)(raw))
		v.issuers.release()
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
//
// Verify is small enough for the compiler to inline: where the caller keeps
// the *Verified to itself (reads it and drops it, as a handler does), the
// result lives on the caller's stack and a cache hit allocates nothing.
func (v *Verifier) Verify(token string) (*Verified, error) {
	return v.verifyInto(token, VerifyOptions{}, new(Verified))
}

// VerifyWith verifies a token with options. Like Verify, it is inlined, so
// a result the caller keeps to itself costs no allocation.
func (v *Verifier) VerifyWith(token string, opts VerifyOptions) (*Verified, error) {
	return v.verifyInto(token, opts, new(Verified))
}

// verifyInto verifies token and, on success, overwrites *out with the
// result and returns out (nil and the error otherwise, *out untouched). It
// keeps no reference to out, so out may live on the caller's stack (see
// Verify).
func (v *Verifier) verifyInto(token string, opts VerifyOptions, out *Verified) (*Verified, error) {
	raw, err := v.ptr()
	if err != nil {
		return nil, err
	}
	var issuer *C.char
	if opts.Issuer != "" {
		// A NUL inside would cut the issuer short in C, naming another.
		if strings.IndexByte(opts.Issuer, 0) >= 0 {
			return nil, newError(uint32(ErrInvalidArgument), "the issuer contains a NUL byte")
		}
		if issuer = v.issuers.get(opts.Issuer); issuer == nil {
			issuer = C.CString(opts.Issuer)
			defer C.free(unsafe.Pointer(issuer))
		}
	}
	memo := &v.memo
	for {
		o := verifyOnce(raw, token, issuer, opts.Fresh, memo)
		runtime.KeepAlive(v)
		if o.rc != C.JWTWARDEN_RESULT_OK {
			return nil, errorFrom(o.rc, o.error)
		}
		if v.fill(&o, out) {
			return out, nil
		}
		// A concurrent install replaced the memo's entry: ask again,
		// without the memo.
		memo = nil
	}
}

// fromOutcome is fill into a new *Verified (the middleware's result, which
// goes into the request's context), or nil as fill says false.
func (v *Verifier) fromOutcome(o *C.jw_outcome) *Verified {
	r := new(Verified)
	if !v.fill(o, r) {
		return nil
	}
	return r
}

// fill writes a successful outcome into *out, taking its handle (the memo
// owns it), and says true. false (and *out untouched) when o is a memo hit
// whose entry another result replaced meanwhile: the caller asks again
// without the memo.
func (v *Verifier) fill(o *C.jw_outcome, out *Verified) bool {
	var claims *claimSet
	if o.memo_hit {
		// The handle is released: only the memo's entry may be used, and
		// only if it is this result's.
		claims = v.memo.sets[o.memo_slot].Load()
		if claims == nil || claims.key != uintptr(unsafe.Pointer(o.claims_json)) {
			return false
		}
	} else {
		claims = v.memo.install(o)
	}
	*out = claims.result
	out.Cached = bool(o.cached)
	return true
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

// AddIssuer adds an issuer or an issuer template while the verifier is in
// use. entryJSON is one JSON object, exactly as one entry of the
// configuration's "issuers" (or, when it has "tenant_pattern", of
// "issuer_templates"). It is validated as New validates (an *Error of kind
// ErrInvalidConfig naming the field; a duplicate issuer is refused), and a
// remote issuer's keys are fetched before AddIssuer returns. The other
// issuers keep their keys, cached results and revocations; revocations
// still held for this issuer (removed earlier) are honoured.
func (v *Verifier) AddIssuer(entryJSON string) error {
	return v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		ptr, n := tokenPtr(entryJSON)
		return C.jwtwarden_verifier_add_issuer(raw, ptr, n, cerr)
	})
}

// RemoveIssuer removes the issuer or issuer template whose "issuer" string
// is issuer (as configured). When it returns, no verification accepts the
// issuer's tokens, cached results included: it waits for the verifications
// already in progress. Its revocations stay held until they expire.
// ErrUnknownIssuer if it is not configured; ErrInvalidConfig for the last
// one.
func (v *Verifier) RemoveIssuer(issuer string) error {
	return v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		return withCString(issuer, func(iss *C.char) C.jwtwarden_result {
			return C.jwtwarden_verifier_remove_issuer(raw, iss, cerr)
		})
	})
}

// Reload replaces the issuers and issuer templates with those of a whole
// JSON configuration (the format of New). Unchanged issuers keep their
// keys, cached results and revocations; changed ones are rebuilt; removed
// ones are removed as by RemoveIssuer. Every other field must equal the
// verifier's (ErrInvalidConfig naming the first that differs: build a new
// verifier for those). On an error nothing changes.
func (v *Verifier) Reload(configJSON string) error {
	return v.call(func(raw *C.jwtwarden_verifier, cerr **C.jwtwarden_error) C.jwtwarden_result {
		ptr, n := tokenPtr(configJSON)
		return C.jwtwarden_verifier_reload(raw, ptr, n, cerr)
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
