#include "adapters/common/event_codec.hpp"

#include <boost/json.hpp>

#include <charconv>

namespace flare::store {

namespace json = boost::json;

std::string EncodeEvent(const MessageEvent& e) {
    if (e.type == EventType::kNone) {
        return {};
    }
    json::object o;
    o["t"] = static_cast<int>(e.type);
    if (e.target_seq != 0) o["s"] = e.target_seq;
    if (!e.user_ids.empty()) {
        json::array a;
        for (const auto& u : e.user_ids) a.emplace_back(u);
        o["u"] = std::move(a);
    }
    if (!e.text.empty()) o["x"] = e.text;
    if (e.role != MemberRole::kMember) o["r"] = static_cast<int>(e.role);
    if (e.until_ms != 0) o["m"] = e.until_ms;
    return json::serialize(o);
}

MessageEvent DecodeEvent(std::string_view s) {
    MessageEvent e;
    if (s.empty()) {
        return e;
    }
    boost::system::error_code ec;
    json::value v = json::parse(s, ec);
    if (ec || !v.is_object()) {
        return e;
    }
    const json::object& o = v.as_object();
    auto num = [&](const char* k) -> int64_t {
        const json::value* x = o.if_contains(k);
        if (x == nullptr) return 0;
        if (x->is_int64()) return x->as_int64();
        if (x->is_uint64()) return static_cast<int64_t>(x->as_uint64());
        return 0;
    };
    e.type = static_cast<EventType>(num("t"));
    e.target_seq = static_cast<uint64_t>(num("s"));
    if (const json::value* u = o.if_contains("u"); u != nullptr && u->is_array()) {
        for (const auto& x : u->as_array()) {
            if (x.is_string()) e.user_ids.emplace_back(x.as_string());
        }
    }
    if (const json::value* x = o.if_contains("x"); x != nullptr && x->is_string()) {
        e.text = std::string(x->as_string());
    }
    e.role = static_cast<MemberRole>(num("r"));
    e.until_ms = num("m");
    return e;
}

std::string JoinIds(const std::vector<std::string>& ids) {
    std::string out;
    for (const auto& id : ids) {
        if (!out.empty()) out += ' ';
        out += id;
    }
    return out;
}

std::vector<std::string> SplitIds(std::string_view s) {
    std::vector<std::string> out;
    while (!s.empty()) {
        const auto sp = s.find(' ');
        if (sp != 0) out.emplace_back(s.substr(0, sp));
        if (sp == std::string_view::npos) break;
        s.remove_prefix(sp + 1);
    }
    return out;
}

std::string EncodeListCursor(const ListCursor& c) {
    return std::string(c.pinned ? "1" : "0") + "." + std::to_string(c.activity_ms) + "." + c.conversation_id;
}

bool DecodeListCursor(std::string_view token, ListCursor& out) {
    if (token.size() < 5 || (token[0] != '0' && token[0] != '1') || token[1] != '.') {
        return false;
    }
    out.pinned = token[0] == '1';
    token.remove_prefix(2);
    const auto dot = token.find('.');
    if (dot == std::string_view::npos || dot == 0) {
        return false;
    }
    auto [p, ec] = std::from_chars(token.data(), token.data() + dot, out.activity_ms);
    if (ec != std::errc() || p != token.data() + dot) {
        return false;
    }
    out.conversation_id = std::string(token.substr(dot + 1));
    return !out.conversation_id.empty() && out.conversation_id.size() <= 200;
}

Status CheckMembers(const AppendRequest& req, const MemberLookup& member, const std::function<uint64_t()>& count) {
    const MessageRecord& m = req.message;
    if (req.check_sender) {
        auto me = member(m.sender_id);
        if (!me) {
            return MakeError(Errc::kPermissionDenied, "not_member",
                             "you are not a member of conversation '" + m.conversation_id + "'");
        }
        if (static_cast<int>(me->first) < static_cast<int>(req.min_sender_role)) {
            return MakeError(Errc::kPermissionDenied, "insufficient_role",
                             "your role in '" + m.conversation_id + "' does not allow this");
        }
        if (req.refuse_muted && me->second > m.server_time_ms) {
            return MakeError(Errc::kPermissionDenied, "member_muted", "you are muted in this group");
        }
        if (m.kind == MessageKind::kEvent && m.event.type == EventType::kMemberLeft && me->first == MemberRole::kOwner) {
            return MakeError(Errc::kFailedPrecondition, "owner_cannot_leave",
                             "the owner cannot leave: hand the group to another member (setRole owner) or dissolve it");
        }
    }
    if (m.kind != MessageKind::kEvent) {
        return {};
    }
    const EventType t = m.event.type;
    if (t == EventType::kMembersAdded && req.max_members != 0 && count() + m.event.user_ids.size() > req.max_members) {
        return MakeError(Errc::kResourceExhausted, "group_full",
                         "a group has at most " + std::to_string(req.max_members) + " members");
    }
    for (const auto& u : m.event.user_ids) {
        if (t == EventType::kMembersAdded) {
            if (member(u)) {
                return MakeError(Errc::kFailedPrecondition, "already_member", "'" + u + "' is already a member");
            }
        } else if (t == EventType::kMembersRemoved || t == EventType::kRoleChanged || t == EventType::kMemberMuted) {
            auto it = member(u);
            if (!it) {
                return MakeError(Errc::kFailedPrecondition, "not_member",
                                 "'" + u + "' is not a member of '" + m.conversation_id + "'");
            }
            if (req.targets_below && static_cast<int>(it->first) >= static_cast<int>(*req.targets_below)) {
                return MakeError(Errc::kPermissionDenied, "insufficient_role",
                                 "'" + u + "' has the same role as you or a higher one");
            }
        }
    }
    return {};
}

Status CheckTarget(const MessageRecord& m, std::optional<TargetRow> target,
                   const std::function<ReactionCounts()>& reactions) {
    const MessageEvent& ev = m.event;
    const std::string seq = std::to_string(ev.target_seq);
    if (!target) {
        return MakeError(Errc::kNotFound, "unknown_message", "'" + m.conversation_id + "' has no message " + seq);
    }
    if (target->kind != MessageKind::kText && target->kind != MessageKind::kSystem) {
        return MakeError(Errc::kNotFound, "unknown_message", "seq " + seq + " of '" + m.conversation_id + "' is not a message");
    }
    if (target->flags & kFlagRecalled) {
        return MakeError(Errc::kFailedPrecondition, "message_recalled", "message " + seq + " was recalled");
    }
    if (target->flags & kFlagDeleted) {
        return MakeError(Errc::kFailedPrecondition, "message_deleted", "message " + seq + " was deleted");
    }
    if (ev.type == EventType::kEdited && target->edit_version >= kMaxEdits) {
        return MakeError(Errc::kResourceExhausted, "too_many_edits",
                         "message " + seq + " was edited " + std::to_string(kMaxEdits) + " times, the limit");
    }
    if (ev.type == EventType::kReactionAdded || ev.type == EventType::kReactionRemoved) {
        const ReactionCounts n = reactions();
        if (ev.type == EventType::kReactionAdded && n.mine_with_emoji) {
            return MakeError(Errc::kFailedPrecondition, "already_reacted", "you already reacted with " + ev.text);
        }
        if (ev.type == EventType::kReactionRemoved && !n.mine_with_emoji) {
            return MakeError(Errc::kFailedPrecondition, "not_reacted", "you have not reacted with " + ev.text);
        }
        if (ev.type == EventType::kReactionAdded && n.with_emoji == 0 && n.distinct_emoji >= kMaxReactionEmoji) {
            return MakeError(Errc::kResourceExhausted, "too_many_reactions",
                             "message " + seq + " has " + std::to_string(kMaxReactionEmoji) +
                                 " different emoji, the limit: add one of those");
        }
        if (ev.type == EventType::kReactionAdded && n.mine >= kMaxReactionsPerUser) {
            return MakeError(Errc::kResourceExhausted, "too_many_reactions",
                             "you have " + std::to_string(kMaxReactionsPerUser) + " reactions on message " + seq +
                                 ", the limit");
        }
    }
    return {};
}

Status CheckSameKind(const MessageRecord& original, const MessageRecord& m) {
    // A user's text never answers with a system message of the same id (or the other way round).
    if (SameKindOfRequest(original, m.kind, m.event.type)) {
        return {};
    }
    return MakeError(Errc::kAlreadyExists, "client_msg_id_reused",
                     "client_msg_id '" + Utf8Prefix(m.client_msg_id, 80) +
                         "' was already used for another kind of request in this conversation");
}

}  // namespace flare::store
