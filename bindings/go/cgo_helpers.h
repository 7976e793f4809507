// C helpers shared by the package's cgo preambles (definitions in ffi.go).
#ifndef JWTWARDEN_GO_HELPERS_H
#define JWTWARDEN_GO_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "jwtwarden.h"

// Everything one verification returns, filled in a single cgo call (each
// crossing costs tens of nanoseconds; a whole cache hit not much more).
typedef struct {
	jwtwarden_verified *verified;
	jwtwarden_error *error;
	const char *claims_json;
	size_t claims_json_len;
	const char *issuer;
	const char *kid;
	const char *alg;
	uint64_t verified_at_ms;
	uint64_t expires_at;
	bool cached;
} jw_outcome;

jwtwarden_result jw_verify(const jwtwarden_verifier *v, const char *token, size_t len, const char *issuer,
                           bool fresh, jw_outcome *o);
void jw_outcome_free(jw_outcome *o);
jwtwarden_result jw_set_go_logger(uint32_t max_level, jwtwarden_error **error);

#endif
