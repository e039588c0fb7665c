// The domain services of the IM core: session (conversations and membership), push (fan-out to
// gateways), and the message orchestrator (validation, idempotent durable append, delivery).
// They talk only to ports (domain/ports.hpp); embedded mode calls them directly, distributed hosting
// will put gRPC in front of the same classes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "domain/ports.hpp"

namespace flare {

struct Limits {
    uint32_t max_text_bytes = 4096;
    uint32_t max_client_msg_id_bytes = 128;
    uint32_t sync_default_limit = 100;
    uint32_t sync_max_limit = 500;
};

// A shared, immutable member list: copied on write, so fan-out of a big room copies nothing.
using MemberList = std::shared_ptr<const std::vector<std::string>>;

struct ConversationStateView {
    std::string conversation_id;
    ConversationType type = ConversationType::kDirect;
    uint64_t last_seq = 0;
    uint64_t acked_seq = 0;  // this device's cursor (joined_seq when the device never acknowledged)
    uint64_t known_seq = 0;  // what the comparison used
};

// Conversations and membership, with a member cache in front of the ConversationStore.
// Thread-safe.
class SessionService {
public:
    // At most `max_cached` conversations are kept in memory; beyond that idle entries are dropped
    // (and loaded again on use).
    explicit SessionService(ConversationStore& store, size_t max_cached = 100'000);

    struct Resolved {
        ConversationRef ref;
        MemberList members;
        bool exists = false;  // false: a direct conversation not created yet
    };

    // Checks that `user` may use the conversation (an empty user: the system, which may use any).
    // Errors: kInvalidArgument "bad_conversation_id",
    // kNotFound "unknown_conversation", kPermissionDenied "not_member".
    void Resolve(std::string tenant_id, std::string user_id, std::string conversation_id, Callback<Resolved> done);
    // After the first message of a direct conversation is stored.
    void MarkDirectCreated(const std::string& tenant_id, const ConversationRef& ref);

    void JoinRoom(const Principal& who, std::string room, Callback<ConversationSummary> done);
    void LeaveRoom(const Principal& who, std::string room, StatusCallback done);
    // Conversations with messages after what the device holds: `known` overrides the device cursor.
    void SyncConversations(const Principal& who, std::map<std::string, uint64_t> known, bool include_all,
                           Callback<std::vector<ConversationStateView>> done);
    void Ack(const Principal& who, std::string conversation_id, uint64_t seq, Callback<uint64_t> done);

    size_t cached_conversations();

private:
    struct Waiter {
        std::string user_id;
        Callback<Resolved> done;
    };
    // A cached conversation. While `loading`, later Resolve calls queue up behind the load so that
    // requests keep their order (a device's pipelined sends are stored in the order it sent them).
    struct Entry {
        ConversationRef ref;
        MemberList members;
        bool exists = false;
        bool loading = true;
        bool stale = false;  // membership changed while loading: drop the entry once the waiters are served
        std::vector<Waiter> waiters;
    };
    static std::string Key(const std::string& tenant, const std::string& conv) { return tenant + '\x1f' + conv; }
    static void Answer(Resolved r, const std::string& user, const Callback<Resolved>& done);
    void OnLoaded(const std::string& key, Result<std::optional<ConversationInfo>> loaded);
    void AddMember(const std::string& key, const std::string& user);
    void RemoveMember(const std::string& key, const std::string& user);

    void EvictLocked();

    ConversationStore& store_;
    size_t max_cached_;
    std::mutex mu_;
    std::unordered_map<std::string, Entry> cache_;
};

struct DeliveryStats {
    uint64_t devices = 0;  // connections the message was handed to
    uint64_t users = 0;    // distinct users among them
};

// Fan-out: finds every connected device of the recipients and hands each gateway its batch.
class PushService {
public:
    PushService(PresenceRegistry& presence, GatewayDirectory& gateways);
    // Delivers to every device of `recipients` except the sending connection; `done` (optional) gets
    // what was delivered.
    void Fanout(std::shared_ptr<const MessageRecord> message, MemberList recipients, std::string skip_gateway_id,
                uint64_t skip_connection_id, std::function<void(DeliveryStats)> done = {});
    // Live only: every connected device of the message's tenant.
    void Broadcast(std::shared_ptr<const MessageRecord> message, std::function<void(DeliveryStats)> done);
    // Closes the listed devices (all of them, or only `device_id`) with a "kicked" goodbye.
    uint32_t Kick(const std::vector<DeviceSession>& devices, const std::string& device_id, const std::string& reason);

private:
    DeliveryStats DeliverTo(const MessageRecord& message, const std::vector<DeviceSession>& devices,
                            const std::string& skip_gateway_id, uint64_t skip_connection_id, bool count_users);

    PresenceRegistry& presence_;
    GatewayDirectory& gateways_;
};

struct SendCommand {
    Principal sender;
    std::string gateway_id;  // where the sending connection is, so it is skipped in fan-out
    uint64_t connection_id = 0;
    std::string conversation_id;
    std::string client_msg_id;
    std::string text;
    MessageKind kind = MessageKind::kText;
    // false for the system (a business caller): it may write into any conversation of its tenant.
    bool check_membership = true;
};

struct SendReceipt {
    std::string conversation_id;
    std::string server_msg_id;
    uint64_t seq = 0;
    int64_t server_time_ms = 0;
    bool duplicate = false;
};

// The send path: validate, resolve the conversation, append durably (idempotent, dense seq), then
// answer the sender and fan out. The answer is never given before the message is durable.
class MessageOrchestrator {
public:
    MessageOrchestrator(const Limits& limits, SessionService& sessions, MessageStore& messages, PushService& push,
                        const Clock& clock, IdGenerator& ids);

    // `on_delivered`, when given, runs after the fan-out with what it reached, before `done`.
    void Send(SendCommand command, Callback<SendReceipt> done, std::function<void(DeliveryStats)> on_delivered = {});
    // Like SyncMessages, without a membership check (for business callers).
    void ReadHistory(std::string tenant_id, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                     Callback<MessagePage> done);
    // Paged history for a member. limit 0 means the default.
    void SyncMessages(const Principal& who, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                      Callback<MessagePage> done);

private:
    Limits limits_;
    SessionService& sessions_;
    MessageStore& messages_;
    PushService& push_;
    const Clock& clock_;
    IdGenerator& ids_;
};

}  // namespace flare
