// C helpers shared by the package's cgo preambles (definitions in ffi.go).
#ifndef JWTWARDEN_GO_HELPERS_H
#define JWTWARDEN_GO_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "jwtwarden.h"

// Everything one verification returns, filled in a single cgo call and
// returned by value (no Go allocation; each crossing costs tens of
// nanoseconds, a whole cache hit not much more). With memo_hit the result
// handle has been released already and only the fields up to memo_slot are
// set: the rest (the strings and times of the result) are the Go memo's
// (verifier.go).
typedef struct {
	jwtwarden_result rc;
	jwtwarden_verified *verified;
	jwtwarden_error *error;
	const char *claims_json;
	bool cached;
	bool memo_hit;
	size_t memo_slot;
	uint64_t verified_at_ms;
	uint64_t expires_at;
	size_t claims_json_len;
	const char *issuer;
	const char *kid;
	const char *alg;
} jw_outcome;

// The memo slot of a result, by the address of its claims JSON (mask: the
// number of slots, a power of two, at most 4096, less one). Every bit of the
// address counts (Fibonacci hashing, the product's top 12 bits): the core
// keeps per-thread copies of hot results, allocated in per-thread malloc
// arenas, so two copies of one token can lie a multiple of 64 MiB apart with
// the same low bits, and a slot chosen from the low bits alone put them in
// one slot, each hit evicting the other's entry.
static inline size_t jw_memo_slot(uintptr_t key, size_t mask) {
	return (size_t)(((uint64_t)key * 0x9E3779B97F4A7C15ull) >> 52) & mask;
}

// A decision of the Go middleware (middleware.go), in one cgo call: with
// allowed and a verified token, verified is filled as jw_verify fills it and
// the decision is already released; otherwise decision is the refusal to
// read and free (NULL when allowed: an open route or method).
typedef struct {
	jwtwarden_result rc;
	jwtwarden_error *error;
	jwtwarden_http_decision *decision;
	bool allowed;
	bool has_verified;
	jw_outcome verified;
	// The assertion an allowed decision carries for the upstream (a minting
	// policy, MiddlewareOptions.Mint): a malloc'd copy the caller frees, or
	// NULL.
	char *assertion;
	size_t assertion_len;
} jw_decided;

jw_outcome jw_verify(const jwtwarden_verifier *v, const char *token, size_t len, const char *issuer, bool fresh,
                     const uintptr_t *memo_keys, size_t memo_mask);
jw_decided jw_http_decide(const jwtwarden_http_policy *policy, const jwtwarden_verifier *v,
                          const jwtwarden_minter *minter, const char *method,
                          size_t method_len, const char *target, size_t target_len, const char *auth0,
                          size_t auth0_len, const char *auth1, size_t auth1_len, size_t auth_count,
                          const uintptr_t *memo_keys, size_t memo_mask);
jwtwarden_result jw_set_go_logger(uint32_t max_level, jwtwarden_error **error);

#endif
