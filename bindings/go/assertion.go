package jwtwarden

// #include <stdlib.h>
// #include "cgo_helpers.h"
import "C"

import (
	"context"
	"encoding/json"
	"net/http"
	"path"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Inherited is a verified verification assertion: trust inherited from an
// edge (jwtwarden serve, the nginx or Apache module) that verified the
// client's token and minted the assertion for this request. It is a plain
// Go value; see docs/trust-handoff.md for the contract.
type Inherited struct {
	// Edge is the edge that minted the assertion (its iss, an issuer of
	// kind "assertion" in the configuration).
	Edge string
	// VerifiedAt is when the edge verified the original token (seconds).
	VerifiedAt time.Time
	// Cached is whether the edge's result came from its cache.
	Cached bool
	// Fresh is whether the edge's route demanded a fresh verification.
	Fresh bool
	// OriginalJSON is the original token's claims as the edge saw them (iss,
	// sub, aud, scope, and jti or tjh, a hash of the token), a JSON object.
	OriginalJSON string
	// ClaimsJSON is every claim of the assertion itself, a JSON object.
	ClaimsJSON string
}

// IsInherited is always true: this trust was inherited, not established
// here. A policy engine handed either a *Verified or an *Inherited can ask.
func (i *Inherited) IsInherited() bool { return true }

// Original decodes OriginalJSON.
func (i *Inherited) Original() (map[string]any, error) {
	var m map[string]any
	err := json.Unmarshal([]byte(i.OriginalJSON), &m)
	return m, err
}

// Subject is the original token's sub ("" if it had none).
func (i *Inherited) Subject() string {
	var o struct {
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal([]byte(i.OriginalJSON), &o)
	return o.Sub
}

// VerifyAssertion verifies a verification assertion minted by one of the
// edges the configuration names (issuers of kind "assertion") for the
// request this service received: method (exact, "GET") and path (the
// request target; the query is dropped and the path normalised as the edge
// normalised it). fresh: this route demands a fresh verification, which
// inherited trust meets only within the edge's fresh_within_secs. The
// errors are the engine's, as for Verify: ErrUnknownIssuer (not from a
// configured edge, or an ordinary token), ErrInvalidAudience (bound to
// another method, path or service), ErrExpired, ErrInvalidSignature,
// ErrTokenLifetimeExceeded (not fresh enough), ErrRevoked (replayed: its
// jti was used, in this process or, with revocation.redis, anywhere in the
// fleet), ErrRevocationsStale (the fleet's replay window could not answer).
// Verify never accepts an assertion, nor VerifyAssertion an ordinary token.
func (v *Verifier) VerifyAssertion(assertion, method, path string, fresh bool) (*Inherited, error) {
	raw, err := v.ptr()
	if err != nil {
		return nil, err
	}
	if strings.IndexByte(method, 0) >= 0 || strings.IndexByte(path, 0) >= 0 {
		return nil, newError(uint32(ErrInvalidArgument), "the method or path contains a NUL byte")
	}
	cm, cp := C.CString(method), C.CString(path)
	defer C.free(unsafe.Pointer(cm))
	defer C.free(unsafe.Pointer(cp))
	a, alen := tokenPtr(assertion)
	var out *C.jwtwarden_inherited
	var cerr *C.jwtwarden_error
	rc := C.jwtwarden_verifier_verify_assertion(raw, a, alen, cm, cp, C.bool(fresh), &out, &cerr)
	runtime.KeepAlive(v)
	runtime.KeepAlive(assertion)
	if rc != C.JWTWARDEN_RESULT_OK {
		return nil, errorFrom(rc, cerr)
	}
	defer C.jwtwarden_inherited_free(out)
	return &Inherited{
		Edge:         C.GoString(C.jwtwarden_inherited_edge(out)),
		VerifiedAt:   time.Unix(int64(C.jwtwarden_inherited_verified_at(out)), 0),
		Cached:       bool(C.jwtwarden_inherited_cached(out)),
		Fresh:        bool(C.jwtwarden_inherited_fresh(out)),
		OriginalJSON: C.GoString(C.jwtwarden_inherited_original_json(out)),
		ClaimsJSON:   C.GoString(C.jwtwarden_inherited_claims_json(out)),
	}, nil
}

type inheritedKey struct{}

// NewInheritedContext returns a copy of ctx carrying i.
func NewInheritedContext(ctx context.Context, i *Inherited) context.Context {
	return context.WithValue(ctx, inheritedKey{}, i)
}

// InheritedFromContext returns the *Inherited the middleware stored in ctx
// when the request was let in on an edge's assertion (then FromContext
// finds nothing: no token was verified here).
func InheritedFromContext(ctx context.Context) (*Inherited, bool) {
	i, ok := ctx.Value(inheritedKey{}).(*Inherited)
	return i, ok && i != nil
}

// DefaultAssertionHeader is the request header the edge puts its assertion
// in unless configured otherwise (docs/trust-handoff.md).
const DefaultAssertionHeader = "X-Jwtwarden-Assertion"

// matchPattern says whether the cleaned path p is under pattern (as
// SkipPaths: exact, or a prefix ending with "*" that ends at a "/").
func matchPattern(pattern, p string, fold bool) bool {
	eq := func(a, b string) bool {
		if fold {
			return strings.EqualFold(a, b)
		}
		return a == b
	}
	prefix, ok := strings.CutSuffix(pattern, "*")
	if !ok {
		return eq(pattern, p)
	}
	if prefix == "" || prefix == "/" {
		return true
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if len(p) < len(prefix) || !eq(p[:len(prefix)], prefix) {
		return false
	}
	return len(p) == len(prefix) || p[len(prefix)] == '/'
}

// assertionRoute says whether r is on a route that accepts assertions, and
// whether that route demands fresh.
func (o *MiddlewareOptions) assertionRoute(r *http.Request) (accept, fresh bool) {
	p := path.Clean("/" + r.URL.Path)
	for _, pat := range o.AssertionPaths {
		if matchPattern(pat, p, false) {
			accept = true
			break
		}
	}
	if !accept {
		return false, false
	}
	fresh = o.Fresh || (o.FreshIf != nil && o.FreshIf(r))
	for _, pat := range o.FreshPaths {
		if matchPattern(pat, p, true) {
			fresh = true
		}
	}
	return true, fresh
}

// wireTarget is the request target as this server received it (the
// request line), which is what the edge forwarded and bound its assertion
// to: not the path a handler in front of the middleware (http.StripPrefix)
// left, which routes are matched on. requestTarget when there is no
// request line (a request made in-process).
func wireTarget(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	return requestTarget(r)
}

// serveAssertion lets r in on the assertion in its header, or refuses it
// by the HTTP contract (401 with a Bearer challenge naming the kind, 503
// with Retry-After when the replay window or keys cannot answer).
func (v *Verifier) serveAssertion(w http.ResponseWriter, r *http.Request, next http.Handler, opts *MiddlewareOptions, assertion string, fresh bool) {
	inh, err := v.VerifyAssertion(assertion, r.Method, wireTarget(r), fresh)
	if err == nil {
		next.ServeHTTP(w, r.WithContext(NewInheritedContext(r.Context(), inh)))
		return
	}
	e, ok := err.(*Error)
	if !ok {
		refuseError(w, err)
		return
	}
	status, found := statusByCategory[e.Category]
	if !found {
		status = http.StatusInternalServerError
	}
	h := w.Header()
	switch status {
	case http.StatusUnauthorized:
		challenge := "Bearer "
		if opts.Realm != "" {
			challenge += "realm=" + strconv.Quote(opts.Realm) + ", "
		}
		h.Set("WWW-Authenticate", challenge+`error="invalid_token", error_description="`+e.Kind.String()+`"`)
	case http.StatusServiceUnavailable:
		h.Set("Retry-After", retryAfter)
	}
	code := e.Code
	body, _ := json.Marshal(struct {
		Error    string  `json:"error"`
		Code     *uint32 `json:"code"`
		Category string  `json:"category"`
		Message  string  `json:"message"`
	}{e.Kind.String(), &code, e.Category.String(), "verification assertion refused"})
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
