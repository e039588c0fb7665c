#include "auth/jwt.hpp"

#include <jwt.h>

#include <cstdlib>
#include <memory>
#include <string_view>

#include "domain/types.hpp"

namespace flare {

namespace {

struct JwtFree {
    void operator()(jwt_t* j) const { jwt_free(j); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;

Error Unauth(std::string reason, std::string message) {
    return MakeError(Errc::kUnauthenticated, std::move(reason), std::move(message));
}

bool HasClaim(jwt_t* j, const char* name) {
    char* json = jwt_get_grants_json(j, name);
    const bool present = json != nullptr;
    std::free(json);
    return present;
}

std::string Grant(jwt_t* j, const char* name) {
    const char* v = jwt_get_grant(j, name);
    return v ? std::string(v) : std::string();
}

}  // namespace

Result<TokenClaims> VerifyToken(const std::string& token, const std::string& secret, int64_t now_s,
                                const std::string& default_tenant) {
    if (token.empty()) {
        return Unauth("token_missing", "no token: send an auth frame, a ?token= query or an Authorization header");
    }
    if (token.size() > 8192) {
        return Unauth("token_malformed", "token is longer than 8192 bytes");
    }
    if (token.find('\0') != std::string::npos) {
        return Unauth("token_malformed", "token contains a NUL byte");
    }
    jwt_t* raw = nullptr;
    if (jwt_decode(&raw, token.c_str(), nullptr, 0) != 0 || raw == nullptr) {
        return Unauth("token_malformed", "token is not a well-formed JWT");
    }
    JwtPtr unverified(raw);
    const char* alg = jwt_get_header(unverified.get(), "alg");
    if (alg == nullptr || std::string_view(alg) != "HS256") {
        return Unauth("token_bad_algorithm", "token must be signed with HS256");
    }
    raw = nullptr;
    if (jwt_decode(&raw, token.c_str(), reinterpret_cast<const unsigned char*>(secret.data()),
                   static_cast<int>(secret.size())) != 0 ||
        raw == nullptr) {
        return Unauth("token_bad_signature", "token signature does not verify with this server's secret (TOKEN_SECRET; for the business API "
                                              "BUSINESS_SECRET when that is set)");
    }
    JwtPtr jwt(raw);
    TokenClaims c;
    errno = 0;
    c.expires_at = jwt_get_grant_int(jwt.get(), "exp");
    if (errno != 0 || c.expires_at <= 0) {
        return Unauth("token_missing_exp", "token has no 'exp' claim with a positive whole number of seconds");
    }
    if (c.expires_at <= now_s) {
        return Unauth("token_expired", "token expired at " + std::to_string(c.expires_at) + " (now " +
                                           std::to_string(now_s) + "); mint a new one");
    }
    c.subject = Grant(jwt.get(), "sub");
    if (!IsValidName(c.subject)) {
        return Unauth("token_bad_subject", "token 'sub' must be a user id of 1..64 characters of A-Z a-z 0-9 _ . @ -");
    }
    c.tenant_id = Grant(jwt.get(), "tenant_id");
    if (jwt_get_grant(jwt.get(), "tenant_id") == nullptr && HasClaim(jwt.get(), "tenant_id")) {
        return Unauth("token_bad_tenant", "token 'tenant_id' must be a string");
    }
    if (c.tenant_id.empty()) {
        c.tenant_id = default_tenant;
    }
    if (!IsValidName(c.tenant_id)) {
        return Unauth("token_bad_tenant", "token 'tenant_id' is not a valid tenant id");
    }
    c.device_id = Grant(jwt.get(), "device_id");
    c.role = Grant(jwt.get(), "role");
    auto not_string = [&](const char* name) {
        return jwt_get_grant(jwt.get(), name) == nullptr && HasClaim(jwt.get(), name);
    };
    if (not_string("device_id") || not_string("role")) {
        return Unauth("token_malformed", "token 'device_id' and 'role' must be strings");
    }
    return c;
}

std::string MintToken(const std::string& secret, const std::string& subject, const std::string& tenant_id,
                      int64_t expires_at, const std::string& device_id, const std::string& role) {
    jwt_t* raw = nullptr;
    if (jwt_new(&raw) != 0) {
        return {};
    }
    JwtPtr jwt(raw);
    jwt_add_grant(jwt.get(), "sub", subject.c_str());
    if (!tenant_id.empty()) {
        jwt_add_grant(jwt.get(), "tenant_id", tenant_id.c_str());
    }
    if (!device_id.empty()) {
        jwt_add_grant(jwt.get(), "device_id", device_id.c_str());
    }
    if (!role.empty()) {
        jwt_add_grant(jwt.get(), "role", role.c_str());
    }
    jwt_add_grant_int(jwt.get(), "exp", static_cast<long>(expires_at));
    jwt_set_alg(jwt.get(), JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(secret.data()),
                static_cast<int>(secret.size()));
    char* s = jwt_encode_str(jwt.get());
    if (s == nullptr) {
        return {};
    }
    std::string out(s);
    std::free(s);
    return out;
}

}  // namespace flare
