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

HookEvent HookEventFor(HookPoint point, const MessageRecord& m) {
    HookEvent e;
    e.point = point;
    e.tenant_id = m.tenant_id;
    e.conversation_id = m.conversation_id;
    e.conversation_type = m.conversation_type;
    e.user_id = m.sender_id;
    e.device_id = m.sender_device_id;
    e.time_ms = m.server_time_ms;
    e.message = m;
    e.seq = m.seq;
    return e;
}

}  // namespace flare
