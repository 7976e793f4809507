package gobench

// The C API's cache hit timed from this process (BenchmarkHitCAPI): the
// loop runs in C, so it costs no cgo crossing per call. It is the Rust hit
// plus nothing that matters (benches/c/run: C and Rust within a few ns), and
// timed in the same process and minutes as the Go hit, which makes the ratio
// Go hit / C hit hold on a loaded machine where the absolute figures move.

/*
#cgo pkg-config: jwtwarden-static
#include <stdlib.h>
#include "jwtwarden.h"

// n cache hits of token, as benches/c/bench_hit.c makes them; false on any
// failure or a result not from the cache.
static bool c_hits(const jwtwarden_verifier *v, const char *token, size_t len, long n) {
	for (long i = 0; i < n; i++) {
		jwtwarden_verified *out = NULL;
		if (jwtwarden_verifier_verify(v, token, len, &out, NULL) != JWTWARDEN_RESULT_OK) return false;
		bool cached = jwtwarden_verified_cached(out);
		jwtwarden_verified_free(out);
		if (!cached) return false;
	}
	return true;
}
*/
import "C"

import (
	"errors"
	"unsafe"
)

// cVerifier is a verifier made through the C API.
type cVerifier struct{ v *C.jwtwarden_verifier }

func newCVerifier(config string) (*cVerifier, error) {
	cs := C.CString(config)
	defer C.free(unsafe.Pointer(cs))
	var v *C.jwtwarden_verifier
	if C.jwtwarden_verifier_new(cs, C.size_t(len(config)), &v, nil) != C.JWTWARDEN_RESULT_OK {
		return nil, errors.New("jwtwarden_verifier_new failed")
	}
	return &cVerifier{v}, nil
}

// hits makes n cache hits of token in one cgo call.
func (c *cVerifier) hits(token string, n int) error {
	ct := C.CString(token)
	defer C.free(unsafe.Pointer(ct))
	if !C.c_hits(c.v, ct, C.size_t(len(token)), C.long(n)) {
		return errors.New("a C API hit failed")
	}
	return nil
}

func (c *cVerifier) close() { C.jwtwarden_verifier_free(c.v) }
