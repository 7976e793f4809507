/* The calls for web-server modules (ffi/src/host.rs):
   jwtwarden_config_check, a configuration checked as jwtwarden_verifier_new
   would check it, without building a verifier (no thread, no fetch, nothing
   opened in state_dir), what nginx -t and apachectl configtest call; and
   jwtwarden_http_decision_claim_value, any claim of an allowed request as a
   claim header carries it (nginx's $jwtwarden_claim_NAME). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tests.h"

/* This process's thread count (/proc/self/status), or -1. */
static long thread_count(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long n = -1;
  if (!f) return -1;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "Threads: %ld", &n) == 1) break;
  fclose(f);
  return n;
}

/* The message of a failed check (malloc'd), or NULL if it passed. */
static char *check_message(const char *json, size_t len, uint32_t *code) {
  jwtwarden_error *err = NULL;
  *code = jwtwarden_config_check(json, len, &err);
  if (*code == JWTWARDEN_RESULT_OK) {
    CHECK(err == NULL);
    return NULL;
  }
  CHECK(err != NULL);
  char *msg = strdup(err ? jwtwarden_error_message(err) : "");
  jwtwarden_error_free(err);
  return msg;
}

/* The message jwtwarden_verifier_new gives (malloc'd), or NULL if it built. */
static char *build_message(const char *json, size_t len, uint32_t *code) {
  jwtwarden_verifier *v = NULL;
  jwtwarden_error *err = NULL;
  *code = jwtwarden_verifier_new(json, len, &v, &err);
  if (*code == JWTWARDEN_RESULT_OK) {
    jwtwarden_verifier_free(v);
    return NULL;
  }
  char *msg = strdup(err ? jwtwarden_error_message(err) : "");
  jwtwarden_error_free(err);
  return msg;
}

void test_config_check(void) {
  issuer_t is;
  issuer_start(&is);
  char dir[] = "/tmp/jwtwarden-config-check-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);

  /* The issuer's real JWKS, as a static keyset inline and in a file. */
  int status = 0;
  char *jwks = http_request(is.port, "GET", "/jwks.json", NULL, &status);
  CHECK(status == 200 && jwks != NULL);
  char *jwks_path = NULL, *missing_path = NULL, *state = NULL;
  if (asprintf(&jwks_path, "%s/jwks.json", dir) < 0 || asprintf(&missing_path, "%s/no-such.json", dir) < 0 ||
      asprintf(&state, "%s/state", dir) < 0)
    abort();
  FILE *f = fopen(jwks_path, "w");
  CHECK(f != NULL);
  fputs(jwks, f);
  fclose(f);

  /* Refused configurations: the check and a build refuse each alike, both
     naming the field, with the same message but for an unusable static
     keyset (the reason is worded by the key report, not the refresher).
     None of them fetches. */
  char *iss = NULL, *cases_json[8];
  const char *mentions[8];
  size_t n = 0;
#define CASE(field, ...)                                        \
  do {                                                          \
    if (asprintf(&cases_json[n], __VA_ARGS__) < 0) abort();     \
    mentions[n++] = field;                                      \
  } while (0)
  if (asprintf(&iss, "\"issuer\":\"%s\",\"audiences\":[\"api\"]", is.url) < 0) abort();
  CASE("EOF", "{\"issuers\":[{%s,", iss);
  CASE("issuers", "{}");
  CASE("issuers[0].jwks_uri", "{\"issuers\":[{%s,\"jwks_uri\":7}]}", iss);
  CASE("issuers[0].leeway", "{\"issuers\":[{%s,\"jwks_uri\":\"%s/jwks.json\",\"leeway\":5}]}", iss, is.url);
  CASE("jwks_uri", "{\"issuers\":[{%s,\"jwks_uri\":\"%s/jwks.json\"}]}", iss, is.url); /* http:// not allowed */
  CASE("issuers[0]: static JWKS unusable", "{\"issuers\":[{%s,\"jwks\":{\"keys\":[]}}]}", iss);
  CASE("issuers[0]: static JWKS unusable", "{\"issuers\":[{%s,\"jwks_file\":\"%s\"}]}", iss, missing_path);
  CASE("revocation.redis.url", "{\"issuers\":[{%s,\"jwks_file\":\"%s\"}],\"revocation\":{\"redis\":{\"url\":\"http://x\"}}}",
       iss, jwks_path);
#undef CASE
  long fetches = issuer_jwks_requests(&is);
  for (size_t i = 0; i < n; i++) {
    uint32_t checked, built;
    char *msg = check_message(cases_json[i], strlen(cases_json[i]), &checked);
    char *want = build_message(cases_json[i], strlen(cases_json[i]), &built);
    CHECK_CODE(checked, JWTWARDEN_RESULT_INVALID_CONFIG);
    CHECK_CODE(built, JWTWARDEN_RESULT_INVALID_CONFIG);
    bool static_keys = strstr(mentions[i], "static JWKS") != NULL;
    if (!msg || !strstr(msg, mentions[i]) || !want || !strstr(want, mentions[i]) ||
        (!static_keys && strcmp(msg, want) != 0)) {
      fprintf(stderr, "    config %s:\n      check: %s\n      build: %s\n      want it to name %s\n", cases_json[i],
              msg ? msg : "(ok)", want ? want : "(ok)", mentions[i]);
      CHECK(!"the check refuses as a build does, naming the field");
    }
    free(msg);
    free(want);
    free(cases_json[i]);
  }
  CHECK(issuer_jwks_requests(&is) == fetches);

  /* Invalid UTF-8; NULL arguments (error may be NULL). */
  uint32_t code;
  free(check_message("\xff\xfe", 2, &code));
  CHECK_CODE(code, JWTWARDEN_RESULT_INVALID_CONFIG);
  CHECK_CODE(jwtwarden_config_check(NULL, 0, NULL), JWTWARDEN_RESULT_NULL_PARAMETER);
  CHECK_CODE(jwtwarden_config_check("{}", 2, NULL), JWTWARDEN_RESULT_INVALID_CONFIG);

  /* Accepted configurations: a remote issuer with a state_dir, inline and
     file static keys. The check starts no thread, fetches nothing and does
     not create (or open) the state_dir; a build does all three. */
  char *good[3];
  if (asprintf(&good[0],
               "{\"issuers\":[{%s,\"jwks_uri\":\"%s/jwks.json\"}],\"http\":{\"allow_http\":true},"
               "\"state_dir\":\"%s\"}",
               iss, is.url, state) < 0 ||
      asprintf(&good[1], "{\"issuers\":[{%s,\"jwks\":%s}]}", iss, jwks) < 0 ||
      asprintf(&good[2], "{\"issuers\":[{%s,\"jwks_file\":\"%s\"}]}", iss, jwks_path) < 0)
    abort();
  long threads = thread_count();
  for (size_t i = 0; i < 3; i++) {
    char *msg = check_message(good[i], strlen(good[i]), &code);
    CHECK_CODE(code, JWTWARDEN_RESULT_OK);
    if (msg) fprintf(stderr, "    config %s: %s\n", good[i], msg);
    free(msg);
  }
  struct stat st;
  CHECK(stat(state, &st) != 0); /* state_dir not created */
  CHECK(issuer_jwks_requests(&is) == fetches);
  CHECK(thread_count() == threads);
  /* The same configurations build (the check said nothing false). */
  for (size_t i = 0; i < 3; i++) {
    char *msg = build_message(good[i], strlen(good[i]), &code);
    CHECK_CODE(code, JWTWARDEN_RESULT_OK);
    free(msg);
    free(good[i]);
  }
  CHECK(stat(state, &st) == 0);
  CHECK(issuer_jwks_requests(&is) > fetches);

  /* What only a build checks: a state_dir that cannot be a directory. */
  char *blocked = NULL;
  if (asprintf(&blocked,
               "{\"issuers\":[{%s,\"jwks_file\":\"%s\"}],\"state_dir\":\"%s/state\"}", iss, jwks_path,
               jwks_path) < 0)
    abort();
  free(check_message(blocked, strlen(blocked), &code));
  CHECK_CODE(code, JWTWARDEN_RESULT_OK);
  char *msg = build_message(blocked, strlen(blocked), &code);
  CHECK_CODE(code, JWTWARDEN_RESULT_INVALID_CONFIG);
  CHECK(msg && strstr(msg, "state_dir"));
  free(msg);
  free(blocked);

  char *rm = NULL;
  if (asprintf(&rm, "rm -rf '%s'", dir) < 0) abort();
  CHECK(system(rm) == 0);
  free(rm);
  free(iss);
  free(jwks);
  free(jwks_path);
  free(missing_path);
  free(state);
  issuer_stop(&is);
}

/* Claim `name` of decision `d` under policy `p` (malloc'd copy), or NULL. */
static char *claim(const jwtwarden_http_decision *d, const jwtwarden_http_policy *p, const char *name) {
  char *value = (char *)0x1;
  CHECK_CODE(jwtwarden_http_decision_claim_value(d, p, name, strlen(name), &value, NULL), JWTWARDEN_RESULT_OK);
  CHECK(value != (char *)0x1);
  if (value == NULL || value == (char *)0x1) return NULL;
  char *copy = strdup(value);
  jwtwarden_string_free(value);
  return copy;
}

static bool claim_is(const jwtwarden_http_decision *d, const jwtwarden_http_policy *p, const char *name,
                     const char *want) {
  char *got = claim(d, p, name);
  bool same = want == NULL ? got == NULL : got != NULL && strcmp(got, want) == 0;
  if (!same) fprintf(stderr, "    claim %s: got [%s], want [%s]\n", name, got ? got : "(none)", want ? want : "(none)");
  free(got);
  return same;
}

static jwtwarden_http_decision *decide_get(const jwtwarden_http_policy *p, const jwtwarden_verifier *v,
                                           const char *method, const char *target, const char *token,
                                           bool cached_only) {
  char *auth = NULL;
  if (token && asprintf(&auth, "Bearer %s", token) < 0) abort();
  jwtwarden_http_header h[1] = {{"authorization", 13, auth, auth ? strlen(auth) : 0}};
  jwtwarden_http_decision *d = NULL;
  CHECK_CODE(jwtwarden_http_decide(p, v, method, strlen(method), target, strlen(target), h, token ? 1 : 0,
                                   cached_only, &d, NULL),
             JWTWARDEN_RESULT_OK);
  free(auth);
  return d;
}

void test_http_claim_value(void) {
  static const char POLICY[] =
      "{\"claim_headers\":{\"sub\":\"X-Auth-Sub\"},"
      "\"routes\":[{\"prefix\":\"/public/\",\"open\":true},{\"prefix\":\"/admin/\",\"scopes\":[\"admin\"]}]}";
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  jwtwarden_http_policy *p = NULL;
  CHECK_CODE(jwtwarden_http_policy_new(POLICY, strlen(POLICY), &p, NULL), JWTWARDEN_RESULT_OK);

  char big[5001];
  memset(big, 'n', 5000);
  big[5000] = '\0';
  char *extra = NULL;
  if (asprintf(&extra,
               "\"tenant\":\"acme\",\"n\":42,\"ratio\":1.5,\"admin\":true,\"nothing\":null,"
               "\"roles\":[\"read\",\"write\",7,{\"x\":1}],\"org\":{\"id\":\"o1\",\"tier\":[1,2]},"
               "\"evil\":\"x\\r\\nX-Injected: 1\\u0000\\u0085\\u2028y\",\"empty\":\"\",\"blank\":\" \\t \","
               "\"spaced\":\"  pad  \",\"quoted\":\"say \\\"hi\\\"\",\"utf8\":\"caf\\u00e9\",\"big\":\"%s\"",
               big) < 0)
    abort();
  char *claims = claims_json(&is, NULL, "alice", "api", 3600, "j-claims", extra);
  char *token = issuer_mint(&is, NULL, claims, NULL);

  /* Allowed (verified now, then a cache hit): every claim, mapped or not,
     formatted and sanitised as a claim header. */
  for (int round = 0; round < 2; round++) {
    jwtwarden_http_decision *d = decide_get(p, v, "GET", "/orders", token, round == 1);
    CHECK(jwtwarden_http_decision_allowed(d));
    CHECK(jwtwarden_http_decision_cached(d) == (round == 1));
    CHECK(claim_is(d, p, "sub", "alice"));
    CHECK(claim_is(d, p, "tenant", "acme"));
    CHECK(claim_is(d, p, "n", "42"));
    CHECK(claim_is(d, p, "ratio", "1.5"));
    CHECK(claim_is(d, p, "admin", "true"));
    CHECK(claim_is(d, p, "nothing", "null"));
    CHECK(claim_is(d, p, "roles", "read,write,7,{\"x\":1}"));
    CHECK(claim_is(d, p, "org", "{\"id\":\"o1\",\"tier\":[1,2]}"));
    CHECK(claim_is(d, p, "evil", "x  X-Injected: 1   y"));
    CHECK(claim_is(d, p, "empty", NULL));
    CHECK(claim_is(d, p, "blank", NULL));
    CHECK(claim_is(d, p, "spaced", "pad"));
    CHECK(claim_is(d, p, "quoted", "say \"hi\""));
    CHECK(claim_is(d, p, "utf8", "caf\xc3\xa9"));
    CHECK(claim_is(d, p, "absent", NULL));
    CHECK(claim_is(d, p, "Tenant", NULL)); /* claim names are case-sensitive */
    char *b = claim(d, p, "big");
    CHECK(b != NULL && strlen(b) == 1024);
    free(b);
    /* The same as the mapped claim header. */
    size_t len = 0;
    const char *h = jwtwarden_http_decision_claim_header_value(d, 0, &len);
    CHECK(h != NULL && len == 5 && memcmp(h, "alice", 5) == 0);
    /* Bad arguments: nothing written. */
    char *untouched = (char *)0x1;
    CHECK_CODE(jwtwarden_http_decision_claim_value(d, p, "\xff", 1, &untouched, NULL),
               JWTWARDEN_RESULT_INVALID_ARGUMENT);
    CHECK_CODE(jwtwarden_http_decision_claim_value(NULL, p, "sub", 3, &untouched, NULL),
               JWTWARDEN_RESULT_NULL_PARAMETER);
    CHECK_CODE(jwtwarden_http_decision_claim_value(d, NULL, "sub", 3, &untouched, NULL),
               JWTWARDEN_RESULT_NULL_PARAMETER);
    CHECK_CODE(jwtwarden_http_decision_claim_value(d, p, NULL, 0, &untouched, NULL),
               JWTWARDEN_RESULT_NULL_PARAMETER);
    CHECK(untouched == (char *)0x1);
    CHECK_CODE(jwtwarden_http_decision_claim_value(d, p, "sub", 3, NULL, NULL), JWTWARDEN_RESULT_NULL_PARAMETER);
    jwtwarden_http_decision_free(d);
  }

  /* Not allowed, or nothing verified: never a claim. */
  char *expired_claims = claims_json(&is, NULL, "alice", "api", -3600, "j-exp", "\"tenant\":\"acme\"");
  char *expired = issuer_mint(&is, NULL, expired_claims, NULL);
  char *fresh_claims = claims_json(&is, NULL, "bob", "api", 3600, "j-new", "\"tenant\":\"acme\"");
  char *unseen = issuer_mint(&is, NULL, fresh_claims, NULL);
  struct {
    const char *method, *target, *token;
    bool cached_only;
  } refused[] = {
      {"GET", "/orders", expired, false},      /* refused by the engine */
      {"GET", "/admin/users", token, false},   /* verified, refused by the route's scope */
      {"GET", "/public/docs", token, false},   /* open route */
      {"OPTIONS", "/orders", token, false},    /* open method */
      {"GET", "/orders", unseen, true},        /* would fetch */
      {"GET", "/orders", NULL, false},         /* no token */
  };
  for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
    jwtwarden_http_decision *d =
        decide_get(p, v, refused[i].method, refused[i].target, refused[i].token, refused[i].cached_only);
    if (!claim_is(d, p, "tenant", NULL) || !claim_is(d, p, "sub", NULL)) {
      fprintf(stderr, "    case %zu (%s %s): a claim was given out\n", i, refused[i].method, refused[i].target);
      CHECK(!"no claim without an allowed token");
    }
    jwtwarden_http_decision_free(d);
  }

  free(extra);
  free(claims);
  free(token);
  free(expired_claims);
  free(expired);
  free(fresh_claims);
  free(unseen);
  jwtwarden_http_policy_free(p);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}
