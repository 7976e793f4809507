/*
 * A small test harness for the C ABI tests: checks, a test issuer process
 * driven through its admin API (a minimal HTTP/1.1 client), and helpers to
 * build verifiers and mint tokens.
 */
#ifndef JWTWARDEN_TEST_HARNESS_H
#define JWTWARDEN_TEST_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "jwtwarden.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Failed checks so far in this process (the runner compares before/after a test). */
extern int g_check_failures;
/* Path of the jwtwarden-testissuer binary (argv[1]). */
extern const char *g_issuer_bin;
/* Smaller loop counts (set JWTWARDEN_TEST_QUICK=1, e.g. under valgrind). */
extern bool g_quick;

void check_failed(const char *file, int line, const char *expr, const char *detail);

#define CHECK(cond)                                                  \
  do {                                                               \
    if (!(cond)) check_failed(__FILE__, __LINE__, #cond, NULL);      \
  } while (0)

/* Check that a call returned `want`; print both names otherwise. */
#define CHECK_CODE(got_expr, want)                                   \
  do {                                                               \
    uint32_t got_ = (uint32_t)(got_expr);                            \
    uint32_t want_ = (uint32_t)(want);                               \
    if (got_ != want_) check_code_failed(__FILE__, __LINE__, #got_expr, got_, want_); \
  } while (0)

void check_code_failed(const char *file, int line, const char *expr, uint32_t got, uint32_t want);

/* A running jwtwarden-testissuer. */
typedef struct {
  pid_t pid;
  int stdin_fd;  /* closing it stops the issuer */
  int stdout_fd;
  int port;
  char url[128];
  char kid[64];  /* the first key's kid */
} issuer_t;

/* Start an issuer (one RS256 key). Aborts the program if it cannot. */
void issuer_start(issuer_t *is);
/* Stop it and reap the process. */
void issuer_stop(issuer_t *is);

/* One HTTP request to 127.0.0.1:port; returns the body (malloc'd) and the status. */
char *http_request(int port, const char *method, const char *path, const char *body, int *status);

/* POST /admin/mint. kid, claims and header are optional (NULL: defaults). malloc'd token. */
char *issuer_mint(const issuer_t *is, const char *kid, const char *claims_json, const char *header_json);
/* Default claims with overrides: sub, aud, exp offset from now, extra JSON members (or NULL). */
char *claims_json(const issuer_t *is, const char *iss, const char *sub, const char *aud, long exp_offset,
                  const char *jti, const char *extra);
/* POST /admin/keys; malloc'd kid. */
char *issuer_add_key(const issuer_t *is, const char *alg);
/* DELETE /admin/keys/<kid>; true on success. */
bool issuer_retire_key(const issuer_t *is, const char *kid);
/* GET /admin/stats jwks_requests. */
long issuer_jwks_requests(const issuer_t *is);

/* The string value of "key" in a flat JSON object (no escapes handled); malloc'd or NULL. */
char *json_string(const char *json, const char *key);
/* The integer value of "key" anywhere in a JSON text (first match), or -1. */
long json_long(const char *json, const char *key);

/* The standard test configuration for one issuer; extra is spliced into the issuer object. */
char *config_for(const issuer_t *is, const char *issuer_extra);
/* A verifier for `is` (aborts on failure). */
jwtwarden_verifier *verifier_for(const issuer_t *is, const char *issuer_extra);

/* Verify and return the code, freeing the result. */
uint32_t verify_code(const jwtwarden_verifier *v, const char *token);

/* Seconds since the epoch. */
long now_secs(void);

#ifdef __cplusplus
}
#endif

#endif
