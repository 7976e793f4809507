/*
 * Runs the C ABI tests against a real test issuer.
 *
 *   jwtwarden_c_tests /path/to/jwtwarden-testissuer [test-name...]
 *
 * Prints one line per test and a summary; exits 1 if any test failed.
 * JWTWARDEN_TEST_QUICK=1 shortens the loops (valgrind).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests.h"

#if defined(__SANITIZE_ADDRESS__)
#define BUILT_WITH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUILT_WITH_ASAN 1
#endif
#endif

#ifdef EXPECT_ASAN
/* Defined by the ASan runtime only: proves it is really linked in, not just
   requested on the command line. */
extern void __asan_init(void) __attribute__((weak));
extern void __asan_report_error(void) __attribute__((weak));

static void test_asan_is_linked(void) {
#ifndef BUILT_WITH_ASAN
  CHECK(!"compiled without -fsanitize=address");
#endif
  CHECK(__asan_init != NULL);
}
#endif

static const struct {
  const char *name;
  void (*fn)(void);
} TESTS[] = {
#ifdef EXPECT_ASAN
    {"asan_is_linked", test_asan_is_linked},
#endif
    {"version", test_version},
    {"result_names_and_categories", test_result_names_and_categories},
    {"verify_and_cache", test_verify_and_cache},
    {"error_kinds", test_error_kinds},
    {"keys_unavailable", test_keys_unavailable},
    {"invalid_config", test_invalid_config},
    {"revocation", test_revocation},
    {"revocation_scope", test_revocation_scope},
    {"refresh_and_health", test_refresh_and_health},
    {"metrics", test_metrics},
    {"log_callback", test_log_callback},
    {"null_parameters", test_null_parameters},
    {"threads_during_rotation", test_threads_during_rotation},
    {"fork_child_keeps_verifying", test_fork_child_keeps_verifying},
    {"http_decision", test_http_decision},
    {"http_policy_errors_and_null_arguments", test_http_policy_errors_and_null_arguments},
    {"runtime_issuers", test_runtime_issuers},
    {"config_check", test_config_check},
    {"http_claim_value", test_http_claim_value},
    {"verify_assertion", test_verify_assertion},
    {"http_decision_mints_assertions", test_http_decision_mints_assertions},
};

static bool selected(const char *name, int argc, char **argv) {
  if (argc <= 2) return true;
  for (int i = 2; i < argc; i++)
    if (strcmp(argv[i], name) == 0) return true;
  return false;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s /path/to/jwtwarden-testissuer [test-name...]\n", argv[0]);
    return 2;
  }
  g_issuer_bin = argv[1];
  const char *quick = getenv("JWTWARDEN_TEST_QUICK");
  g_quick = quick && strcmp(quick, "0") != 0;
  /* Unbuffered, so a forked child does not repeat buffered output. */
  setvbuf(stdout, NULL, _IONBF, 0);

  int passed = 0, failed = 0;
  for (size_t i = 0; i < sizeof TESTS / sizeof TESTS[0]; i++) {
    if (!selected(TESTS[i].name, argc, argv)) continue;
    int before = g_check_failures;
    TESTS[i].fn();
    if (g_check_failures == before) {
      printf("ok   %s\n", TESTS[i].name);
      passed++;
    } else {
      printf("FAIL %s\n", TESTS[i].name);
      failed++;
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
