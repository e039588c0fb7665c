// Webhook signatures: X-Flare-Signature = "v1=" + hex(HMAC-SHA256(secret, timestamp + "." + body)),
// X-Flare-Timestamp = the Unix time in seconds it was signed at. A receiver recomputes the HMAC
// over the raw body it got and refuses old timestamps (replays).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace flare::hooks {

std::string Sign(std::string_view secret, std::string_view timestamp, std::string_view body);
// True when `signature` is Sign(secret, timestamp, body) (compared in constant time) and timestamp is
// within `tolerance_s` of `now_s`.
bool Verify(std::string_view secret, std::string_view timestamp, std::string_view body, std::string_view signature,
            int64_t now_s, int64_t tolerance_s = 300);

}  // namespace flare::hooks
