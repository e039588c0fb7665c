#include "domain/types.hpp"

namespace flare {

bool SameKindOfRequest(const MessageRecord& stored, MessageKind kind, EventType type) {
    return stored.kind == kind && (kind != MessageKind::kEvent || stored.event.type == type);
}

size_t ControlCharacterAt(std::string_view s, size_t i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
        return 1;
    }
    if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
        static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
        return 2;
    }
    return 0;
}

bool HasControlCharacter(std::string_view s) {
    for (size_t i = 0; i < s.size(); ++i) {
        if (ControlCharacterAt(s, i) != 0) {
            return true;
        }
    }
    return false;
}

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
std::string GroupConversationId(std::string_view group) { return "group:" + std::string(group); }

std::string_view ConversationTypeName(ConversationType t) {
    switch (t) {
        case ConversationType::kDirect: return "direct";
        case ConversationType::kRoom: return "room";
        case ConversationType::kGroup: return "group";
        case ConversationType::kSystem: return "system";
    }
    return "direct";
}

std::optional<ConversationType> ParseConversationTypeName(std::string_view s) {
    for (auto t : {ConversationType::kDirect, ConversationType::kRoom, ConversationType::kGroup, ConversationType::kSystem}) {
        if (ConversationTypeName(t) == s) return t;
    }
    return std::nullopt;
}

std::string_view MessageKindName(MessageKind k) {
    switch (k) {
        case MessageKind::kText: return "text";
        case MessageKind::kSystem: return "system";
        case MessageKind::kEvent: return "event";
        case MessageKind::kNotice: return "notice";
    }
    return "text";
}

std::optional<MessageKind> ParseMessageKindName(std::string_view s) {
    for (auto k : {MessageKind::kText, MessageKind::kSystem, MessageKind::kEvent}) {
        if (MessageKindName(k) == s) return k;
    }
    return std::nullopt;
}

std::string_view RoleName(MemberRole r) {
    switch (r) {
        case MemberRole::kMember: return "member";
        case MemberRole::kAdmin: return "admin";
        case MemberRole::kOwner: return "owner";
    }
    return "member";
}

std::optional<MemberRole> ParseRole(std::string_view s) {
    if (s == "member") return MemberRole::kMember;
    if (s == "admin") return MemberRole::kAdmin;
    if (s == "owner") return MemberRole::kOwner;
    return std::nullopt;
}

std::string_view EventTypeName(EventType t) {
    switch (t) {
        case EventType::kNone: return "none";
        case EventType::kGroupCreated: return "group_created";
        case EventType::kGroupRenamed: return "group_renamed";
        case EventType::kMembersAdded: return "members_added";
        case EventType::kMembersRemoved: return "members_removed";
        case EventType::kMemberLeft: return "member_left";
        case EventType::kRoleChanged: return "role_changed";
        case EventType::kMemberMuted: return "member_muted";
        case EventType::kGroupDissolved: return "group_dissolved";
        case EventType::kRecalled: return "recalled";
        case EventType::kEdited: return "edited";
        case EventType::kDeletedForEveryone: return "deleted_for_everyone";
        case EventType::kReactionAdded: return "reaction_added";
        case EventType::kReactionRemoved: return "reaction_removed";
        case EventType::kTyping: return "typing";
        case EventType::kRead: return "read";
        case EventType::kSettingsChanged: return "settings_changed";
        case EventType::kDeletedForMe: return "deleted_for_me";
        case EventType::kNewMessages: return "new_messages";
    }
    return "none";
}

std::optional<EventType> ParseEventTypeName(std::string_view s) {
    for (int i = 0; i <= 44; ++i) {
        const auto t = static_cast<EventType>(i);
        if (EventTypeName(t) != "none" && EventTypeName(t) == s) {
            return t;
        }
    }
    return std::nullopt;
}

bool IsMessageOperation(EventType t) {
    return t == EventType::kRecalled || t == EventType::kEdited || t == EventType::kDeletedForEveryone ||
           t == EventType::kReactionAdded || t == EventType::kReactionRemoved;
}

bool IsMembershipEvent(EventType t) {
    return t == EventType::kGroupCreated || t == EventType::kMembersAdded || t == EventType::kMembersRemoved ||
           t == EventType::kMemberLeft || t == EventType::kRoleChanged || t == EventType::kMemberMuted ||
           t == EventType::kGroupRenamed || t == EventType::kGroupDissolved;
}

Result<ConversationRef> ParseConversationId(std::string_view id) {
    auto bad = [&](std::string why) {
        return MakeError(Errc::kInvalidArgument, "bad_conversation_id",
                         "conversation id '" + Utf8Prefix(id, 200) + "' " + why +
                             "; expected 'direct:<userA>:<userB>' (sorted), 'room:<name>', 'group:<id>' or 'system:<user>'");
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
    if (id.starts_with("group:")) {
        std::string_view group = id.substr(6);
        if (!IsValidName(group)) {
            return bad("has an invalid group id");
        }
        ref.type = ConversationType::kGroup;
        ref.name = std::string(group);
        return ref;
    }
    return bad("has an unknown type");
}

}  // namespace flare
