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
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, is.url, "jti-1", (uint64_t)now_secs() + 3600, NULL, NULL), JWTWARDEN_RESULT_OK);
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
  CHECK_CODE(jwtwarden_verifier_revoke_subject(v, is.url, "bob", (uint64_t)now_secs() + 1, NULL, NULL), JWTWARDEN_RESULT_OK);
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
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, is.url, is.kid, NULL, NULL), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, plain), JWTWARDEN_RESULT_KEY_REVOKED);
  jwtwarden_error *err = NULL;
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, "https://nope.example", is.kid, NULL, &err),
             JWTWARDEN_RESULT_UNKNOWN_ISSUER);
  jwtwarden_error_free(err);
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, is.url, "", NULL, NULL), JWTWARDEN_RESULT_INVALID_ARGUMENT);
  /* Names must be UTF-8. */
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, is.url, "\xff", 0, NULL, NULL), JWTWARDEN_RESULT_INVALID_ARGUMENT);
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, "\xff", "j", 0, NULL, NULL), JWTWARDEN_RESULT_INVALID_ARGUMENT);

  free(by_jti);
  free(by_sub);
  free(plain);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}

/* Revocations are issuer-scoped: a jti or sub is unique only within its
   issuer, so revoking one for issuer A leaves issuer B's token with the same
   jti alone; "*" reaches every issuer; an unconfigured issuer is refused.
   Without a fleet feed every revocation reports JWTWARDEN_PROPAGATION_LOCAL. */
void test_revocation_scope(void) {
  issuer_t a, b;
  issuer_start(&a);
  issuer_start(&b);
  char *cfg = NULL;
  if (asprintf(&cfg,
               "{\"issuers\":[{\"issuer\":\"%s\",\"jwks_uri\":\"%s/jwks.json\",\"audiences\":[\"api\"]},"
               "{\"issuer\":\"%s\",\"jwks_uri\":\"%s/jwks.json\",\"audiences\":[\"api\"]}],"
               "\"http\":{\"allow_http\":true}}",
               a.url, a.url, b.url, b.url) < 0)
    abort();
  jwtwarden_verifier *v = NULL;
  CHECK_CODE(jwtwarden_verifier_new(cfg, strlen(cfg), &v, NULL), JWTWARDEN_RESULT_OK);
  free(cfg);
  if (!v) {
    issuer_stop(&a);
    issuer_stop(&b);
    return;
  }
  long exp = now_secs() + 3600;

  /* The same jti at two issuers: revoking it for A leaves B's token valid,
     cached or not. */
  char *claims = claims_json(&a, NULL, "alice", "api", 3600, "shared-jti", NULL);
  char *a_jti = issuer_mint(&a, NULL, claims, NULL);
  free(claims);
  claims = claims_json(&b, NULL, "alice", "api", 3600, "shared-jti", NULL);
  char *b_jti = issuer_mint(&b, NULL, claims, NULL);
  free(claims);
  CHECK_CODE(verify_code(v, a_jti), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, b_jti), JWTWARDEN_RESULT_OK);
  jwtwarden_propagation prop = 7;
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, a.url, "shared-jti", (uint64_t)exp, &prop, NULL),
             JWTWARDEN_RESULT_OK);
  CHECK(prop == JWTWARDEN_PROPAGATION_LOCAL);
  CHECK_CODE(verify_code(v, a_jti), JWTWARDEN_RESULT_REVOKED);
  CHECK_CODE(verify_code(v, b_jti), JWTWARDEN_RESULT_OK);
  jwtwarden_verified *r = NULL;
  CHECK_CODE(jwtwarden_verifier_verify_with(v, b_jti, strlen(b_jti), NULL, true, &r, NULL), JWTWARDEN_RESULT_OK);
  jwtwarden_verified_free(r);

  /* Subjects too; a NULL propagation_out is accepted. */
  claims = claims_json(&a, NULL, "carol", "api", 3600, "carol-a", NULL);
  char *a_sub = issuer_mint(&a, NULL, claims, NULL);
  free(claims);
  claims = claims_json(&b, NULL, "carol", "api", 3600, "carol-b", NULL);
  char *b_sub = issuer_mint(&b, NULL, claims, NULL);
  free(claims);
  CHECK_CODE(verify_code(v, a_sub), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, b_sub), JWTWARDEN_RESULT_OK);
  CHECK_CODE(jwtwarden_verifier_revoke_subject(v, b.url, "carol", (uint64_t)now_secs() + 1, NULL, NULL),
             JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, b_sub), JWTWARDEN_RESULT_REVOKED);
  CHECK_CODE(verify_code(v, a_sub), JWTWARDEN_RESULT_OK);

  /* An issuer that is not configured: refused, nothing written. */
  jwtwarden_error *err = NULL;
  prop = 7;
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, "https://nope.example", "shared-jti", 0, &prop, &err),
             JWTWARDEN_RESULT_UNKNOWN_ISSUER);
  CHECK_CODE(jwtwarden_error_code(err), JWTWARDEN_RESULT_UNKNOWN_ISSUER);
  CHECK(jwtwarden_error_category(err) == JWTWARDEN_CATEGORY_POLICY);
  jwtwarden_error_free(err);
  CHECK(prop == 7);
  CHECK_CODE(jwtwarden_verifier_revoke_subject(v, "https://nope.example", "carol", 1, &prop, NULL),
             JWTWARDEN_RESULT_UNKNOWN_ISSUER);
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, "https://nope.example", a.kid, &prop, NULL),
             JWTWARDEN_RESULT_UNKNOWN_ISSUER);
  CHECK(prop == 7);
  CHECK_CODE(verify_code(v, b_jti), JWTWARDEN_RESULT_OK);
  /* The scope is the issuer exactly as configured, and never empty. */
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, "", "shared-jti", 0, NULL, NULL), JWTWARDEN_RESULT_UNKNOWN_ISSUER);

  /* "*": every issuer. */
  claims = claims_json(&a, NULL, "dave", "api", 3600, "everywhere", NULL);
  char *a_any = issuer_mint(&a, NULL, claims, NULL);
  free(claims);
  claims = claims_json(&b, NULL, "dave", "api", 3600, "everywhere", NULL);
  char *b_any = issuer_mint(&b, NULL, claims, NULL);
  free(claims);
  CHECK_CODE(verify_code(v, a_any), JWTWARDEN_RESULT_OK);
  CHECK_CODE(verify_code(v, b_any), JWTWARDEN_RESULT_OK);
  prop = 7;
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, "*", "everywhere", 0, &prop, NULL), JWTWARDEN_RESULT_OK);
  CHECK(prop == JWTWARDEN_PROPAGATION_LOCAL);
  CHECK_CODE(verify_code(v, a_any), JWTWARDEN_RESULT_REVOKED);
  CHECK_CODE(verify_code(v, b_any), JWTWARDEN_RESULT_REVOKED);
  prop = 7;
  CHECK_CODE(jwtwarden_verifier_revoke_subject(v, "*", "alice", (uint64_t)now_secs() + 1, &prop, NULL),
             JWTWARDEN_RESULT_OK);
  CHECK(prop == JWTWARDEN_PROPAGATION_LOCAL);
  CHECK_CODE(verify_code(v, b_jti), JWTWARDEN_RESULT_REVOKED);

  /* kid, scoped: A's key revoked, B's key still trusted. */
  prop = 7;
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, a.url, a.kid, &prop, NULL), JWTWARDEN_RESULT_OK);
  CHECK(prop == JWTWARDEN_PROPAGATION_LOCAL);
  CHECK_CODE(verify_code(v, a_sub), JWTWARDEN_RESULT_KEY_REVOKED);
  char *b_plain = issuer_mint(&b, NULL, NULL, NULL);
  CHECK_CODE(verify_code(v, b_plain), JWTWARDEN_RESULT_OK);

  free(a_jti);
  free(b_jti);
  free(a_sub);
  free(b_sub);
  free(a_any);
  free(b_any);
  free(b_plain);
  jwtwarden_verifier_free(v);
  issuer_stop(&a);
  issuer_stop(&b);
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
  jwtwarden_propagation prop = 7;
  CHECK_CODE(jwtwarden_verifier_revoke_jti(NULL, is.url, "j", 0, &prop, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, NULL, "j", 0, &prop, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_jti(v, is.url, NULL, 0, &prop, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_subject(NULL, is.url, "s", 0, &prop, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_subject(v, NULL, "s", 0, &prop, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_subject(v, is.url, NULL, 0, &prop, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_kid(NULL, is.url, "k", &prop, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, NULL, "k", &prop, NULL), NP);
  CHECK_CODE(jwtwarden_verifier_revoke_kid(v, is.url, NULL, &prop, NULL), NP);
  CHECK(prop == 7); /* untouched on failure */
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
