#include <gtest/gtest.h>

#include <jwt.h>

#include <cstdlib>

#include "auth/jwt.hpp"

namespace flare {
namespace {

constexpr int64_t kNow = 1'800'000'000;

std::string Reason(const Result<TokenClaims>& r) { return r.ok() ? "ok" : r.error().reason; }

TEST(Jwt, VerifiesAGoodToken) {
    auto t = MintToken("s3cret", "user1", "acme", kNow + 60, "phone");
    auto r = VerifyToken(t, "s3cret", kNow, "default");
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->subject, "user1");
    EXPECT_EQ(r->tenant_id, "acme");
    EXPECT_EQ(r->device_id, "phone");
    EXPECT_EQ(r->expires_at, kNow + 60);
}

TEST(Jwt, DefaultTenantWhenClaimAbsent) {
    auto t = MintToken("s3cret", "user1", "", kNow + 60);
    auto r = VerifyToken(t, "s3cret", kNow, "default");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->tenant_id, "default");
}

TEST(Jwt, NamesEveryRefusal) {
    EXPECT_EQ(Reason(VerifyToken("", "s", kNow, "default")), "token_missing");
    EXPECT_EQ(Reason(VerifyToken("not.a.jwt", "s", kNow, "default")), "token_malformed");
    EXPECT_EQ(Reason(VerifyToken("garbage", "s", kNow, "default")), "token_malformed");
    EXPECT_EQ(Reason(VerifyToken(MintToken("other", "u", "t", kNow + 60), "s", kNow, "default")),
              "token_bad_signature");
    EXPECT_EQ(Reason(VerifyToken(MintToken("s", "u", "t", kNow - 1), "s", kNow, "default")), "token_expired");
    EXPECT_EQ(Reason(VerifyToken(MintToken("s", "bad user", "t", kNow + 60), "s", kNow, "default")),
              "token_bad_subject");
    // alg "none": header {"alg":"none","typ":"JWT"}, payload {"sub":"u","exp":9999999999}
    EXPECT_EQ(Reason(VerifyToken("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1IiwiZXhwIjo5OTk5OTk5OTk5fQ.", "s",
                                 kNow, "default")),
              "token_bad_algorithm");
}

TEST(Jwt, TamperedPayloadFailsSignature) {
    auto t = MintToken("s", "user1", "t", kNow + 60);
    auto first_dot = t.find('.');
    auto second_dot = t.find('.', first_dot + 1);
    // Re-sign nothing: swap the payload for another user's payload.
    auto other = MintToken("s", "user2", "t", kNow + 60);
    auto o1 = other.find('.'), o2 = other.find('.', o1 + 1);
    std::string forged = t.substr(0, first_dot + 1) + other.substr(o1 + 1, o2 - o1 - 1) + t.substr(second_dot);
    EXPECT_EQ(Reason(VerifyToken(forged, "s", kNow, "default")), "token_bad_signature");
}

// Signs arbitrary claims, to test claims MintToken would never write.
std::string SignClaims(const std::string& secret, const char* claims_json) {
    jwt_t* j = nullptr;
    jwt_new(&j);
    jwt_add_grants_json(j, claims_json);
    jwt_set_alg(j, JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(secret.data()), int(secret.size()));
    char* s = jwt_encode_str(j);
    std::string out(s);
    std::free(s);
    jwt_free(j);
    return out;
}

TEST(Jwt, ClaimsOfTheWrongTypeAreRefused) {
    EXPECT_EQ(Reason(VerifyToken(SignClaims("s", R"({"sub":"u","exp":"1900000000"})"), "s", kNow, "default")),
              "token_missing_exp");
    EXPECT_EQ(Reason(VerifyToken(SignClaims("s", R"({"sub":"u","exp":1900000000,"tenant_id":5})"), "s", kNow,
                                 "default")),
              "token_bad_tenant");
    EXPECT_EQ(Reason(VerifyToken(SignClaims("s", R"({"sub":"u","exp":1900000000,"role":true})"), "s", kNow,
                                 "default")),
              "token_malformed");
    EXPECT_EQ(Reason(VerifyToken(SignClaims("s", R"({"sub":"u"})"), "s", kNow, "default")), "token_missing_exp");
    auto ok = VerifyToken(SignClaims("s", R"({"sub":"u","exp":1900000000,"role":"business"})"), "s", kNow, "default");
    ASSERT_TRUE(ok.ok());
    EXPECT_EQ(ok->role, "business");
}

TEST(Jwt, TrailingBytesAfterANulAreNotIgnored) {
    auto t = MintToken("s", "user1", "t", kNow + 60);
    EXPECT_EQ(Reason(VerifyToken(t + std::string("\0garbage", 8), "s", kNow, "default")), "token_malformed");
}

}  // namespace
}  // namespace flare
