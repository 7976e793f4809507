// The C++17 wrapper (include/jwtwarden.hpp): happy and error paths, against a
// real test issuer (the C harness starts it and mints tokens).
//
//   jwtwarden_cpp_tests /path/to/jwtwarden-testissuer
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <utility>

#include "harness.h"
#include "jwtwarden.hpp"

static_assert(!std::is_copy_constructible_v<jwtwarden::Verifier>, "Verifier is move-only");
static_assert(std::is_nothrow_move_constructible_v<jwtwarden::Verifier>, "Verifier moves");
static_assert(!std::is_copy_constructible_v<jwtwarden::Verified>, "Verified is move-only");

namespace {

std::string owned(char *s) {
  std::string out(s);
  std::free(s);
  return out;
}

// Run f, expect a jwtwarden::Error with `code`; return it for more checks.
template <typename F>
jwtwarden::Error expect_throw(F &&f, uint32_t code) {
  try {
    f();
  } catch (const jwtwarden::Error &e) {
    CHECK_CODE(e.code(), code);
    return e;
  }
  CHECK(!"no exception");
  return jwtwarden::Error(0, "");
}

void test_happy_path(const issuer_t &is) {
  CHECK(jwtwarden::version() == JWTWARDEN_VERSION);
  jwtwarden::Verifier verifier(owned(config_for(&is, nullptr)));
  std::string token = owned(issuer_mint(&is, nullptr, nullptr, nullptr));

  jwtwarden::Verified first = verifier.verify(token);
  CHECK(first.claims_json().find("\"sub\":\"user\"") != std::string_view::npos);
  CHECK(first.issuer() == is.url);
  CHECK(first.kid() && *first.kid() == is.kid);
  CHECK(first.alg() == "RS256");
  CHECK(!first.cached());
  CHECK(first.expires_at() > 0);

  jwtwarden::Verified second = verifier.verify(token);
  CHECK(second.cached());
  CHECK(second.verified_at_ms() == first.verified_at_ms());

  jwtwarden::VerifyOptions fresh;
  fresh.fresh = true;
  fresh.issuer = is.url;
  CHECK(!verifier.verify(token, fresh).cached());

  CHECK(verifier.bump_policy_version() == 1);
  CHECK(!verifier.verify(token).cached());
  verifier.refresh_issuer(is.url);
  CHECK(verifier.issuer_health(is.url) == JWTWARDEN_HEALTH_FRESH);
  CHECK(verifier.metrics_json().find("\"ok_cached\":1") != std::string::npos);
  CHECK(verifier.prometheus().find("jwtwarden_verifications") != std::string::npos);

  // Moves transfer ownership; the result outlives the verifier.
  jwtwarden::Verifier moved = std::move(verifier);
  CHECK(verifier.get() == nullptr);
  CHECK(moved.get() != nullptr);
  jwtwarden::Verified kept = moved.verify(token);
  { jwtwarden::Verifier gone = std::move(moved); }
  CHECK(kept.issuer() == is.url);
}

void test_error_paths(const issuer_t &is) {
  // Configuration errors name the field.
  jwtwarden::Error cfg = expect_throw([] { jwtwarden::Verifier v("{\"issuers\":[]}"); },
                                      JWTWARDEN_RESULT_INVALID_CONFIG);
  CHECK(cfg.category() == JWTWARDEN_CATEGORY_USAGE);
  CHECK(std::string(cfg.what()).find("issuers") != std::string::npos);

  jwtwarden::Verifier verifier(owned(config_for(&is, nullptr)));
  jwtwarden::Error malformed = expect_throw([&] { verifier.verify("nope"); }, JWTWARDEN_RESULT_MALFORMED_TOKEN);
  CHECK(malformed.is_malformed());
  CHECK(std::string(malformed.name()) == "malformed_token");
  CHECK(std::string(malformed.category_name()) == "malformed");
  expect_throw([&] { verifier.verify(""); }, JWTWARDEN_RESULT_MALFORMED_TOKEN);

  std::string claims = owned(claims_json(&is, nullptr, "user", "api", -3600, "cpp-expired", nullptr));
  std::string expired = owned(issuer_mint(&is, nullptr, claims.c_str(), nullptr));
  jwtwarden::Error e = expect_throw([&] { verifier.verify(expired); }, JWTWARDEN_RESULT_EXPIRED);
  CHECK(e.is_policy_denial());
  CHECK(e.category() == JWTWARDEN_CATEGORY_POLICY);
  CHECK(std::string(e.what()).size() > 0);

  std::string token = owned(issuer_mint(&is, nullptr, nullptr, nullptr));
  std::string bad = token;
  bad[bad.size() - 5] = bad[bad.size() - 5] == 'A' ? 'B' : 'A';
  CHECK(expect_throw([&] { verifier.verify(bad); }, JWTWARDEN_RESULT_INVALID_SIGNATURE).is_verification_failure());

  // Revocations name their issuer ("*": every issuer) and say how far they
  // reached: without a fleet feed, this process only.
  std::string by_jti = owned(issuer_mint(&is, nullptr, owned(claims_json(&is, nullptr, "user", "api", 3600,
                                                                          "cpp-jti", nullptr)).c_str(), nullptr));
  std::string by_sub = owned(issuer_mint(&is, nullptr, owned(claims_json(&is, nullptr, "cpp-sub", "api", 3600,
                                                                          "cpp-jti-2", nullptr)).c_str(), nullptr));
  verifier.verify(by_jti);
  verifier.verify(by_sub);
  CHECK(verifier.revoke_jti(is.url, "cpp-jti", static_cast<uint64_t>(now_secs() + 3600)) ==
        JWTWARDEN_PROPAGATION_LOCAL);
  expect_throw([&] { verifier.verify(by_jti); }, JWTWARDEN_RESULT_REVOKED);
  CHECK(verifier.revoke_subject("*", "cpp-sub", static_cast<uint64_t>(now_secs() + 1)) ==
        JWTWARDEN_PROPAGATION_LOCAL);
  expect_throw([&] { verifier.verify(by_sub); }, JWTWARDEN_RESULT_REVOKED);
  CHECK(verifier.revoke_jti("*", "cpp-other") == JWTWARDEN_PROPAGATION_LOCAL);
  expect_throw([&] { verifier.revoke_jti("https://nope.example", "j"); }, JWTWARDEN_RESULT_UNKNOWN_ISSUER);
  expect_throw([&] { verifier.revoke_subject("https://nope.example", "s", 1); }, JWTWARDEN_RESULT_UNKNOWN_ISSUER);

  verifier.verify(token);
  CHECK(verifier.revoke_kid(is.url, is.kid) == JWTWARDEN_PROPAGATION_LOCAL);
  expect_throw([&] { verifier.verify(token); }, JWTWARDEN_RESULT_KEY_REVOKED);
  expect_throw([&] { verifier.revoke_kid("https://nope.example", "k"); }, JWTWARDEN_RESULT_UNKNOWN_ISSUER);
  expect_throw([&] { verifier.refresh_issuer("https://nope.example"); }, JWTWARDEN_RESULT_UNKNOWN_ISSUER);

  // A moved-from verifier reports NULL_PARAMETER instead of crashing.
  jwtwarden::Verifier other = std::move(verifier);
  expect_throw([&] { verifier.verify(token); }, JWTWARDEN_RESULT_NULL_PARAMETER);
  expect_throw([&] { verifier.metrics_json(); }, JWTWARDEN_RESULT_NULL_PARAMETER);
}

void test_log_function(const issuer_t &is) {
  std::atomic<int> debug{0};
  jwtwarden::set_log_function(
      [&](jwtwarden_log_level level, std::string_view msg) {
        if (level == JWTWARDEN_LOG_LEVEL_DEBUG && msg.find("rejected token") != std::string_view::npos) debug++;
      },
      JWTWARDEN_LOG_LEVEL_DEBUG);
  jwtwarden::Verifier verifier(owned(config_for(&is, nullptr)));
  expect_throw([&] { verifier.verify("x.y.z"); }, JWTWARDEN_RESULT_INVALID_BASE64);
  CHECK(debug == 1);
  jwtwarden::set_log_function(nullptr);
  expect_throw([&] { verifier.verify("x.y.z"); }, JWTWARDEN_RESULT_INVALID_BASE64);
  CHECK(debug == 1);
  expect_throw([] { jwtwarden::set_log_function([](jwtwarden_log_level, std::string_view) {},
                                                static_cast<jwtwarden_log_level>(99)); },
               JWTWARDEN_RESULT_INVALID_ARGUMENT);
  jwtwarden::set_log_function(nullptr);
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s /path/to/jwtwarden-testissuer\n", argv[0]);
    return 2;
  }
  g_issuer_bin = argv[1];
  setvbuf(stdout, nullptr, _IONBF, 0);
  issuer_t is;
  issuer_start(&is);
  struct {
    const char *name;
    void (*fn)(const issuer_t &);
  } tests[] = {{"cpp_happy_path", test_happy_path},
               {"cpp_error_paths", test_error_paths},
               {"cpp_log_function", test_log_function}};
  int passed = 0, failed = 0;
  for (auto &t : tests) {
    int before = g_check_failures;
    t.fn(is);
    bool ok = g_check_failures == before;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", t.name);
    (ok ? passed : failed)++;
  }
  issuer_stop(&is);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
