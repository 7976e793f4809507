package jwtwarden

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
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
	// ("/static/*"), matched against r.URL.Path.
	SkipPaths []string
	// SkipIf, if set, leaves a request open when it returns true.
	SkipIf func(*http.Request) bool
	// AuthenticateOptions also requires a token on OPTIONS requests (by
	// default OPTIONS, i.e. CORS preflight, passes through).
	AuthenticateOptions bool
	// Fresh skips the cache and checks the signature on every request.
	Fresh bool
	// FreshPaths skips the cache on these routes only (patterns as SkipPaths).
	FreshPaths []string
	// FreshIf, if set, skips the cache for a request when it returns true.
	FreshIf func(*http.Request) bool
}

// statusByCategory is the response status for an engine error, by its
// category: the same table as the Python middleware and
// tests/http_contract.json.
var statusByCategory = map[Category]int{
	ErrCategoryMalformed:       http.StatusUnauthorized,
	ErrCategoryVerification:    http.StatusUnauthorized,
	ErrCategoryPolicy:          http.StatusUnauthorized,
	ErrCategoryKeysUnavailable: http.StatusServiceUnavailable,
	ErrCategoryUsage:           http.StatusInternalServerError,
	ErrCategoryInternal:        http.StatusInternalServerError,
}

// retryAfter is the Retry-After header (seconds) of a 503.
const retryAfter = "5"

// Fixed messages where the engine's message could reveal server internals
// (a JWKS URL, a network error).
var serverMessages = map[int]string{
	http.StatusServiceUnavailable:  "the token issuer's keys are unavailable; retry later",
	http.StatusInternalServerError: "token verification failed on the server",
}

const missingMessage = "a bearer token is required"

// Middleware is MiddlewareWith(MiddlewareOptions{})(next).
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return v.MiddlewareWith(MiddlewareOptions{})(next)
}

// MiddlewareWith returns a middleware that verifies the request's bearer
// token (Authorization: Bearer <token>) and calls next with the *Verified in
// the request context: read it with FromContext and the accessors
// (Subject, Audience, Scopes, ClaimString...: no JSON decode on a cache hit);
// ClaimsFromContext decodes a map on every call. Otherwise it answers
// without calling next, by the HTTP contract every jwtwarden middleware
// shares (docs/http.md), with a JSON body {"error", "code", "category",
// "message"} and Cache-Control: no-store:
//
//   - no bearer token (no header, or another scheme): 401 with
//     WWW-Authenticate: Bearer realm="..." (no error code, RFC 6750 §3.1)
//   - a malformed Authorization header (Bearer and no token, two tokens, two
//     headers): 400 with error="invalid_request"
//   - a rejected token (malformed, bad signature, unknown kid, expired,
//     audience, issuer, revoked...): 401 with
//     WWW-Authenticate: Bearer realm="...", error="invalid_token", error_description="<kind>"
//   - the issuer's keys are unavailable: 503 with Retry-After (the token may
//     be fine; the client should retry rather than discard it)
//   - anything else (a closed verifier, an internal error): 500
func (v *Verifier) MiddlewareWith(opts MiddlewareOptions) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if opts.open(r) {
				next.ServeHTTP(w, r)
				return
			}
			token, why, present := parseAuthorization(r.Header.Values("Authorization"))
			switch {
			case !present:
				refuse(w, http.StatusUnauthorized, "missing_token", nil, "request", missingMessage,
					challenge(opts.Realm, "", ""))
				return
			case why != "":
				refuse(w, http.StatusBadRequest, "invalid_request", nil, "request", why,
					challenge(opts.Realm, "invalid_request", why))
				return
			}
			verified, err := v.VerifyWith(token, VerifyOptions{Issuer: opts.Issuer, Fresh: opts.fresh(r)})
			if err != nil {
				refuseError(w, err, opts.Realm)
				return
			}
			next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), verified)))
		})
	}
}

func (o *MiddlewareOptions) open(r *http.Request) bool {
	if r.Method == http.MethodOptions && !o.AuthenticateOptions {
		return true
	}
	return pathMatches(r.URL.Path, o.SkipPaths) || (o.SkipIf != nil && o.SkipIf(r))
}

func (o *MiddlewareOptions) fresh(r *http.Request) bool {
	return o.Fresh || pathMatches(r.URL.Path, o.FreshPaths) || (o.FreshIf != nil && o.FreshIf(r))
}

// pathMatches reports whether path is one of patterns: exact, or a prefix
// when the pattern ends with "*".
func pathMatches(path string, patterns []string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(path, prefix) {
				return true
			}
		} else if path == p {
			return true
		}
	}
	return false
}

// parseAuthorization reads the request's Authorization headers: present is
// false when there is no bearer credential (no header, or another scheme);
// why is non-empty when the header is malformed (RFC 6750 §3.1
// invalid_request).
func parseAuthorization(values []string) (token, why string, present bool) {
	if len(values) == 0 {
		return "", "", false
	}
	if len(values) > 1 {
		return "", "more than one Authorization header", true
	}
	fields := strings.FieldsFunc(values[0], func(r rune) bool { return r == ' ' || r == '\t' })
	switch {
	case len(fields) == 0 || !strings.EqualFold(fields[0], "bearer"):
		return "", "", false
	case len(fields) == 1:
		return "", "no token after Bearer", true
	case len(fields) > 2:
		return "", "more than one token after Bearer", true
	}
	return fields[1], "", true
}

// refuseError answers for a token the verifier refused.
func refuseError(w http.ResponseWriter, err error, realm string) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: uint32(ErrInternal), Kind: ErrInternal, Category: ErrCategoryInternal, Message: err.Error()}
	}
	status, ok := statusByCategory[e.Category]
	if !ok {
		status = http.StatusInternalServerError
	}
	code := e.Code
	if status == http.StatusUnauthorized {
		refuse(w, status, e.Kind.String(), &code, e.Category.String(), e.Message,
			challenge(realm, "invalid_token", e.Kind.String()))
		return
	}
	refuse(w, status, e.Kind.String(), &code, e.Category.String(), serverMessages[status], "")
}

// refuse writes a refusal: JSON body, no-store, the challenge if any, and
// Retry-After on a 503.
func refuse(w http.ResponseWriter, status int, kind string, code *uint32, category, message, challenge string) {
	body, _ := json.Marshal(struct {
		Error    string  `json:"error"`
		Code     *uint32 `json:"code"`
		Category string  `json:"category"`
		Message  string  `json:"message"`
	}{kind, code, category, message})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	if challenge != "" {
		h.Set("WWW-Authenticate", challenge)
	}
	if status == http.StatusServiceUnavailable {
		h.Set("Retry-After", retryAfter)
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// challenge is a WWW-Authenticate Bearer challenge (RFC 6750 §3).
func challenge(realm, code, description string) string {
	var params []string
	if realm != "" {
		params = append(params, `realm="`+quote(realm)+`"`)
	}
	if code != "" {
		params = append(params, `error="`+code+`"`)
	}
	if description != "" {
		params = append(params, `error_description="`+quote(description)+`"`)
	}
	if len(params) == 0 {
		return "Bearer"
	}
	return "Bearer " + strings.Join(params, ", ")
}

func quote(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`)
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
