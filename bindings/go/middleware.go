package jwtwarden

// #include <stdlib.h>
// #include "cgo_helpers.h"
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"unsafe"
)

type contextKey struct{}

// MiddlewareOptions configure MiddlewareWith. The zero value is the default:
// every route needs a token, except OPTIONS requests (CORS preflight).
type MiddlewareOptions struct {
	// Issuer, if set, pins the configured issuer to verify for, instead of
	// choosing by the token's (unverified) iss claim.
	Issuer string
	// Realm is the realm of the WWW-Authenticate challenge ("" for none).
	Realm string
	// SkipPaths are routes left open (no token needed, nothing in the
	// context): exact paths ("/healthz"), or prefixes ending with "*"
	// ("/static/*"), matched case-sensitively against the normalised
	// request path (docs/http.md, "Open routes"): a path that only reaches
	// an open route through a dot segment ("/static/../admin") needs a
	// token, and one that reads as ".." to some servers ("/static/..;/x")
	// is refused (403). "/docs*" covers "/docs" and "/docs/..." (a prefix
	// ends at a "/"), not "/docsecret". Each pattern is an absolute path
	// in normal form; MiddlewareWith panics on any other.
	SkipPaths []string
	// SkipIf, if set, leaves a request open when it returns true.
	SkipIf func(*http.Request) bool
	// AuthenticateOptions also requires a token on OPTIONS requests (by
	// default OPTIONS, i.e. CORS preflight, passes through).
	AuthenticateOptions bool
	// Fresh skips the cache and checks the signature on every request.
	Fresh bool
	// FreshPaths skips the cache on these routes only (patterns as
	// SkipPaths, matched whatever the case). A path under both a SkipPaths
	// and a longer FreshPaths pattern needs a token.
	FreshPaths []string
	// FreshIf, if set, skips the cache for a request when it returns true.
	FreshIf func(*http.Request) bool
	// AssertionPaths are the routes (patterns as SkipPaths, matched
	// against the cleaned request path) that also accept an edge's
	// verification assertion in AssertionHeader instead of the client's
	// token: inherited trust (docs/trust-handoff.md). The verifier's
	// configuration names the edges (issuers of kind "assertion"). On such
	// a route a request carrying the header is decided on the assertion
	// alone, bound to the request's method and path (FromContext finds
	// nothing, InheritedFromContext the *Inherited); without the header it
	// needs a bearer token as usual. A route that is fresh (Fresh,
	// FreshPaths, FreshIf) takes an assertion only within the edge's
	// fresh_within_secs. On every other route the header is ignored: the
	// request needs a bearer token, and an assertion sent as one is refused
	// (401, unknown_issuer). Default: none.
	AssertionPaths []string
	// AssertionHeader is the request header carrying the assertion.
	// Default DefaultAssertionHeader ("X-Jwtwarden-Assertion").
	AssertionHeader string
	// Mint, if set, makes the middleware the edge: allowed requests go on
	// to next carrying an assertion minted for the upstream (MintOptions).
	Mint *MintOptions
}

// statusByCategory is the response status for an engine error, by its
// category: the table of tests/http_contract.json, which the core's HTTP
// decision applies (the contract test checks this copy against the table).
var statusByCategory = map[Category]int{
	ErrCategoryMalformed:       http.StatusUnauthorized,
	ErrCategoryVerification:    http.StatusUnauthorized,
	ErrCategoryPolicy:          http.StatusUnauthorized,
	ErrCategoryKeysUnavailable: http.StatusServiceUnavailable,
	ErrCategoryUsage:           http.StatusInternalServerError,
	ErrCategoryInternal:        http.StatusInternalServerError,
}

// retryAfter is the Retry-After header (seconds) of a 503: the policy's
// retry_after_secs default.
const retryAfter = "5"

// Middleware is MiddlewareWith(MiddlewareOptions{})(next).
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return v.MiddlewareWith(MiddlewareOptions{})(next)
}

// MiddlewareWith returns a middleware that verifies the request's bearer
// token (Authorization: Bearer <token>) and calls next with the *Verified in
// the request context: read it with FromContext and the accessors
// (Subject, Audience, Scopes, ClaimString...: no JSON decode on a cache hit);
// ClaimsFromContext decodes a map on every call. Otherwise it answers
// without calling next, by the HTTP contract every jwtwarden front end
// shares (docs/http.md), with a JSON body {"error", "code", "category",
// "message"} and Cache-Control: no-store:
//
//   - no bearer token (no header, or another scheme): 401 with
//     WWW-Authenticate: Bearer realm="..." (no error code, RFC 6750 §3.1)
//   - a malformed Authorization header (Bearer and no token, a tab instead
//     of a space, two tokens, two headers): 400 with error="invalid_request"
//   - a rejected token (malformed, bad signature, unknown kid, expired,
//     audience, issuer, revoked...): 401 with
//     WWW-Authenticate: Bearer realm="...", error="invalid_token", error_description="<kind>"
//   - the issuer's keys are unavailable: 503 with Retry-After (the token may
//     be fine; the client should retry rather than discard it)
//   - a request path that cannot be normalised safely: 403
//   - anything else (a closed verifier, an internal error): 500
//
// The answer is the core's HTTP decision (jwtwarden_http_decide, the same
// as jwtwarden serve and the C ABI): the middleware only hands it the
// request (method, the request target as the client sent it, the
// Authorization fields) and writes the decision back. It panics if a
// SkipPaths or FreshPaths pattern is not an absolute path in normal form.
func (v *Verifier) MiddlewareWith(opts MiddlewareOptions) func(http.Handler) http.Handler {
	policy, err := newHTTPPolicy(opts.policyJSON(opts.Fresh))
	if err != nil {
		panic(fmt.Sprintf("jwtwarden: MiddlewareOptions: %v", err))
	}
	fresh := policy
	if opts.FreshIf != nil && !opts.Fresh {
		if fresh, err = newHTTPPolicy(opts.policyJSON(true)); err != nil {
			panic(fmt.Sprintf("jwtwarden: MiddlewareOptions: %v", err))
		}
	}
	assertionHeader := opts.AssertionHeader
	if assertionHeader == "" {
		assertionHeader = DefaultAssertionHeader
	}
	var minter *Minter
	mintHeader := ""
	if opts.Mint != nil {
		if opts.Mint.Minter == nil {
			panic("jwtwarden: MiddlewareOptions: Mint.Minter is nil")
		}
		minter, mintHeader = opts.Mint.Minter, http.CanonicalHeaderKey(opts.Mint.header())
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if mintHeader != "" {
				// The edge: whatever the client sent under the assertion's
				// header never reaches next, on any route.
				r = r.WithContext(r.Context())
				r.Header = r.Header.Clone()
				if r.Header == nil {
					r.Header = http.Header{}
				}
				delete(r.Header, mintHeader)
				for k := range r.Header {
					if strings.EqualFold(k, mintHeader) {
						delete(r.Header, k)
					}
				}
			}
			if opts.SkipIf != nil && opts.SkipIf(r) {
				next.ServeHTTP(w, r)
				return
			}
			if len(opts.AssertionPaths) > 0 {
				if accept, fresh := opts.assertionRoute(r); accept {
					if a := r.Header.Values(assertionHeader); len(a) > 0 {
						v.serveAssertion(w, r, next, &opts, strings.Join(a, ","), fresh)
						return
					}
				}
			}
			p := policy
			if opts.FreshIf != nil && opts.FreshIf(r) {
				p = fresh
			}
			v.serveDecided(w, r, next, p, minter, mintHeader)
		})
	}
}

// A policy route (docs/c.md, "The HTTP decision").
type policyRoute struct {
	Prefix string `json:"prefix"`
	Exact  bool   `json:"exact,omitempty"`
	Open   bool   `json:"open,omitempty"`
	Issuer string `json:"issuer,omitempty"`
	Fresh  bool   `json:"fresh,omitempty"`
}

// policyJSON maps the options onto the core's HTTP policy: SkipPaths are
// open routes (first, so that they win over a fresh route of the same
// prefix), FreshPaths fresh routes, and a route "/" carries Issuer and
// Fresh to every other path. allFresh makes every route fresh (Fresh, or
// the policy used when FreshIf says so).
func (o *MiddlewareOptions) policyJSON(allFresh bool) string {
	var routes []policyRoute
	for _, p := range o.SkipPaths {
		prefix, exact := patternRoute(p)
		routes = append(routes, policyRoute{Prefix: prefix, Exact: exact, Open: true})
	}
	if !allFresh {
		for _, p := range o.FreshPaths {
			prefix, exact := patternRoute(p)
			routes = append(routes, policyRoute{Prefix: prefix, Exact: exact, Issuer: o.Issuer, Fresh: true})
		}
	}
	if o.Issuer != "" || allFresh {
		routes = append(routes, policyRoute{Prefix: "/", Issuer: o.Issuer, Fresh: allFresh})
	}
	policy := struct {
		Realm       string        `json:"realm,omitempty"`
		Routes      []policyRoute `json:"routes,omitempty"`
		OpenMethods *[]string     `json:"open_methods,omitempty"`
		Assertion   any           `json:"assertion,omitempty"`
	}{Realm: o.Realm, Routes: routes}
	if o.Mint != nil {
		policy.Assertion = o.Mint.policySection()
	}
	if o.AuthenticateOptions {
		policy.OpenMethods = &[]string{}
	}
	b, _ := json.Marshal(policy)
	return string(b)
}

// patternRoute is the route of a SkipPaths or FreshPaths pattern: a prefix
// when it ends with "*" (the prefix before it; "*" alone is "/"), else
// exactly that path.
func patternRoute(pattern string) (prefix string, exact bool) {
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		if p == "" {
			p = "/"
		}
		return p, false
	}
	return pattern, true
}

// requestTarget is the path the decision judges: r.URL.EscapedPath(), the
// path as the client spelled it (Go keeps the client's encoding in
// r.URL.RawPath and resolves no dot segment, ";" parameter or repeated
// slash in r.URL; only an encoding Go cannot keep is re-encoded, which
// decodes to the same bytes), so the core normalises what a router behind
// the middleware may later resolve. Not r.RequestURI: that is the request
// line before any handler in front of the middleware (http.StripPrefix, a
// rewrite) changed the path, so it would judge a path the handlers behind
// the middleware do not serve, and SkipPaths would stop matching under a
// StripPrefix. The query is not part of it (the decision drops it).
func requestTarget(r *http.Request) string {
	if p := r.URL.EscapedPath(); strings.HasPrefix(p, "/") {
		return p
	}
	return "/" // "*" (OPTIONS *) or an absolute-form target without a path
}

// decideMethod is the method as the decision takes it: letters only. The
// middleware's policy has no per-method routes, only open methods
// (OPTIONS), so any other method is the same to it as GET.
func decideMethod(m string) string {
	if m == "" {
		return http.MethodGet
	}
	for i := 0; i < len(m); i++ {
		if c := m[i] | 0x20; c < 'a' || c > 'z' {
			return http.MethodGet
		}
	}
	return m
}

// serveDecided asks the core's HTTP decision about r and carries it out:
// next with the verified result in the context, next alone (an open route
// or method), or the refusal as the decision wrote it. With a minter (the
// edge), an allowed request goes on with the decision's assertion in
// mintHeader (r's Header is the middleware's own copy).
func (v *Verifier) serveDecided(w http.ResponseWriter, r *http.Request, next http.Handler, policy *httpPolicy,
	minter *Minter, mintHeader string) {
	raw, err := v.ptr()
	if err != nil {
		refuseError(w, err)
		return
	}
	method, mlen := tokenPtr(decideMethod(r.Method))
	target, tlen := tokenPtr(requestTarget(r))
	auth := r.Header["Authorization"]
	var a0, a1 *C.char
	var l0, l1 C.size_t
	if len(auth) > 0 {
		a0, l0 = tokenPtr(auth[0])
	}
	if len(auth) > 1 {
		a1, l1 = tokenPtr(auth[1])
	}
	memo := &v.memo
	for {
		var keys *C.uintptr_t
		var mask C.size_t
		if memo != nil {
			keys = (*C.uintptr_t)(unsafe.Pointer(&memo.keys[0]))
			mask = C.size_t(memo.mask)
		}
		// Go memory (the strings' bytes, the memo's keys) passed for the
		// call's duration only; none of it holds Go pointers.
		d := C.jw_http_decide(policy.ptr(), raw, minter.ptr(), method, mlen, target, tlen, a0, l0, a1, l1,
			C.size_t(len(auth)), keys, mask)
		runtime.KeepAlive(v)
		runtime.KeepAlive(policy)
		runtime.KeepAlive(minter)
		runtime.KeepAlive(r)
		if d.assertion != nil {
			a := C.GoStringN(d.assertion, C.int(d.assertion_len))
			C.free(unsafe.Pointer(d.assertion))
			r.Header[mintHeader] = []string{a}
		}
		if d.rc != C.JWTWARDEN_RESULT_OK {
			refuseError(w, errorFrom(d.rc, d.error))
			return
		}
		if !bool(d.allowed) {
			writeRefusal(w, d.decision)
			return
		}
		if !bool(d.has_verified) {
			next.ServeHTTP(w, r) // an open route or method
			return
		}
		if verified := v.fromOutcome(&d.verified); verified != nil {
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), verified)))
			return
		}
		memo = nil // the memo's entry was replaced meanwhile: decide again without it
	}
}

// writeRefusal writes a refused decision (status, headers, JSON body) and
// frees it.
func writeRefusal(w http.ResponseWriter, d *C.jwtwarden_http_decision) {
	defer C.jwtwarden_http_decision_free(d)
	h := w.Header()
	var n C.size_t
	for i := C.size_t(0); i < C.jwtwarden_http_decision_header_count(d); i++ {
		name := C.jwtwarden_http_decision_header_name(d, i, &n)
		key := C.GoStringN(name, C.int(n))
		value := C.jwtwarden_http_decision_header_value(d, i, &n)
		h.Set(key, C.GoStringN(value, C.int(n)))
	}
	body := C.jwtwarden_http_decision_body(d, &n)
	b := C.GoBytes(unsafe.Pointer(body), C.int(n))
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(int(C.jwtwarden_http_decision_status(d)))
	_, _ = w.Write(b)
}

// refuseError answers when there is no decision to write: the verifier is
// closed (or the call failed), so nothing could be verified. 500, as the
// contract's "usage" and "internal" rows, with the decision's fixed text.
func refuseError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: uint32(ErrInternal), Kind: ErrInternal, Category: ErrCategoryInternal}
	}
	code := e.Code
	body, _ := json.Marshal(struct {
		Error    string  `json:"error"`
		Code     *uint32 `json:"code"`
		Category string  `json:"category"`
		Message  string  `json:"message"`
	}{e.Kind.String(), &code, e.Category.String(), "token verification failed on the server"})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write(body)
}

// parseAuthorization reads the request's Authorization headers for
// BearerToken, by the rules of the core's decision (RFC 6750 §2.1:
// "Bearer", any case, then one or more spaces, then exactly one token):
// present is false when there is no bearer credential (no header, or
// another scheme); why is non-empty when the header is malformed.
func parseAuthorization(values []string) (token, why string, present bool) {
	if len(values) == 0 {
		return "", "", false
	}
	if len(values) > 1 {
		return "", "more than one Authorization header", true
	}
	v := strings.Trim(values[0], " \t")
	if len(v) < 6 || !strings.EqualFold(v[:6], "bearer") {
		return "", "", false
	}
	switch {
	case len(v) == 6:
		return "", "no token after Bearer", true
	case v[6] != ' ' && (v[6] < 0x20 || v[6] == 0x7f || v[6] == '\t'):
		return "", "Bearer must be followed by a space", true
	case v[6] != ' ':
		return "", "", false // another scheme ("Bearerx")
	}
	token = strings.TrimLeft(v[6:], " ")
	if strings.ContainsAny(token, " \t\n\r\v\f,") {
		return "", "more than one token after Bearer", true
	}
	return token, "", true
}

// BearerToken returns the token of the request's "Authorization: Bearer
// <token>" header (the scheme is case-insensitive), and whether there was
// exactly one well-formed one.
func BearerToken(r *http.Request) (string, bool) {
	token, why, present := parseAuthorization(r.Header.Values("Authorization"))
	return token, present && why == ""
}

// NewContext returns a copy of ctx carrying v.
func NewContext(ctx context.Context, v *Verified) context.Context {
	return context.WithValue(ctx, contextKey{}, v)
}

// FromContext returns the *Verified the middleware stored in ctx.
func FromContext(ctx context.Context) (*Verified, bool) {
	v, ok := ctx.Value(contextKey{}).(*Verified)
	return v, ok && v != nil
}

// ClaimsFromContext returns the verified claims the middleware stored in ctx,
// decoded into a new map on each call. FromContext and the *Verified's
// accessors are the fast path.
func ClaimsFromContext(ctx context.Context) (map[string]any, bool) {
	v, ok := FromContext(ctx)
	if !ok {
		return nil, false
	}
	claims, err := v.Claims()
	return claims, err == nil
}
