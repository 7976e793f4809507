/* Inherited trust (issue 28): jwtwarden_verifier_verify_assertion and the
   jwtwarden_inherited accessors. The test issuer plays the edge: one of its
   keys is Ed25519 and it mints assertions (typ jwtwarden-assertion+jwt) for
   "edge-1"; the service configures "edge-1" as an issuer of kind
   "assertion" from the same JWKS. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

/* An assertion from edge-1 for `orders`, bound to method and path. */
static char *assertion(const issuer_t *is, const char *kid, const char *alg, const char *jti, const char *method,
                       const char *path, long verified_ago) {
  long now = now_secs();
  char *claims = NULL, *header = NULL;
  if (asprintf(&claims,
               "{\"iss\":\"edge-1\",\"aud\":\"orders\",\"iat\":%ld,\"exp\":%ld,\"jti\":\"%s\",\"htm\":\"%s\","
               "\"htu\":\"%s\",\"verified_at\":%ld,\"cached\":true,\"fresh\":false,"
               "\"orig\":{\"iss\":\"%s\",\"sub\":\"alice\",\"jti\":\"t-1\"}}",
               now, now + 30, jti, method, path, now - verified_ago, is->url) < 0 ||
      asprintf(&header, "{\"alg\":\"%s\",\"typ\":\"jwtwarden-assertion+jwt\",\"kid\":\"%s\"}", alg, kid) < 0)
    abort();
  char *a = issuer_mint(is, kid, claims, header);
  free(claims);
  free(header);
  return a;
}

static uint32_t inherit(const jwtwarden_verifier *v, const char *a, const char *method, const char *path, bool fresh) {
  jwtwarden_inherited *r = NULL;
  jwtwarden_result rc = jwtwarden_verifier_verify_assertion(v, a, strlen(a), method, path, fresh, &r, NULL);
  CHECK((rc == JWTWARDEN_RESULT_OK) == (r != NULL));
  jwtwarden_inherited_free(r);
  return rc;
}

void test_verify_assertion(void) {
  issuer_t is;
  issuer_start(&is);
  char *ekid = issuer_add_key(&is, "EdDSA");
  char *rkid = issuer_add_key(&is, "RS256");
  char *cfg = NULL;
  if (asprintf(&cfg,
               "{\"issuers\":[{\"issuer\":\"%s\",\"jwks_uri\":\"%s/jwks.json\",\"audiences\":[\"api\"]},"
               "{\"kind\":\"assertion\",\"issuer\":\"edge-1\",\"jwks_uri\":\"%s/jwks.json\","
               "\"audiences\":[\"orders\"],\"fresh_within_secs\":5}],"
               "\"http\":{\"allow_http\":true,\"timeout_ms\":30000}}",
               is.url, is.url, is.url) < 0)
    abort();
  jwtwarden_verifier *v = NULL;
  CHECK_CODE(jwtwarden_verifier_new(cfg, strlen(cfg), &v, NULL), JWTWARDEN_RESULT_OK);
  free(cfg);
  if (v) {
    /* Accepted once, with what the edge said about the original. */
    char *a = assertion(&is, ekid, "EdDSA", "c-1", "GET", "/orders/7", 0);
    jwtwarden_inherited *r = NULL;
    jwtwarden_error *err = NULL;
    CHECK_CODE(jwtwarden_verifier_verify_assertion(v, a, strlen(a), "GET", "/orders/7?page=2", false, &r, &err),
               JWTWARDEN_RESULT_OK);
    CHECK(err == NULL);
    if (r) {
      CHECK(jwtwarden_inherited_inherited(r));
      CHECK(strcmp(jwtwarden_inherited_edge(r), "edge-1") == 0);
      long at = (long)jwtwarden_inherited_verified_at(r);
      CHECK(at >= now_secs() - 5 && at <= now_secs());
      CHECK(jwtwarden_inherited_cached(r));
      CHECK(!jwtwarden_inherited_fresh(r));
      CHECK(strstr(jwtwarden_inherited_original_json(r), "\"sub\":\"alice\"") != NULL);
      CHECK(strstr(jwtwarden_inherited_claims_json(r), "\"htu\":\"/orders/7\"") != NULL);
    }
    jwtwarden_inherited_free(r);
    /* Twice: a replay. */
    CHECK_CODE(inherit(v, a, "GET", "/orders/7", false), JWTWARDEN_RESULT_REVOKED);
    /* An assertion is not a user token, nor a user token an assertion. */
    CHECK_CODE(verify_code(v, a), JWTWARDEN_RESULT_UNKNOWN_ISSUER);
    char *user = issuer_mint(&is, NULL, NULL, NULL);
    char *ucl = claims_json(&is, NULL, "alice", "api", 300, "u-1", NULL);
    char *utok = issuer_mint(&is, NULL, ucl, NULL);
    CHECK_CODE(verify_code(v, utok), JWTWARDEN_RESULT_OK);
    CHECK_CODE(inherit(v, utok, "GET", "/orders/7", false), JWTWARDEN_RESULT_UNKNOWN_ISSUER);
    free(user);
    free(ucl);
    free(utok);
    /* Bound to its request: another path or method is refused, and the
       refusals do not burn it. */
    char *b = assertion(&is, ekid, "EdDSA", "c-2", "GET", "/orders/7", 0);
    CHECK_CODE(inherit(v, b, "GET", "/orders/8", false), JWTWARDEN_RESULT_INVALID_AUDIENCE);
    CHECK_CODE(inherit(v, b, "DELETE", "/orders/7", false), JWTWARDEN_RESULT_INVALID_AUDIENCE);
    CHECK_CODE(inherit(v, b, "GET", "/orders/7", false), JWTWARDEN_RESULT_OK);
    /* A fresh route: verified 60 s ago is beyond fresh_within_secs. */
    char *c = assertion(&is, ekid, "EdDSA", "c-3", "POST", "/pay", 60);
    CHECK_CODE(inherit(v, c, "POST", "/pay", true), JWTWARDEN_RESULT_TOKEN_LIFETIME_EXCEEDED);
    CHECK_CODE(inherit(v, c, "POST", "/pay", false), JWTWARDEN_RESULT_OK);
    /* Signed with another algorithm (an RSA key of the same JWKS). */
    char *d = assertion(&is, rkid, "RS256", "c-4", "GET", "/x", 0);
    CHECK_CODE(inherit(v, d, "GET", "/x", false), JWTWARDEN_RESULT_ALGORITHM_NOT_ALLOWED);
    /* NULL arguments. */
    jwtwarden_inherited *none = NULL;
    CHECK_CODE(jwtwarden_verifier_verify_assertion(NULL, a, strlen(a), "GET", "/", false, &none, NULL),
               JWTWARDEN_RESULT_NULL_PARAMETER);
    CHECK_CODE(jwtwarden_verifier_verify_assertion(v, NULL, 3, "GET", "/", false, &none, NULL),
               JWTWARDEN_RESULT_NULL_PARAMETER);
    CHECK_CODE(jwtwarden_verifier_verify_assertion(v, a, strlen(a), NULL, "/", false, &none, NULL),
               JWTWARDEN_RESULT_NULL_PARAMETER);
    CHECK_CODE(jwtwarden_verifier_verify_assertion(v, a, strlen(a), "GET", NULL, false, &none, NULL),
               JWTWARDEN_RESULT_NULL_PARAMETER);
    CHECK_CODE(jwtwarden_verifier_verify_assertion(v, a, strlen(a), "GET", "/", false, NULL, NULL),
               JWTWARDEN_RESULT_NULL_PARAMETER);
    CHECK(none == NULL);
    free(a);
    free(b);
    free(c);
    free(d);
  }
  CHECK(!jwtwarden_inherited_inherited(NULL));
  CHECK(jwtwarden_inherited_edge(NULL) == NULL);
  CHECK(jwtwarden_inherited_verified_at(NULL) == 0);
  CHECK(!jwtwarden_inherited_cached(NULL));
  CHECK(!jwtwarden_inherited_fresh(NULL));
  CHECK(jwtwarden_inherited_original_json(NULL) == NULL);
  CHECK(jwtwarden_inherited_claims_json(NULL) == NULL);
  jwtwarden_inherited_free(NULL);
  jwtwarden_verifier_free(v);
  free(ekid);
  free(rkid);
  issuer_stop(&is);
}
