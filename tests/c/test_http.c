/* The HTTP decision through the C ABI: what an nginx or Apache module
   calls. Refusals, claim headers, "would fetch" for an event loop, unsafe
   paths, header injection through claims, NULL arguments, and decisions
   outliving their policy and verifier. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

static const char POLICY[] =
    "{\"realm\":\"api\",\"claim_headers\":{\"sub\":\"X-Auth-Sub\"},"
    "\"routes\":[{\"prefix\":\"/public/\",\"open\":true},"
    "{\"prefix\":\"/admin/\",\"scopes\":[\"admin\"],\"fresh\":true}]}";

/* A borrowed (pointer, *length) string equals `want`. The length is read
   through a pointer, after the call that wrote it (argument evaluation
   order is unspecified in C). */
static bool str_is(const char *p, const size_t *len, const char *want) {
  return p != NULL && *len == strlen(want) && memcmp(p, want, *len) == 0;
}

/* (pointer, *length) contains `needle`. */
static bool str_has(const char *p, const size_t *len, const char *needle) {
  return p != NULL && memmem(p, *len, needle, strlen(needle)) != NULL;
}

/* The value of refusal header `name`, or NULL. */
static const char *refusal_header(const jwtwarden_http_decision *d, const char *name, size_t *len) {
  for (size_t i = 0; i < jwtwarden_http_decision_header_count(d); i++) {
    size_t n = 0;
    const char *h = jwtwarden_http_decision_header_name(d, i, &n);
    if (str_is(h, &n, name)) return jwtwarden_http_decision_header_value(d, i, len);
  }
  *len = 0;
  return NULL;
}

/* Decide GET `target` with an Authorization value (or none). */
static jwtwarden_http_decision *decide(const jwtwarden_http_policy *p, const jwtwarden_verifier *v,
                                       const char *target, const char *authorization, bool cached_only) {
  jwtwarden_http_header h[2] = {
      {"Host", 4, "example", 7},
      {"authorization", 13, authorization, authorization ? strlen(authorization) : 0},
  };
  jwtwarden_http_decision *d = NULL;
  CHECK_CODE(jwtwarden_http_decide(p, v, "GET", 3, target, strlen(target), h, authorization ? 2 : 1,
                                   cached_only, &d, NULL),
             JWTWARDEN_RESULT_OK);
  return d;
}

static char *bearer(const char *token) {
  char *out = NULL;
  if (asprintf(&out, "Bearer %s", token) < 0) abort();
  return out;
}

void test_http_decision(void) {
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  jwtwarden_http_policy *p = NULL;
  CHECK_CODE(jwtwarden_http_policy_new(POLICY, strlen(POLICY), &p, NULL), JWTWARDEN_RESULT_OK);

  /* No token: 401 with a bare challenge, no-store, a JSON body. */
  jwtwarden_http_decision *d = decide(p, v, "/orders", NULL, true);
  size_t len = 0;
  CHECK(jwtwarden_http_decision_status(d) == 401);
  CHECK(!jwtwarden_http_decision_allowed(d) && !jwtwarden_http_decision_would_fetch(d));
  CHECK(str_is(refusal_header(d, "www-authenticate", &len), &len, "Bearer realm=\"api\""));
  CHECK(str_is(refusal_header(d, "cache-control", &len), &len, "no-store"));
  const char *body = jwtwarden_http_decision_body(d, &len);
  CHECK(str_has(body, &len, "\"error\":\"missing_token\""));
  CHECK(jwtwarden_http_decision_error_code(d) == 0);
  CHECK(jwtwarden_http_decision_header_name(d, 99, &len) == NULL && len == 0);
  jwtwarden_http_decision_free(d);

  /* An open route needs nothing. */
  d = decide(p, v, "/public/a.css", NULL, true);
  CHECK(jwtwarden_http_decision_allowed(d));
  CHECK(jwtwarden_http_decision_claim_header_count(d) == 0);
  CHECK(jwtwarden_http_decision_verified(d) == NULL); /* nothing was verified */
  jwtwarden_http_decision_free(d);

  /* A good token: the event loop's cached-only call says "would fetch" and
     waits for nothing; the verifying call allows it; then a hit answers
     inline with the same claim headers. */
  char *token = issuer_mint(&is, NULL, NULL, NULL);
  char *auth = bearer(token);
  d = decide(p, v, "/orders", auth, true);
  CHECK(jwtwarden_http_decision_would_fetch(d));
  CHECK(jwtwarden_http_decision_status(d) == 0 && !jwtwarden_http_decision_allowed(d));
  jwtwarden_http_decision_free(d);
  d = decide(p, v, "/orders", auth, false);
  CHECK(jwtwarden_http_decision_status(d) == 200 && !jwtwarden_http_decision_cached(d));
  /* The decision stored its claim headers in the result; the caller's own
     reads of the same result still answer (each front end's form has its
     own slot: a module once got NULL here and an empty REMOTE_USER). */
  jwtwarden_verified *fresh = jwtwarden_http_decision_verified(d);
  jwtwarden_http_decision_free(d);
  CHECK(fresh != NULL && !jwtwarden_verified_cached(fresh));
  CHECK(jwtwarden_verified_claim_json(fresh, "sub") != NULL &&
        strcmp(jwtwarden_verified_claim_json(fresh, "sub"), "\"user\"") == 0);
  CHECK(jwtwarden_verified_issuer(fresh) != NULL && jwtwarden_verified_kid(fresh) != NULL &&
        jwtwarden_verified_alg(fresh) != NULL);
  jwtwarden_verified_free(fresh);
  d = decide(p, v, "/orders", auth, true);
  CHECK(jwtwarden_http_decision_allowed(d) && jwtwarden_http_decision_cached(d));
  CHECK(jwtwarden_http_decision_claim_header_count(d) == 1);
  CHECK(str_is(jwtwarden_http_decision_claim_header_name(d, 0, &len), &len, "x-auth-sub"));
  CHECK(str_is(jwtwarden_http_decision_claim_header_value(d, 0, &len), &len, "user"));
  CHECK(jwtwarden_http_decision_header_count(d) == 0);
  jwtwarden_http_decision_body(d, &len);
  CHECK(len == 0);
  /* The verified result of the decision, outliving it. */
  jwtwarden_verified *verified = jwtwarden_http_decision_verified(d);
  jwtwarden_http_decision_free(d);
  CHECK(verified != NULL && jwtwarden_verified_cached(verified));
  CHECK(strstr(jwtwarden_verified_claims_json(verified), "\"sub\":\"user\"") != NULL);
  CHECK(jwtwarden_verified_claim_json(verified, "sub") != NULL && jwtwarden_verified_issuer(verified) != NULL);
  jwtwarden_verified_free(verified);
  CHECK(jwtwarden_http_decision_verified(NULL) == NULL);

  /* A fresh route never answers from the cache, and wants its scope: 403
     insufficient_scope, after a verification (cached-only: would fetch). */
  d = decide(p, v, "/admin/users", auth, true);
  CHECK(jwtwarden_http_decision_would_fetch(d));
  jwtwarden_http_decision_free(d);
  d = decide(p, v, "/admin/users", auth, false);
  CHECK(jwtwarden_http_decision_status(d) == 403);
  CHECK(str_has(refusal_header(d, "www-authenticate", &len), &len, "error=\"insufficient_scope\""));
  jwtwarden_http_decision_free(d);

  /* Spellings of a path that no reading makes safe: 403 whatever the token,
     no challenge; raw bytes that are not UTF-8 too. */
  const char *unsafe[] = {"/public/..;/admin/users", "/public/%2e%2e%2fadmin", "/public/%252e%252e/admin",
                          "/public/\xff/../admin"};
  for (size_t i = 0; i < sizeof unsafe / sizeof unsafe[0]; i++) {
    d = decide(p, v, unsafe[i], auth, true);
    CHECK(jwtwarden_http_decision_status(d) == 403);
    CHECK(refusal_header(d, "www-authenticate", &len) == NULL);
    jwtwarden_http_decision_free(d);
  }
  /* A dot segment does not reach the open route's rules. */
  d = decide(p, v, "/public/../orders", NULL, true);
  CHECK(jwtwarden_http_decision_status(d) == 401);
  jwtwarden_http_decision_free(d);

  /* Refused tokens: the engine's kind in the challenge and the code, never
     the token in the answer. */
  char *claims = claims_json(&is, NULL, "user", "api", -3600, "j-expired", NULL);
  char *expired = issuer_mint(&is, NULL, claims, NULL);
  char *expired_auth = bearer(expired);
  d = decide(p, v, "/orders", expired_auth, false);
  CHECK(jwtwarden_http_decision_status(d) == 401);
  CHECK(jwtwarden_http_decision_error_code(d) == JWTWARDEN_RESULT_EXPIRED);
  CHECK(str_is(refusal_header(d, "www-authenticate", &len), &len,
               "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"expired\""));
  body = jwtwarden_http_decision_body(d, &len);
  CHECK(!str_has(body, &len, strrchr(expired, '.') + 1));
  jwtwarden_http_decision_free(d);
  d = decide(p, v, "/orders", "Bearer !!.b.c", false);
  CHECK(jwtwarden_http_decision_status(d) == 401);
  CHECK(jwtwarden_http_decision_error_code(d) == JWTWARDEN_RESULT_INVALID_BASE64);
  body = jwtwarden_http_decision_body(d, &len);
  CHECK(!str_has(body, &len, "!!.b.c"));
  jwtwarden_http_decision_free(d);
  d = decide(p, v, "/orders", "Bearer\tabc.def.ghi", false);
  CHECK(jwtwarden_http_decision_status(d) == 400);
  jwtwarden_http_decision_free(d);

  /* Two Authorization fields: ambiguous, 400. */
  jwtwarden_http_header two[2] = {{"Authorization", 13, auth, strlen(auth)},
                                  {"AUTHORIZATION", 13, auth, strlen(auth)}};
  d = NULL;
  CHECK_CODE(jwtwarden_http_decide(p, v, "get", 3, "/orders", 7, two, 2, true, &d, NULL), JWTWARDEN_RESULT_OK);
  CHECK(jwtwarden_http_decision_status(d) == 400);
  jwtwarden_http_decision_free(d);

  /* A claim chosen by the token's subject cannot split a header. */
  char *evil_claims = claims_json(&is, NULL, "alice\\r\\nX-Injected: yes", "api", 3600, "j-evil", NULL);
  char *evil = issuer_mint(&is, NULL, evil_claims, NULL);
  char *evil_auth = bearer(evil);
  d = decide(p, v, "/orders", evil_auth, false);
  CHECK(jwtwarden_http_decision_allowed(d));
  const char *value = jwtwarden_http_decision_claim_header_value(d, 0, &len);
  CHECK(value != NULL && memchr(value, '\r', len) == NULL && memchr(value, '\n', len) == NULL);
  CHECK(str_is(value, &len, "alice  X-Injected: yes"));

  /* A decision outlives its policy and its verifier. */
  jwtwarden_http_decision *kept = decide(p, v, "/orders", auth, true);
  jwtwarden_http_policy_free(p);
  jwtwarden_verifier_free(v);
  CHECK(jwtwarden_http_decision_allowed(kept));
  CHECK(str_is(jwtwarden_http_decision_claim_header_value(kept, 0, &len), &len, "user"));
  CHECK(str_is(jwtwarden_http_decision_claim_header_value(d, 0, &len), &len, "alice  X-Injected: yes"));
  jwtwarden_http_decision_free(kept);
  jwtwarden_http_decision_free(d);

  free(evil_auth);
  free(evil);
  free(evil_claims);
  free(expired_auth);
  free(expired);
  free(claims);
  free(auth);
  free(token);
  issuer_stop(&is);
}

void test_http_policy_errors_and_null_arguments(void) {
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  jwtwarden_http_policy *p = NULL;
  jwtwarden_error *err = NULL;
  const char bad[] = "{\"routes\":[{\"prefix\":\"/a/../b\"}]}";
  CHECK_CODE(jwtwarden_http_policy_new(bad, strlen(bad), &p, &err), JWTWARDEN_RESULT_INVALID_CONFIG);
  CHECK(p == NULL);
  CHECK(strstr(jwtwarden_error_message(err), "routes[0].prefix") != NULL);
  jwtwarden_error_free(err);
  err = NULL;
  const char typo[] = "{\"realmm\":\"x\"}";
  CHECK_CODE(jwtwarden_http_policy_new(typo, strlen(typo), &p, &err), JWTWARDEN_RESULT_INVALID_CONFIG);
  CHECK(strstr(jwtwarden_error_message(err), "realmm") != NULL);
  jwtwarden_error_free(err);
  CHECK_CODE(jwtwarden_http_policy_new(NULL, 0, &p, NULL), JWTWARDEN_RESULT_NULL_PARAMETER);
  CHECK_CODE(jwtwarden_http_policy_new("{}", 2, NULL, NULL), JWTWARDEN_RESULT_NULL_PARAMETER);
  CHECK_CODE(jwtwarden_http_policy_new("{}", 2, &p, NULL), JWTWARDEN_RESULT_OK);

  jwtwarden_http_decision *d = NULL;
  CHECK_CODE(jwtwarden_http_decide(NULL, v, "GET", 3, "/", 1, NULL, 0, true, &d, NULL),
             JWTWARDEN_RESULT_NULL_PARAMETER);
  CHECK_CODE(jwtwarden_http_decide(p, NULL, "GET", 3, "/", 1, NULL, 0, true, &d, NULL),
             JWTWARDEN_RESULT_NULL_PARAMETER);
  CHECK_CODE(jwtwarden_http_decide(p, v, NULL, 0, "/", 1, NULL, 0, true, &d, NULL),
             JWTWARDEN_RESULT_NULL_PARAMETER);
  CHECK_CODE(jwtwarden_http_decide(p, v, "GET", 3, "/", 1, NULL, 2, true, &d, NULL),
             JWTWARDEN_RESULT_NULL_PARAMETER);
  jwtwarden_http_header nameless = {NULL, 5, "x", 1};
  CHECK_CODE(jwtwarden_http_decide(p, v, "GET", 3, "/", 1, &nameless, 1, true, &d, NULL),
             JWTWARDEN_RESULT_NULL_PARAMETER);
  CHECK_CODE(jwtwarden_http_decide(p, v, "GET", 3, "/", 1, NULL, 0, true, NULL, NULL),
             JWTWARDEN_RESULT_NULL_PARAMETER);
  CHECK_CODE(jwtwarden_http_decide(p, v, "G T", 3, "/", 1, NULL, 0, true, &d, NULL),
             JWTWARDEN_RESULT_INVALID_ARGUMENT);
  CHECK(d == NULL);
  /* No routes: the target may be unknown. An empty header (NULL, 0) is fine. */
  jwtwarden_http_header empty = {"X-Empty", 7, NULL, 0};
  CHECK_CODE(jwtwarden_http_decide(p, v, "GET", 3, NULL, 0, &empty, 1, true, &d, NULL), JWTWARDEN_RESULT_OK);
  CHECK(jwtwarden_http_decision_status(d) == 401);
  /* No realm configured: none in the challenge. */
  size_t len = 0;
  CHECK(str_is(jwtwarden_http_decision_header_value(d, 1, &len), &len, "Bearer") ||
        str_is(jwtwarden_http_decision_header_value(d, 0, &len), &len, "Bearer"));
  jwtwarden_http_decision_free(d);

  /* Accessors on NULL. */
  CHECK(jwtwarden_http_decision_status(NULL) == 0);
  CHECK(!jwtwarden_http_decision_allowed(NULL) && !jwtwarden_http_decision_would_fetch(NULL));
  CHECK(!jwtwarden_http_decision_cached(NULL) && jwtwarden_http_decision_error_code(NULL) == 0);
  CHECK(jwtwarden_http_decision_header_count(NULL) == 0 && jwtwarden_http_decision_claim_header_count(NULL) == 0);
  len = 7;
  CHECK(jwtwarden_http_decision_body(NULL, &len) == NULL && len == 0);
  CHECK(jwtwarden_http_decision_header_name(NULL, 0, NULL) == NULL);
  CHECK(jwtwarden_http_decision_claim_header_value(NULL, 0, NULL) == NULL);
  jwtwarden_http_decision_free(NULL);
  jwtwarden_http_policy_free(NULL);

  jwtwarden_http_policy_free(p);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}
