package jwtwarden

// #include <stdlib.h>
// #include "cgo_helpers.h"
import "C"

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// Minter signs verification assertions at the edge (docs/trust-handoff.md
// §2): the C library's jwtwarden_minter, built from an engine
// configuration's "assertion" section (name, current and previous keys,
// lifetime_secs, opt-in hs256 per audience). Safe for concurrent use; a
// finalizer frees it, Close frees it now. Hand it to a middleware with
// MiddlewareOptions.Mint.
type Minter struct {
	// _ptr is the *C.jwtwarden_minter, nil once closed (read and swapped
	// atomically, so a second Close is harmless).
	_ptr unsafe.Pointer
}

// NewMinter creates a minter from an engine configuration (the JSON given
// to New; only its "assertion" section is read, and nothing is fetched). A
// configuration without that section, or whose key does not load, is an
// *Error of kind ErrInvalidConfig naming it.
func NewMinter(configJSON []byte) (*Minter, error) {
	ptr, n := tokenPtr(string(configJSON))
	var raw *C.jwtwarden_minter
	var cerr *C.jwtwarden_error
	rc := C.jwtwarden_minter_new(ptr, n, &raw, &cerr)
	runtime.KeepAlive(configJSON)
	if rc != C.JWTWARDEN_RESULT_OK {
		return nil, errorFrom(rc, cerr)
	}
	m := &Minter{_ptr: unsafe.Pointer(raw)}
	runtime.SetFinalizer(m, (*Minter).Close)
	return m, nil
}

// ptr is the C handle, nil once closed (or for a nil *Minter).
func (m *Minter) ptr() *C.jwtwarden_minter {
	if m == nil {
		return nil
	}
	return (*C.jwtwarden_minter)(atomic.LoadPointer(&m._ptr))
}

// Close frees the minter. Safe to call more than once. A middleware whose
// minter is closed refuses (500) every request its routes should mint for:
// it never sends one on without its assertion.
func (m *Minter) Close() error {
	if raw := atomic.SwapPointer(&m._ptr, nil); raw != nil {
		runtime.SetFinalizer(m, nil)
		C.jwtwarden_minter_free((*C.jwtwarden_minter)(raw))
	}
	return nil
}

// MintOptions make a middleware the edge: an allowed request is passed on
// carrying a verification assertion for the upstream in Header, minted by
// Minter and bound to the request's method and path (what the handler
// behind the middleware, typically an httputil.ReverseProxy, is given:
// r.Method and r.URL.EscapedPath(), the query dropped). The client's own
// copies of Header are always removed first, on every route (open ones
// included) and before any refusal, so nothing the client set reaches the
// upstream under that name. Audience is the upstream's audience on every
// protected route, Audiences by route prefix ("/api/billing": "billing";
// the longest prefix wins over Audience); a protected route with neither
// carries no assertion. Open routes and OPTIONS pass on without one.
type MintOptions struct {
	// Minter signs; required (MiddlewareWith panics without it).
	Minter *Minter
	// Header is the header the assertion goes in. Default
	// DefaultAssertionHeader. It may not be Authorization, Cookie or a
	// hop-by-hop header (MiddlewareWith panics, naming the field).
	Header string
	// Audience is the upstream's audience ("aud" of the assertion).
	Audience string
	// Audiences are audiences by route prefix.
	Audiences map[string]string
}

// header is the canonical header name the assertion goes in.
func (o *MintOptions) header() string {
	if o.Header == "" {
		return DefaultAssertionHeader
	}
	return o.Header
}

// policySection is the HTTP policy's "assertion" section.
func (o *MintOptions) policySection() any {
	return struct {
		Header    string            `json:"header"`
		Audience  string            `json:"audience,omitempty"`
		Audiences map[string]string `json:"audiences,omitempty"`
	}{o.header(), o.Audience, o.Audiences}
}
