/* Verification assertions minted by the HTTP decision through the C ABI
   (issue 28): what the nginx and Apache modules call. A minter from the
   engine configuration, one assertion per allowed request, none for a
   refusal or an open route, a 500 rather than an allowed request without
   its assertion, and NULL arguments. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

/* RFC 8032 §7.1 test 1's secret key as PKCS#8 (a test key, public). */
#define EDGE_PEM "-----BEGIN PRIVATE KEY-----\\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\\n-----END PRIVATE KEY-----\\n"

static const char MINTING[] =
    "{\"routes\":[{\"prefix\":\"/public/\",\"open\":true}],\"assertion\":{\"audience\":\"orders\"}}";

/* The engine configuration for `is` with an `assertion` section. */
static char *config_with_assertion(const issuer_t *is) {
  char *cfg = config_for(is, NULL);
  char *out = NULL;
  cfg[strlen(cfg) - 1] = '\0'; /* the closing brace */
  if (asprintf(&out, "%s,\"assertion\":{\"name\":\"edge-1\",\"current\":{\"kid\":\"e1\",\"pem\":\"" EDGE_PEM "\"}}}",
               cfg) < 0)
    abort();
  free(cfg);
  return out;
}

static jwtwarden_http_decision *decide(const jwtwarden_http_policy *p, const jwtwarden_verifier *v,
                                       const jwtwarden_minter *m, const char *target, const char *auth) {
  jwtwarden_http_header h[2] = {
      {"authorization", 13, auth, auth ? strlen(auth) : 0},
      {"X-Jwtwarden-Assertion", 21, "forged", 6},
  };
  jwtwarden_http_decision *d = NULL;
  CHECK_CODE(jwtwarden_http_decide_minting(p, v, m, "get", 3, target, strlen(target), h, 2, false, &d, NULL),
             JWTWARDEN_RESULT_OK);
  return d;
}

void test_http_decision_mints_assertions(void) {
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  char *cfg = config_with_assertion(&is);
  jwtwarden_minter *m = NULL;
  jwtwarden_error *err = NULL;
  CHECK_CODE(jwtwarden_minter_new(cfg, strlen(cfg), &m, &err), JWTWARDEN_RESULT_OK);
  jwtwarden_http_policy *p = NULL;
  CHECK_CODE(jwtwarden_http_policy_new(MINTING, strlen(MINTING), &p, NULL), JWTWARDEN_RESULT_OK);
  size_t len = 0;
  const char *name = jwtwarden_http_policy_assertion_header(p, &len);
  CHECK(name != NULL && len == 21 && memcmp(name, "x-jwtwarden-assertion", 21) == 0);

  char *token = issuer_mint(&is, NULL, NULL, NULL);
  char *auth = NULL;
  if (asprintf(&auth, "Bearer %s", token) < 0) abort();
  /* Allowed, fresh then a hit: each with its own assertion (never the
     client's), three base64url segments. */
  char *first = NULL;
  for (int i = 0; i < 2; i++) {
    jwtwarden_http_decision *d = decide(p, v, m, "/orders/7?x=1", auth);
    CHECK(jwtwarden_http_decision_allowed(d) && jwtwarden_http_decision_cached(d) == (i == 1));
    const char *a = jwtwarden_http_decision_assertion(d, &len);
    CHECK(a != NULL && len > 100 && memcmp(a, "eyJ", 3) == 0 && memchr(a, '\0', len) == NULL);
    if (a && i == 0) first = strndup(a, len);
    if (a && i == 1) CHECK(first != NULL && (strlen(first) != len || memcmp(first, a, len) != 0));
    jwtwarden_http_decision_free(d);
  }
  free(first);
  /* Refused, or an open route: none. */
  jwtwarden_http_decision *d = decide(p, v, m, "/orders/7", "Bearer x.y.z");
  CHECK(jwtwarden_http_decision_status(d) == 401);
  CHECK(jwtwarden_http_decision_assertion(d, &len) == NULL && len == 0);
  jwtwarden_http_decision_free(d);
  d = decide(p, v, m, "/public/a", NULL);
  CHECK(jwtwarden_http_decision_allowed(d) && jwtwarden_http_decision_assertion(d, &len) == NULL);
  jwtwarden_http_decision_free(d);
  /* No minter for a policy that mints: 500, never allowed without it. */
  d = decide(p, v, NULL, "/orders/7", auth);
  CHECK(jwtwarden_http_decision_status(d) == 500 && jwtwarden_http_decision_assertion(d, &len) == NULL);
  jwtwarden_http_decision_free(d);

  /* A configuration without the section, NULL arguments. */
  char *plain = config_for(&is, NULL);
  jwtwarden_minter *none = NULL;
  CHECK_CODE(jwtwarden_minter_new(plain, strlen(plain), &none, &err), JWTWARDEN_RESULT_INVALID_CONFIG);
  CHECK(none == NULL && strstr(jwtwarden_error_message(err), "assertion") != NULL);
  jwtwarden_error_free(err);
  free(plain);
  CHECK_CODE(jwtwarden_minter_new(NULL, 0, &none, NULL), JWTWARDEN_RESULT_NULL_PARAMETER);
  CHECK_CODE(jwtwarden_minter_new(cfg, strlen(cfg), NULL, NULL), JWTWARDEN_RESULT_NULL_PARAMETER);
  CHECK_CODE(jwtwarden_http_decide_minting(NULL, v, m, "GET", 3, "/", 1, NULL, 0, true, &d, NULL),
             JWTWARDEN_RESULT_NULL_PARAMETER);
  CHECK(jwtwarden_http_decision_assertion(NULL, &len) == NULL && len == 0);
  CHECK(jwtwarden_http_policy_assertion_header(NULL, NULL) == NULL);
  jwtwarden_http_policy *no_mint = NULL;
  CHECK_CODE(jwtwarden_http_policy_new("{}", 2, &no_mint, NULL), JWTWARDEN_RESULT_OK);
  CHECK(jwtwarden_http_policy_assertion_header(no_mint, &len) == NULL && len == 0);
  jwtwarden_http_policy_free(no_mint);
  jwtwarden_minter_free(NULL);

  free(auth);
  free(token);
  free(cfg);
  jwtwarden_http_policy_free(p);
  jwtwarden_minter_free(m);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}
