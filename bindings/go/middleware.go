package jwtwarden

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

type contextKey struct{}

// Middleware verifies the request's bearer token (Authorization: Bearer
// <token>) and calls next with the *Verified in the request context
// (FromContext, ClaimsFromContext). Otherwise it answers without calling
// next:
//
//   - no bearer token: 401 with WWW-Authenticate: Bearer
//   - a rejected token (malformed, bad signature, unknown kid, expired,
//     audience, issuer, revoked...): 401 with
//     WWW-Authenticate: Bearer error="invalid_token", error_description="<kind>"
//   - the issuer's keys are unavailable: 503 (the token may be fine; the
//     client should retry rather than discard it)
//   - anything else (a closed verifier, an internal error): 500
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := BearerToken(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", "Bearer")
			http.Error(w, "missing bearer token", http.StatusUnauthorized)
			return
		}
		verified, err := v.Verify(token)
		if err != nil {
			var e *Error
			switch {
			case errors.As(err, &e) && (e.IsMalformed() || e.IsVerificationFailure() || e.IsPolicyDenial()):
				w.Header().Set("WWW-Authenticate",
					`Bearer error="invalid_token", error_description="`+e.Kind.String()+`"`)
				http.Error(w, "invalid token: "+e.Kind.String(), http.StatusUnauthorized)
			case errors.Is(err, ErrCategoryKeysUnavailable):
				http.Error(w, "token issuer keys unavailable", http.StatusServiceUnavailable)
			default:
				http.Error(w, "token verification failed", http.StatusInternalServerError)
			}
			return
		}
		next.ServeHTTP(w, r.WithContext(NewContext(r.Context(), verified)))
	})
}

// BearerToken returns the token of an "Authorization: Bearer <token>"
// header (the scheme is case-insensitive), and whether there was one.
func BearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const scheme = "bearer "
	if len(h) <= len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return "", false
	}
	token := strings.TrimSpace(h[len(scheme):])
	return token, token != ""
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

// ClaimsFromContext returns the verified claims the middleware stored in ctx.
func ClaimsFromContext(ctx context.Context) (map[string]any, bool) {
	v, ok := FromContext(ctx)
	if !ok {
		return nil, false
	}
	claims, err := v.Claims()
	return claims, err == nil
}
