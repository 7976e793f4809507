/* mod_jwtwarden: JWT bearer authentication for Apache httpd 2.4 over the
 * jwtwarden C ABI (include/jwtwarden.h). docs/apache.md is the manual.
 *
 * The module is glue only: every verdict (where the token is, route rules,
 * the refusal: status, WWW-Authenticate, Retry-After, Cache-Control and the
 * JSON body, sanitised claim headers) comes from the core's HTTP decision
 * (jwtwarden_http_decide).
 *
 *   AuthType jwtwarden            authentication (check_authn hook)
 *   Require jwt-claim / jwt-scope / jwt-issuer   authorization providers,
 *                                 composed by mod_authz_core
 *
 * Process model: the parent only checks the configuration
 * (jwtwarden_config_check, no verifier, so a bad file fails `apache2 -t`); each child
 * builds its own verifier in child_init and frees it by a pool cleanup on
 * the child's pool. Threads of one child (worker/event) share it. */

#include "httpd.h"
#include "http_config.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "ap_mpm.h"
#include "ap_provider.h"
#include "mod_auth.h"
#include "apr_hash.h"
#include "apr_lib.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jwtwarden.h>

module AP_MODULE_DECLARE_DATA jwtwarden_module;

#define AUTH_TYPE "jwtwarden"
#define MAX_CLAIM_NAME 64
/* A request note: this error response is the module's JSON body. */
#define JSON_ERROR_NOTE "jwtwarden-json-error"
#define JSON_ERROR_FILTER "JWTWARDEN_JSON_ERROR"

typedef struct {
  const char *config_file; /* JwtWardenConfig */
} jw_server_conf;

typedef struct {
  int fresh; /* -1 unset */
  const char *user_claim;
  apr_array_header_t *claim_headers; /* const char *[2]: claim, header */
  apr_array_header_t *open;          /* patterns */
  int claim_env;                     /* -1 unset */
  const char *assertion_audience;    /* JwtWardenAssertion; NULL = none */
  const char *assertion_header;      /* its header, NULL = the core's default */
  const char *assertion_json;        /* "" or `"assertion":{...},`, written by the directive */
  /* The policy's JSON members for claim_headers and open, written as the
   * directives are read and merged with their arrays: a request builds
   * its policy key from them without formatting anything. */
  const char *claim_headers_json; /* "" or `"claim":"header",...` */
  const char *open_json;          /* "" or `{route},...` */
} jw_dir_conf;

/* What check_authn learned, for the authorization providers. The claims
 * are read from the verified result's claims JSON only (a copy in the
 * request's pool): the per-claim accessors (jwtwarden_verified_claim_json,
 * _issuer) answer NULL for a result whose one memo slot already holds the
 * HTTP decision's claim headers, which a thread hitting the cache entry
 * another thread's decision filled would see. */
typedef struct {
  const char *name; /* decoded; NULL when the member's name is not a string */
  apr_size_t name_len;
  int plain;        /* a name for the environment: [A-Za-z0-9_], 1 to MAX_CLAIM_NAME bytes */
  const char *json; /* the value's compact JSON text, NUL-terminated */
  apr_size_t len;
  char *text;       /* a plain claim's value as text (its JWT_CLAIM_ value); else NULL */
} jw_claim;

typedef struct {
  int open; /* allowed without verifying anything */
  jwtwarden_verified *verified;
  jw_claim *claims;   /* the verified claims (prepare_claims); NULL when none */
  int nclaims;
  const char **env;   /* the JWT_CLAIM_ variables: key, value, key, value... */
  int nenv;
  int env_unique;     /* no two keys equal ignoring case */
  const char *issuer; /* the configured issuer it was verified for */
  int past_authz;     /* the authorization phase granted the request */
} jw_req;

/* Per child. */
static jwtwarden_verifier *g_verifier;
static jwtwarden_minter *g_minter; /* NULL without an `assertion` section */
/* Set while the configuration is read when a JwtWardenAssertion line is
 * seen, so the check_config hook requires the assertion keys. */
static int g_assertion_used;
static apr_hash_t *g_policies; /* policy JSON -> jwtwarden_http_policy* */
#if APR_HAS_THREADS
static apr_thread_mutex_t *g_policies_lock;
#endif
static server_rec *g_server;

/* The claims memo (see memo_load). */
#define MEMO_SETS 128
#define MEMO_WAYS 2
#define MEMO_MAX_CLAIMS 4096 /* longer claims are prepared per request */
#define MEMO_MAX_ENTRY 16384 /* bytes of one entry: at most 4 MiB per child */

typedef struct {
  void *block;       /* the one allocation (malloc) holding the rest */
  const char *text;  /* the claims JSON: the key */
  apr_size_t len;
  const char *arena; /* prepare_claims' arena, `used` bytes */
  apr_size_t used;
  const jw_claim *claims; /* into arena */
  int nclaims;
  const char *const *env; /* into arena */
  int nenv;
  int env_unique;
} memo_entry;

static memo_entry *g_memo; /* MEMO_SETS * MEMO_WAYS, per child */
static unsigned char g_memo_victim[MEMO_SETS];
#if APR_HAS_THREADS
static apr_thread_mutex_t *g_memo_lock;
#endif

static void memo_free(void);

/* ---------- configuration ---------- */

static void *create_server_conf(apr_pool_t *p, server_rec *s) {
  (void)s;
  return apr_pcalloc(p, sizeof(jw_server_conf));
}

static void *merge_server_conf(apr_pool_t *p, void *basev, void *addv) {
  jw_server_conf *base = basev, *add = addv, *c = apr_pcalloc(p, sizeof *c);
  c->config_file = add->config_file ? add->config_file : base->config_file;
  return c;
}

static void *create_dir_conf(apr_pool_t *p, char *dir) {
  (void)dir;
  jw_dir_conf *c = apr_pcalloc(p, sizeof *c);
  c->fresh = -1;
  c->claim_env = -1;
  return c;
}

static void *merge_dir_conf(apr_pool_t *p, void *basev, void *addv) {
  jw_dir_conf *base = basev, *add = addv, *c = apr_pcalloc(p, sizeof *c);
  c->fresh = add->fresh != -1 ? add->fresh : base->fresh;
  c->claim_env = add->claim_env != -1 ? add->claim_env : base->claim_env;
  c->user_claim = add->user_claim ? add->user_claim : base->user_claim;
  c->claim_headers = add->claim_headers ? add->claim_headers : base->claim_headers;
  c->claim_headers_json = add->claim_headers ? add->claim_headers_json : base->claim_headers_json;
  c->open = add->open ? add->open : base->open;
  c->assertion_audience = add->assertion_audience ? add->assertion_audience : base->assertion_audience;
  c->assertion_header = add->assertion_audience ? add->assertion_header : base->assertion_header;
  c->assertion_json = add->assertion_audience ? add->assertion_json : base->assertion_json;
  c->open_json = add->open ? add->open_json : base->open_json;
  return c;
}

/* `s` as a JSON string literal. */
static const char *json_str(apr_pool_t *p, const char *s) {
  apr_size_t n = strlen(s);
  char *out = apr_palloc(p, n * 6 + 3), *o = out;
  *o++ = '"';
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      *o++ = '\\';
      *o++ = (char)ch;
    } else if (ch < 0x20) {
      o += apr_snprintf(o, 7, "\\u%04x", ch);
    } else {
      *o++ = (char)ch;
    }
  }
  *o++ = '"';
  *o = '\0';
  return out;
}

/* The core's verdict on a policy: NULL when valid, else its message. */
static const char *check_policy(apr_pool_t *p, const char *json) {
  jwtwarden_http_policy *policy = NULL;
  jwtwarden_error *err = NULL;
  if (jwtwarden_http_policy_new(json, strlen(json), &policy, &err) == JWTWARDEN_RESULT_OK) {
    jwtwarden_http_policy_free(policy);
    return NULL;
  }
  const char *msg = apr_pstrdup(p, err ? jwtwarden_error_message(err) : "invalid policy");
  jwtwarden_error_free(err);
  return msg;
}

static const char *set_config_file(cmd_parms *cmd, void *dconf, const char *arg) {
  (void)dconf;
  jw_server_conf *c = ap_get_module_config(cmd->server->module_config, &jwtwarden_module);
  c->config_file = ap_server_root_relative(cmd->pool, arg);
  if (!c->config_file) return apr_psprintf(cmd->pool, "JwtWardenConfig: invalid path %s", arg);
  return NULL;
}

static const char *set_claim_header(cmd_parms *cmd, void *dconf, const char *claim, const char *header) {
  jw_dir_conf *c = dconf;
  const char *probe = apr_psprintf(cmd->pool, "{\"claim_headers\":{%s:%s}}", json_str(cmd->pool, claim),
                                   json_str(cmd->pool, header));
  const char *bad = check_policy(cmd->pool, probe);
  if (bad) return apr_psprintf(cmd->pool, "JwtWardenClaimHeader %s %s: %s", claim, header, bad);
  if (!c->claim_headers) c->claim_headers = apr_array_make(cmd->pool, 4, sizeof(const char *) * 2);
  const char **pair = apr_array_push(c->claim_headers);
  pair[0] = claim;
  pair[1] = apr_pstrdup(cmd->pool, header);
  const char *member = apr_pstrcat(cmd->pool, json_str(cmd->pool, claim), ":", json_str(cmd->pool, header), NULL);
  c->claim_headers_json =
      c->claim_headers_json ? apr_pstrcat(cmd->pool, c->claim_headers_json, ",", member, NULL) : member;
  return NULL;
}

/* An exact path, or a prefix ending with a star, as the middlewares' skip_paths. */
static const char *open_route_json(apr_pool_t *p, const char *pattern) {
  apr_size_t n = strlen(pattern);
  if (n > 0 && pattern[n - 1] == '*')
    return apr_psprintf(p, "{\"prefix\":%s,\"open\":true}", json_str(p, apr_pstrndup(p, pattern, n - 1)));
  return apr_psprintf(p, "{\"prefix\":%s,\"exact\":true,\"open\":true}", json_str(p, pattern));
}

static const char *add_open(cmd_parms *cmd, void *dconf, const char *pattern) {
  jw_dir_conf *c = dconf;
  const char *probe = apr_psprintf(cmd->pool, "{\"routes\":[%s]}", open_route_json(cmd->pool, pattern));
  const char *bad = check_policy(cmd->pool, probe);
  if (bad) return apr_psprintf(cmd->pool, "JwtWardenOpen %s: %s", pattern, bad);
  if (!c->open) c->open = apr_array_make(cmd->pool, 4, sizeof(const char *));
  *(const char **)apr_array_push(c->open) = pattern;
  const char *route = open_route_json(cmd->pool, pattern);
  c->open_json = c->open_json ? apr_pstrcat(cmd->pool, c->open_json, ",", route, NULL) : route;
  return NULL;
}

static const char *set_user_claim(cmd_parms *cmd, void *dconf, const char *claim) {
  jw_dir_conf *c = dconf;
  if (!*claim) return "JwtWardenUserClaim: a claim name is required";
  c->user_claim = apr_pstrdup(cmd->pool, claim);
  return NULL;
}

/* JwtWardenAssertion AUDIENCE [HEADER]: mint a verification assertion for
 * the backend (docs/trust-handoff.md), with the engine config's keys. */
static const char *set_assertion(cmd_parms *cmd, void *dconf, const char *audience, const char *header) {
  jw_dir_conf *c = dconf;
  const char *probe = apr_psprintf(cmd->pool, "{\"assertion\":{\"audience\":%s%s%s}}", json_str(cmd->pool, audience),
                                   header ? ",\"header\":" : "", header ? json_str(cmd->pool, header) : "");
  const char *bad = check_policy(cmd->pool, probe);
  if (bad) return apr_psprintf(cmd->pool, "JwtWardenAssertion %s: %s", audience, bad);
  c->assertion_audience = apr_pstrdup(cmd->pool, audience);
  c->assertion_header = header ? apr_pstrdup(cmd->pool, header) : NULL;
  c->assertion_json = apr_pstrcat(cmd->pool, "\"assertion\":{\"audience\":", json_str(cmd->pool, audience),
                                  header ? ",\"header\":" : "", header ? json_str(cmd->pool, header) : "", "},",
                                  NULL);
  g_assertion_used = 1;
  return NULL;
}

static const command_rec jw_cmds[] = {
    AP_INIT_TAKE1("JwtWardenConfig", set_config_file, NULL, RSRC_CONF,
                  "the engine's JSON configuration file (the same as every jwtwarden front end)"),
    AP_INIT_FLAG("JwtWardenFresh", ap_set_flag_slot, (void *)APR_OFFSETOF(jw_dir_conf, fresh), OR_AUTHCFG,
                 "On: check the signature and revocation state on every request (no result cache)"),
    AP_INIT_TAKE1("JwtWardenUserClaim", set_user_claim, NULL, OR_AUTHCFG,
                  "the claim that becomes REMOTE_USER (default sub)"),
    AP_INIT_TAKE2("JwtWardenClaimHeader", set_claim_header, NULL, OR_AUTHCFG,
                  "CLAIM HEADER: send a verified claim to the backend in this request header (the client's is removed)"),
    AP_INIT_ITERATE("JwtWardenOpen", add_open, NULL, OR_AUTHCFG,
                    "paths that need no token: /exact or /prefix/* (matched on the normalised path by the core)"),
    AP_INIT_FLAG("JwtWardenClaimEnv", ap_set_flag_slot, (void *)APR_OFFSETOF(jw_dir_conf, claim_env), OR_AUTHCFG,
                 "On (default): verified claims as JWT_CLAIM_<name> in the subprocess environment"),
    AP_INIT_TAKE12("JwtWardenAssertion", set_assertion, NULL, OR_AUTHCFG,
                   "AUDIENCE [HEADER]: a signed verification assertion for the backend in HEADER (default "
                   "X-Jwtwarden-Assertion; the client's is removed), keys from the engine config's assertion"),
    {NULL}};

/* A location's policy is a function of its merged configuration and its
 * realm (AuthName, an expression evaluated per request): the key
 * "F<realm or nothing>\0<claim headers>\0<open routes>\0<assertion>" (F: '0' or '1' for
 * JwtWardenFresh, 'r' added when there is a realm) names it in this
 * child's table; the JSON is written only when a key is new. Keys are
 * contents, never pointers (directives in .htaccess files live in the
 * request's pool). */
typedef struct {
  char *text;
  apr_size_t len;
} policy_key;

static void make_policy_key(request_rec *r, const jw_dir_conf *c, const char *realm, char *stack, apr_size_t room,
                            policy_key *k) {
  const char *ch = c->claim_headers_json ? c->claim_headers_json : "";
  const char *op = c->open_json ? c->open_json : "";
  const char *as = c->assertion_json ? c->assertion_json : "";
  apr_size_t rl = realm ? strlen(realm) : 0, hl = strlen(ch), ol = strlen(op), al = strlen(as);
  apr_size_t len = 2 + rl + 1 + hl + 1 + ol + 1 + al;
  char *t = len + 1 <= room ? stack : apr_palloc(r->pool, len + 1), *o = t;
  *o++ = c->fresh == 1 ? '1' : '0';
  *o++ = realm ? 'r' : '-';
  memcpy(o, realm ? realm : "", rl), o += rl, *o++ = '\0';
  memcpy(o, ch, hl), o += hl, *o++ = '\0';
  memcpy(o, op, ol), o += ol, *o++ = '\0';
  memcpy(o, as, al), o += al, *o = '\0';
  k->text = t;
  k->len = len;
}

/* The policy JSON of a directory's merged configuration. */
static const char *policy_json(apr_pool_t *p, const jw_dir_conf *c, const char *realm) {
  int fresh = c->fresh == 1, open = c->open_json != NULL;
  return apr_pstrcat(p, "{", realm ? "\"realm\":" : "", realm ? json_str(p, realm) : "", realm ? "," : "",
                     "\"claim_headers\":{", c->claim_headers_json ? c->claim_headers_json : "", "},",
                     c->assertion_json ? c->assertion_json : "", "\"routes\":[",
                     open ? c->open_json : "", open && fresh ? "," : "",
                     fresh ? "{\"prefix\":\"/\",\"fresh\":true}" : "", "]}", NULL);
}

/* This child's policy for the request's location, built once per key. */
static jwtwarden_http_policy *policy_for(request_rec *r, const jw_dir_conf *c) {
  const char *realm = ap_auth_name(r);
  char stack[256];
  policy_key k;
  make_policy_key(r, c, realm, stack, sizeof stack, &k);
  jwtwarden_http_policy *policy;
#if APR_HAS_THREADS
  if (g_policies_lock) apr_thread_mutex_lock(g_policies_lock);
#endif
  policy = apr_hash_get(g_policies, k.text, (apr_ssize_t)k.len);
  if (!policy) {
    const char *json = policy_json(r->pool, c, realm);
    jwtwarden_error *err = NULL;
    if (jwtwarden_http_policy_new(json, strlen(json), &policy, &err) == JWTWARDEN_RESULT_OK) {
      apr_pool_t *hp = apr_hash_pool_get(g_policies);
      apr_hash_set(g_policies, apr_pmemdup(hp, k.text, k.len), (apr_ssize_t)k.len, policy);
    } else {
      ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "jwtwarden: invalid policy: %s",
                    err ? jwtwarden_error_message(err) : "?");
      jwtwarden_error_free(err);
      policy = NULL;
    }
  }
#if APR_HAS_THREADS
  if (g_policies_lock) apr_thread_mutex_unlock(g_policies_lock);
#endif
  return policy;
}

/* ---------- process model ---------- */

static apr_status_t read_file(apr_pool_t *p, const char *path, char **out, apr_size_t *len) {
  apr_file_t *f;
  apr_finfo_t fi;
  apr_status_t rv = apr_file_open(&f, path, APR_READ, APR_OS_DEFAULT, p);
  if (rv != APR_SUCCESS) return rv;
  if ((rv = apr_file_info_get(&fi, APR_FINFO_SIZE, f)) != APR_SUCCESS) return rv;
  *len = (apr_size_t)fi.size;
  *out = apr_palloc(p, *len + 1);
  rv = apr_file_read_full(f, *out, *len, NULL);
  (*out)[*len] = '\0';
  apr_file_close(f);
  return rv;
}

static const char *g_config_json; /* read by the parent, inherited by children */
static apr_size_t g_config_len;

static int jw_check_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s) {
  (void)plog;
  (void)ptemp;
  jw_server_conf *base = ap_get_module_config(s->module_config, &jwtwarden_module);
  const char *file = base->config_file;
  for (server_rec *v = s->next; v; v = v->next) {
    jw_server_conf *c = ap_get_module_config(v->module_config, &jwtwarden_module);
    if (c->config_file && (!file || strcmp(c->config_file, file))) {
      if (file) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, "JwtWardenConfig: one file per server (%s and %s)", file,
                     c->config_file);
        return HTTP_INTERNAL_SERVER_ERROR;
      }
      file = c->config_file;
    }
  }
  g_config_json = NULL;
  if (!file) return OK;
  char *json;
  apr_size_t len;
  apr_status_t rv = read_file(pconf, file, &json, &len);
  if (rv != APR_SUCCESS) {
    ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s, "JwtWardenConfig: cannot read %s", file);
    return HTTP_INTERNAL_SERVER_ERROR;
  }
  /* Checked as building a verifier would check it, without building one:
   * no thread, no fetch, state_dir untouched in the parent. */
  jwtwarden_error *err = NULL;
  if (jwtwarden_config_check(json, len, &err) != JWTWARDEN_RESULT_OK) {
    ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, "JwtWardenConfig %s: %s", file,
                 err ? jwtwarden_error_message(err) : "invalid configuration");
    jwtwarden_error_free(err);
    return HTTP_INTERNAL_SERVER_ERROR;
  }
  if (g_assertion_used) {
    jwtwarden_minter *m = NULL;
    g_assertion_used = 0; /* read again with the configuration on a restart */
    if (jwtwarden_minter_new(json, len, &m, &err) != JWTWARDEN_RESULT_OK) {
      ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, "JwtWardenAssertion: JwtWardenConfig %s: %s", file,
                   err ? jwtwarden_error_message(err) : "no assertion keys");
      jwtwarden_error_free(err);
      return HTTP_INTERNAL_SERVER_ERROR;
    }
    jwtwarden_minter_free(m);
  }
  g_config_json = json;
  g_config_len = len;
  return OK;
}

static void jw_log(void *userdata, jwtwarden_log_level level, const char *message) {
  (void)userdata;
  int l = level <= JWTWARDEN_LOG_LEVEL_ERROR ? APLOG_ERR
          : level == JWTWARDEN_LOG_LEVEL_WARN ? APLOG_WARNING
          : level == JWTWARDEN_LOG_LEVEL_INFO ? APLOG_INFO
                                              : APLOG_DEBUG;
  if (g_server) ap_log_error(APLOG_MARK, l, 0, g_server, "jwtwarden: %s", message);
}

static apr_status_t child_cleanup(void *data) {
  (void)data;
  jwtwarden_set_log_callback(NULL, NULL, JWTWARDEN_LOG_LEVEL_OFF, NULL);
  if (g_policies) {
    for (apr_hash_index_t *hi = apr_hash_first(NULL, g_policies); hi; hi = apr_hash_next(hi)) {
      void *val;
      apr_hash_this(hi, NULL, NULL, &val);
      jwtwarden_http_policy_free(val);
    }
    g_policies = NULL;
  }
  memo_free();
  jwtwarden_verifier_free(g_verifier);
  g_verifier = NULL;
  jwtwarden_minter_free(g_minter);
  g_minter = NULL;
  return APR_SUCCESS;
}

static void jw_child_init(apr_pool_t *pchild, server_rec *s) {
  g_server = s;
  g_policies = apr_hash_make(pchild);
#if APR_HAS_THREADS
  /* prefork's children have one thread: no lock on their requests. */
  int threaded = 0;
  g_policies_lock = g_memo_lock = NULL;
  if (ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded) != APR_SUCCESS || threaded != AP_MPMQ_NOT_SUPPORTED) {
    apr_thread_mutex_create(&g_policies_lock, APR_THREAD_MUTEX_DEFAULT, pchild);
    apr_thread_mutex_create(&g_memo_lock, APR_THREAD_MUTEX_DEFAULT, pchild);
  }
#endif
  g_memo = calloc(MEMO_SETS * MEMO_WAYS, sizeof *g_memo);
  apr_pool_cleanup_register(pchild, NULL, child_cleanup, apr_pool_cleanup_null);
  if (!g_config_json) return;
  jwtwarden_set_log_callback(jw_log, NULL, JWTWARDEN_LOG_LEVEL_INFO, NULL);
  jwtwarden_error *err = NULL;
  if (jwtwarden_verifier_new(g_config_json, g_config_len, &g_verifier, &err) != JWTWARDEN_RESULT_OK) {
    ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, "jwtwarden: verifier: %s", err ? jwtwarden_error_message(err) : "?");
    jwtwarden_error_free(err);
    err = NULL;
    g_verifier = NULL;
  }
  /* The assertion keys, if the config has them (a JwtWardenAssertion
   * location without them answers 500). */
  if (jwtwarden_minter_new(g_config_json, g_config_len, &g_minter, &err) != JWTWARDEN_RESULT_OK) {
    jwtwarden_error_free(err);
    g_minter = NULL;
  }
}

/* ---------- authentication ---------- */

static apr_status_t free_verified(void *data) {
  jw_req *q = data;
  jwtwarden_verified_free(q->verified);
  q->verified = NULL;
  return APR_SUCCESS;
}

/* `n` bytes of `s` into `out` with control characters (CR, LF, NUL...)
 * and DEL as '?', NUL-terminated; returns the NUL's address. */
static char *printable_into(char *out, const char *s, apr_size_t n) {
  for (apr_size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    *out++ = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
  }
  *out = '\0';
  return out;
}

static char *printable(apr_pool_t *p, const char *s, apr_size_t n) {
  char *out = apr_palloc(p, n + 1);
  printable_into(out, s, n);
  return out;
}

static int is_json_string(const char *json, apr_size_t n) {
  return n >= 2 && json[0] == '"' && json[n - 1] == '"';
}

/* Is the inside of a JSON string (`n` bytes) its own text: no escape
 * (backslash), no control character, no DEL? Eight bytes at a time (the
 * classic has-zero-byte tests), where json_string_into's byte loop takes
 * some 8 instructions per byte. */
static int is_verbatim(const char *s, apr_size_t n) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  apr_size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w, b, d;
    memcpy(&w, s + i, 8);
    b = w ^ (ones * '\\');
    d = w ^ (ones * 0x7f);
    /* a byte < 0x20, a zero byte of b (a backslash) or of d (DEL) */
    if ((((w - ones * 0x20) & ~w) | ((b - ones) & ~b) | ((d - ones) & ~d)) & highs) return 0;
  }
  for (; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch == '\\' || ch == 0x7f) return 0;
  }
  return 1;
}

/* The text of the JSON string `json` (`n` bytes, quotes included; see
 * is_json_string) into `out`, escapes decoded (\u escapes outside ASCII
 * and control characters become '?'), NUL-terminated; returns the NUL's
 * address. `out` may be `json` itself: the text is never longer. */
static char *json_string_into(char *out, const char *json, apr_size_t n) {
  char *o = out;
  if (is_verbatim(json + 1, n - 2)) {
    memmove(out, json + 1, n - 2);
    out[n - 2] = '\0';
    return out + n - 2;
  }
  for (apr_size_t i = 1; i + 1 < n; i++) {
    char ch = json[i];
    if (ch == '\\' && i + 2 < n) {
      ch = json[++i];
      switch (ch) {
        case 'n': case 'r': case 't': case 'b': case 'f': ch = '?'; break;
        case 'u': {
          unsigned v = 0;
          for (int k = 0; k < 4 && i + 1 < n - 1; k++) {
            char h = json[++i];
            v = v * 16 + (unsigned)(h >= 'a' ? h - 'a' + 10 : h >= 'A' ? h - 'A' + 10 : h - '0');
          }
          ch = (v >= 0x20 && v < 0x7f) ? (char)v : '?';
          break;
        }
        default: break; /* \" \\ \/ */
      }
    } else if ((unsigned char)ch < 0x20 || ch == 0x7f) {
      ch = '?';
    }
    *o++ = ch;
  }
  *o = '\0';
  return o;
}

/* A JSON string's text (json_string_into), or NULL when `json` is not a
 * string. */
static char *json_string_value(apr_pool_t *p, const char *json, apr_size_t n) {
  if (!is_json_string(json, n)) return NULL;
  char *out = apr_palloc(p, n);
  json_string_into(out, json, n);
  return out;
}

/* The index of the quote closing the JSON string that opens at s[i], or
 * `n`: memchr to each quote, which ends the string unless an odd run of
 * backslashes escapes it. */
static apr_size_t string_end(const char *s, apr_size_t i, apr_size_t n) {
  for (i++; i < n;) {
    const char *q = memchr(s + i, '"', n - i);
    if (!q) return n;
    apr_size_t at = (apr_size_t)(q - s), back = 0;
    while (at - back > i && s[at - back - 1] == '\\') back++;
    if (!(back & 1)) return at;
    i = at + 1;
  }
  return n;
}

/* Skip one JSON value starting at s[i]; returns the index after it. */
static apr_size_t skip_value(const char *s, apr_size_t i, apr_size_t n) {
  int depth = 0;
  for (; i < n; i++) {
    char ch = s[i];
    if (ch == '"') {
      i = string_end(s, i, n);
      if (!depth) return i < n ? i + 1 : n;
    } else if (ch == '{' || ch == '[') {
      depth++;
    } else if (ch == '}' || ch == ']') {
      if (depth == 0) return i;
      if (--depth == 0) return i + 1;
    } else if (!depth && (ch == ',')) {
      return i;
    }
  }
  return n;
}

/* [A-Za-z0-9_]: apr_isalnum in the C locale, without a call per byte. */
static int is_name_char(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

/* Are the claims' variable names distinct ignoring case (table keys
 * are case-insensitive: `Sub` and `sub` are one variable)? */
static int env_names_unique(const jw_req *q) {
  /* One bit per (length, first letter in either case): pairs are compared
   * only when a bit is met twice. */
  uint64_t seen = 0;
  int clash = 0;
  for (int a = 0; a < q->nclaims && !clash; a++) {
    const jw_claim *x = &q->claims[a];
    if (!x->plain) continue;
    uint64_t bit = 1ULL << ((x->name_len * 7 + ((unsigned char)x->name[0] | 0x20)) & 63);
    clash = (seen & bit) != 0;
    seen |= bit;
  }
  for (int a = 0; clash && a < q->nclaims; a++) {
    const jw_claim *x = &q->claims[a];
    if (!x->plain) continue;
    for (int b = a + 1; b < q->nclaims; b++) {
      const jw_claim *y = &q->claims[b];
      if (y->plain && y->name_len == x->name_len && !strcasecmp(y->name, x->name)) return 0;
    }
  }
  return 1;
}

/* The claims prepared for a request, in one buffer (the arena) of the
 * request's pool: a copy of the core's compact claims JSON with each
 * member's name decoded in place (NULL when it is not a string) and its
 * value's JSON text NUL-terminated in place, then the JWT_CLAIM_<name>
 * variables' keys and values. REMOTE_USER, the subprocess environment and
 * the authorization providers all read q->claims and q->env; nothing
 * parses the claims again. The arena is a function of the claims text
 * alone, which is what lets the memo below hand a copy to the next request
 * with the same claims. Returns the arena; *used: its bytes in use. */
static char *prepare_claims(apr_pool_t *p, const char *src, apr_size_t n, jw_req *q, apr_size_t *used) {
  /* A member takes at least 5 bytes with its separator (`"":0,`); its
   * variable takes at most 12 bytes more than its name and value. */
  apr_size_t cap = n / 4 + 1, i = 1;
  char *s = apr_palloc(p, 2 * n + 1 + 12 * cap);
  memcpy(s, src, n);
  s[n] = '\0';
  jw_claim *cl = apr_palloc(p, cap * sizeof *cl);
  int k = 0;
  for (;;) {
    while (i < n && (s[i] == ' ' || s[i] == ',' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) i++;
    if (i >= n || s[i] != '"' || (apr_size_t)k == cap) break;
    apr_size_t kstart = i;
    i = string_end(s, i, n);
    i = i < n ? i + 1 : n;
    apr_size_t klen = i - kstart;
    while (i < n && (s[i] == ' ' || s[i] == ':')) i++;
    apr_size_t vstart = i;
    i = skip_value(s, i, n);
    jw_claim *c = &cl[k++];
    c->json = s + vstart;
    c->len = i - vstart;
    if (i < n) s[i++] = '\0'; /* the separator after the value */
    c->name = NULL;
    c->name_len = 0;
    c->plain = 0;
    c->text = NULL;
    if (is_json_string(s + kstart, klen)) {
      char *name = s + kstart;
      if (is_verbatim(name + 1, klen - 2)) { /* the text between the quotes */
        name[klen - 1] = '\0';
        c->name_len = klen - 2;
        name++;
      } else { /* decoded in place, before the value: decoding shortens it */
        c->name_len = (apr_size_t)(json_string_into(name, name, klen) - name);
      }
      c->name = name;
      c->plain = c->name_len > 0 && c->name_len <= MAX_CLAIM_NAME;
      for (const char *ch = name; c->plain && *ch; ch++)
        if (!is_name_char(*ch)) c->plain = 0;
    }
  }
  q->claims = cl;
  q->nclaims = k;

  /* Every top-level claim with a plain name as JWT_CLAIM_<name>. */
  char *o = s + n + 1;
  q->env = apr_palloc(p, 2 * (apr_size_t)(k ? k : 1) * sizeof *q->env);
  q->nenv = 0;
  for (int j = 0; j < k; j++) {
    jw_claim *c = &cl[j];
    if (!c->plain) continue;
    char *key = o;
    memcpy(o, "JWT_CLAIM_", sizeof "JWT_CLAIM_" - 1);
    memcpy(o + sizeof "JWT_CLAIM_" - 1, c->name, c->name_len + 1);
    o += sizeof "JWT_CLAIM_" + c->name_len;
    char *value = o;
    o = is_json_string(c->json, c->len) ? json_string_into(o, c->json, c->len) : printable_into(o, c->json, c->len);
    o++;
    c->text = value;
    q->env[2 * q->nenv] = key;
    q->env[2 * q->nenv + 1] = value;
    q->nenv++;
  }
  q->env_unique = env_names_unique(q);
  *used = (apr_size_t)(o - s);
  return s;
}

/* ---------- the claims memo ----------
 * Each child remembers the prepared claims of its last few hundred
 * distinct tokens, so that a cache hit (the same verified result again)
 * copies them instead of preparing them: one memcmp of the claims text,
 * one memcpy of the arena, pointers moved to the copy. An entry is found
 * by its claims text's address (the core serialises a result's claims
 * once and shares them with every hit) and used only when the whole text
 * is equal, so a reused address or a collision costs a preparation, never
 * a wrong answer. Requests get copies in their own pools: an entry can be
 * replaced at once (under the lock in threaded MPMs). */
static unsigned memo_set(const char *text) {
  return (unsigned)(((uint64_t)(uintptr_t)text * 0x9E3779B97F4A7C15ULL) >> 57) % MEMO_SETS;
}

static void memo_lock(void) {
#if APR_HAS_THREADS
  if (g_memo_lock) apr_thread_mutex_lock(g_memo_lock);
#endif
}

static void memo_unlock(void) {
#if APR_HAS_THREADS
  if (g_memo_lock) apr_thread_mutex_unlock(g_memo_lock);
#endif
}

/* `p` (pointing into `from`) moved to the same place in `to`. */
#define MOVE(p, from, to) ((p) ? (to) + ((p) - (from)) : NULL)

/* The prepared claims for `text` from the memo, copied into `p`: 1, or 0
 * when the memo does not hold them. */
static int memo_load(apr_pool_t *p, const char *text, apr_size_t n, jw_req *q) {
  if (!g_memo || n > MEMO_MAX_CLAIMS) return 0;
  unsigned set = memo_set(text);
  int found = 0;
  memo_lock();
  for (int w = 0; w < MEMO_WAYS && !found; w++) {
    const memo_entry *e = &g_memo[set * MEMO_WAYS + w];
    if (!e->block || e->len != n || memcmp(e->text, text, n)) continue;
    found = 1;
    g_memo_victim[set] = (unsigned char)((w + 1) % MEMO_WAYS);
    char *a = apr_palloc(p, e->used);
    memcpy(a, e->arena, e->used);
    jw_claim *cl = apr_palloc(p, (apr_size_t)(e->nclaims ? e->nclaims : 1) * sizeof *cl);
    for (int k = 0; k < e->nclaims; k++) {
      cl[k] = e->claims[k];
      cl[k].name = MOVE(e->claims[k].name, e->arena, a);
      cl[k].json = MOVE(e->claims[k].json, e->arena, a);
      cl[k].text = MOVE(e->claims[k].text, e->arena, a);
    }
    q->env = apr_palloc(p, 2 * (apr_size_t)(e->nenv ? e->nenv : 1) * sizeof *q->env);
    for (int k = 0; k < 2 * e->nenv; k++) q->env[k] = MOVE(e->env[k], e->arena, a);
    q->claims = cl;
    q->nclaims = e->nclaims;
    q->nenv = e->nenv;
    q->env_unique = e->env_unique;
  }
  memo_unlock();
  return found;
}

/* Remember the claims `text` prepared in `arena` (`used` bytes) as `q`. */
static void memo_store(const char *text, apr_size_t n, const char *arena, apr_size_t used, const jw_req *q) {
  if (!g_memo || n > MEMO_MAX_CLAIMS) return;
  apr_size_t nc = (apr_size_t)q->nclaims, ne = 2 * (apr_size_t)q->nenv;
  apr_size_t size = nc * sizeof(jw_claim) + ne * sizeof(char *) + used + n;
  if (size > MEMO_MAX_ENTRY) return; /* many small claims: prepared per request */
  char *block = malloc(size);
  if (!block) return;
  jw_claim *cl = (jw_claim *)block;
  const char **env = (const char **)(block + nc * sizeof(jw_claim));
  char *a = block + nc * sizeof(jw_claim) + ne * sizeof(char *);
  char *t = a + used;
  memcpy(a, arena, used);
  memcpy(t, text, n);
  for (apr_size_t k = 0; k < nc; k++) {
    cl[k] = q->claims[k];
    cl[k].name = MOVE(q->claims[k].name, arena, a);
    cl[k].json = MOVE(q->claims[k].json, arena, a);
    cl[k].text = MOVE(q->claims[k].text, arena, a);
  }
  for (apr_size_t k = 0; k < ne; k++) env[k] = MOVE(q->env[k], arena, a);
  unsigned set = memo_set(text);
  memo_lock();
  memo_entry *e = &g_memo[set * MEMO_WAYS + g_memo_victim[set]];
  g_memo_victim[set] = (unsigned char)((g_memo_victim[set] + 1) % MEMO_WAYS);
  free(e->block);
  *e = (memo_entry){block, t, n, a, used, cl, q->nclaims, env, q->nenv, q->env_unique};
  memo_unlock();
}

static void memo_free(void) {
  for (int i = 0; g_memo && i < MEMO_SETS * MEMO_WAYS; i++) free(g_memo[i].block);
  free(g_memo);
  g_memo = NULL;
}

/* q's claims: from the memo, or prepared and remembered. */
static void load_claims(apr_pool_t *p, const char *text, apr_size_t n, jw_req *q) {
  if (memo_load(p, text, n, q)) return;
  apr_size_t used;
  char *arena = prepare_claims(p, text, n, q, &used);
  memo_store(text, n, arena, used, q);
}

/* Claim `name`, or NULL when the token has no such claim. */
static const jw_claim *find_claim(const jw_req *q, const char *name) {
  for (int k = 0; k < q->nclaims; k++)
    if (q->claims[k].name && !strcmp(q->claims[k].name, name)) return &q->claims[k];
  return NULL;
}

/* Claim `name`'s value as compact JSON text, or NULL when the token has
 * no such claim. */
static const char *claim_json(const jw_req *q, const char *name) {
  const jw_claim *c = find_claim(q, name);
  return c ? c->json : NULL;
}

/* A claim's value as text: a string's text, else its JSON printable. */
static char *claim_text(apr_pool_t *p, const jw_claim *c) {
  if (c->text) return c->text; /* prepared with the environment */
  char *s = json_string_value(p, c->json, c->len);
  return s ? s : printable(p, c->json, c->len);
}

/* The JWT_CLAIM_<name> variables into the subprocess environment. With
 * apr_table_addn, which appends, when the table has no JWT_CLAIM_
 * variable yet and the names are distinct: apr_table_setn would compare
 * each new key with every key of the table that starts the same way
 * ("JWT_" for all of them) and find none. Otherwise setn, the last of one
 * name winning, as it always did. */
static void claims_to_env(request_rec *r, const jw_req *q) {
  int append = q->env_unique;
  const apr_array_header_t *arr = apr_table_elts(r->subprocess_env);
  const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
  for (int i = 0; append && i < arr->nelts; i++)
    if (e[i].key && !strncasecmp(e[i].key, "JWT_CLAIM_", sizeof "JWT_CLAIM_" - 1)) append = 0;
  for (int k = 0; k < q->nenv; k++)
    if (append)
      apr_table_addn(r->subprocess_env, q->env[2 * k], q->env[2 * k + 1]);
    else
      apr_table_setn(r->subprocess_env, q->env[2 * k], q->env[2 * k + 1]);
}

/* The refusal exactly as the core wrote it; the request ends here. */
static int send_refusal(request_rec *r, jwtwarden_http_decision *d) {
  r->status = (int)jwtwarden_http_decision_status(d);
  size_t count = jwtwarden_http_decision_header_count(d);
  for (size_t i = 0; i < count; i++) {
    size_t nl = 0, vl = 0;
    const char *name = jwtwarden_http_decision_header_name(d, i, &nl);
    const char *value = jwtwarden_http_decision_header_value(d, i, &vl);
    if (name && value)
      apr_table_add(r->err_headers_out, apr_pstrmemdup(r->pool, name, nl), apr_pstrmemdup(r->pool, value, vl));
  }
  size_t bl = 0;
  const char *body = jwtwarden_http_decision_body(d, &bl);
  char *copy = apr_pstrmemdup(r->pool, body ? body : "", bl);
  jwtwarden_http_decision_free(d);
  ap_set_content_type(r, "application/json");
  ap_set_content_length(r, (apr_off_t)bl);
  if (!r->header_only) ap_rwrite(copy, (int)bl, r);
  return DONE;
}

/* A request the module cannot decide (no verifier in this child, an
 * unusable policy, an error from the C ABI, a verified result without
 * claims): the contract's server-side refusal (tests/http_contract.json,
 * "a server-side failure"): 500, no challenge, `Cache-Control: no-store`,
 * the fixed JSON body. Never an authorization failure, never a pass. */
#define SERVER_FAILURE_BODY                                                                         \
  "{\"error\":\"invalid_argument\",\"code\":501,\"category\":\"usage\",\"message\":\"token verification " \
  "failed on the server\"}"

static int fail(request_rec *r, const char *why) {
  ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "jwtwarden: %s", why);
  r->status = HTTP_INTERNAL_SERVER_ERROR;
  apr_table_setn(r->err_headers_out, "Cache-Control", "no-store");
  ap_set_content_type(r, "application/json");
  ap_set_content_length(r, (apr_off_t)(sizeof SERVER_FAILURE_BODY - 1));
  if (!r->header_only) ap_rwrite(SERVER_FAILURE_BODY, (int)(sizeof SERVER_FAILURE_BODY - 1), r);
  return DONE;
}

static int jw_authenticate(request_rec *r) {
  const char *type = ap_auth_type(r);
  if (!type || strcasecmp(type, AUTH_TYPE)) return DECLINED;
  jw_dir_conf *c = ap_get_module_config(r->per_dir_config, &jwtwarden_module);
  if (!g_verifier) return fail(r, "no verifier in this process (JwtWardenConfig missing or invalid)");
  jwtwarden_http_policy *policy = policy_for(r, c);
  if (!policy) return fail(r, "no usable policy for this location");

  /* The client's own copies of the claim headers never reach the backend. */
  for (int i = 0; c->claim_headers && i < c->claim_headers->nelts; i++)
    apr_table_unset(r->headers_in, ((const char **)c->claim_headers->elts)[i * 2 + 1]);
  /* Nor their own assertion header. */
  const char *assertion_header = NULL;
  if (c->assertion_audience) {
    size_t al = 0;
    const char *an = jwtwarden_http_policy_assertion_header(policy, &al);
    if (!an) return fail(r, "the location's policy mints no assertion");
    assertion_header = apr_pstrmemdup(r->pool, an, al);
    apr_table_unset(r->headers_in, assertion_header);
  }

  const apr_array_header_t *arr = apr_table_elts(r->headers_in);
  const apr_table_entry_t *e = (const apr_table_entry_t *)arr->elts;
  jwtwarden_http_header *hs = apr_palloc(r->pool, sizeof(*hs) * (arr->nelts ? arr->nelts : 1));
  size_t nh = 0;
  for (int i = 0; i < arr->nelts; i++) {
    if (!e[i].key || !e[i].val) continue;
    hs[nh].name = e[i].key;
    hs[nh].name_len = strlen(e[i].key);
    hs[nh].value = e[i].val;
    hs[nh].value_len = strlen(e[i].val);
    nh++;
  }
  const char *target = r->unparsed_uri;
  if (target && target[0] != '/' && strcmp(target, "*"))
    target = apr_uri_unparse(r->pool, &r->parsed_uri, APR_URI_UNP_OMITSITEPART);

  jwtwarden_http_decision *d = NULL;
  jwtwarden_error *err = NULL;
  if (jwtwarden_http_decide_minting(policy, g_verifier, g_minter, r->method, strlen(r->method), target,
                                    target ? strlen(target) : 0, hs, nh, false, &d, &err) != JWTWARDEN_RESULT_OK) {
    const char *msg = apr_pstrdup(r->pool, err ? jwtwarden_error_message(err) : "?");
    jwtwarden_error_free(err);
    return fail(r, msg);
  }
  if (!jwtwarden_http_decision_allowed(d)) return send_refusal(r, d);

  /* The decision's own verified result: one verification per request. */
  jw_req *q = apr_pcalloc(r->pool, sizeof *q);
  q->verified = jwtwarden_http_decision_verified(d);
  if (q->verified) apr_pool_cleanup_register(r->pool, q, free_verified, apr_pool_cleanup_null);
  size_t count = jwtwarden_http_decision_claim_header_count(d);
  for (size_t i = 0; i < count; i++) {
    size_t nl = 0, vl = 0;
    const char *name = jwtwarden_http_decision_claim_header_name(d, i, &nl);
    const char *value = jwtwarden_http_decision_claim_header_value(d, i, &vl);
    if (name && value)
      apr_table_set(r->headers_in, apr_pstrmemdup(r->pool, name, nl), apr_pstrmemdup(r->pool, value, vl));
  }
  size_t assertion_len = 0;
  const char *assertion = jwtwarden_http_decision_assertion(d, &assertion_len);
  if (assertion && assertion_header)
    apr_table_set(r->headers_in, assertion_header, apr_pstrmemdup(r->pool, assertion, assertion_len));
  int cached = jwtwarden_http_decision_cached(d);
  jwtwarden_http_decision_free(d);
  r->ap_auth_type = AUTH_TYPE;
  if (!q->verified) {
    /* An open route or method: nothing verified, nothing passed on. */
    q->open = 1;
    r->user = "";
    ap_set_module_config(r->request_config, &jwtwarden_module, q);
    return OK;
  }
  const char *claims = jwtwarden_verified_claims_json(q->verified);
  size_t claims_len = jwtwarden_verified_claims_json_len(q->verified);
  if (!claims || claims_len < 2 || claims[0] != '{') return fail(r, "the accepted token's claims are unreadable");
  load_claims(r->pool, claims, claims_len, q);
  /* The configured issuer (borrowed from q->verified, which lives as long
   * as the request); the engine has checked that the `iss` claim names
   * it, so that claim stands in when the accessor has no answer. */
  q->issuer = jwtwarden_verified_issuer(q->verified);
  if (!q->issuer) {
    const jw_claim *ic = find_claim(q, "iss");
    q->issuer = ic ? json_string_value(r->pool, ic->json, ic->len) : NULL;
  }
  const jw_claim *uc = find_claim(q, c->user_claim ? c->user_claim : "sub");
  r->user = uc ? claim_text(r->pool, uc) : "";
  ap_set_module_config(r->request_config, &jwtwarden_module, q);
  if (c->claim_env != 0) claims_to_env(r, q);
  apr_table_setn(r->subprocess_env, "JWTWARDEN_CACHED", cached ? "true" : "false");
  return OK;
}

/* An authorization failure after authentication (a `Require` line refused
 * an accepted token): the Bearer challenge with insufficient_scope, as
 * every front end answers it, with the module's JSON body. `status` is
 * what mod_authz_core answers: 401, or 403 with AuthzSendForbiddenOnFailure
 * On (RFC 6750 §3.1, and the core's route `scopes`). */
static void insufficient_scope(request_rec *r, int status) {
  const char *realm = ap_auth_name(r);
  const char *challenge = realm ? apr_psprintf(r->pool, "Bearer realm=%s, error=\"insufficient_scope\"",
                                               json_str(r->pool, realm))
                                : "Bearer error=\"insufficient_scope\"";
  apr_table_setn(r->err_headers_out, "WWW-Authenticate", challenge);
  apr_table_setn(r->err_headers_out, "Cache-Control", "no-store");
  apr_table_setn(r->notes, JSON_ERROR_NOTE, "1");
  ap_custom_response(r, status,
                     "{\"error\":\"insufficient_scope\",\"code\":null,\"category\":\"policy\","
                     "\"message\":\"the token is not allowed here (Require)\"}");
}

static jw_req *req_state(request_rec *r) {
  return ap_get_module_config(r->request_config, &jwtwarden_module);
}

/* mod_authz_core calls this before answering 401 to an authenticated user. */
static int jw_note_auth_failure(request_rec *r, const char *type) {
  if (strcasecmp(type, AUTH_TYPE)) return DECLINED;
  insufficient_scope(r, HTTP_UNAUTHORIZED);
  return OK;
}

/* Runs only for a request the authorization phase granted: a 403 after
 * this is the handler's (a file's permissions, a backend), not a Require's. */
static int jw_fixups(request_rec *r) {
  jw_req *q = req_state(r);
  if (q) q->past_authz = 1;
  return DECLINED;
}

/* Apache's error response says text/html: the module's body is JSON. */
static apr_status_t json_error_filter(ap_filter_t *f, apr_bucket_brigade *bb) {
  ap_set_content_type(f->r, "application/json");
  ap_remove_output_filter(f);
  return ap_pass_brigade(f->next, bb);
}

/* Runs as Apache starts an error response, before it picks the body. A 403
 * to a token this module accepted, before the authorization phase granted
 * the request, is mod_authz_core's answer under AuthzSendForbiddenOnFailure
 * On (it calls no note_auth_failure hook then). */
static void jw_insert_error_filter(request_rec *r) {
  const char *type = ap_auth_type(r);
  jw_req *q = req_state(r);
  if (r->status == HTTP_FORBIDDEN && type && !strcasecmp(type, AUTH_TYPE) && q && q->verified && !q->past_authz &&
      !apr_table_get(r->notes, JSON_ERROR_NOTE))
    insufficient_scope(r, HTTP_FORBIDDEN);
  if (apr_table_get(r->notes, JSON_ERROR_NOTE)) ap_add_output_filter(JSON_ERROR_FILTER, NULL, r, r->connection);
}

/* ---------- authorization providers ---------- */

/* Does claim JSON `json` equal `want` (a string, or an array holding it,
 * or the same JSON text for numbers and booleans)? */
static int claim_matches(apr_pool_t *p, const char *json, const char *want) {
  apr_size_t n = strlen(json);
  if (json[0] == '[') {
    apr_size_t i = 1;
    while (i < n) {
      while (i < n && (json[i] == ' ' || json[i] == ',')) i++;
      if (i >= n || json[i] == ']') break;
      apr_size_t start = i;
      i = skip_value(json, i, n);
      if (i == start) break;
      if (claim_matches(p, apr_pstrmemdup(p, json + start, i - start), want)) return 1;
    }
    return 0;
  }
  char *s = json_string_value(p, json, n);
  return s ? !strcmp(s, want) : !strcmp(json, want);
}

#define CHECK_STATE                                        \
  jw_req *q = req_state(r);                                \
  if (!q) return AUTHZ_DENIED_NO_USER;                     \
  if (q->open) return AUTHZ_GRANTED;                       \
  if (!q->claims) return AUTHZ_DENIED_NO_USER;

/* A Require line's words (ap_getword_conf), split once when the
 * configuration is read: the checks below run on every request. */
typedef struct {
  int n;
  const char **w;
} require_words;

static const require_words *split_words(apr_pool_t *p, const char *line) {
  require_words *rw = apr_pcalloc(p, sizeof *rw);
  apr_array_header_t *a = apr_array_make(p, 4, sizeof(const char *));
  while (*line) *(const char **)apr_array_push(a) = ap_getword_conf(p, &line);
  rw->n = a->nelts;
  rw->w = (const char **)a->elts;
  return rw;
}

static authz_status claim_check(request_rec *r, const char *line, const void *parsed) {
  (void)line;
  CHECK_STATE
  const require_words *rw = parsed;
  if (!rw) return AUTHZ_GENERAL_ERROR;
  const char *json = rw->n && *rw->w[0] ? claim_json(q, rw->w[0]) : NULL;
  if (!json) return AUTHZ_DENIED;
  for (int i = 1; i < rw->n; i++)
    if (claim_matches(r->pool, json, rw->w[i])) return AUTHZ_GRANTED;
  return AUTHZ_DENIED;
}

/* Is `scope` in the token's `scope` (space-separated) or `scp` claim? */
static int has_scope(request_rec *r, const jw_req *q, const char *scope) {
  const char *json = claim_json(q, "scope");
  char *s = json ? json_string_value(r->pool, json, strlen(json)) : NULL;
  if (s) {
    char *last, *tok;
    for (tok = apr_strtok(s, " ", &last); tok; tok = apr_strtok(NULL, " ", &last))
      if (!strcmp(tok, scope)) return 1;
  }
  json = claim_json(q, "scp");
  if (json && json[0] == '[') return claim_matches(r->pool, json, scope);
  s = json ? json_string_value(r->pool, json, strlen(json)) : NULL;
  if (s) {
    char *last, *tok;
    for (tok = apr_strtok(s, " ", &last); tok; tok = apr_strtok(NULL, " ", &last))
      if (!strcmp(tok, scope)) return 1;
  }
  return 0;
}

/* Every scope listed must be granted (as a route's `scopes`). */
static authz_status scope_check(request_rec *r, const char *line, const void *parsed) {
  (void)line;
  CHECK_STATE
  const require_words *rw = parsed;
  if (!rw) return AUTHZ_GENERAL_ERROR;
  int any = 0;
  for (int i = 0; i < rw->n; i++) {
    if (!*rw->w[i]) break;
    any = 1;
    if (!has_scope(r, q, rw->w[i])) return AUTHZ_DENIED;
  }
  return any ? AUTHZ_GRANTED : AUTHZ_DENIED;
}

static authz_status issuer_check(request_rec *r, const char *line, const void *parsed) {
  (void)line;
  CHECK_STATE
  const require_words *rw = parsed;
  if (!rw) return AUTHZ_GENERAL_ERROR;
  const char *iss = q->issuer;
  for (int i = 0; iss && i < rw->n; i++)
    if (!strcmp(iss, rw->w[i])) return AUTHZ_GRANTED;
  return AUTHZ_DENIED;
}

static const char *parse_claim_line(cmd_parms *cmd, const char *line, const void **parsed) {
  const char *w = line;
  const char *name = ap_getword_conf(cmd->temp_pool, &w);
  if (!*name || !*w) return "Require jwt-claim: NAME VALUE... (at least one value)";
  *parsed = split_words(cmd->pool, line);
  return NULL;
}

static const char *parse_values_line(cmd_parms *cmd, const char *line, const void **parsed) {
  if (!*line) return "Require jwt-scope / jwt-issuer: at least one value";
  *parsed = split_words(cmd->pool, line);
  return NULL;
}

static const authz_provider claim_provider = {&claim_check, &parse_claim_line};
static const authz_provider scope_provider = {&scope_check, &parse_values_line};
static const authz_provider issuer_provider = {&issuer_check, &parse_values_line};

static void register_hooks(apr_pool_t *p) {
  ap_hook_check_config(jw_check_config, NULL, NULL, APR_HOOK_MIDDLE);
  ap_hook_child_init(jw_child_init, NULL, NULL, APR_HOOK_MIDDLE);
  ap_hook_check_authn(jw_authenticate, NULL, NULL, APR_HOOK_MIDDLE, AP_AUTH_INTERNAL_PER_CONF);
  ap_hook_note_auth_failure(jw_note_auth_failure, NULL, NULL, APR_HOOK_MIDDLE);
  ap_hook_fixups(jw_fixups, NULL, NULL, APR_HOOK_REALLY_FIRST);
  ap_hook_insert_error_filter(jw_insert_error_filter, NULL, NULL, APR_HOOK_MIDDLE);
  ap_register_output_filter(JSON_ERROR_FILTER, json_error_filter, NULL, AP_FTYPE_CONTENT_SET);
  ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "jwt-claim", AUTHZ_PROVIDER_VERSION, &claim_provider,
                            AP_AUTH_INTERNAL_PER_CONF);
  ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "jwt-scope", AUTHZ_PROVIDER_VERSION, &scope_provider,
                            AP_AUTH_INTERNAL_PER_CONF);
  ap_register_auth_provider(p, AUTHZ_PROVIDER_GROUP, "jwt-issuer", AUTHZ_PROVIDER_VERSION, &issuer_provider,
                            AP_AUTH_INTERNAL_PER_CONF);
}

AP_DECLARE_MODULE(jwtwarden) = {STANDARD20_MODULE_STUFF, create_dir_conf, merge_dir_conf, create_server_conf,
                                merge_server_conf, jw_cmds, register_hooks};
