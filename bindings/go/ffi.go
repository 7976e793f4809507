package jwtwarden

// All cgo build settings live here. By default the package finds the
// installed C library with pkg-config (`make -C ffi install`, then
// PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig if PREFIX is not a system prefix):
//
//	(no tag)                   pkg-config jwtwarden-static: libjwtwarden.a linked in,
//	                           binaries need no libjwtwarden.so at run time
//	-tags jwtwarden_shared     pkg-config jwtwarden: links libjwtwarden.so
//	-tags jwtwarden_checkout   this checkout's include/ and target/release/libjwtwarden.a
//	                           (cargo build --release -p jwtwarden-ffi, default target dir)
//
// The system libraries after the checkout's archive are what Rust's standard
// library needs on Linux (rustc --print native-static-libs); jwtwarden-static.pc
// lists the same ones.

/*
#cgo !jwtwarden_checkout,!jwtwarden_shared pkg-config: jwtwarden-static
#cgo !jwtwarden_checkout,jwtwarden_shared pkg-config: jwtwarden
#cgo jwtwarden_checkout CFLAGS: -I${SRCDIR}/../../include
#cgo jwtwarden_checkout LDFLAGS: ${SRCDIR}/../../target/release/libjwtwarden.a -lgcc_s -lutil -lrt -lpthread -lm -ldl
#include <stdlib.h>
#include <string.h>
#include "cgo_helpers.h"

// jw_fill reads o->verified (a result handle) into o and, when memo_keys is
// not NULL, releases it at once if the Go memo holds it (see claimsMemo).
static void jw_fill(jw_outcome *o, const uintptr_t *memo_keys, size_t memo_mask) {
	o->claims_json = jwtwarden_verified_claims_json(o->verified);
	o->cached = jwtwarden_verified_cached(o->verified);
	if (memo_keys != NULL) {
		uintptr_t key = (uintptr_t)o->claims_json;
		o->memo_slot = jw_memo_slot(key, memo_mask);
		if (__atomic_load_n(&memo_keys[o->memo_slot], __ATOMIC_ACQUIRE) == key) {
			// The Go memo holds this result (its own reference) and its
			// strings: release ours now, not in a second cgo call.
			jwtwarden_verified_free(o->verified);
			o->verified = NULL;
			o->memo_hit = true;
			return;
		}
	}
	o->verified_at_ms = jwtwarden_verified_verified_at_ms(o->verified);
	o->expires_at = jwtwarden_verified_expires_at(o->verified);
	o->claims_json_len = jwtwarden_verified_claims_json_len(o->verified);
	o->issuer = jwtwarden_verified_issuer(o->verified);
	o->kid = jwtwarden_verified_kid(o->verified);
	o->alg = jwtwarden_verified_alg(o->verified);
}

jw_outcome jw_verify(const jwtwarden_verifier *v, const char *token, size_t len, const char *issuer, bool fresh,
                     const uintptr_t *memo_keys, size_t memo_mask) {
	jw_outcome o = {0};
	o.rc = jwtwarden_verifier_verify_with(v, token, len, issuer, fresh, &o.verified, &o.error);
	if (o.rc == JWTWARDEN_RESULT_OK) {
		jw_fill(&o, memo_keys, memo_mask);
	}
	return o;
}

jw_decided jw_http_decide(const jwtwarden_http_policy *policy, const jwtwarden_verifier *v,
                          const jwtwarden_minter *minter, const char *method,
                          size_t method_len, const char *target, size_t target_len, const char *auth0,
                          size_t auth0_len, const char *auth1, size_t auth1_len, size_t auth_count,
                          const uintptr_t *memo_keys, size_t memo_mask) {
	// The Go middleware's policy reads the token from Authorization only
	// (no cookie, no other header): those fields are all it needs. Two
	// are enough to say "more than one".
	jwtwarden_http_header headers[2] = {
		{"Authorization", 13, auth0, auth0_len},
		{"Authorization", 13, auth1, auth1_len},
	};
	jw_decided d = {0};
	// minter may be NULL: the same decision as jwtwarden_http_decide for a
	// policy without an assertion section (one with it is then a 500).
	d.rc = jwtwarden_http_decide_minting(policy, v, minter, method, method_len, target, target_len, headers,
	                                     auth_count < 2 ? auth_count : 2, false, &d.decision, &d.error);
	if (d.rc != JWTWARDEN_RESULT_OK) {
		return d;
	}
	d.allowed = jwtwarden_http_decision_allowed(d.decision);
	if (!d.allowed) {
		return d;
	}
	size_t alen = 0;
	const char *a = jwtwarden_http_decision_assertion(d.decision, &alen);
	if (a != NULL) {
		d.assertion = malloc(alen + 1);
		if (d.assertion == NULL) {
			// Never let the request on without the assertion its route carries.
			jwtwarden_http_decision_free(d.decision);
			d.decision = NULL;
			d.allowed = false;
			d.rc = JWTWARDEN_RESULT_INTERNAL;
			return d;
		}
		memcpy(d.assertion, a, alen);
		d.assertion[alen] = 0;
		d.assertion_len = alen;
	}
	d.verified.verified = jwtwarden_http_decision_verified(d.decision);
	jwtwarden_http_decision_free(d.decision);
	d.decision = NULL;
	if (d.verified.verified != NULL) {
		d.has_verified = true;
		jw_fill(&d.verified, memo_keys, memo_mask);
	}
	return d;
}

// The Go log bridge (log.go); cast to the callback type, whose message
// parameter is const.
extern void jwtwardenGoLog(void *userdata, uint32_t level, char *message);

jwtwarden_result jw_set_go_logger(uint32_t max_level, jwtwarden_error **error) {
	return jwtwarden_set_log_callback((jwtwarden_log_callback)jwtwardenGoLog, NULL, max_level, error);
}
*/
import "C"

import "unsafe"

// empty gives a non-NULL pointer for an empty token (NULL would be a usage
// error; an empty token is a malformed one).
var empty = [1]byte{0}

// tokenPtr points at the bytes of s for the duration of a cgo call. Passing
// a pointer to Go memory that holds no Go pointers is allowed by cgo's rules.
func tokenPtr(s string) (*C.char, C.size_t) {
	if len(s) == 0 {
		return (*C.char)(unsafe.Pointer(&empty[0])), 0
	}
	return (*C.char)(unsafe.Pointer(unsafe.StringData(s))), C.size_t(len(s))
}

// verifyOnce is one cgo call: verify token (issuer: a C string or nil)
// and, when memo is not nil, release the result at once if the memo holds
// it (see claimsMemo).
func verifyOnce(raw *C.jwtwarden_verifier, token string, issuer *C.char, fresh bool, memo *claimsMemo) C.jw_outcome {
	tok, n := tokenPtr(token)
	var keys *C.uintptr_t
	var mask C.size_t
	if memo != nil {
		keys = (*C.uintptr_t)(unsafe.Pointer(&memo.keys[0]))
		mask = C.size_t(memo.mask)
	}
	// The arguments of a cgo call stay alive until it returns.
	return C.jw_verify(raw, tok, n, issuer, C.bool(fresh), keys, mask)
}

// errorFrom turns a failed call's code and error object into an *Error and
// frees the object.
func errorFrom(rc C.jwtwarden_result, cerr *C.jwtwarden_error) error {
	msg := ""
	if cerr != nil {
		msg = C.GoString(C.jwtwarden_error_message(cerr))
		C.jwtwarden_error_free(cerr)
	}
	return newError(uint32(rc), msg)
}

// resultName is the stable name of a code, from the library.
func resultName(code uint32) string {
	return C.GoString(C.jwtwarden_result_name(C.uint32_t(code)))
}

// categoryOf is the category of a code, from the library.
func categoryOf(code uint32) Category {
	return Category(C.jwtwarden_result_category(C.uint32_t(code)))
}

// categoryName is the stable name of a category, from the library.
func categoryName(c Category) string {
	return C.GoString(C.jwtwarden_category_name(C.uint32_t(c)))
}

// Version is the version of the linked C library.
func Version() string {
	return C.GoString(C.jwtwarden_version())
}

// HeaderVersion is the version of the header the package was compiled with.
const HeaderVersion = C.JWTWARDEN_VERSION
