#include "hooks/signature.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <charconv>

namespace flare::hooks {

std::string Sign(std::string_view secret, std::string_view timestamp, std::string_view body) {
    std::string payload;
    payload.reserve(timestamp.size() + 1 + body.size());
    payload.append(timestamp).append(".").append(body);
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
         reinterpret_cast<const unsigned char*>(payload.data()), payload.size(), mac, &len);
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "v1=";
    for (unsigned int i = 0; i < len; ++i) {
        out += kHex[mac[i] >> 4];
        out += kHex[mac[i] & 15];
    }
    return out;
}

bool Verify(std::string_view secret, std::string_view timestamp, std::string_view body, std::string_view signature,
            int64_t now_s, int64_t tolerance_s) {
    int64_t ts = 0;
    auto [p, ec] = std::from_chars(timestamp.data(), timestamp.data() + timestamp.size(), ts);
    if (ec != std::errc() || p != timestamp.data() + timestamp.size()) {
        return false;
    }
    if (ts < now_s - tolerance_s || ts > now_s + tolerance_s) {
        return false;
    }
    const std::string expected = Sign(secret, timestamp, body);
    return expected.size() == signature.size() &&
           CRYPTO_memcmp(expected.data(), signature.data(), expected.size()) == 0;
}

}  // namespace flare::hooks
