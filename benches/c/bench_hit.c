/*
 * The C side of benches/c/run: a cache hit through the C API
 * (jwtwarden_verifier_verify + jwtwarden_verified_free), timed like
 * rust_hit.rs times the Rust API (same token, same issuer, same loop).
 *
 *   bench_hit CONFIG.json TOKEN_FILE
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jwtwarden.h"

#define ITERATIONS 200000
#define ROUNDS 15

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) exit(2);
  fclose(f);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) n--;
  buf[n] = '\0';
  *len = (size_t)n;
  return buf;
}

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static const jwtwarden_verifier *g_v;
static const char *g_token;
static size_t g_len;
static volatile bool g_sink;

static void hit(void) {
  jwtwarden_verified *out = NULL;
  if (jwtwarden_verifier_verify(g_v, g_token, g_len, &out, NULL) != JWTWARDEN_RESULT_OK) abort();
  g_sink = jwtwarden_verified_cached(out);
  jwtwarden_verified_free(out);
}

static void miss(void) {
  jwtwarden_verified *out = NULL;
  if (jwtwarden_verifier_verify_with(g_v, g_token, g_len, NULL, true, &out, NULL) != JWTWARDEN_RESULT_OK) abort();
  g_sink = jwtwarden_verified_cached(out);
  jwtwarden_verified_free(out);
}

static void time_it(const char *name, void (*f)(void), int iterations, const char *note) {
  for (int i = 0; i < iterations / 10; i++) f();
  double per_op[ROUNDS];
  for (int r = 0; r < ROUNDS; r++) {
    double t0 = now_ns();
    for (int i = 0; i < iterations; i++) f();
    per_op[r] = (now_ns() - t0) / iterations;
  }
  qsort(per_op, ROUNDS, sizeof per_op[0], cmp);
  printf("%-18s median %7.1f ns/op   best %7.1f ns/op%s\n", name, per_op[ROUNDS / 2], per_op[0], note);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s CONFIG.json TOKEN_FILE\n", argv[0]);
    return 2;
  }
  size_t config_len;
  char *config = slurp(argv[1], &config_len);
  char *token = slurp(argv[2], &g_len);
  g_token = token;
  jwtwarden_verifier *v = NULL;
  jwtwarden_error *err = NULL;
  if (jwtwarden_verifier_new(config, config_len, &v, &err) != JWTWARDEN_RESULT_OK) {
    fprintf(stderr, "config: %s\n", jwtwarden_error_message(err));
    return 2;
  }
  g_v = v;
  hit();
  time_it("c_api_hit", hit, ITERATIONS, "");
  time_it("c_api_miss", miss, ITERATIONS / 100, "   (fresh: signature checked)");
  printf("token: %zu bytes\n", g_len);
  jwtwarden_verifier_free(v);
  free(config);
  free(token);
  return 0;
}
