package jwtwarden

// #include <stdlib.h>
// #include "cgo_helpers.h"
import "C"

import (
	"runtime"
	"sync/atomic"
	"unsafe"
)

// httpPolicy is the C library's HTTP policy (jwtwarden_http_policy): the
// realm, route rules and open methods of the core's HTTP decision
// (docs/http.md), built from a middleware's options. Immutable and safe for
// concurrent use; a finalizer frees it, Close frees it now.
type httpPolicy struct {
	// _ptr is the *C.jwtwarden_http_policy, nil once closed (read and
	// swapped atomically, so a second Close is harmless).
	_ptr unsafe.Pointer
}

// newHTTPPolicy creates a policy from its JSON (docs/c.md, "The HTTP
// decision"); an invalid one is an *Error of kind ErrInvalidConfig naming
// the field.
func newHTTPPolicy(policyJSON string) (*httpPolicy, error) {
	ptr, n := tokenPtr(policyJSON)
	var raw *C.jwtwarden_http_policy
	var cerr *C.jwtwarden_error
	if rc := C.jwtwarden_http_policy_new(ptr, n, &raw, &cerr); rc != C.JWTWARDEN_RESULT_OK {
		return nil, errorFrom(rc, cerr)
	}
	p := &httpPolicy{_ptr: unsafe.Pointer(raw)}
	runtime.SetFinalizer(p, (*httpPolicy).Close)
	return p, nil
}

// ptr is the C handle, nil once closed.
func (p *httpPolicy) ptr() *C.jwtwarden_http_policy {
	return (*C.jwtwarden_http_policy)(atomic.LoadPointer(&p._ptr))
}

// Close frees the policy. Safe to call more than once.
func (p *httpPolicy) Close() error {
	if raw := atomic.SwapPointer(&p._ptr, nil); raw != nil {
		runtime.SetFinalizer(p, nil)
		C.jwtwarden_http_policy_free((*C.jwtwarden_http_policy)(raw))
	}
	return nil
}
