// How the stores keep a message's event and mentions in a text column (shared by SQLite and
// PostgreSQL): the event as a small JSON object, the mentions as space-separated user ids (user
// ids contain no spaces).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "domain/ports.hpp"

namespace flare::store {

std::string EncodeEvent(const MessageEvent& e);  // "" for no event
MessageEvent DecodeEvent(std::string_view s);    // a malformed value decodes as no event

std::string JoinIds(const std::vector<std::string>& ids);
std::vector<std::string> SplitIds(std::string_view s);

// The conversation list's page token: where the previous page ended in its order.
struct ListCursor {
    bool pinned = false;
    int64_t activity_ms = 0;
    std::string conversation_id;
};
std::string EncodeListCursor(const ListCursor& c);
// false when the token is malformed.
bool DecodeListCursor(std::string_view token, ListCursor& out);

// The membership checks an append makes in its transaction (AppendRequest::check_sender,
// targets_below, and the members an event adds or removes), given a way to read one member's role
// and mute as they are now (std::nullopt: not a member) and a way to count the members (asked only
// when AppendRequest::max_members limits an addition).
using MemberLookup = std::function<std::optional<std::pair<MemberRole, int64_t>>(const std::string& user)>;
Status CheckMembers(const AppendRequest& req, const MemberLookup& member, const std::function<uint64_t()>& count);

// The message flags both stores keep in their `flags` column.
constexpr int kFlagRecalled = 1;
constexpr int kFlagDeleted = 2;

// The preconditions of a message operation (recall, delete, edit, reaction) on its target, given
// the target's row as it is now (std::nullopt: no such seq) and a way to count the target's
// reactions (asked only for reactions). A message keeps at most kMaxEdits edits and
// kMaxReactionEmoji different emoji, and one user puts at most kMaxReactionsPerUser reactions on
// it (kResourceExhausted "too_many_edits" / "too_many_reactions"): what a message's readers load
// stays bounded.
struct TargetRow {
    MessageKind kind = MessageKind::kText;
    int64_t flags = 0;
    int64_t edit_version = 0;  // edits so far
};
struct ReactionCounts {
    uint64_t distinct_emoji = 0;  // on the message
    uint64_t with_emoji = 0;      // reactions with the event's emoji, anyone's
    uint64_t mine = 0;            // the sender's, any emoji
    bool mine_with_emoji = false;
};
constexpr int64_t kMaxEdits = 100;
constexpr uint64_t kMaxReactionEmoji = 50;
constexpr uint64_t kMaxReactionsPerUser = 20;
Status CheckTarget(const MessageRecord& m, std::optional<TargetRow> target,
                   const std::function<ReactionCounts()>& reactions);

// A repeated client_msg_id answers its original only for the same kind of request (a message, or an
// event of the same type); otherwise kAlreadyExists "client_msg_id_reused".
Status CheckSameKind(const MessageRecord& original, const MessageRecord& request);

}  // namespace flare::store
