#include "domain/hooks.hpp"

#include <array>

namespace flare {

namespace {
constexpr std::array<std::string_view, kHookPointCount> kNames = {
    "pre_send", "post_send", "delivery", "recall", "read", "reaction",
    "conversation_created", "conversation_dissolved", "membership_changed"};
}

std::string_view HookPointName(HookPoint p) {
    const auto i = static_cast<size_t>(p);
    return i < kNames.size() ? kNames[i] : "unknown";
}

std::optional<HookPoint> ParseHookPoint(std::string_view s) {
    for (size_t i = 0; i < kNames.size(); ++i) {
        if (kNames[i] == s) {
            return static_cast<HookPoint>(i);
        }
    }
    return std::nullopt;
}

}  // namespace flare
