// Domain value types shared by every service and adapter. No technology headers here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/errc.hpp"

namespace flare {

enum class ConversationType { kDirect = 1, kRoom = 2, kGroup = 3, kSystem = 4 };
enum class MessageKind { kText = 1, kSystem = 2 };

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

// Ids users, devices and rooms may have: 1..64 chars of [A-Za-z0-9_.@-].
bool IsValidName(std::string_view s);
// Parses and validates a conversation id; a direct id must already be in canonical (sorted) form.
Result<ConversationRef> ParseConversationId(std::string_view id);
std::string DirectConversationId(std::string_view user_a, std::string_view user_b);
std::string RoomConversationId(std::string_view room);
std::string SystemConversationId(std::string_view user);
// Live-only broadcasts carry this conversation id and seq 0: they are never stored.
inline constexpr std::string_view kBroadcastConversationId = "broadcast";

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
};

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

struct ConversationSummary {
    std::string conversation_id;
    ConversationType type = ConversationType::kDirect;
    uint64_t last_seq = 0;
};

}  // namespace flare
