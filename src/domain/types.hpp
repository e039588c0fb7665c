// Domain value types shared by every service and adapter. No technology headers here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/errc.hpp"

namespace flare {

enum class ConversationType { kDirect = 1, kRoom = 2, kGroup = 3, kSystem = 4 };
// kText and kSystem are what users read. kEvent records a change to the conversation or to one of
// its messages (group membership, recall, edit, reaction...): stored, with a seq, so that every
// device sees it live or on catch-up. kNotice is transient (typing, read receipts, a device's own
// settings): pushed with seq 0, never stored.
enum class MessageKind { kText = 1, kSystem = 2, kEvent = 3, kNotice = 4 };

enum class MemberRole { kMember = 0, kAdmin = 1, kOwner = 2 };
std::string_view RoleName(MemberRole r);
std::optional<MemberRole> ParseRole(std::string_view s);

enum class EventType {
    kNone = 0,
    // Stored events (kind kEvent), in the conversation's seq space.
    kGroupCreated = 1,    // text: the group name; user_ids: the members
    kGroupRenamed = 2,    // text: the new name
    kMembersAdded = 3,    // user_ids: who was added
    kMembersRemoved = 4,  // user_ids: who was removed
    kMemberLeft = 5,      // the sender left
    kRoleChanged = 6,     // user_ids[0] now has `role`
    kMemberMuted = 7,     // user_ids[0] may not send until `until_ms` (0: unmuted)
    kGroupDissolved = 8,
    kRecalled = 20,            // target_seq was recalled
    kEdited = 21,              // target_seq has new text `text`
    kDeletedForEveryone = 22,  // target_seq was deleted
    kReactionAdded = 23,       // the sender reacted to target_seq with `text` (an emoji)
    kReactionRemoved = 24,
    // Transient notices (kind kNotice, seq 0, never stored).
    kTyping = 40,           // the sender is typing (`active`) or stopped
    kRead = 41,             // the sender has read the conversation up to target_seq
    kSettingsChanged = 42,  // the user's own pinned/muted flags changed
    kDeletedForMe = 43,     // `seqs` were deleted for the user
    kNewMessages = 44,      // a large group has messages up to target_seq: pull them with syncMessages
};
std::string_view EventTypeName(EventType t);
std::optional<EventType> ParseEventTypeName(std::string_view s);
// The events that change a message (they need target_seq).
bool IsMessageOperation(EventType t);
bool IsMembershipEvent(EventType t);

// "direct:<a>:<b>" (user ids sorted, a < b), "room:<name>", or "system:<user>" (the user's inbox of
// business pushes: only the system writes, only the user reads).
struct ConversationRef {
    ConversationType type = ConversationType::kDirect;
    std::string id;    // the full conversation id
    std::string a, b;  // direct: the two participants
    std::string name;  // room: its name; system: its user
};

// The longest prefix of `s` of at most `max_bytes` that does not cut a UTF-8 character (for quoting
// client input in error messages, which must stay valid UTF-8).
std::string Utf8Prefix(std::string_view s, size_t max_bytes);
// True when `s` holds a control character: C0 (below U+0020), DEL, or C1 (U+0080..U+009F, as UTF-8).
bool HasControlCharacter(std::string_view s);
// How many bytes the control character at s[i] takes (C0, DEL: 1; C1 as UTF-8: 2), 0 for none.
size_t ControlCharacterAt(std::string_view s, size_t i);

// Ids users, devices and rooms may have: 1..64 chars of [A-Za-z0-9_.@-].
bool IsValidName(std::string_view s);
// Parses and validates a conversation id; a direct id must already be in canonical (sorted) form.
Result<ConversationRef> ParseConversationId(std::string_view id);
std::string DirectConversationId(std::string_view user_a, std::string_view user_b);
std::string RoomConversationId(std::string_view room);
std::string SystemConversationId(std::string_view user);
// Live-only broadcasts carry this conversation id and seq 0: they are never stored.
inline constexpr std::string_view kBroadcastConversationId = "broadcast";

struct MessageEvent {
    EventType type = EventType::kNone;
    uint64_t target_seq = 0;
    std::vector<std::string> user_ids;
    std::string text;
    MemberRole role = MemberRole::kMember;
    int64_t until_ms = 0;
    bool active = false;
    std::vector<uint64_t> seqs;
    std::optional<bool> pinned, muted;
};

struct Reaction {
    std::string emoji;
    std::vector<std::string> user_ids;  // sorted; the count is their number
};

// A stored message. (tenant_id, conversation_id, seq) is its position; seqs are dense from 1.
struct MessageRecord {
    std::string tenant_id;
    std::string conversation_id;
    ConversationType conversation_type = ConversationType::kDirect;
    uint64_t seq = 0;
    std::string server_msg_id;
    std::string client_msg_id;
    std::string sender_id;
    std::string sender_device_id;
    int64_t server_time_ms = 0;
    MessageKind kind = MessageKind::kText;
    std::string text;
    // Text messages: who is mentioned.
    std::vector<std::string> mentions;
    bool mention_all = false;
    MessageEvent event;  // kEvent and kNotice
    // The message's state after later events, as the store reads it back.
    bool recalled = false;
    bool deleted = false;         // deleted for everyone
    bool deleted_for_me = false;  // deleted by the reader, for the reader only
    uint32_t edit_version = 0;    // 0: never edited
    int64_t edited_ms = 0;
    std::vector<Reaction> reactions;  // by emoji
};

// Whether `stored` answers a request of this kind (and, for an event, type) that repeats its
// client_msg_id: a message answers a message of its kind, an event an event of its type.
bool SameKindOfRequest(const MessageRecord& stored, MessageKind kind, EventType type);

// What a client presents: an authenticated device on one connection.
struct Principal {
    std::string tenant_id;
    std::string user_id;
    std::string device_id;
};

// One connected device, as presence knows it. A user has one record per connected device.
struct DeviceSession {
    std::string tenant_id;
    std::string user_id;
    std::string device_id;
    std::string platform;
    std::string gateway_id;
    std::string region;
    uint64_t connection_id = 0;  // unique within its gateway
    int64_t since_ms = 0;
};

// "direct", "room", "group", "system" and "text", "system", "event", "notice": the names hooks,
// configuration and the business API use.
std::string_view ConversationTypeName(ConversationType t);
std::optional<ConversationType> ParseConversationTypeName(std::string_view s);
std::string_view MessageKindName(MessageKind k);
std::optional<MessageKind> ParseMessageKindName(std::string_view s);

// A group's id is "group:<id>".
std::string GroupConversationId(std::string_view group);

struct ConversationSummary {
    std::string conversation_id;
    ConversationType type = ConversationType::kDirect;
    uint64_t last_seq = 0;
};

}  // namespace flare
