/*
 * ngx_http_jwtwarden_module: the jwtwarden engine inside nginx.
 *
 * Glue only: every decision (where the token is, the refusal, the claim
 * headers) comes from the core's HTTP decision through the C ABI
 * (include/jwtwarden.h). The module parses directives, builds one HTTP
 * policy per location at configuration time, builds each worker's
 * verifiers in init_process (never in the master: threads do not survive
 * fork) and, in the ACCESS phase, asks the decision in cache-only mode on
 * the event loop. A request the cache cannot answer ("would fetch") is
 * decided again on an nginx thread pool and resumed when that is done, so
 * the event loop never waits on the network. Each `jwtwarden_config` file
 * is checked (jwtwarden_config_check) when nginx reads its configuration,
 * in the master and by `nginx -t`, without building a verifier there.
 * See docs/nginx.md.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jwtwarden.h>

#if !(NGX_THREADS)
#error "ngx_http_jwtwarden_module needs nginx built --with-threads"
#endif

#define JW_OFF 0
#define JW_ON 1
#define JW_OPEN 2

/* The synthetic header a `jwtwarden_token $variable` value is passed as. */
#define JW_TOKEN_HEADER "x-jwtwarden-token"

typedef struct {
    ngx_str_t path;
    ngx_str_t json;
    jwtwarden_verifier *verifier; /* per worker, set in init_process */
    jwtwarden_minter *minter;     /* per worker; NULL without an assertion section */
} ngx_http_jwtwarden_engine_t;

typedef struct {
    ngx_array_t engines; /* ngx_http_jwtwarden_engine_t */
} ngx_http_jwtwarden_main_conf_t;

typedef struct {
    ngx_str_t claim;
    ngx_str_t header;
} ngx_http_jwtwarden_claim_header_t;

typedef struct {
    ngx_uint_t enable;
    ngx_int_t engine; /* index into main conf engines, NGX_CONF_UNSET if none */
    ngx_http_complex_value_t *token;
    ngx_str_t issuer;
    ngx_str_t realm;
    ngx_array_t *audiences; /* ngx_str_t */
    ngx_array_t *scopes;    /* ngx_str_t */
    ngx_flag_t fresh;
    ngx_array_t *claim_headers; /* ngx_http_jwtwarden_claim_header_t */
    ngx_str_t thread_pool_name;
    ngx_thread_pool_t *thread_pool;
    ngx_str_t assertion_audience; /* jwtwarden_assertion; "" = none */
    ngx_str_t assertion_header;
    jwtwarden_http_policy *policy;
} ngx_http_jwtwarden_loc_conf_t;

typedef struct {
    jwtwarden_http_decision *decision;
    const jwtwarden_http_policy *policy; /* the one the decision was made with */
    unsigned pending : 1;
    unsigned done : 1;
} ngx_http_jwtwarden_ctx_t;

/* What a thread-pool task needs; everything borrowed from the request,
   which stays blocked (r->main->blocked) until the task is back. */
typedef struct {
    ngx_http_request_t *request;
    const jwtwarden_http_policy *policy;
    const jwtwarden_verifier *verifier;
    const jwtwarden_minter *minter;
    ngx_str_t method;
    ngx_str_t target;
    jwtwarden_http_header *headers;
    size_t header_count;
    jwtwarden_http_decision *decision;
    jwtwarden_result rc;
} ngx_http_jwtwarden_task_t;

static ngx_int_t ngx_http_jwtwarden_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_jwtwarden_init(ngx_conf_t *cf);
static void *ngx_http_jwtwarden_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_jwtwarden_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_jwtwarden_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child);
static char *ngx_http_jwtwarden_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_jwtwarden_strings(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_jwtwarden_claim_header(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_jwtwarden_assertion(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static ngx_int_t ngx_http_jwtwarden_init_process(ngx_cycle_t *cycle);
static void ngx_http_jwtwarden_exit_process(ngx_cycle_t *cycle);

static ngx_conf_enum_t ngx_http_jwtwarden_enable_values[] = {
    {ngx_string("off"), JW_OFF}, {ngx_string("on"), JW_ON}, {ngx_string("open"), JW_OPEN}, {ngx_null_string, 0}};

#define JW_CONF (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF)

static ngx_command_t ngx_http_jwtwarden_commands[] = {
    {ngx_string("jwtwarden"), JW_CONF | NGX_CONF_TAKE1, ngx_conf_set_enum_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_jwtwarden_loc_conf_t, enable), ngx_http_jwtwarden_enable_values},
    {ngx_string("jwtwarden_config"), JW_CONF | NGX_CONF_TAKE1, ngx_http_jwtwarden_config, NGX_HTTP_LOC_CONF_OFFSET, 0,
     NULL},
    {ngx_string("jwtwarden_token"), JW_CONF | NGX_CONF_TAKE1, ngx_http_set_complex_value_slot,
     NGX_HTTP_LOC_CONF_OFFSET, offsetof(ngx_http_jwtwarden_loc_conf_t, token), NULL},
    {ngx_string("jwtwarden_issuer"), JW_CONF | NGX_CONF_TAKE1, ngx_conf_set_str_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_jwtwarden_loc_conf_t, issuer), NULL},
    {ngx_string("jwtwarden_realm"), JW_CONF | NGX_CONF_TAKE1, ngx_conf_set_str_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_jwtwarden_loc_conf_t, realm), NULL},
    {ngx_string("jwtwarden_audience"), JW_CONF | NGX_CONF_1MORE, ngx_http_jwtwarden_strings, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_jwtwarden_loc_conf_t, audiences), NULL},
    {ngx_string("jwtwarden_scope"), JW_CONF | NGX_CONF_1MORE, ngx_http_jwtwarden_strings, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_jwtwarden_loc_conf_t, scopes), NULL},
    {ngx_string("jwtwarden_fresh"), JW_CONF | NGX_CONF_FLAG, ngx_conf_set_flag_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_jwtwarden_loc_conf_t, fresh), NULL},
    {ngx_string("jwtwarden_claim_header"), JW_CONF | NGX_CONF_TAKE2, ngx_http_jwtwarden_claim_header,
     NGX_HTTP_LOC_CONF_OFFSET, 0, NULL},
    {ngx_string("jwtwarden_thread_pool"), JW_CONF | NGX_CONF_TAKE1, ngx_conf_set_str_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_jwtwarden_loc_conf_t, thread_pool_name), NULL},
    {ngx_string("jwtwarden_assertion"), JW_CONF | NGX_CONF_TAKE12, ngx_http_jwtwarden_assertion,
     NGX_HTTP_LOC_CONF_OFFSET, 0, NULL},
    ngx_null_command};

static ngx_http_module_t ngx_http_jwtwarden_module_ctx = {
    ngx_http_jwtwarden_add_variables,    /* preconfiguration */
    ngx_http_jwtwarden_init,             /* postconfiguration */
    ngx_http_jwtwarden_create_main_conf, /* create main configuration */
    NULL,                                /* init main configuration */
    NULL,                                /* create server configuration */
    NULL,                                /* merge server configuration */
    ngx_http_jwtwarden_create_loc_conf,  /* create location configuration */
    ngx_http_jwtwarden_merge_loc_conf    /* merge location configuration */
};

ngx_module_t ngx_http_jwtwarden_module = {NGX_MODULE_V1,
                                          &ngx_http_jwtwarden_module_ctx,
                                          ngx_http_jwtwarden_commands,
                                          NGX_HTTP_MODULE,
                                          NULL,                              /* init master */
                                          NULL,                              /* init module */
                                          ngx_http_jwtwarden_init_process,   /* init process */
                                          NULL,                              /* init thread */
                                          NULL,                              /* exit thread */
                                          ngx_http_jwtwarden_exit_process,   /* exit process */
                                          NULL,                              /* exit master */
                                          NGX_MODULE_V1_PADDING};

/* ---- configuration: handlers only parse ------------------------------ */

static void *ngx_http_jwtwarden_create_main_conf(ngx_conf_t *cf) {
    ngx_http_jwtwarden_main_conf_t *mcf = ngx_pcalloc(cf->pool, sizeof(*mcf));
    if (mcf == NULL ||
        ngx_array_init(&mcf->engines, cf->pool, 2, sizeof(ngx_http_jwtwarden_engine_t)) != NGX_OK) {
        return NULL;
    }
    return mcf;
}

static void *ngx_http_jwtwarden_create_loc_conf(ngx_conf_t *cf) {
    ngx_http_jwtwarden_loc_conf_t *c = ngx_pcalloc(cf->pool, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->enable = NGX_CONF_UNSET_UINT;
    c->engine = NGX_CONF_UNSET;
    c->token = NGX_CONF_UNSET_PTR;
    c->audiences = NGX_CONF_UNSET_PTR;
    c->scopes = NGX_CONF_UNSET_PTR;
    c->fresh = NGX_CONF_UNSET;
    c->claim_headers = NGX_CONF_UNSET_PTR;
    return c;
}

static char *ngx_http_jwtwarden_config(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) {
    ngx_http_jwtwarden_loc_conf_t *c = conf;
    ngx_http_jwtwarden_main_conf_t *mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_jwtwarden_module);
    ngx_str_t *value = cf->args->elts;
    ngx_str_t path = value[1];
    ngx_http_jwtwarden_engine_t *e;
    ngx_file_info_t fi;
    ngx_fd_t fd;
    jwtwarden_error *err = NULL;
    ngx_uint_t i;
    ssize_t n;
    (void)cmd;

    if (c->engine != NGX_CONF_UNSET) {
        return "is duplicate";
    }
    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }
    e = mcf->engines.elts;
    for (i = 0; i < mcf->engines.nelts; i++) {
        if (e[i].path.len == path.len && ngx_strncmp(e[i].path.data, path.data, path.len) == 0) {
            c->engine = (ngx_int_t)i;
            return NGX_CONF_OK;
        }
    }
    /* Read the file now, so `nginx -t` refuses a missing one and every
       worker of this configuration builds its verifier from the same text. */
    fd = ngx_open_file(path.data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "jwtwarden_config: cannot open \"%V\"", &path);
        return NGX_CONF_ERROR;
    }
    e = ngx_array_push(&mcf->engines);
    if (e == NULL || ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }
    e->path = path;
    e->verifier = NULL;
    e->minter = NULL;
    e->json.len = (size_t)ngx_file_size(&fi);
    e->json.data = ngx_pnalloc(cf->pool, e->json.len + 1);
    if (e->json.data == NULL) {
        ngx_close_file(fd);
        return NGX_CONF_ERROR;
    }
    n = ngx_read_fd(fd, e->json.data, e->json.len);
    ngx_close_file(fd);
    if (n < 0 || (size_t)n != e->json.len) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "jwtwarden_config: cannot read \"%V\"", &path);
        return NGX_CONF_ERROR;
    }
    /* Checked as a worker's verifier build will check it, without building
       one here (the master, `nginx -t`): a bad field fails the test, names
       the field, and a reload with it keeps the old workers. */
    if (jwtwarden_config_check((const char *)e->json.data, e->json.len, &err) != JWTWARDEN_RESULT_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "jwtwarden_config \"%V\": %s", &path,
                           err != NULL ? jwtwarden_error_message(err) : "invalid configuration");
        jwtwarden_error_free(err);
        return NGX_CONF_ERROR;
    }
    c->engine = (ngx_int_t)(mcf->engines.nelts - 1);
    return NGX_CONF_OK;
}

/* jwtwarden_audience / jwtwarden_scope: one or more words. */
static char *ngx_http_jwtwarden_strings(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) {
    ngx_array_t **a = (ngx_array_t **)((char *)conf + cmd->offset);
    ngx_str_t *value = cf->args->elts, *s;
    ngx_uint_t i;

    if (*a != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }
    *a = ngx_array_create(cf->pool, cf->args->nelts - 1, sizeof(ngx_str_t));
    if (*a == NULL) {
        return NGX_CONF_ERROR;
    }
    for (i = 1; i < cf->args->nelts; i++) {
        s = ngx_array_push(*a);
        if (s == NULL) {
            return NGX_CONF_ERROR;
        }
        *s = value[i];
    }
    return NGX_CONF_OK;
}

static char *ngx_http_jwtwarden_claim_header(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) {
    ngx_http_jwtwarden_loc_conf_t *c = conf;
    ngx_str_t *value = cf->args->elts;
    ngx_http_jwtwarden_claim_header_t *h;
    (void)cmd;

    if (c->claim_headers == NGX_CONF_UNSET_PTR) {
        c->claim_headers = ngx_array_create(cf->pool, 4, sizeof(*h));
        if (c->claim_headers == NULL) {
            return NGX_CONF_ERROR;
        }
    }
    h = ngx_array_push(c->claim_headers);
    if (h == NULL) {
        return NGX_CONF_ERROR;
    }
    h->claim = value[1];
    h->header = value[2];
    return NGX_CONF_OK;
}

/* jwtwarden_assertion AUDIENCE [header=NAME]: mint a verification
   assertion for the upstream (docs/trust-handoff.md); the keys are the
   engine config's `assertion` section. */
static char *ngx_http_jwtwarden_assertion(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) {
    ngx_http_jwtwarden_loc_conf_t *c = conf;
    ngx_str_t *value = cf->args->elts;
    (void)cmd;

    if (c->assertion_audience.data != NULL) {
        return "is duplicate";
    }
    c->assertion_audience = value[1];
    if (cf->args->nelts == 3) {
        if (value[2].len <= 7 || ngx_strncmp(value[2].data, "header=", 7) != 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "jwtwarden_assertion: \"%V\" is not header=NAME", &value[2]);
            return NGX_CONF_ERROR;
        }
        c->assertion_header.data = value[2].data + 7;
        c->assertion_header.len = value[2].len - 7;
    }
    return NGX_CONF_OK;
}

/* ---- the policy JSON of a location ------------------------------------- */

typedef struct {
    u_char *p, *end;
    ngx_uint_t overflow;
} jw_buf_t;

static void jw_raw(jw_buf_t *b, const char *s, size_t len) {
    if ((size_t)(b->end - b->p) < len) {
        b->overflow = 1;
        return;
    }
    b->p = ngx_cpymem(b->p, s, len);
}

#define jw_lit(b, s) jw_raw(b, s, sizeof(s) - 1)

/* A JSON string: quotes, backslashes and control bytes escaped. */
static void jw_str(jw_buf_t *b, ngx_str_t *s) {
    static const char hex[] = "0123456789abcdef";
    char esc[6];
    size_t i;

    jw_lit(b, "\"");
    for (i = 0; i < s->len; i++) {
        u_char ch = s->data[i];
        if (ch == '"' || ch == '\\') {
            esc[0] = '\\';
            esc[1] = (char)ch;
            jw_raw(b, esc, 2);
        } else if (ch < 0x20 || ch == 0x7f) {
            ngx_memcpy(esc, "\\u00", 4);
            esc[4] = hex[ch >> 4];
            esc[5] = hex[ch & 0xf];
            jw_raw(b, esc, 6);
        } else {
            jw_raw(b, (const char *)&ch, 1);
        }
    }
    jw_lit(b, "\"");
}

static void jw_list(jw_buf_t *b, ngx_array_t *a) {
    ngx_str_t *s = a->elts;
    ngx_uint_t i;

    jw_lit(b, "[");
    for (i = 0; i < a->nelts; i++) {
        if (i) {
            jw_lit(b, ",");
        }
        jw_str(b, &s[i]);
    }
    jw_lit(b, "]");
}

/* The core policy of a location: one route covering every path (so the
   core normalises the request target and refuses unsafe spellings), open
   or with this location's issuer, audiences, scopes and freshness. */
static ngx_int_t jw_policy_json(ngx_http_jwtwarden_loc_conf_t *c, jw_buf_t *b) {
    ngx_http_jwtwarden_claim_header_t *h;
    ngx_str_t token_header = ngx_string(JW_TOKEN_HEADER);
    ngx_uint_t i;

    jw_lit(b, "{");
    if (c->realm.len) {
        jw_lit(b, "\"realm\":");
        jw_str(b, &c->realm);
        jw_lit(b, ",");
    }
    if (c->token != NULL) {
        jw_lit(b, "\"token_header\":");
        jw_str(b, &token_header);
        jw_lit(b, ",");
    }
    jw_lit(b, "\"claim_headers\":{");
    if (c->claim_headers != NULL) {
        h = c->claim_headers->elts;
        for (i = 0; i < c->claim_headers->nelts; i++) {
            if (i) {
                jw_lit(b, ",");
            }
            jw_str(b, &h[i].claim);
            jw_lit(b, ":");
            jw_str(b, &h[i].header);
        }
    }
    jw_lit(b, "},");
    if (c->assertion_audience.len) {
        jw_lit(b, "\"assertion\":{\"audience\":");
        jw_str(b, &c->assertion_audience);
        if (c->assertion_header.len) {
            jw_lit(b, ",\"header\":");
            jw_str(b, &c->assertion_header);
        }
        jw_lit(b, "},");
    }
    jw_lit(b, "\"routes\":[{\"prefix\":\"/\"");
    if (c->enable == JW_OPEN) {
        jw_lit(b, ",\"open\":true");
    } else {
        if (c->issuer.len) {
            jw_lit(b, ",\"issuer\":");
            jw_str(b, &c->issuer);
        }
        if (c->fresh == 1) {
            jw_lit(b, ",\"fresh\":true");
        }
        if (c->audiences != NULL) {
            jw_lit(b, ",\"audiences\":");
            jw_list(b, c->audiences);
        }
        if (c->scopes != NULL) {
            jw_lit(b, ",\"scopes\":");
            jw_list(b, c->scopes);
        }
    }
    jw_lit(b, "}]}");
    return b->overflow ? NGX_ERROR : NGX_OK;
}

static void ngx_http_jwtwarden_free_policy(void *data) {
    jwtwarden_http_policy_free(data);
}

/* A location that mints: the engine config's assertion keys must load
   now, so `nginx -t` names what is wrong. */
static char *jw_check_minter(ngx_conf_t *cf, ngx_http_jwtwarden_loc_conf_t *c) {
    ngx_http_jwtwarden_main_conf_t *mcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_jwtwarden_module);
    ngx_http_jwtwarden_engine_t *e = mcf->engines.elts;
    jwtwarden_minter *m = NULL;
    jwtwarden_error *err = NULL;

    if (c->assertion_audience.len == 0 || c->enable != JW_ON) {
        return NGX_CONF_OK;
    }
    if (jwtwarden_minter_new((const char *)e[c->engine].json.data, e[c->engine].json.len, &m, &err) !=
        JWTWARDEN_RESULT_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "jwtwarden_assertion: jwtwarden_config \"%V\": %s",
                           &e[c->engine].path, jwtwarden_error_message(err));
        jwtwarden_error_free(err);
        return NGX_CONF_ERROR;
    }
    jwtwarden_minter_free(m);
    return NGX_CONF_OK;
}

static char *ngx_http_jwtwarden_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child) {
    ngx_http_jwtwarden_loc_conf_t *prev = parent, *c = child;
    ngx_str_t default_pool = ngx_string("default");
    ngx_pool_cleanup_t *cln;
    jwtwarden_error *err = NULL;
    jw_buf_t b;
    u_char *json;
    size_t size = 4096;

    ngx_conf_merge_uint_value(c->enable, prev->enable, JW_OFF);
    ngx_conf_merge_value(c->engine, prev->engine, NGX_CONF_UNSET);
    ngx_conf_merge_ptr_value(c->token, prev->token, NULL);
    ngx_conf_merge_str_value(c->issuer, prev->issuer, "");
    ngx_conf_merge_str_value(c->realm, prev->realm, "");
    ngx_conf_merge_ptr_value(c->audiences, prev->audiences, NULL);
    ngx_conf_merge_ptr_value(c->scopes, prev->scopes, NULL);
    ngx_conf_merge_value(c->fresh, prev->fresh, 0);
    ngx_conf_merge_ptr_value(c->claim_headers, prev->claim_headers, NULL);
    ngx_conf_merge_str_value(c->thread_pool_name, prev->thread_pool_name, "");
    /* jwtwarden_assertion is inherited whole: a location's own directive
       without header= does not take its parent's header. */
    if (c->assertion_audience.data == NULL) {
        c->assertion_audience = prev->assertion_audience;
        c->assertion_header = prev->assertion_header;
    }
    ngx_conf_merge_str_value(c->assertion_audience, c->assertion_audience, "");
    ngx_conf_merge_str_value(c->assertion_header, c->assertion_header, "");

    if (c->enable == JW_OFF) {
        return NGX_CONF_OK;
    }
    if (c->engine == NGX_CONF_UNSET) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "jwtwarden: \"jwtwarden_config\" is not set for this location");
        return NGX_CONF_ERROR;
    }
    if (c->thread_pool_name.len == 0) {
        c->thread_pool_name = default_pool;
    }
    c->thread_pool = ngx_thread_pool_add(cf, &c->thread_pool_name);
    if (c->thread_pool == NULL) {
        return NGX_CONF_ERROR;
    }
    for (;;) {
        json = ngx_pnalloc(cf->temp_pool, size);
        if (json == NULL) {
            return NGX_CONF_ERROR;
        }
        b.p = json;
        b.end = json + size;
        b.overflow = 0;
        if (jw_policy_json(c, &b) == NGX_OK) {
            break;
        }
        size *= 4;
    }
    /* Parsed and validated now: `nginx -t` names the bad field. */
    if (jwtwarden_http_policy_new((const char *)json, (size_t)(b.p - json), &c->policy, &err) !=
        JWTWARDEN_RESULT_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "jwtwarden: %s", jwtwarden_error_message(err));
        jwtwarden_error_free(err);
        return NGX_CONF_ERROR;
    }
    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        jwtwarden_http_policy_free(c->policy);
        c->policy = NULL;
        return NGX_CONF_ERROR;
    }
    cln->handler = ngx_http_jwtwarden_free_policy;
    cln->data = c->policy;
    return jw_check_minter(cf, c);
}

/* ---- the process model ------------------------------------------------- */

static void ngx_http_jwtwarden_log(void *userdata, jwtwarden_log_level level, const char *message) {
    ngx_log_t *log = userdata;
    ngx_uint_t l = level <= JWTWARDEN_LOG_LEVEL_ERROR ? NGX_LOG_ERR
                   : level == JWTWARDEN_LOG_LEVEL_WARN ? NGX_LOG_WARN
                                                       : NGX_LOG_INFO;
    ngx_log_error(l, log, 0, "jwtwarden: %s", message);
}

static ngx_int_t ngx_http_jwtwarden_init_process(ngx_cycle_t *cycle) {
    ngx_http_jwtwarden_main_conf_t *mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_jwtwarden_module);
    ngx_http_jwtwarden_engine_t *e;
    jwtwarden_error *err = NULL;
    ngx_uint_t i;

    if (mcf == NULL || mcf->engines.nelts == 0) {
        return NGX_OK;
    }
    jwtwarden_set_log_callback(ngx_http_jwtwarden_log, cycle->log, JWTWARDEN_LOG_LEVEL_WARN, NULL);
    e = mcf->engines.elts;
    for (i = 0; i < mcf->engines.nelts; i++) {
        if (jwtwarden_verifier_new((const char *)e[i].json.data, e[i].json.len, &e[i].verifier, &err) !=
            JWTWARDEN_RESULT_OK) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0, "jwtwarden_config \"%V\": %s", &e[i].path,
                          jwtwarden_error_message(err));
            jwtwarden_error_free(err);
            err = NULL;
            e[i].verifier = NULL; /* its locations answer 500 */
        }
        /* The assertion keys, if the config has them (locations that mint
           were checked at configuration time; without keys they answer 500). */
        e[i].minter = NULL;
        if (jwtwarden_minter_new((const char *)e[i].json.data, e[i].json.len, &e[i].minter, &err) !=
            JWTWARDEN_RESULT_OK) {
            jwtwarden_error_free(err);
            err = NULL;
            e[i].minter = NULL;
        }
    }
    return NGX_OK;
}

static void ngx_http_jwtwarden_exit_process(ngx_cycle_t *cycle) {
    ngx_http_jwtwarden_main_conf_t *mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_jwtwarden_module);
    ngx_http_jwtwarden_engine_t *e;
    ngx_uint_t i;

    if (mcf == NULL) {
        return;
    }
    e = mcf->engines.elts;
    for (i = 0; i < mcf->engines.nelts; i++) {
        jwtwarden_verifier_free(e[i].verifier);
        e[i].verifier = NULL;
        jwtwarden_minter_free(e[i].minter);
        e[i].minter = NULL;
    }
    if (mcf->engines.nelts) {
        jwtwarden_set_log_callback(NULL, NULL, JWTWARDEN_LOG_LEVEL_OFF, NULL);
    }
}

/* ---- the access phase --------------------------------------------------- */

static void ngx_http_jwtwarden_free_decision(void *data) {
    ngx_http_jwtwarden_ctx_t *ctx = data;
    jwtwarden_http_decision_free(ctx->decision);
    ctx->decision = NULL;
}

/* The request's header fields, borrowed, or the token variable's value as
   the one synthetic field the location's policy reads. */
static ngx_int_t jw_headers(ngx_http_request_t *r, ngx_http_jwtwarden_loc_conf_t *c, jwtwarden_http_header **out,
                            size_t *count) {
    ngx_list_part_t *part;
    ngx_table_elt_t *h;
    jwtwarden_http_header *hs;
    ngx_str_t token;
    ngx_uint_t i, n = 0;

    if (c->token != NULL) {
        if (ngx_http_complex_value(r, c->token, &token) != NGX_OK) {
            return NGX_ERROR;
        }
        *count = 0;
        *out = NULL;
        if (token.len == 0) {
            return NGX_OK;
        }
        hs = ngx_palloc(r->pool, sizeof(*hs));
        if (hs == NULL) {
            return NGX_ERROR;
        }
        hs->name = JW_TOKEN_HEADER;
        hs->name_len = sizeof(JW_TOKEN_HEADER) - 1;
        hs->value = (const char *)token.data;
        hs->value_len = token.len;
        *out = hs;
        *count = 1;
        return NGX_OK;
    }
    for (part = &r->headers_in.headers.part; part; part = part->next) {
        n += part->nelts;
    }
    hs = ngx_palloc(r->pool, (n ? n : 1) * sizeof(*hs));
    if (hs == NULL) {
        return NGX_ERROR;
    }
    n = 0;
    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;
        for (i = 0; i < part->nelts; i++) {
            hs[n].name = (const char *)h[i].key.data;
            hs[n].name_len = h[i].key.len;
            hs[n].value = (const char *)h[i].value.data;
            hs[n].value_len = h[i].value.len;
            n++;
        }
    }
    *out = hs;
    *count = n;
    return NGX_OK;
}

/* Send the refusal the core wrote: status, its headers, the JSON body. */
static ngx_int_t jw_refuse(ngx_http_request_t *r, jwtwarden_http_decision *d) {
    size_t i, n = jwtwarden_http_decision_header_count(d), len;
    ngx_table_elt_t *h;
    ngx_buf_t *b;
    ngx_chain_t out;
    const char *body;
    ngx_int_t rc;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }
    r->headers_out.status = jwtwarden_http_decision_status(d);
    for (i = 0; i < n; i++) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        h->hash = 1;
        h->key.data = (u_char *)jwtwarden_http_decision_header_name(d, i, &h->key.len);
        h->value.data = (u_char *)jwtwarden_http_decision_header_value(d, i, &h->value.len);
        h->lowcase_key = h->key.data; /* the core's names are lower case */
#if (nginx_version >= 1023000)
        h->next = NULL;
#endif
    }
    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    body = jwtwarden_http_decision_body(d, &len);
    r->headers_out.content_length_n = (off_t)len;
    if (r->method == NGX_HTTP_HEAD || len == 0) {
        r->header_only = 1;
        return ngx_http_send_header(r);
    }
    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }
    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }
    b->pos = (u_char *)body; /* the decision lives until the request's pool goes */
    b->last = b->pos + len;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;
    out.buf = b;
    out.next = NULL;
    return ngx_http_output_filter(r, &out);
}

/* Whether a request field is the assertion header (jwtwarden_assertion):
   the client's copies never reach the upstream. */
static ngx_uint_t jw_is_assertion_header(ngx_http_jwtwarden_loc_conf_t *c, ngx_str_t *key) {
    size_t len;
    const char *name;

    if (c->assertion_audience.len == 0) {
        return 0;
    }
    name = jwtwarden_http_policy_assertion_header(c->policy, &len);
    return name != NULL && key->len == len && ngx_strncasecmp(key->data, (u_char *)name, len) == 0;
}

/* The decision's assertion, if it carries one, as a request field. */
static ngx_int_t jw_assertion_header(ngx_http_request_t *r, ngx_http_jwtwarden_loc_conf_t *c,
                                     jwtwarden_http_decision *d, ngx_list_t *list) {
    ngx_table_elt_t *nh;
    size_t len;
    const char *value = jwtwarden_http_decision_assertion(d, &len);
    (void)r;

    if (value == NULL) {
        return NGX_OK;
    }
    nh = ngx_list_push(list);
    if (nh == NULL) {
        return NGX_ERROR;
    }
    ngx_memzero(nh, sizeof(*nh));
    nh->key.data = (u_char *)jwtwarden_http_policy_assertion_header(c->policy, &nh->key.len);
    nh->value.data = (u_char *)value;
    nh->value.len = len;
    nh->lowcase_key = nh->key.data;
    nh->hash = ngx_hash_key(nh->lowcase_key, nh->key.len);
    return NGX_OK;
}

/* The claim headers to the upstream: every client field of a configured
   claim header's name is dropped (absent claims included), then the core's
   sanitised values are added. */
static ngx_int_t jw_claim_headers(ngx_http_request_t *r, ngx_http_jwtwarden_loc_conf_t *c,
                                  jwtwarden_http_decision *d) {
    ngx_http_jwtwarden_claim_header_t *ch;
    ngx_list_part_t *part;
    ngx_table_elt_t *h, *nh;
    ngx_list_t list;
    ngx_uint_t i, j, drop;
    size_t k, n;

    if ((c->claim_headers == NULL || c->claim_headers->nelts == 0) && c->assertion_audience.len == 0) {
        return NGX_OK;
    }
    if (ngx_list_init(&list, r->pool, 20, sizeof(ngx_table_elt_t)) != NGX_OK) {
        return NGX_ERROR;
    }
    ch = c->claim_headers != NULL ? c->claim_headers->elts : NULL;
    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;
        for (i = 0; i < part->nelts; i++) {
            drop = jw_is_assertion_header(c, &h[i].key);
            for (j = 0; !drop && c->claim_headers != NULL && j < c->claim_headers->nelts; j++) {
                if (h[i].key.len == ch[j].header.len &&
                    ngx_strncasecmp(h[i].key.data, ch[j].header.data, ch[j].header.len) == 0) {
                    drop = 1;
                    break;
                }
            }
            if (drop) {
                continue;
            }
            nh = ngx_list_push(&list);
            if (nh == NULL) {
                return NGX_ERROR;
            }
            *nh = h[i];
        }
    }
    n = jwtwarden_http_decision_claim_header_count(d);
    for (k = 0; k < n; k++) {
        nh = ngx_list_push(&list);
        if (nh == NULL) {
            return NGX_ERROR;
        }
        ngx_memzero(nh, sizeof(*nh));
        nh->key.data = (u_char *)jwtwarden_http_decision_claim_header_name(d, k, &nh->key.len);
        nh->value.data = (u_char *)jwtwarden_http_decision_claim_header_value(d, k, &nh->value.len);
        nh->lowcase_key = nh->key.data;
        nh->hash = ngx_hash_key(nh->lowcase_key, nh->key.len);
    }
    if (jw_assertion_header(r, c, d, &list) != NGX_OK) {
        return NGX_ERROR;
    }
    r->headers_in.headers = list;
    if (list.last == &list.part) {
        /* One part: `last` pointed at this function's copy. */
        r->headers_in.headers.last = &r->headers_in.headers.part;
    }
    return NGX_OK;
}

static ngx_int_t jw_apply(ngx_http_request_t *r, ngx_http_jwtwarden_loc_conf_t *c, ngx_http_jwtwarden_ctx_t *ctx) {
    ngx_int_t rc;

    ctx->done = 1;
    if (jwtwarden_http_decision_allowed(ctx->decision)) {
        return jw_claim_headers(r, c, ctx->decision) == NGX_OK ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    rc = jw_refuse(r, ctx->decision);
    ngx_http_finalize_request(r, rc);
    return NGX_DONE;
}

static void ngx_http_jwtwarden_task_handler(void *data, ngx_log_t *log) {
    ngx_http_jwtwarden_task_t *t = data;
    (void)log;
    /* On a pool thread: may wait on the network (bounded by the engine). */
    t->rc = jwtwarden_http_decide_minting(t->policy, t->verifier, t->minter, (const char *)t->method.data,
                                          t->method.len, (const char *)t->target.data, t->target.len, t->headers,
                                          t->header_count, false, &t->decision, NULL);
}

static void ngx_http_jwtwarden_task_done(ngx_event_t *ev) {
    ngx_http_jwtwarden_task_t *t = ev->data;
    ngx_http_request_t *r = t->request;
    ngx_connection_t *c = r->connection;
    ngx_http_jwtwarden_ctx_t *ctx = ngx_http_get_module_ctx(r, ngx_http_jwtwarden_module);

    ngx_http_set_log_request(c->log, r);
    r->main->blocked--;
    r->aio = 0;
    ctx->pending = 0;
    ctx->decision = t->rc == JWTWARDEN_RESULT_OK ? t->decision : NULL;
    if (ctx->decision == NULL) {
        ngx_log_error(NGX_LOG_ERR, c->log, 0, "jwtwarden: decision failed: %s", jwtwarden_result_name(t->rc));
    }
    /* Re-enter the phases (the write handler is ngx_http_core_run_phases,
       or the finalizer if the request was terminated meanwhile): the
       access handler now finds the decision. */
    if (r->done) {
        c->write->handler(c->write);
    } else {
        r->write_event_handler(r);
        ngx_http_run_posted_requests(c);
    }
}

static ngx_int_t ngx_http_jwtwarden_handler(ngx_http_request_t *r) {
    ngx_http_jwtwarden_loc_conf_t *c = ngx_http_get_module_loc_conf(r, ngx_http_jwtwarden_module);
    ngx_http_jwtwarden_main_conf_t *mcf;
    ngx_http_jwtwarden_engine_t *e;
    ngx_http_jwtwarden_ctx_t *ctx;
    ngx_http_jwtwarden_task_t *t;
    ngx_thread_task_t *task;
    ngx_pool_cleanup_t *cln;
    jwtwarden_http_header *headers;
    size_t count;

    if (c->enable == JW_OFF || c->policy == NULL) {
        return NGX_DECLINED;
    }
    ctx = ngx_http_get_module_ctx(r, ngx_http_jwtwarden_module);
    if (ctx != NULL) {
        if (ctx->pending) {
            return NGX_AGAIN;
        }
        if (ctx->done) {
            /* Decided before (an internal redirect re-runs the phases). */
            return jwtwarden_http_decision_allowed(ctx->decision) ? NGX_OK : NGX_HTTP_FORBIDDEN;
        }
        if (ctx->decision == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
        return jw_apply(r, c, ctx);
    }
    mcf = ngx_http_get_module_main_conf(r, ngx_http_jwtwarden_module);
    e = mcf->engines.elts;
    if (e[c->engine].verifier == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "jwtwarden: no verifier for \"%V\" in this worker",
                      &e[c->engine].path);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ctx = ngx_pcalloc(r->pool, sizeof(*ctx));
    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (ctx == NULL || cln == NULL || jw_headers(r, c, &headers, &count) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    cln->handler = ngx_http_jwtwarden_free_decision;
    cln->data = ctx;
    ctx->policy = c->policy;
    ngx_http_set_ctx(r, ctx, ngx_http_jwtwarden_module);

    /* Inline, from the cache only: never waits. */
    if (jwtwarden_http_decide_minting(c->policy, e[c->engine].verifier, e[c->engine].minter,
                                      (const char *)r->method_name.data, r->method_name.len,
                                      (const char *)r->unparsed_uri.data, r->unparsed_uri.len, headers, count, true,
                                      &ctx->decision, NULL) != JWTWARDEN_RESULT_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    if (!jwtwarden_http_decision_would_fetch(ctx->decision)) {
        return jw_apply(r, c, ctx);
    }
    jwtwarden_http_decision_free(ctx->decision);
    ctx->decision = NULL;

    /* Would fetch: decide on the thread pool, resume when done. */
    task = ngx_thread_task_alloc(r->pool, sizeof(ngx_http_jwtwarden_task_t));
    if (task == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    t = task->ctx;
    t->request = r;
    t->policy = c->policy;
    t->verifier = e[c->engine].verifier;
    t->minter = e[c->engine].minter;
    t->method = r->method_name;
    t->target = r->unparsed_uri;
    t->headers = headers;
    t->header_count = count;
    t->decision = NULL;
    task->handler = ngx_http_jwtwarden_task_handler;
    task->event.data = t;
    task->event.handler = ngx_http_jwtwarden_task_done;
    if (ngx_thread_task_post(c->thread_pool, task) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }
    ctx->pending = 1;
    r->main->blocked++;
    r->aio = 1;
    return NGX_AGAIN;
}

/* ---- variables ------------------------------------------------------------ */

/* The decision of the main request, or NULL. */
static jwtwarden_http_decision *jw_decision(ngx_http_request_t *r) {
    ngx_http_jwtwarden_ctx_t *ctx = ngx_http_get_module_ctx(r->main, ngx_http_jwtwarden_module);
    return ctx == NULL ? NULL : ctx->decision;
}

static ngx_int_t jw_value(ngx_http_variable_value_t *v, const char *data, size_t len) {
    if (data == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }
    v->data = (u_char *)data;
    v->len = len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    return NGX_OK;
}

/* $jwtwarden_cached: "true" or "false" for a verified token; no value when
   nothing was verified (refused, an open location, OPTIONS, which the
   module's policies leave open as the middlewares do). */
static ngx_int_t ngx_http_jwtwarden_cached_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
                                                    uintptr_t data) {
    jwtwarden_http_decision *d = jw_decision(r);
    ngx_http_jwtwarden_loc_conf_t *c = ngx_http_get_module_loc_conf(r->main, ngx_http_jwtwarden_module);
    (void)data;

    if (d == NULL || !jwtwarden_http_decision_allowed(d) || c->enable != JW_ON ||
        r->main->method == NGX_HTTP_OPTIONS) {
        return jw_value(v, NULL, 0);
    }
    return jwtwarden_http_decision_cached(d) ? jw_value(v, "true", 4) : jw_value(v, "false", 5);
}

/* $jwtwarden_error: the stable name of a refusal (`expired`,
   `missing_token`, `invalid_request`...); no value when allowed. */
static ngx_int_t ngx_http_jwtwarden_error_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
                                                   uintptr_t data) {
    jwtwarden_http_decision *d = jw_decision(r);
    const char *name, *body, *p, *q, *end;
    uint32_t code;
    size_t len;
    (void)data;

    if (d == NULL || jwtwarden_http_decision_allowed(d) || jwtwarden_http_decision_would_fetch(d)) {
        return jw_value(v, NULL, 0);
    }
    code = jwtwarden_http_decision_error_code(d);
    if (code != 0) {
        name = jwtwarden_result_name(code);
        return jw_value(v, name, ngx_strlen(name));
    }
    /* Refused before the engine: the body's "error", the first key of
       {"error": "missing_token", ...}. */
    body = jwtwarden_http_decision_body(d, &len);
    end = body + len;
    p = (const char *)ngx_strnstr((u_char *)body, "\"error\"", len);
    if (p == NULL) {
        return jw_value(v, NULL, 0);
    }
    p += sizeof("\"error\"") - 1;
    while (p < end && (*p == ' ' || *p == ':')) {
        p++;
    }
    if (p == end || *p != '"') {
        return jw_value(v, NULL, 0);
    }
    for (q = ++p; q < end && *q != '"'; q++) {
    }
    return jw_value(v, p, (size_t)(q - p));
}

/* $jwtwarden_claim_NAME: claim NAME of an allowed token (any claim, mapped
   to a header or not) as a claim header carries it, formatted and
   sanitised by the core (jwtwarden_http_decision_claim_value): strings as
   they are, arrays joined by commas, anything else as JSON; no control
   character. No value when the token has no such claim or nothing was
   verified (refused, open, OPTIONS, internal error). nginx lowercases
   variable names, so NAME is the claim's lower-case name. */
static ngx_int_t ngx_http_jwtwarden_claim_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
                                                   uintptr_t data) {
    ngx_str_t *var = (ngx_str_t *)data;
    ngx_http_jwtwarden_ctx_t *ctx = ngx_http_get_module_ctx(r->main, ngx_http_jwtwarden_module);
    jwtwarden_error *err = NULL;
    const char *claim;
    char *value = NULL;
    size_t len;
    u_char *copy;

    if (ctx == NULL || ctx->decision == NULL || ctx->policy == NULL ||
        !jwtwarden_http_decision_allowed(ctx->decision)) {
        return jw_value(v, NULL, 0);
    }
    claim = (const char *)var->data + sizeof("jwtwarden_claim_") - 1;
    len = var->len - (sizeof("jwtwarden_claim_") - 1);
    if (jwtwarden_http_decision_claim_value(ctx->decision, ctx->policy, claim, len, &value, &err) !=
        JWTWARDEN_RESULT_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0, "jwtwarden: $%V: %s", var,
                      err != NULL ? jwtwarden_error_message(err) : "failed");
        jwtwarden_error_free(err);
        return jw_value(v, NULL, 0);
    }
    if (value == NULL) {
        return jw_value(v, NULL, 0);
    }
    len = ngx_strlen(value);
    copy = ngx_pnalloc(r->pool, len);
    if (copy == NULL) {
        jwtwarden_string_free(value);
        return NGX_ERROR;
    }
    ngx_memcpy(copy, value, len);
    jwtwarden_string_free(value);
    return jw_value(v, (const char *)copy, len);
}

static ngx_http_variable_t ngx_http_jwtwarden_vars[] = {
    {ngx_string("jwtwarden_cached"), NULL, ngx_http_jwtwarden_cached_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("jwtwarden_error"), NULL, ngx_http_jwtwarden_error_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("jwtwarden_claim_"), NULL, ngx_http_jwtwarden_claim_variable, 0,
     NGX_HTTP_VAR_NOCACHEABLE | NGX_HTTP_VAR_PREFIX, 0},
    ngx_http_null_variable};

static ngx_int_t ngx_http_jwtwarden_add_variables(ngx_conf_t *cf) {
    ngx_http_variable_t *var, *v;

    for (v = ngx_http_jwtwarden_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }
        var->get_handler = v->get_handler;
        var->data = v->data;
    }
    return NGX_OK;
}

static ngx_int_t ngx_http_jwtwarden_init(ngx_conf_t *cf) {
    ngx_http_core_main_conf_t *cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);
    ngx_http_handler_pt *h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);

    if (h == NULL) {
        return NGX_ERROR;
    }
    *h = ngx_http_jwtwarden_handler;
    return NGX_OK;
}
