// HS256 JWTs for client (and later business) authentication. Verification names the reason a token
// was refused so the client can be told exactly what is wrong. Backed by libjwt.
#pragma once

#include <cstdint>
#include <string>

#include "common/errc.hpp"

namespace flare {

struct TokenClaims {
    std::string subject;    // "sub": the user id
    std::string tenant_id;  // "tenant_id": "default" when absent
    std::string device_id;  // "device_id": optional
    std::string role;       // "role": optional ("user" when absent)
    int64_t expires_at = 0; // "exp": seconds since the epoch
};

// Errors (all kUnauthenticated): "token_missing", "token_malformed", "token_bad_algorithm",
// "token_bad_signature", "token_expired", "token_missing_exp", "token_bad_subject", "token_bad_tenant".
Result<TokenClaims> VerifyToken(const std::string& token, const std::string& secret, int64_t now_s,
                                const std::string& default_tenant);

inline constexpr const char* kBusinessRole = "business";

// Mints an HS256 token (used by clients and tests).
std::string MintToken(const std::string& secret, const std::string& subject, const std::string& tenant_id,
                      int64_t expires_at, const std::string& device_id = "", const std::string& role = "");

}  // namespace flare
