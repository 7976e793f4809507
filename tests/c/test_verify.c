/* Verification, results, every error kind we can provoke, configuration errors. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

void test_version(void) {
  CHECK(strcmp(jwtwarden_version(), JWTWARDEN_VERSION) == 0);
  char expect[32];
  snprintf(expect, sizeof expect, "%d.%d.%d", JWTWARDEN_VERSION_MAJOR, JWTWARDEN_VERSION_MINOR,
           JWTWARDEN_VERSION_PATCH);
  CHECK(strcmp(expect, JWTWARDEN_VERSION) == 0);
}

void test_verify_and_cache(void) {
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  char *token = issuer_mint(&is, NULL, NULL, NULL);
  long before_ms = now_secs() * 1000;

  jwtwarden_verified *r = NULL;
  CHECK_CODE(jwtwarden_verifier_verify(v, token, strlen(token), &r, NULL), JWTWARDEN_RESULT_OK);
  CHECK(r != NULL);
  CHECK(strstr(jwtwarden_verified_claims_json(r), "\"sub\":\"user\"") != NULL);
  CHECK(strcmp(jwtwarden_verified_issuer(r), is.url) == 0);
  CHECK(strcmp(jwtwarden_verified_kid(r), is.kid) == 0);
  CHECK(strcmp(jwtwarden_verified_alg(r), "RS256") == 0);
  CHECK(!jwtwarden_verified_cached(r));
  uint64_t at = jwtwarden_verified_verified_at_ms(r);
  CHECK(at >= (uint64_t)before_ms && at <= (uint64_t)(now_secs() + 1) * 1000);
  CHECK(jwtwarden_verified_expires_at(r) >= (uint64_t)now_secs() + 3000);
  /* Borrowed strings are stable: the same pointer on every call. */
  CHECK(jwtwarden_verified_claims_json(r) == jwtwarden_verified_claims_json(r));

  /* The same bytes again: served from the cache, with the original time. */
  jwtwarden_verified *again = NULL;
  CHECK_CODE(jwtwarden_verifier_verify(v, token, strlen(token), &again, NULL), JWTWARDEN_RESULT_OK);
  CHECK(jwtwarden_verified_cached(again));
  CHECK(jwtwarden_verified_verified_at_ms(again) == at);
  /* Hits of one token share its strings (built once, not per hit); the
     fresh result has its own, equal copy (the cache keeps a compact one). */
  jwtwarden_verified *third = NULL;
  CHECK_CODE(jwtwarden_verifier_verify(v, token, strlen(token), &third, NULL), JWTWARDEN_RESULT_OK);
  CHECK(jwtwarden_verified_claims_json(third) == jwtwarden_verified_claims_json(again));
  CHECK(strcmp(jwtwarden_verified_claims_json(again), jwtwarden_verified_claims_json(r)) == 0);
  CHECK(strcmp(jwtwarden_verified_kid(again), is.kid) == 0);
  /* One claim's JSON, and the claims JSON's length. */
  CHECK(jwtwarden_verified_claims_json_len(r) == strlen(jwtwarden_verified_claims_json(r)));
  CHECK(strcmp(jwtwarden_verified_claim_json(r, "sub"), "\"user\"") == 0);
  CHECK(strcmp(jwtwarden_verified_claim_json(r, "aud"), "\"api\"") == 0);
  CHECK(jwtwarden_verified_claim_json(r, "no-such-claim") == NULL);
  CHECK(jwtwarden_verified_claim_json(r, NULL) == NULL);
  /* Memoized per cached result: every hit borrows the same string. */
  CHECK(jwtwarden_verified_claim_json(again, "sub") == jwtwarden_verified_claim_json(third, "sub"));
  CHECK(strcmp(jwtwarden_verified_claim_json(again, "sub"), jwtwarden_verified_claim_json(r, "sub")) == 0);
  jwtwarden_verified_free(third);
  jwtwarden_verified_free(again);

  /* fresh: the signature is checked now. */
  jwtwarden_verified *fresh = NULL;
  CHECK_CODE(jwtwarden_verifier_verify_with(v, token, strlen(token), NULL, true, &fresh, NULL),
             JWTWARDEN_RESULT_OK);
  CHECK(!jwtwarden_verified_cached(fresh));
  jwtwarden_verified_free(fresh);

  /* An explicit issuer. */
  jwtwarden_verified *pinned = NULL;
  CHECK_CODE(jwtwarden_verifier_verify_with(v, token, strlen(token), is.url, false, &pinned, NULL),
             JWTWARDEN_RESULT_OK);
  jwtwarden_verified_free(pinned);

  /* The token need not be NUL-terminated: only token_len bytes are read. */
  size_t n = strlen(token);
  char *padded = malloc(n + 8);
  memcpy(padded, token, n);
  memcpy(padded + n, "garbage!", 8);
  jwtwarden_verified *unterminated = NULL;
  CHECK_CODE(jwtwarden_verifier_verify(v, padded, n, &unterminated, NULL), JWTWARDEN_RESULT_OK);
  jwtwarden_verified_free(unterminated);
  free(padded);

  /* The result outlives its verifier. */
  jwtwarden_verifier_free(v);
  CHECK(strstr(jwtwarden_verified_claims_json(r), "\"aud\":\"api\"") != NULL);
  jwtwarden_verified_free(r);
  free(token);
  issuer_stop(&is);
}

/* Verify `token`, expect `want`, and check the error object agrees. */
static void expect_error(const jwtwarden_verifier *v, const char *token, size_t len, const char *issuer,
                         uint32_t want, const char *line) {
  jwtwarden_verified *out = (jwtwarden_verified *)0x1; /* must stay untouched on failure */
  jwtwarden_error *err = NULL;
  jwtwarden_result rc = jwtwarden_verifier_verify_with(v, token, len, issuer, false, &out, &err);
  if (rc != want) fprintf(stderr, "    (%s)\n", line);
  CHECK_CODE(rc, want);
  CHECK(out == (jwtwarden_verified *)0x1);
  CHECK(err != NULL);
  CHECK_CODE(jwtwarden_error_code(err), want);
  CHECK(jwtwarden_error_category(err) == jwtwarden_result_category(want));
  const char *msg = jwtwarden_error_message(err);
  CHECK(msg != NULL && msg[0] != '\0');
  /* A message never contains the whole token. */
  if (len > 40) CHECK(strstr(msg, token) == NULL);
  jwtwarden_error_free(err);
}

#define EXPECT_ERROR(v, token, want) expect_error(v, token, strlen(token), NULL, want, #want)

void test_error_kinds(void) {
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  char *claims;

  /* Malformed (1xx): no network needed. */
  EXPECT_ERROR(v, "not-a-token", JWTWARDEN_RESULT_MALFORMED_TOKEN);
  EXPECT_ERROR(v, "", JWTWARDEN_RESULT_MALFORMED_TOKEN);
  EXPECT_ERROR(v, "e30.e30.c2ln", JWTWARDEN_RESULT_INVALID_HEADER); /* {} has no alg */
  EXPECT_ERROR(v, "!!!.b.c", JWTWARDEN_RESULT_INVALID_BASE64);
  /* {"alg":"none"} . {} . (empty signature) */
  EXPECT_ERROR(v, "eyJhbGciOiJub25lIn0.e30.", JWTWARDEN_RESULT_MALFORMED_TOKEN);
  EXPECT_ERROR(v, "eyJhbGciOiJub25lIn0.e30.c2ln", JWTWARDEN_RESULT_ALGORITHM_NOT_ALLOWED);
  char *big = malloc(20001);
  memset(big, 'a', 20000);
  big[20000] = '\0';
  EXPECT_ERROR(v, big, JWTWARDEN_RESULT_TOKEN_TOO_LARGE);
  free(big);
  CHECK(jwtwarden_result_is_malformed(JWTWARDEN_RESULT_MALFORMED_TOKEN));

  /* Verification failures (2xx). */
  char *good = issuer_mint(&is, NULL, NULL, NULL);
  char *bad_sig = strdup(good);
  char *sig = strrchr(bad_sig, '.') + 10;
  *sig = *sig == 'A' ? 'B' : 'A';
  EXPECT_ERROR(v, bad_sig, JWTWARDEN_RESULT_INVALID_SIGNATURE);
  CHECK(jwtwarden_result_is_verification_failure(JWTWARDEN_RESULT_INVALID_SIGNATURE));
  char *unknown_kid = issuer_mint(&is, NULL, NULL, "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"kid\":\"k-nope\"}");
  EXPECT_ERROR(v, unknown_kid, JWTWARDEN_RESULT_UNKNOWN_KID);

  /* Policy denials (3xx). */
  claims = claims_json(&is, NULL, "user", "api", -3600, "j-expired", NULL);
  char *expired = issuer_mint(&is, NULL, claims, NULL);
  EXPECT_ERROR(v, expired, JWTWARDEN_RESULT_EXPIRED);
  CHECK(jwtwarden_result_is_policy_denial(JWTWARDEN_RESULT_EXPIRED));
  free(claims);
  claims = claims_json(&is, NULL, "user", "someone-else", 3600, "j-aud", NULL);
  char *wrong_aud = issuer_mint(&is, NULL, claims, NULL);
  EXPECT_ERROR(v, wrong_aud, JWTWARDEN_RESULT_INVALID_AUDIENCE);
  free(claims);
  claims = claims_json(&is, "https://evil.example", "user", "api", 3600, "j-iss", NULL);
  char *other_iss = issuer_mint(&is, NULL, claims, NULL);
  EXPECT_ERROR(v, other_iss, JWTWARDEN_RESULT_UNKNOWN_ISSUER);
  /* Verified for a named issuer, the token's iss must match it. */
  expect_error(v, other_iss, strlen(other_iss), is.url, JWTWARDEN_RESULT_INVALID_ISSUER, "INVALID_ISSUER");
  expect_error(v, good, strlen(good), "https://not-configured.example", JWTWARDEN_RESULT_UNKNOWN_ISSUER,
               "UNKNOWN_ISSUER (named)");
  free(claims);
  claims = claims_json(&is, NULL, "user", "api", 3600, "j-nbf", "\"nbf\":9999999999");
  /* Duplicate nbf: the later value wins in serde_json. */
  char *not_yet = issuer_mint(&is, NULL, claims, NULL);
  EXPECT_ERROR(v, not_yet, JWTWARDEN_RESULT_NOT_YET_VALID);
  free(claims);

  /* The good token still verifies after all that. */
  CHECK_CODE(verify_code(v, good), JWTWARDEN_RESULT_OK);

  /* Without an error out-parameter, only the code. */
  jwtwarden_verified *out = NULL;
  CHECK_CODE(jwtwarden_verifier_verify(v, "x", 1, &out, NULL), JWTWARDEN_RESULT_MALFORMED_TOKEN);
  CHECK(out == NULL);

  free(good);
  free(bad_sig);
  free(unknown_kid);
  free(expired);
  free(wrong_aud);
  free(other_iss);
  free(not_yet);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}

void test_keys_unavailable(void) {
  issuer_t is;
  issuer_start(&is);
  /* A second issuer whose JWKS endpoint refuses connections (port 1). */
  char *cfg = NULL;
  if (asprintf(&cfg,
               "{\"issuers\":[{\"issuer\":\"https://down.example\",\"jwks_uri\":\"http://127.0.0.1:1/jwks.json\","
               "\"audiences\":[\"api\"]}],\"http\":{\"allow_http\":true,\"connect_timeout_ms\":500,"
               "\"timeout_ms\":1000}}") < 0)
    abort();
  jwtwarden_verifier *v = NULL;
  CHECK_CODE(jwtwarden_verifier_new(cfg, strlen(cfg), &v, NULL), JWTWARDEN_RESULT_OK);
  char *claims = claims_json(&is, "https://down.example", "user", "api", 3600, "j-down", NULL);
  char *token = issuer_mint(&is, NULL, claims, NULL);
  EXPECT_ERROR(v, token, JWTWARDEN_RESULT_KEYS_UNAVAILABLE);
  CHECK(jwtwarden_result_is_keys_unavailable(JWTWARDEN_RESULT_KEYS_UNAVAILABLE));
  jwtwarden_health health = 0;
  CHECK_CODE(jwtwarden_verifier_issuer_health(v, "https://down.example", &health, NULL), JWTWARDEN_RESULT_OK);
  CHECK(health == JWTWARDEN_HEALTH_FAILED_CLOSED);
  jwtwarden_error *err = NULL;
  CHECK_CODE(jwtwarden_verifier_refresh_issuer(v, "https://down.example", &err),
             JWTWARDEN_RESULT_KEYS_UNAVAILABLE);
  CHECK(jwtwarden_error_category(err) == JWTWARDEN_CATEGORY_KEYS_UNAVAILABLE);
  jwtwarden_error_free(err);
  free(claims);
  free(token);
  free(cfg);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}

void test_invalid_config(void) {
  struct {
    const char *json;
    const char *mentions;
  } cases[] = {
      {"", "EOF"},
      {"{", "EOF"},
      {"{}", "issuers"},
      {"{\"issuers\":[]}", "issuers"},
      {"{\"issuers\":[{\"issuer\":\"https://a.example\",\"jwks_uri\":\"https://a.example/j\"}]}", "audiences"},
      {"{\"issuers\":[{\"issuer\":\"https://a.example\",\"jwks_uri\":\"https://a.example/j\","
       "\"audiences\":[\"api\"],\"leeway\":5}]}",
       "leeway"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    jwtwarden_verifier *v = (jwtwarden_verifier *)0x1;
    jwtwarden_error *err = NULL;
    CHECK_CODE(jwtwarden_verifier_new(cases[i].json, strlen(cases[i].json), &v, &err),
               JWTWARDEN_RESULT_INVALID_CONFIG);
    CHECK(v == (jwtwarden_verifier *)0x1);
    CHECK(jwtwarden_error_category(err) == JWTWARDEN_CATEGORY_USAGE);
    const char *msg = jwtwarden_error_message(err);
    if (!msg || !strstr(msg, cases[i].mentions)) {
      fprintf(stderr, "    config %s: message %s does not mention %s\n", cases[i].json, msg, cases[i].mentions);
      CHECK(!"the message names the field");
    }
    jwtwarden_error_free(err);
  }
  /* Invalid UTF-8. */
  jwtwarden_verifier *v = NULL;
  CHECK_CODE(jwtwarden_verifier_new("\xff\xfe", 2, &v, NULL), JWTWARDEN_RESULT_INVALID_CONFIG);
}

void test_result_names_and_categories(void) {
  CHECK(strcmp(jwtwarden_result_name(JWTWARDEN_RESULT_OK), "ok") == 0);
  CHECK(strcmp(jwtwarden_result_name(JWTWARDEN_RESULT_EXPIRED), "expired") == 0);
  CHECK(strcmp(jwtwarden_result_name(JWTWARDEN_RESULT_NULL_PARAMETER), "null_parameter") == 0);
  CHECK(strcmp(jwtwarden_result_name(12345), "unknown") == 0);
  CHECK(jwtwarden_result_category(JWTWARDEN_RESULT_OK) == JWTWARDEN_CATEGORY_NONE);
  CHECK(jwtwarden_result_category(JWTWARDEN_RESULT_UNKNOWN_KID) == JWTWARDEN_CATEGORY_VERIFICATION);
  CHECK(jwtwarden_result_category(JWTWARDEN_RESULT_PANIC) == JWTWARDEN_CATEGORY_INTERNAL);
  CHECK(strcmp(jwtwarden_category_name(JWTWARDEN_CATEGORY_KEYS_UNAVAILABLE), "keys_unavailable") == 0);
  CHECK(strcmp(jwtwarden_category_name(JWTWARDEN_CATEGORY_POLICY), "policy") == 0);
  CHECK(strcmp(jwtwarden_category_name(42), "unknown") == 0);
  CHECK(!jwtwarden_result_is_malformed(JWTWARDEN_RESULT_OK));
  CHECK(!jwtwarden_result_is_policy_denial(JWTWARDEN_RESULT_INVALID_SIGNATURE));
  CHECK(JWTWARDEN_RESULT_NULL_PARAMETER == 504 && JWTWARDEN_RESULT_PANIC == 901);
  CHECK(strcmp(jwtwarden_result_name(JWTWARDEN_RESULT_REVOCATIONS_STALE), "revocations_stale") == 0);
  CHECK(jwtwarden_result_category(JWTWARDEN_RESULT_REVOCATIONS_STALE) == JWTWARDEN_CATEGORY_KEYS_UNAVAILABLE);
  CHECK(jwtwarden_result_is_keys_unavailable(JWTWARDEN_RESULT_REVOCATIONS_STALE));
  CHECK(strcmp(jwtwarden_result_name(JWTWARDEN_RESULT_REVOCATION_NOT_PERSISTED), "revocation_not_persisted") == 0);
  CHECK(jwtwarden_result_category(JWTWARDEN_RESULT_REVOCATION_NOT_PERSISTED) == JWTWARDEN_CATEGORY_USAGE);
  CHECK(JWTWARDEN_RESULT_REVOCATIONS_STALE == 402 && JWTWARDEN_RESULT_REVOCATION_NOT_PERSISTED == 510);
  CHECK(JWTWARDEN_PROPAGATION_LOCAL == 0 && JWTWARDEN_PROPAGATION_FLEET == 1 && JWTWARDEN_PROPAGATION_PENDING == 2);
}
