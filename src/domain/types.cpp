#include "domain/types.hpp"

namespace flare {

std::string Utf8Prefix(std::string_view s, size_t max_bytes) {
    if (s.size() <= max_bytes) {
        return std::string(s);
    }
    size_t n = max_bytes;
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) {
        --n;  // s[n] continues a character that started before the cut
    }
    return std::string(s.substr(0, n));
}

bool IsValidName(std::string_view s) {
    if (s.empty() || s.size() > 64) {
        return false;
    }
    for (char c : s) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                        c == '.' || c == '@' || c == '-';
        if (!ok) {
            return false;
        }
    }
    return true;
}

std::string DirectConversationId(std::string_view user_a, std::string_view user_b) {
    if (user_b < user_a) {
        std::swap(user_a, user_b);
    }
    std::string id = "direct:";
    id.append(user_a).append(":").append(user_b);
    return id;
}

std::string RoomConversationId(std::string_view room) { return "room:" + std::string(room); }
std::string SystemConversationId(std::string_view user) { return "system:" + std::string(user); }

Result<ConversationRef> ParseConversationId(std::string_view id) {
    auto bad = [&](std::string why) {
        return MakeError(Errc::kInvalidArgument, "bad_conversation_id",
                         "conversation id '" + Utf8Prefix(id, 200) + "' " + why +
                             "; expected 'direct:<userA>:<userB>' (sorted), 'room:<name>' or 'system:<user>'");
    };
    ConversationRef ref;
    ref.id = std::string(id);
    if (id.starts_with("direct:")) {
        std::string_view rest = id.substr(7);
        const auto colon = rest.find(':');
        if (colon == std::string_view::npos) {
            return bad("has no second user");
        }
        std::string_view a = rest.substr(0, colon), b = rest.substr(colon + 1);
        if (!IsValidName(a) || !IsValidName(b)) {
            return bad("has an invalid user id");
        }
        if (!(a < b)) {
            return bad(a == b ? "names the same user twice" : "is not in canonical order (smaller user id first)");
        }
        ref.type = ConversationType::kDirect;
        ref.a = std::string(a);
        ref.b = std::string(b);
        return ref;
    }
    if (id.starts_with("room:")) {
        std::string_view name = id.substr(5);
        if (!IsValidName(name)) {
            return bad("has an invalid room name");
        }
        ref.type = ConversationType::kRoom;
        ref.name = std::string(name);
        return ref;
    }
    if (id.starts_with("system:")) {
        std::string_view user = id.substr(7);
        if (!IsValidName(user)) {
            return bad("has an invalid user id");
        }
        ref.type = ConversationType::kSystem;
        ref.name = std::string(user);
        return ref;
    }
    return bad("has an unknown type");
}

}  // namespace flare
