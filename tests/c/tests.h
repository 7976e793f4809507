/* The C ABI test cases; main.c runs them in this order. */
#ifndef JWTWARDEN_TESTS_H
#define JWTWARDEN_TESTS_H

void test_version(void);
void test_result_names_and_categories(void);
void test_verify_and_cache(void);
void test_error_kinds(void);
void test_keys_unavailable(void);
void test_invalid_config(void);
void test_revocation(void);
void test_revocation_scope(void);
void test_refresh_and_health(void);
void test_metrics(void);
void test_log_callback(void);
void test_null_parameters(void);
void test_threads_during_rotation(void);
void test_fork_child_keeps_verifying(void);
void test_http_decision(void);
void test_http_policy_errors_and_null_arguments(void);
void test_runtime_issuers(void);
void test_config_check(void);
void test_http_claim_value(void);
void test_verify_assertion(void);
void test_http_decision_mints_assertions(void);

#endif
