/* Issuers added, removed and replaced at runtime (issue 27):
   jwtwarden_verifier_add_issuer, _remove_issuer, _reload. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

static char *issuer_entry(const issuer_t *is) {
  char *e = NULL;
  if (asprintf(&e, "{\"issuer\":\"%s\",\"jwks_uri\":\"%s/jwks.json\",\"audiences\":[\"api\"]}", is->url, is->url) < 0)
    abort();
  return e;
}

static char *config_of(const char *entries, const char *extra) {
  char *c = NULL;
  if (asprintf(&c, "{\"issuers\":[%s],\"http\":{\"allow_http\":true}%s}", entries, extra) < 0) abort();
  return c;
}

/* Verified now, from the cache. */
static bool cached(const jwtwarden_verifier *v, const char *token) {
  jwtwarden_verified *r = NULL;
  if (jwtwarden_verifier_verify(v, token, strlen(token), &r, NULL) != JWTWARDEN_RESULT_OK) return false;
  bool hit = jwtwarden_verified_cached(r);
  jwtwarden_verified_free(r);
  return hit;
}

void test_runtime_issuers(void) {
  issuer_t a, b;
  issuer_start(&a);
  issuer_start(&b);
  char *ea = issuer_entry(&a);
  char *eb = issuer_entry(&b);
  char *cfg = config_of(ea, "");
  jwtwarden_verifier *v = NULL;
  CHECK_CODE(jwtwarden_verifier_new(cfg, strlen(cfg), &v, NULL), JWTWARDEN_RESULT_OK);
  free(cfg);
  char *ta = issuer_mint(&a, NULL, NULL, NULL);
  char *tb = issuer_mint(&b, NULL, NULL, NULL);
  if (v) {
    CHECK_CODE(verify_code(v, ta), JWTWARDEN_RESULT_OK);
    CHECK(cached(v, ta));
    CHECK_CODE(verify_code(v, tb), JWTWARDEN_RESULT_UNKNOWN_ISSUER);

    /* add: validated as at load, naming the field; nothing changes. */
    jwtwarden_error *err = NULL;
    const char *bad = "{\"issuer\":\"https://x.example\",\"jwks_uri\":\"https://x.example/jwks\",\"audiences\":[]}";
    CHECK_CODE(jwtwarden_verifier_add_issuer(v, bad, strlen(bad), &err), JWTWARDEN_RESULT_INVALID_CONFIG);
    CHECK(err != NULL && strstr(jwtwarden_error_message(err), "issuers[1]") != NULL);
    jwtwarden_error_free(err);
    CHECK_CODE(jwtwarden_verifier_add_issuer(v, "{", 1, NULL), JWTWARDEN_RESULT_INVALID_CONFIG);
    CHECK_CODE(jwtwarden_verifier_add_issuer(v, ea, strlen(ea), NULL), JWTWARDEN_RESULT_INVALID_CONFIG);
    CHECK_CODE(jwtwarden_verifier_add_issuer(NULL, eb, strlen(eb), NULL), JWTWARDEN_RESULT_NULL_PARAMETER);
    CHECK_CODE(jwtwarden_verifier_add_issuer(v, NULL, 3, NULL), JWTWARDEN_RESULT_NULL_PARAMETER);
    CHECK_CODE(verify_code(v, tb), JWTWARDEN_RESULT_UNKNOWN_ISSUER);
    CHECK_CODE(jwtwarden_verifier_add_issuer(v, eb, strlen(eb), NULL), JWTWARDEN_RESULT_OK);
    CHECK_CODE(verify_code(v, tb), JWTWARDEN_RESULT_OK);
    CHECK(cached(v, tb));
    CHECK(cached(v, ta));

    /* remove: the removed issuer's cached token is refused on the next call;
       the other issuer keeps its cached result. */
    CHECK_CODE(jwtwarden_verifier_remove_issuer(v, a.url, NULL), JWTWARDEN_RESULT_OK);
    CHECK_CODE(verify_code(v, ta), JWTWARDEN_RESULT_UNKNOWN_ISSUER);
    CHECK(cached(v, tb));
    CHECK_CODE(jwtwarden_verifier_remove_issuer(v, a.url, NULL), JWTWARDEN_RESULT_UNKNOWN_ISSUER);
    CHECK_CODE(jwtwarden_verifier_remove_issuer(v, b.url, NULL), JWTWARDEN_RESULT_INVALID_CONFIG);
    CHECK_CODE(jwtwarden_verifier_remove_issuer(v, NULL, NULL), JWTWARDEN_RESULT_NULL_PARAMETER);

    /* reload: b unchanged keeps its cached result, a comes back; a change
       outside the issuers is refused and changes nothing. */
    char *both = NULL;
    if (asprintf(&both, "%s,%s", eb, ea) < 0) abort();
    cfg = config_of(both, "");
    CHECK_CODE(jwtwarden_verifier_reload(v, cfg, strlen(cfg), NULL), JWTWARDEN_RESULT_OK);
    free(cfg);
    CHECK(cached(v, tb));
    CHECK_CODE(verify_code(v, ta), JWTWARDEN_RESULT_OK);
    cfg = config_of(eb, ",\"cache\":{\"capacity\":7}");
    err = NULL;
    CHECK_CODE(jwtwarden_verifier_reload(v, cfg, strlen(cfg), &err), JWTWARDEN_RESULT_INVALID_CONFIG);
    CHECK(err != NULL && strstr(jwtwarden_error_message(err), "cache") != NULL);
    jwtwarden_error_free(err);
    free(cfg);
    CHECK(cached(v, tb));
    CHECK(cached(v, ta));
    free(both);
    jwtwarden_verifier_free(v);
  }
  free(ta);
  free(tb);
  free(ea);
  free(eb);
  issuer_stop(&a);
  issuer_stop(&b);
}
