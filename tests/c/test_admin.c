/* Revocation, policy version, refresh, metrics, the log callback, NULL arguments. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

void test_revocation(void) {
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);

  /* jti: a cached success is not served after the revocation. */
  char *claims = claims_json(&is, NULL, "alice", "api", 3600, "jti-1", NULL);
  char *by_jti = issuer_mint(&is, NULL, claims, NULL);
  free(claims);
  CHECK_CODE(verify_code(v, by_jti), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, by_jti), JWTWARDEN_RESULT_OK);
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, "jti-1", (uint64_t)now_secs() + 3600, NULL), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, by_jti), JWTWARDEN_RESULT_REVOKED);
  jwtwarden_verified *r = NULL;
  CHECK_CODE(jwtwarden_verifier_verify_with(v, by_jti, strlen(by_jti), NULL, true, &r, NULL),
             JWTWARDEN_RESULT_REVOKED);
  CHECK(r == NULL);

  /* subject: tokens issued before the cut-off. */
  claims = claims_json(&is, NULL, "bob", "api", 3600, "jti-2", NULL);
  char *by_sub = issuer_mint(&is, NULL, claims, NULL);
  free(claims);
  CHECK_CODE(verify_code(v, by_sub), JWTWARDEN_RESULT_OK);
  CHECK_CODE(jwtwarden_verifier_revoke_subject(v, "bob", (uint64_t)now_secs() + 1, NULL), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, by_sub), JWTWARDEN_RESULT_REVOKED);

  /* policy version: every cached result is dropped, trust is re-checked. */
  char *plain = issuer_mint(&is, NULL, NULL, NULL);
  CHECK_CODE(verify_code(v, plain), JWTWARDEN_RESULT_OK);
  uint64_t version = 0;
  CHECK_CODE(jwtwarden_verifier_bump_policy_version(v, &version, NULL), JWTWARDEN_RESULT_OK);
  CHECK(version == 1);
  CHECK_CODE(jwtwarden_verifier_verify(v, plain, strlen(plain), &r, NULL), JWTWARDEN_RESULT_OK);
  CHECK(!jwtwarden_verified_cached(r));
  jwtwarden_verified_free(r);
  CHECK_CODE(jwtwarden_verifier_bump_policy_version(v, &version, NULL), JWTWARDEN_RESULT_OK);
  CHECK(version == 2);

  /* kid: emergency removal of a key, cached successes included. */
  CHECK_CODE(verify_code(v, plain), JWTWARDEN_RESULT_OK);
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, is.url, is.kid, NULL), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, plain), JWTWARDEN_RESULT_KEY_REVOKED);
  jwtwarden_error *err = NULL;
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, "https://nope.example", is.kid, &err),
             JWTWARDEN_RESULT_UNKNOWN_ISSUER);
  jwtwarden_error_free(err);
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, is.url, "", NULL), JWTWARDEN_RESULT_INVALID_ARGUMENT);
  /* Names must be UTF-8. */
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, "\xff", 0, NULL), JWTWARDEN_RESULT_INVALID_ARGUMENT);

  free(by_jti);
  free(by_sub);
  free(plain);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}

void test_refresh_and_health(void) {
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  jwtwarden_health health = 0;
  CHECK_CODE(jwtwarden_verifier_issuer_health(v, is.url, &health, NULL), JWTWARDEN_RESULT_OK);
  CHECK(health == JWTWARDEN_HEALTH_FRESH);
  CHECK_CODE(jwtwarden_verifier_issuer_health(v, "https://nope.example", &health, NULL),
             JWTWARDEN_RESULT_UNKNOWN_ISSUER);

  /* A key added at the issuer is picked up by a forced refresh, without an
     unknown-kid fetch. */
  char *kid = issuer_add_key(&is, "ES256");
  long before = issuer_jwks_requests(&is);
  CHECK_CODE(jwtwarden_verifier_refresh_issuer(v, is.url, NULL), JWTWARDEN_RESULT_OK);
  CHECK(issuer_jwks_requests(&is) == before + 1);
  char *token = issuer_mint(&is, kid, NULL, NULL);
  jwtwarden_verified *r = NULL;
  CHECK_CODE(jwtwarden_verifier_verify(v, token, strlen(token), &r, NULL), JWTWARDEN_RESULT_OK);
  CHECK(r && strcmp(jwtwarden_verified_kid(r), kid) == 0);
  CHECK(r && strcmp(jwtwarden_verified_alg(r), "ES256") == 0);
  CHECK(issuer_jwks_requests(&is) == before + 1);
  jwtwarden_verified_free(r);
  CHECK_CODE(jwtwarden_verifier_refresh_issuer(v, "https://nope.example", NULL), JWTWARDEN_RESULT_UNKNOWN_ISSUER);
  free(kid);
  free(token);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}

void test_metrics(void) {
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  char *token = issuer_mint(&is, NULL, NULL, NULL);
  CHECK_CODE(verify_code(v, token), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, token), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, token), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, "garbage"), JWTWARDEN_RESULT_MALFORMED_TOKEN);

  char *json = NULL;
  CHECK_CODE(jwtwarden_verifier_metrics_json(v, &json, NULL), JWTWARDEN_RESULT_OK);
  CHECK(json != NULL);
  if (json) {
    CHECK(json_long(json, "ok_fresh") == 1);
    CHECK(json_long(json, "ok_cached") == 2);
    CHECK(json_long(json, "hits") == 2);
    CHECK(json_long(json, "malformed_token") == 1);
    CHECK(strstr(json, is.url) != NULL);
  }
  jwtwarden_string_free(json);

  char *text = NULL;
  CHECK_CODE(jwtwarden_verifier_prometheus(v, &text, NULL), JWTWARDEN_RESULT_OK);
  CHECK(text != NULL);
  if (text) {
    CHECK(strstr(text, "# TYPE jwtwarden_verifications") != NULL);
    CHECK(strstr(text, "jwtwarden_cache_events") != NULL);
    CHECK(strstr(text, "jwtwarden_jwks_fetches") != NULL);
  }
  jwtwarden_string_free(text);
  jwtwarden_string_free(NULL);
  free(token);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}

typedef struct {
  int calls;
  int debug_calls;
  bool saw_fingerprint_only;
  const char *token;
} log_state;

static void on_log(void *userdata, jwtwarden_log_level level, const char *message) {
  log_state *st = userdata;
  __atomic_fetch_add(&st->calls, 1, __ATOMIC_SEQ_CST);
  if (level == JWTWARDEN_LOG_LEVEL_DEBUG && strstr(message, "rejected token")) {
    __atomic_fetch_add(&st->debug_calls, 1, __ATOMIC_SEQ_CST);
    if (st->token && strstr(message, st->token) == NULL) st->saw_fingerprint_only = true;
  }
}

void test_log_callback(void) {
  issuer_t is;
  issuer_start(&is);
  log_state st = {0};
  CHECK_CODE(jwtwarden_set_log_callback(on_log, &st, JWTWARDEN_LOG_LEVEL_DEBUG, NULL), JWTWARDEN_RESULT_OK);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  char *token = issuer_mint(&is, NULL, NULL, NULL);
  char *bad = strdup(token);
  bad[strlen(bad) - 5] = bad[strlen(bad) - 5] == 'A' ? 'B' : 'A';
  st.token = bad;
  CHECK_CODE(verify_code(v, bad), JWTWARDEN_RESULT_INVALID_SIGNATURE);
  CHECK(st.debug_calls == 1);
  CHECK(st.saw_fingerprint_only);

  /* A higher maximum level filters debug records out. */
  CHECK_CODE(jwtwarden_set_log_callback(on_log, &st, JWTWARDEN_LOG_LEVEL_WARN, NULL), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, bad), JWTWARDEN_RESULT_INVALID_SIGNATURE);
  CHECK(st.debug_calls == 1);

  /* NULL turns logging off; the old userdata is no longer used when it returns. */
  CHECK_CODE(jwtwarden_set_log_callback(NULL, NULL, JWTWARDEN_LOG_LEVEL_TRACE, NULL), JWTWARDEN_RESULT_OK);
  int calls = st.calls;
  CHECK_CODE(verify_code(v, bad), JWTWARDEN_RESULT_INVALID_SIGNATURE);
  CHECK(st.calls == calls);

  jwtwarden_error *err = NULL;
  CHECK_CODE(jwtwarden_set_log_callback(on_log, &st, 77, &err), JWTWARDEN_RESULT_INVALID_ARGUMENT);
  CHECK(strstr(jwtwarden_error_message(err), "77") != NULL);
  jwtwarden_error_free(err);
  free(token);
  free(bad);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}

/* Every pointer argument, NULL in turn: the NULL_PARAMETER code, never a crash. */
void test_null_parameters(void) {
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  char *token = issuer_mint(&is, NULL, NULL, NULL);
  size_t n = strlen(token);
  char *cfg = config_for(&is, NULL);
  jwtwarden_verifier *vo = NULL;
  jwtwarden_verified *r = NULL;
  jwtwarden_error *err = NULL;
  uint64_t version = 0;
  jwtwarden_health health = 0;
  char *s = NULL;
  const uint32_t NP = JWTWARDEN_RESULT_NULL_PARAMETER;

  CHECK_CODE(jwtwarden_verifier_new(NULL, 10, &vo, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_new(cfg, strlen(cfg), NULL, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_verify(NULL, token, n, &r, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_verify(v, NULL, n, &r, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_verify(v, NULL, 0, &r, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_verify(v, token, n, NULL, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_verify_with(NULL, token, n, NULL, false, &r, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_verify_with(v, NULL, n, NULL, false, &r, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_verify_with(v, token, n, NULL, false, NULL, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_jti(NULL, "j", 0, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, NULL, 0, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_subject(NULL, "s", 0, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_subject(v, NULL, 0, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_kid(NULL, is.url, "k", NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, NULL, "k", NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, is.url, NULL, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_bump_policy_version(NULL, &version, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_bump_policy_version(v, NULL, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_refresh_issuer(NULL, is.url, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_refresh_issuer(v, NULL, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_issuer_health(NULL, is.url, &health, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_issuer_health(v, NULL, &health, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_issuer_health(v, is.url, NULL, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_metrics_json(NULL, &s, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_metrics_json(v, NULL, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_prometheus(NULL, &s, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_prometheus(v, NULL, NULL), NP);
  CHECK(vo == NULL && r == NULL && version == 0 && health == 0 && s == NULL);

  /* With an error out-parameter: the error names the argument. */
  CHECK_CODE(jwtwarden_verifier_verify(v, token, n, NULL, &err), NP);
  CHECK_CODE(jwtwarden_error_code(err), NP);
  CHECK(jwtwarden_error_category(err) == JWTWARDEN_CATEGORY_USAGE);
  CHECK(strstr(jwtwarden_error_message(err), "verified_out") != NULL);
  jwtwarden_error_free(err);

  /* Accessors and frees. */
  CHECK_CODE(jwtwarden_error_code(NULL), NP);
  CHECK(jwtwarden_error_category(NULL) == JWTWARDEN_CATEGORY_USAGE);
  CHECK(jwtwarden_error_message(NULL) == NULL);
  CHECK(jwtwarden_verified_claims_json(NULL) == NULL);
  CHECK(jwtwarden_verified_claims_json_len(NULL) == 0);
  CHECK(jwtwarden_verified_claim_json(NULL, "sub") == NULL);
  CHECK(jwtwarden_verified_issuer(NULL) == NULL);
  CHECK(jwtwarden_verified_kid(NULL) == NULL);
  CHECK(jwtwarden_verified_alg(NULL) == NULL);
  CHECK(!jwtwarden_verified_cached(NULL));
  CHECK(jwtwarden_verified_verified_at_ms(NULL) == 0);
  CHECK(jwtwarden_verified_expires_at(NULL) == 0);
  jwtwarden_verifier_free(NULL);
  jwtwarden_verified_free(NULL);
  jwtwarden_error_free(NULL);
  jwtwarden_string_free(NULL);
  /* Optional pointers: issuer NULL means "by iss", a NULL callback turns logging off. */
  CHECK_CODE(jwtwarden_verifier_verify_with(v, token, n, NULL, false, &r, NULL), JWTWARDEN_RESULT_OK);
  jwtwarden_verified_free(r);
  CHECK_CODE(jwtwarden_set_log_callback(NULL, NULL, JWTWARDEN_LOG_LEVEL_OFF, NULL), JWTWARDEN_RESULT_OK);

  free(cfg);
  free(token);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}
