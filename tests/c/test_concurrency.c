/* Eight threads verifying while a key rotates; a fork()ed child that keeps verifying. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "tests.h"

#define THREADS 8

/*
 * Phases, advanced by the main thread only after every worker verified at
 * least `per_phase` times in the current one:
 *   0: only key A is published; tokens of A verify.
 *   1: key B was added at the issuer and a token of B handed out; both verify
 *      (B through one coalesced unknown-kid refresh).
 *   2: A is being retired at the issuer (results not checked: in flux).
 *   3: A was retired and the verifier refreshed: A's tokens (cached or not)
 *      fail with UNKNOWN_KID, B's still verify.
 * A worker checks a result only if the phase did not change during the call.
 */
typedef struct {
  const jwtwarden_verifier *v;
  const char *token_a;
  const char *token_b; /* published before phase 1 */
  int phase;
  int stop;
  int progress[THREADS][4];
  int failures;
  int id_counter;
} shared_t;

static void *worker(void *arg) {
  shared_t *s = arg;
  int id = __atomic_fetch_add(&s->id_counter, 1, __ATOMIC_SEQ_CST);
  while (!__atomic_load_n(&s->stop, __ATOMIC_SEQ_CST)) {
    int before = __atomic_load_n(&s->phase, __ATOMIC_SEQ_CST);
    const char *b = __atomic_load_n(&s->token_b, __ATOMIC_SEQ_CST);
    uint32_t ra = verify_code(s->v, s->token_a);
    uint32_t rb = b ? verify_code(s->v, b) : JWTWARDEN_RESULT_OK;
    int after = __atomic_load_n(&s->phase, __ATOMIC_SEQ_CST);
    if (before != after || before == 2) continue;
    uint32_t want_a = before < 2 ? JWTWARDEN_RESULT_OK : JWTWARDEN_RESULT_UNKNOWN_KID;
    if (ra != want_a || (before >= 1 && rb != JWTWARDEN_RESULT_OK)) {
      fprintf(stderr, "    thread %d phase %d: token A -> %s, token B -> %s\n", id, before,
              jwtwarden_result_name(ra), jwtwarden_result_name(rb));
      __atomic_fetch_add(&s->failures, 1, __ATOMIC_SEQ_CST);
    }
    __atomic_fetch_add(&s->progress[id][before], 1, __ATOMIC_SEQ_CST);
  }
  return NULL;
}

static void wait_for_progress(shared_t *s, int phase, int per_phase) {
  for (;;) {
    int done = 0;
    for (int t = 0; t < THREADS; t++)
      if (__atomic_load_n(&s->progress[t][phase], __ATOMIC_SEQ_CST) >= per_phase) done++;
    if (done == THREADS) return;
    usleep(1000);
  }
}

/* The issuer's "unknown_kid" fetch count from the metrics JSON, or -1. */
static long unknown_kid_fetches(const jwtwarden_verifier *v) {
  char *json = NULL;
  long n = -1;
  if (jwtwarden_verifier_metrics_json(v, &json, NULL) != JWTWARDEN_RESULT_OK) return -1;
  const char *fetches = strstr(json, "\"fetches\":{");
  if (fetches) fetches = strstr(fetches, "\"unknown_kid\":");
  if (fetches) n = strtol(fetches + strlen("\"unknown_kid\":"), NULL, 10);
  jwtwarden_string_free(json);
  return n;
}

void test_threads_during_rotation(void) {
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  char *token_a = issuer_mint(&is, NULL, NULL, NULL);
  shared_t s = {.v = v, .token_a = token_a};
  int per_phase = g_quick ? 5 : 200;

  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++) CHECK(pthread_create(&threads[t], NULL, worker, &s) == 0);
  wait_for_progress(&s, 0, per_phase);

  char *kid_b = issuer_add_key(&is, "RS256");
  char *token_b = issuer_mint(&is, kid_b, NULL, NULL);
  __atomic_store_n(&s.token_b, token_b, __ATOMIC_SEQ_CST);
  __atomic_store_n(&s.phase, 1, __ATOMIC_SEQ_CST);
  wait_for_progress(&s, 1, per_phase);
  /* One unknown-kid fetch for B, however many threads saw it first. Counted
   * here: later, the retired A is an unknown kid too, and once a cooldown has
   * passed (valgrind is slow) it may rightly earn a refresh of its own. */
  CHECK(unknown_kid_fetches(v) == 1);

  __atomic_store_n(&s.phase, 2, __ATOMIC_SEQ_CST);
  bool retired = issuer_retire_key(&is, is.kid);
  CHECK(retired);
  jwtwarden_error *err = NULL;
  jwtwarden_result refreshed = jwtwarden_verifier_refresh_issuer(v, is.url, &err);
  if (refreshed != JWTWARDEN_RESULT_OK)
    fprintf(stderr, "    refresh after retiring A: %s\n", jwtwarden_error_message(err));
  jwtwarden_error_free(err);
  CHECK_CODE(refreshed, JWTWARDEN_RESULT_OK);
  /* Phase 3 asserts what the refresh changed: without one, A is rightly
   * still trusted, and every check would fail for that one reason. */
  if (retired && refreshed == JWTWARDEN_RESULT_OK) {
    __atomic_store_n(&s.phase, 3, __ATOMIC_SEQ_CST);
    wait_for_progress(&s, 3, per_phase);
  }

  __atomic_store_n(&s.stop, 1, __ATOMIC_SEQ_CST);
  for (int t = 0; t < THREADS; t++) pthread_join(threads[t], NULL);
  CHECK(s.failures == 0);
  if (s.failures) {
    /* What the verifier did (keys held, fetches by reason, failures, last
     * error) and how many JWKS requests the issuer saw: enough to tell a
     * refresh that never happened from one that did. */
    char *json = NULL;
    if (jwtwarden_verifier_metrics_json(v, &json, NULL) == JWTWARDEN_RESULT_OK)
      fprintf(stderr, "    metrics: %s\n", json);
    jwtwarden_string_free(json);
    fprintf(stderr, "    issuer JWKS requests: %ld\n", issuer_jwks_requests(&is));
  }

  free(kid_b);
  free(token_a);
  free(token_b);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}

/*
 * A pre-fork server: the parent builds the verifier (its refresher thread
 * running), verifies once, then forks. The child keeps verifying: a cached
 * token, a fresh check, and a token whose kid the issuer published only
 * after the fork (an unknown-kid fetch made by the child itself).
 */
void test_fork_child_keeps_verifying(void) {
  issuer_t is;
  issuer_start(&is);
  jwtwarden_verifier *v = verifier_for(&is, NULL);
  char *token_a = issuer_mint(&is, NULL, NULL, NULL);
  CHECK_CODE(verify_code(v, token_a), JWTWARDEN_RESULT_OK);

  int to_child[2];
  CHECK(pipe(to_child) == 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(to_child[1]);
    int bad = 0;
    jwtwarden_verified *r = NULL;
    if (jwtwarden_verifier_verify(v, token_a, strlen(token_a), &r, NULL) != JWTWARDEN_RESULT_OK ||
        !jwtwarden_verified_cached(r))
      bad |= 1;
    jwtwarden_verified_free(r);
    if (jwtwarden_verifier_verify_with(v, token_a, strlen(token_a), NULL, true, &r, NULL) != JWTWARDEN_RESULT_OK)
      bad |= 2;
    jwtwarden_verified_free(r);
    char token_b[4096] = {0};
    size_t n = 0;
    ssize_t got;
    while (n < sizeof token_b - 1 && (got = read(to_child[0], token_b + n, sizeof token_b - 1 - n)) > 0)
      n += (size_t)got;
    close(to_child[0]);
    for (int i = 0; i < (g_quick ? 3 : 50); i++) {
      jwtwarden_result rc = jwtwarden_verifier_verify(v, token_b, n, &r, NULL);
      if (rc != JWTWARDEN_RESULT_OK) {
        fprintf(stderr, "    child: token with the new kid -> %s\n", jwtwarden_result_name(rc));
        bad |= 4;
      } else if (i > 0 && !jwtwarden_verified_cached(r)) {
        bad |= 8;
      }
      jwtwarden_verified_free(r);
      if (verify_code(v, token_a) != JWTWARDEN_RESULT_OK) bad |= 16;
    }
    /* The child has its own refresher thread now; freeing stops it. */
    jwtwarden_verifier_free(v);
    free(token_a);
    _exit(bad);
  }
  CHECK(pid > 0);
  close(to_child[0]);
  /* After the fork: a new key, published, and a token signed with it. */
  char *kid_b = issuer_add_key(&is, "ES256");
  char *token_b = issuer_mint(&is, kid_b, NULL, NULL);
  CHECK(write(to_child[1], token_b, strlen(token_b)) == (ssize_t)strlen(token_b));
  close(to_child[1]);
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fprintf(stderr, "    child exit status %d (signal %d)\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1,
            WIFSIGNALED(status) ? WTERMSIG(status) : 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  /* The parent is unaffected. */
  CHECK_CODE(verify_code(v, token_a), JWTWARDEN_RESULT_OK);
  free(kid_b);
  free(token_a);
  free(token_b);
  jwtwarden_verifier_free(v);
  issuer_stop(&is);
}
