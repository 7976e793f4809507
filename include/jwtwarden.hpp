/*
 * jwtwarden.hpp: a small header-only C++17 wrapper over the C API in
 * jwtwarden.h.
 *
 *   jwtwarden::Verifier verifier(config_json);
 *   try {
 *     jwtwarden::Verified v = verifier.verify(token);
 *     use(v.claims_json(), v.cached());
 *   } catch (const jwtwarden::Error &e) {
 *     // e.code(), e.category(), e.what(); e.is_policy_denial(), ...
 *   }
 *
 * Handles are move-only RAII owners of the C objects. Every failure throws
 * jwtwarden::Error carrying the stable numeric code, its category and the
 * library's message. Verifier methods are const and thread-safe, like the C
 * verifier they wrap.
 */
#ifndef JWTWARDEN_HPP
#define JWTWARDEN_HPP

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "jwtwarden.h"

namespace jwtwarden {

/* A failed call: the stable code (a jwtwarden_result), its category and a message. */
class Error : public std::runtime_error {
 public:
  Error(uint32_t code, const std::string &message)
      : std::runtime_error(message), code_(code) {}

  /* The stable numeric code, the same in every language (e.g. 300 for expired). */
  uint32_t code() const noexcept { return code_; }
  /* Its category (JWTWARDEN_CATEGORY_POLICY, ...). */
  jwtwarden_category category() const noexcept { return jwtwarden_result_category(code_); }
  /* The stable snake_case name of the code ("expired"). */
  const char *name() const noexcept { return jwtwarden_result_name(code_); }
  /* The stable name of the category ("policy"). */
  const char *category_name() const noexcept { return jwtwarden_category_name(category()); }

  bool is_malformed() const noexcept { return jwtwarden_result_is_malformed(code_); }
  bool is_verification_failure() const noexcept { return jwtwarden_result_is_verification_failure(code_); }
  bool is_policy_denial() const noexcept { return jwtwarden_result_is_policy_denial(code_); }
  bool is_keys_unavailable() const noexcept { return jwtwarden_result_is_keys_unavailable(code_); }

 private:
  uint32_t code_;
};

namespace detail {

struct ErrorDeleter {
  void operator()(jwtwarden_error *e) const noexcept { jwtwarden_error_free(e); }
};
struct VerifiedDeleter {
  void operator()(jwtwarden_verified *v) const noexcept { jwtwarden_verified_free(v); }
};
struct VerifierDeleter {
  void operator()(jwtwarden_verifier *v) const noexcept { jwtwarden_verifier_free(v); }
};
struct StringDeleter {
  void operator()(char *s) const noexcept { jwtwarden_string_free(s); }
};

/* Throw jwtwarden::Error unless rc is OK; takes ownership of *err. A pointer to
   the out-parameter, so *err is read after the call that wrote it (argument
   evaluation order is unspecified). */
inline void check(jwtwarden_result rc, jwtwarden_error **err) {
  std::unique_ptr<jwtwarden_error, ErrorDeleter> owned(err ? *err : nullptr);
  if (rc == JWTWARDEN_RESULT_OK) return;
  const char *msg = owned ? jwtwarden_error_message(owned.get()) : nullptr;
  throw Error(rc, msg ? msg : jwtwarden_result_name(rc));
}

/* A non-NULL pointer for a possibly empty view (the C API rejects NULL). */
inline const char *data_of(std::string_view s) noexcept { return s.data() ? s.data() : ""; }

inline std::string take_string(char *s) {
  std::unique_ptr<char, StringDeleter> owned(s);
  return std::string(owned ? owned.get() : "");
}

}  // namespace detail

/* Per-call options for Verifier::verify. */
struct VerifyOptions {
  /* Verify for this configured issuer instead of choosing by the token's iss. */
  std::optional<std::string> issuer;
  /* Skip the cache: check the signature now. */
  bool fresh = false;
};

/* A successful verification. Move-only; string views are valid while it lives. */
class Verified {
 public:
  explicit Verified(jwtwarden_verified *raw) noexcept : raw_(raw) {}

  /* The verified claims as a JSON object. */
  std::string_view claims_json() const noexcept { return jwtwarden_verified_claims_json(raw_.get()); }
  /* The configured issuer the token was verified for. */
  std::string_view issuer() const noexcept { return jwtwarden_verified_issuer(raw_.get()); }
  /* The kid of the verifying key, if the token had one. */
  std::optional<std::string_view> kid() const noexcept {
    const char *k = jwtwarden_verified_kid(raw_.get());
    return k ? std::optional<std::string_view>(k) : std::nullopt;
  }
  /* The signature algorithm ("RS256"). */
  std::string_view alg() const noexcept { return jwtwarden_verified_alg(raw_.get()); }
  /* True if served from the cache (trust reused), false if checked during this call. */
  bool cached() const noexcept { return jwtwarden_verified_cached(raw_.get()); }
  /* When the signature was checked, ms since the Unix epoch. */
  uint64_t verified_at_ms() const noexcept { return jwtwarden_verified_verified_at_ms(raw_.get()); }
  /* The token's exp, seconds since the Unix epoch. */
  uint64_t expires_at() const noexcept { return jwtwarden_verified_expires_at(raw_.get()); }

  const jwtwarden_verified *get() const noexcept { return raw_.get(); }

 private:
  std::unique_ptr<jwtwarden_verified, detail::VerifiedDeleter> raw_;
};

/* A verifier for the configured issuers. Move-only; thread-safe. */
class Verifier {
 public:
  /* Build from the JSON configuration; throws Error (INVALID_CONFIG names the field). */
  explicit Verifier(std::string_view config_json) {
    jwtwarden_verifier *raw = nullptr;
    jwtwarden_error *err = nullptr;
    detail::check(jwtwarden_verifier_new(detail::data_of(config_json), config_json.size(), &raw, &err), &err);
    raw_.reset(raw);
  }

  /* Verify a token, choosing the issuer by its iss claim. Throws Error on rejection. */
  Verified verify(std::string_view token) const { return verify(token, VerifyOptions{}); }

  /* Verify a token with options. Throws Error on rejection. */
  Verified verify(std::string_view token, const VerifyOptions &opts) const {
    jwtwarden_verified *out = nullptr;
    jwtwarden_error *err = nullptr;
    detail::check(jwtwarden_verifier_verify_with(raw_.get(), detail::data_of(token), token.size(),
                                                 opts.issuer ? opts.issuer->c_str() : nullptr, opts.fresh,
                                                 &out, &err),
                  &err);
    return Verified(out);
  }

  /* Revoke the jti of issuer ("*": every issuer) until expires_at_secs (0: for
     revocation.max_token_lifetime_secs). In force in this process on return; the
     result says how far it reached (JWTWARDEN_PROPAGATION_PENDING: not yet
     fleet-wide). */
  jwtwarden_propagation revoke_jti(const std::string &issuer, const std::string &jti,
                                   uint64_t expires_at_secs = 0) const {
    jwtwarden_propagation p = JWTWARDEN_PROPAGATION_LOCAL;
    jwtwarden_error *err = nullptr;
    detail::check(
        jwtwarden_verifier_revoke_jti(raw_.get(), issuer.c_str(), jti.c_str(), expires_at_secs, &p, &err), &err);
    return p;
  }

  /* Revoke the issuer's tokens for subject issued before issued_before_secs. */
  jwtwarden_propagation revoke_subject(const std::string &issuer, const std::string &subject,
                                       uint64_t issued_before_secs) const {
    jwtwarden_propagation p = JWTWARDEN_PROPAGATION_LOCAL;
    jwtwarden_error *err = nullptr;
    detail::check(jwtwarden_verifier_revoke_subject(raw_.get(), issuer.c_str(), subject.c_str(),
                                                    issued_before_secs, &p, &err),
                  &err);
    return p;
  }

  /* Stop trusting one key of one issuer ("*": every issuer) now. */
  jwtwarden_propagation revoke_kid(const std::string &issuer, const std::string &kid) const {
    jwtwarden_propagation p = JWTWARDEN_PROPAGATION_LOCAL;
    jwtwarden_error *err = nullptr;
    detail::check(jwtwarden_verifier_revoke_kid(raw_.get(), issuer.c_str(), kid.c_str(), &p, &err), &err);
    return p;
  }

  /* Invalidate every cached result; returns the new policy version. */
  uint64_t bump_policy_version() const {
    uint64_t version = 0;
    jwtwarden_error *err = nullptr;
    detail::check(jwtwarden_verifier_bump_policy_version(raw_.get(), &version, &err), &err);
    return version;
  }

  /* Fetch an issuer's keys now. */
  void refresh_issuer(const std::string &issuer) const {
    jwtwarden_error *err = nullptr;
    detail::check(jwtwarden_verifier_refresh_issuer(raw_.get(), issuer.c_str(), &err), &err);
  }

  /* Health of an issuer's keys. */
  jwtwarden_health issuer_health(const std::string &issuer) const {
    jwtwarden_health health = JWTWARDEN_HEALTH_FAILED_CLOSED;
    jwtwarden_error *err = nullptr;
    detail::check(jwtwarden_verifier_issuer_health(raw_.get(), issuer.c_str(), &health, &err), &err);
    return health;
  }

  /* Every metric as a JSON object. */
  std::string metrics_json() const {
    char *out = nullptr;
    jwtwarden_error *err = nullptr;
    detail::check(jwtwarden_verifier_metrics_json(raw_.get(), &out, &err), &err);
    return detail::take_string(out);
  }

  /* Every metric in the Prometheus text format. */
  std::string prometheus() const {
    char *out = nullptr;
    jwtwarden_error *err = nullptr;
    detail::check(jwtwarden_verifier_prometheus(raw_.get(), &out, &err), &err);
    return detail::take_string(out);
  }

  /* The C handle (NULL after a move), for calls the wrapper does not cover. */
  const jwtwarden_verifier *get() const noexcept { return raw_.get(); }

 private:
  std::unique_ptr<jwtwarden_verifier, detail::VerifierDeleter> raw_;
};

/* A log sink: level and message (valid only during the call). */
using LogFunction = std::function<void(jwtwarden_log_level, std::string_view)>;

namespace detail {
struct LogSlot {
  std::mutex mu;  // serialises set_log_function calls
  LogFunction fn;
};
inline LogSlot &log_slot() {
  static LogSlot slot;
  return slot;
}
inline void log_trampoline(void *userdata, jwtwarden_log_level level, const char *message) {
  auto *fn = static_cast<LogFunction *>(userdata);
  try {
    (*fn)(level, message);
  } catch (...) {
    // An exception must not unwind into the library.
  }
}
}  // namespace detail

/* Send the library's logs up to max_level to fn (process-wide; an empty fn turns logging
   off). Called from any thread, so fn must be thread-safe. Throws Error. */
inline void set_log_function(LogFunction fn, jwtwarden_log_level max_level = JWTWARDEN_LOG_LEVEL_INFO) {
  auto &slot = detail::log_slot();
  std::lock_guard<std::mutex> lock(slot.mu);
  // Detach first: once this returns, the old function is not running anywhere.
  detail::check(jwtwarden_set_log_callback(nullptr, nullptr, JWTWARDEN_LOG_LEVEL_OFF, nullptr), nullptr);
  slot.fn = std::move(fn);
  if (!slot.fn) return;
  jwtwarden_error *err = nullptr;
  detail::check(jwtwarden_set_log_callback(detail::log_trampoline, &slot.fn, max_level, &err), &err);
}

/* The version of the linked library; compare with JWTWARDEN_VERSION. */
inline std::string_view version() noexcept { return jwtwarden_version(); }

}  // namespace jwtwarden

#endif /* JWTWARDEN_HPP */
