/*
 * The C part of the comparison run by benches/run: jwtwarden through its C
 * ABI (cache hit and miss) against libjwt verifying the same tokens, and
 * hit-path throughput with 1 and 2 threads. Writes JSON lines.
 *
 *   c-bench FIXTURE.txt OUT.jsonl
 *
 * FIXTURE.txt comes from benches/peers/fixture.py. Timing follows
 * benches/rust/shared.rs: warm up for a tenth of the budget
 * (BENCH_SECONDS, default 1), median ns/op of >= 2 ms batches for six
 * tenths, p50/p99 of single timed calls for three tenths.
 *
 * libjwt checks only the signature; like jwtwarden and every other peer,
 * the harness then checks exp, nbf, iss and aud itself.
 */
#define _POSIX_C_SOURCE 200809L
#include <jwt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwtwarden.h"

#ifndef LIBJWT_VERSION
#define LIBJWT_VERSION "(unknown version)"
#endif

#define MAX_CASES 16
#define MAX_POOL 64
#define MAX_CROWD 1024

struct tcase {
  char alg[64];
  char size[64];
  char *token;
  size_t len;
  char *pool[MAX_POOL];
  size_t npool;
};

static struct {
  char issuer[300];
  char pem_alg[8][64];
  char *pem[8];
  size_t npem;
  struct tcase cases[MAX_CASES];
  size_t ncases;
  char *crowd[MAX_CROWD];
  size_t ncrowd;
} fx;

static FILE *out;
static double budget_s = 1.0;

static void die(const char *what) {
  fprintf(stderr, "c-bench: %s\n", what);
  exit(1);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) die("read failed");
  buf[n] = 0;
  fclose(f);
  if (len) *len = (size_t)n;
  return buf;
}

static struct tcase *find_case(const char *alg, const char *size, int create) {
  for (size_t i = 0; i < fx.ncases; i++)
    if (!strcmp(fx.cases[i].alg, alg) && !strcmp(fx.cases[i].size, size)) return &fx.cases[i];
  if (!create) return NULL;
  if (fx.ncases == MAX_CASES) die("too many cases");
  struct tcase *c = &fx.cases[fx.ncases++];
  snprintf(c->alg, sizeof c->alg, "%.63s", alg);
  snprintf(c->size, sizeof c->size, "%.63s", size);
  return c;
}

static void load_fixture(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) die("cannot open the fixture");
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while ((n = getline(&line, &cap, f)) > 0) {
    if (line[n - 1] == '\n') line[--n] = 0;
    char kind[16], a[4096], b[64];
    int used = 0;
    if (sscanf(line, "%15s %4095s %n", kind, a, &used) < 2) continue;
    if (!strcmp(kind, "crowd")) {
      if (fx.ncrowd < MAX_CROWD) fx.crowd[fx.ncrowd++] = strdup(a);
    } else if (!strcmp(kind, "issuer")) {
      snprintf(fx.issuer, sizeof fx.issuer, "%.255s", a);
    } else if (!strcmp(kind, "pem")) {
      if (fx.npem == 8) die("too many keys");
      snprintf(fx.pem_alg[fx.npem], sizeof fx.pem_alg[0], "%.63s", a);
      fx.pem[fx.npem++] = slurp(line + used, NULL);
      if (!fx.pem[fx.npem - 1]) die("cannot read a PEM file");
    } else if (!strcmp(kind, "token") || !strcmp(kind, "pool")) {
      int used2 = 0;
      if (sscanf(line + used, "%63s %n", b, &used2) < 1) die("bad token line");
      struct tcase *c = find_case(a, b, 1);
      char *tok = strdup(line + used + used2);
      if (!strcmp(kind, "token")) {
        c->token = tok;
        c->len = strlen(tok);
      } else if (c->npool < MAX_POOL) {
        c->pool[c->npool++] = tok;
      }
    }
  }
  free(line);
  fclose(f);
}

static const struct tcase *find_first_of_alg(const char *alg) {
  for (size_t i = 0; i < fx.ncases; i++)
    if (!strcmp(fx.cases[i].alg, alg)) return &fx.cases[i];
  return NULL;
}

static const char *pem_for(const char *alg) {
  for (size_t i = 0; i < fx.npem; i++)
    if (!strcmp(fx.pem_alg[i], alg)) return fx.pem[i];
  return NULL;
}

/* ---- timing (same method as benches/rust/shared.rs) */

typedef int (*op_fn)(void *ctx);

struct stats {
  uint64_t iterations;
  double ns_per_op, p50, p99;
};

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static double quantile(uint64_t *v, size_t n, double q) {
  qsort(v, n, sizeof *v, cmp_u64);
  return (double)v[(size_t)((double)(n - 1) * q + 0.5)];
}

static void must(int ok) {
  if (!ok) die("a verification failed while timing");
}

static struct stats measure(op_fn op, void *ctx) {
  struct stats s = {0};
  uint64_t budget = (uint64_t)(budget_s * 1e9);
  uint64_t end = now_ns() + budget / 10;
  while (now_ns() < end) must(op(ctx));

  uint64_t batch = 1;
  for (;;) {
    uint64_t t = now_ns();
    for (uint64_t i = 0; i < batch; i++) must(op(ctx));
    if (now_ns() - t >= 2000000 || batch >= (1u << 30)) break;
    batch *= 2;
  }
  size_t nb = 0, capb = 64;
  double *per_op = malloc(capb * sizeof *per_op);
  end = now_ns() + budget * 6 / 10;
  while (now_ns() < end || nb < 3) {
    uint64_t t = now_ns();
    for (uint64_t i = 0; i < batch; i++) must(op(ctx));
    if (nb == capb) per_op = realloc(per_op, (capb *= 2) * sizeof *per_op);
    per_op[nb++] = (double)(now_ns() - t) / (double)batch;
    s.iterations += batch;
  }
  qsort(per_op, nb, sizeof *per_op, cmp_double);
  s.ns_per_op = per_op[nb / 2];
  free(per_op);

  size_t ns = 0, caps = 1 << 16;
  uint64_t *single = malloc(caps * sizeof *single);
  end = now_ns() + budget * 3 / 10;
  for (;;) {
    uint64_t t = now_ns();
    must(op(ctx));
    uint64_t t2 = now_ns();
    if (ns == caps) single = realloc(single, (caps *= 2) * sizeof *single);
    single[ns++] = t2 - t;
    if ((t2 >= end && ns >= 100) || ns >= 2000000) break;
  }
  s.iterations += ns;
  s.p50 = quantile(single, ns, 0.50);
  s.p99 = quantile(single, ns, 0.99);
  free(single);
  return s;
}

static void emit(const char *library, const char *operation, const struct tcase *c, struct stats s) {
  fprintf(out,
          "{\"language\":\"c\",\"library\":\"%s\",\"operation\":\"%s\",\"alg\":\"%s\",\"size\":\"%s\","
          "\"token_bytes\":%zu,\"threads\":1,\"ns_per_op\":%.2f,\"ops_per_s\":%.1f,\"p50_ns\":%.0f,"
          "\"p99_ns\":%.0f,\"iterations\":%llu}\n",
          library, operation, c->alg, c->size, c->len, s.ns_per_op, 1e9 / s.ns_per_op, s.p50, s.p99,
          (unsigned long long)s.iterations);
  fflush(out);
  fprintf(stderr, "c %-10s %-6s %-6s %-5s %10.1f ns/op  p99 %8.0f ns\n", library, operation, c->alg, c->size,
          s.ns_per_op, s.p99);
}

static void skipped(const char *library, const char *operation, const char *alg, const char *reason) {
  fprintf(out, "{\"language\":\"c\",\"library\":\"%s\",\"operation\":\"%s\",\"alg\":\"%s\",\"skipped\":\"%s\"}\n",
          library, operation, alg, reason);
  fflush(out);
  fprintf(stderr, "skipped: c %s %s %s: %s\n", library, operation, alg, reason);
}

/* ---- jwtwarden through the C ABI */

static jwtwarden_verifier *new_verifier(const char *cache) {
  char config[1024];
  int n = snprintf(config, sizeof config,
                   "{\"issuers\":[{\"issuer\":\"%s\",\"jwks_uri\":\"%s/jwks.json\",\"audiences\":[\"api\"]}],"
                   "\"http\":{\"allow_http\":true},\"cache\":%s}",
                   fx.issuer, fx.issuer, cache);
  jwtwarden_verifier *v = NULL;
  jwtwarden_error *err = NULL;
  if (jwtwarden_verifier_new(config, (size_t)n, &v, &err) != JWTWARDEN_RESULT_OK) {
    fprintf(stderr, "jwtwarden_verifier_new: %s\n", jwtwarden_error_message(err));
    exit(1);
  }
  return v;
}

struct jw_ctx {
  const jwtwarden_verifier *v;
  const struct tcase *c;
  size_t next;
};

static int jw_hit(void *p) {
  struct jw_ctx *x = p;
  jwtwarden_verified *r = NULL;
  if (jwtwarden_verifier_verify(x->v, x->c->token, x->c->len, &r, NULL) != JWTWARDEN_RESULT_OK) return 0;
  jwtwarden_verified_free(r);
  return 1;
}

static int jw_miss(void *p) {
  struct jw_ctx *x = p;
  x->next = (x->next + 1) % x->c->npool;
  const char *t = x->c->pool[x->next];
  jwtwarden_verified *r = NULL;
  if (jwtwarden_verifier_verify(x->v, t, strlen(t), &r, NULL) != JWTWARDEN_RESULT_OK) return 0;
  jwtwarden_verified_free(r);
  return 1;
}

/* ---- libjwt */

struct lj_ctx {
  const struct tcase *c;
  const unsigned char *key;
  int key_len;
  jwt_alg_t alg;
};

static int lj_verify(void *p) {
  struct lj_ctx *x = p;
  jwt_t *jwt = NULL;
  if (jwt_decode(&jwt, x->c->token, x->key, x->key_len) != 0) return 0;
  int ok = jwt_get_alg(jwt) == x->alg;
  long now = (long)time(NULL), leeway = 30;
  long exp = jwt_get_grant_int(jwt, "exp");
  ok = ok && exp > 0 && now <= exp + leeway;
  long nbf = jwt_get_grant_int(jwt, "nbf");
  ok = ok && (nbf <= 0 || now + leeway >= nbf);
  const char *iss = jwt_get_grant(jwt, "iss");
  ok = ok && iss && !strcmp(iss, fx.issuer);
  const char *aud = jwt_get_grant(jwt, "aud");
  ok = ok && aud && !strcmp(aud, "api");
  jwt_free(jwt);
  return ok;
}

/* ---- throughput with N threads */

static atomic_int go_flag, stop_flag;

struct thr {
  const jwtwarden_verifier *v;
  const char *tokens[MAX_CROWD];
  size_t lens[MAX_CROWD];
  size_t ntokens;
  uint64_t n;
};

static void *thr_main(void *p) {
  struct thr *t = p;
  uint64_t n = 0, calls = 0;
  int counting = 0;
  while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
    for (int i = 0; i < 64; i++, calls++) {
      size_t k = calls % t->ntokens;
      jwtwarden_verified *r = NULL;
      must(jwtwarden_verifier_verify(t->v, t->tokens[k], t->lens[k], &r, NULL) == JWTWARDEN_RESULT_OK);
      jwtwarden_verified_free(r);
    }
    if (atomic_load_explicit(&go_flag, memory_order_relaxed)) {
      if (!counting) {
        counting = 1;
        n = 0;
      }
      n += 64;
    }
  }
  t->n = n;
  return NULL;
}

/* Hit-path calls per second with `threads` threads on one verifier: all on
   the case's token, or (crowd) each cycling through its own half of the
   crowd of distinct cached tokens (many users). */
static struct thr thr_state[2];

static double throughput(const jwtwarden_verifier *v, const struct tcase *c, int threads, int crowd, double secs) {
  pthread_t ids[2];
  struct thr *t = thr_state;
  size_t per_thread = fx.ncrowd / 2;
  atomic_store(&go_flag, 0);
  atomic_store(&stop_flag, 0);
  for (int i = 0; i < threads; i++) {
    t[i].v = v;
    t[i].ntokens = crowd ? per_thread : 1;
    t[i].n = 0;
    for (size_t k = 0; k < t[i].ntokens; k++) {
      t[i].tokens[k] = crowd ? fx.crowd[(size_t)i * per_thread + k] : c->token;
      t[i].lens[k] = strlen(t[i].tokens[k]);
    }
    pthread_create(&ids[i], NULL, thr_main, &t[i]);
  }
  struct timespec warm = {0, (long)(secs * 1e8)}, run;
  double rs = secs * 0.9;
  run.tv_sec = (time_t)rs;
  run.tv_nsec = (long)((rs - (double)run.tv_sec) * 1e9);
  nanosleep(&warm, NULL);
  atomic_store(&go_flag, 1);
  uint64_t t0 = now_ns();
  nanosleep(&run, NULL);
  atomic_store(&stop_flag, 1);
  uint64_t elapsed = now_ns() - t0;
  uint64_t total = 0;
  for (int i = 0; i < threads; i++) {
    pthread_join(ids[i], NULL);
    total += t[i].n;
  }
  return (double)total * 1e9 / (double)elapsed;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s FIXTURE.txt OUT.jsonl\n", argv[0]);
    return 2;
  }
  const char *b = getenv("BENCH_SECONDS");
  if (b && atof(b) > 0.05) budget_s = atof(b);
  load_fixture(argv[1]);
  if (!fx.issuer[0] || !fx.ncases) die("empty fixture");
  out = fopen(argv[2], "a");
  if (!out) die("cannot open the output file");

  jwtwarden_verifier *hits = new_verifier("{}");
  /* Capacity 1 and a rotating pool of distinct tokens: every call is a miss. */
  jwtwarden_verifier *misses = new_verifier("{\"capacity\":1,\"shards\":1}");

  for (size_t i = 0; i < fx.ncases; i++) {
    struct tcase *c = &fx.cases[i];
    struct jw_ctx hit = {hits, c, 0}, miss = {misses, c, 0};
    if (!jw_hit(&hit)) die("jwtwarden rejects the token");
    jwtwarden_verified *r = NULL;
    if (jwtwarden_verifier_verify(hits, c->token, c->len, &r, NULL) != JWTWARDEN_RESULT_OK ||
        !jwtwarden_verified_cached(r))
      die("a repeated token is not a cache hit");
    jwtwarden_verified_free(r);
    emit("jwtwarden", "hit", c, measure(jw_hit, &hit));
    emit("jwtwarden", "miss", c, measure(jw_miss, &miss));

    jwt_alg_t alg = jwt_str_alg(c->alg);
    const char *pem = pem_for(c->alg);
    if (alg == JWT_ALG_INVAL) {
      char reason[160];
      snprintf(reason, sizeof reason, "libjwt %s (jwt.h) has no %s", LIBJWT_VERSION, c->alg);
      if (find_case(c->alg, c->size, 0) == find_first_of_alg(c->alg)) skipped("libjwt", "verify", c->alg, reason);
      continue;
    }
    struct lj_ctx lj = {c, (const unsigned char *)pem, pem ? (int)strlen(pem) : 0, alg};
    if (!pem || !lj_verify(&lj)) {
      skipped("libjwt", "verify", c->alg, "libjwt rejects the token");
      continue;
    }
    emit("libjwt", "verify", c, measure(lj_verify, &lj));
  }

  const struct tcase *c = find_case("RS256", "600B", 0);
  if (c) {
    for (size_t i = 0; i < fx.ncrowd; i++) {
      jwtwarden_verified *r = NULL;
      must(jwtwarden_verifier_verify(hits, fx.crowd[i], strlen(fx.crowd[i]), &r, NULL) == JWTWARDEN_RESULT_OK);
      jwtwarden_verified_free(r);
    }
    /* Each configuration runs in ROUNDS interleaved rounds; the median round is reported. */
    enum { ROUNDS = 3 };
    char crowd_label[64];
    snprintf(crowd_label, sizeof crowd_label, "%zu per thread", fx.ncrowd / 2);
    double ops[2][2][ROUNDS];
    int crowds = fx.ncrowd >= 2 ? 2 : 1;
    for (int r = 0; r < ROUNDS; r++)
      for (int crowd = 0; crowd < crowds; crowd++)
        for (int threads = 1; threads <= 2; threads++)
          ops[crowd][threads - 1][r] = throughput(hits, c, threads, crowd, budget_s / ROUNDS);
    for (int crowd = 0; crowd < crowds; crowd++) {
      const char *label = crowd ? crowd_label : "same";
      for (int threads = 1; threads <= 2; threads++) {
        double *v = ops[crowd][threads - 1];
        qsort(v, ROUNDS, sizeof *v, cmp_double);
        fprintf(out,
                "{\"language\":\"c\",\"library\":\"jwtwarden\",\"operation\":\"hit\",\"alg\":\"%s\","
                "\"size\":\"%s\",\"token_bytes\":%zu,\"threads\":%d,\"tokens\":\"%s\",\"ops_per_s\":%.1f,"
                "\"rounds\":[%.1f,%.1f,%.1f]}\n",
                c->alg, c->size, c->len, threads, label, v[ROUNDS / 2], v[0], v[1], v[2]);
        fprintf(stderr, "c jwtwarden hit %s %s, %d threads, tokens: %s: %.0f ops/s\n", c->alg, c->size, threads,
                label, v[ROUNDS / 2]);
      }
    }
  }
  jwtwarden_verifier_free(hits);
  jwtwarden_verifier_free(misses);
  fclose(out);
  return 0;
}
