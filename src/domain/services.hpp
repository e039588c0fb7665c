// The domain services of the IM core: session (conversations and membership), push (fan-out to
// gateways), and the message orchestrator (validation, idempotent durable append, delivery).
// They talk only to ports (domain/ports.hpp); embedded mode calls them directly, distributed hosting
// will put gRPC in front of the same classes.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "domain/apis.hpp"
#include "domain/hooks.hpp"
#include "domain/ports.hpp"

namespace flare {

// A request refused with `refusal` may repeat one that `sender` already stored with this
// client_msg_id (its answer was lost; the state has moved on since, so the checks fail now). Then
// the stored original answers it when it is the same kind of request (SameKindOfRequest), like any
// retry; otherwise the refusal does.
void OriginalOrRefusal(MessageStore& store, std::string tenant_id, std::string conversation_id, std::string sender_id,
                       std::string client_msg_id, MessageKind kind, EventType type, Error refusal,
                       Callback<MessageRecord> done);

// What a send's answer says was stored: the message's text, or an edit's new text ("" for other events).
std::string StoredText(const MessageRecord& m);
// The sender id a send is stored under: the user's, or "system" for a business call without one.
std::string StoredSenderId(const SendCommand& c);
// A send's answer for a stored message.
SendReceipt ReceiptOf(const MessageRecord& m, bool duplicate);

struct Limits {
    uint32_t max_text_bytes = 4096;
    uint32_t max_client_msg_id_bytes = 128;
    uint32_t sync_default_limit = 100;
    uint32_t sync_max_limit = 500;
    // Message operations and groups.
    uint32_t recall_window_ms = 120'000;   // a sender may recall or delete for everyone this long
    uint32_t max_group_members = 10'000;
    uint32_t large_group_members = 500;    // above: pushes become "new messages up to seq N" notices
    uint32_t max_mentions = 50;
    uint32_t max_name_bytes = 128;         // group names
    uint32_t max_emoji_bytes = 32;
    uint32_t max_delete_for_me = 100;      // seqs per request
    uint32_t list_default_limit = 20;
    uint32_t list_max_limit = 100;
};

// Conversations and membership, with a member cache in front of the ConversationStore.
// Thread-safe.
class SessionService final : public ConversationApi {
public:
    // At most `max_cached` conversations are kept in memory; beyond that idle entries are dropped
    // (and loaded again on use).
    // `remember_missing`: keep "this direct conversation has no message yet" in the cache. Only right
    // when this process sees every first message (embedded); the distributed session service asks the
    // store again instead, since storage-writer creates conversations in another process.
    explicit SessionService(ConversationStore& store, size_t max_cached = 100'000, bool remember_missing = true);
    // With what the group, user-state and message calls need: events are appended to `messages`
    // directly and fanned out through `push`.
    SessionService(ConversationStore& store, MessageStore& messages, PushApi& push, const Clock& clock,
                   IdGenerator& ids, const Limits& limits, size_t max_cached = 100'000, bool remember_missing = true);

    using Resolved = ResolvedConversation;

    void Resolve(std::string tenant_id, std::string user_id, std::string conversation_id,
                 Callback<Resolved> done) override;
    void MarkDirectCreated(const std::string& tenant_id, const ConversationRef& ref) override;
    void JoinRoom(const Principal& who, std::string room, Callback<ConversationSummary> done) override;
    void LeaveRoom(const Principal& who, std::string room, StatusCallback done) override;
    void SyncConversations(const Principal& who, std::map<std::string, uint64_t> known, bool include_all,
                           Callback<std::vector<ConversationStateView>> done) override;
    void Ack(const Principal& who, std::string conversation_id, uint64_t seq, Callback<uint64_t> done) override;
    void ManageGroup(GroupCommand command, Callback<GroupResult> done) override;
    void UpdateUserState(UserStateCommand command, Callback<UserStateResult> done) override;
    void ListConversations(const Principal& who, std::string page_token, uint32_t limit,
                           Callback<ConversationListPage> done) override;
    void GetMessage(const Principal& who, std::string conversation_id, uint64_t seq,
                    Callback<MessageDetail> done) override;

    size_t cached_conversations();
    // Group lifecycle, membership and read events go to these hooks (may be null).
    void set_hooks(HookApi* hooks) { hooks_ = hooks; }

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
        std::shared_ptr<const GroupInfo> group;
        bool loading = true;
        bool stale = false;  // membership changed while loading: drop the entry once the waiters are served
        std::vector<Waiter> waiters;
    };
    static std::string Key(const std::string& tenant, const std::string& conv) { return tenant + '\x1f' + conv; }
    static void Answer(Resolved r, const std::string& user, const Callback<Resolved>& done);
    void OnLoaded(const std::string& key, Result<std::optional<ConversationInfo>> loaded);
    void AddMember(const std::string& key, const std::string& user);
    void RemoveMember(const std::string& key, const std::string& user);
    // Membership or group state changed in the store: the next Resolve reads it again.
    void Invalidate(const std::string& key);
    void CreateGroup(GroupCommand command, Callback<GroupResult> done);
    // Appends an event (direct to the store), then pushes it to `recipients`.
    void AppendEvent(AppendRequest request, MemberList recipients, std::string skip_gateway, uint64_t skip_connection,
                     Callback<AppendResult> done);
    void Notify(MessageRecord notice, MemberList recipients, std::string skip_gateway, uint64_t skip_connection);
    bool operational(const std::function<void(Error)>& fail) const;

    void EvictLocked();

    ConversationStore& store_;
    MessageStore* messages_ = nullptr;
    PushApi* push_ = nullptr;
    const Clock* clock_ = nullptr;
    IdGenerator* ids_ = nullptr;
    HookApi* hooks_ = nullptr;
    Limits limits_;
    size_t max_cached_;
    bool remember_missing_;
    std::mutex mu_;
    std::unordered_map<std::string, Entry> cache_;
};

// Fan-out: finds every connected device of the recipients and hands each gateway its batch.
// Groups with more than `large_group_members` members (0: no limit) get a "new messages up to seq N"
// notice instead of each message, at most one in flight per conversation: notices that come up
// meanwhile are coalesced into the next one.
class PushService final : public PushApi {
public:
    PushService(PresenceRegistry& presence, GatewayDirectory& gateways, uint32_t large_group_members = 0);
    void Fanout(std::shared_ptr<const MessageRecord> message, FanoutPlan plan,
                std::function<void(DeliveryStats)> done = {}) override;
    void Broadcast(std::shared_ptr<const MessageRecord> message, std::function<void(DeliveryStats)> done) override;
    void Kick(std::vector<DeviceSession> devices, std::string device_id, std::string reason,
              Callback<uint32_t> done) override;
    // Delivery events go to these hooks (may be null).
    void set_hooks(HookApi* hooks) { hooks_ = hooks; }

private:
    // Hands each gateway its connections; `done` (may be empty) runs once every gateway has answered.
    // Returns how many devices it handed the message to.
    uint64_t DeliverTo(std::shared_ptr<const MessageRecord> message, const std::vector<DeviceSession>& devices,
                   const std::string& skip_gateway_id, uint64_t skip_connection_id, bool count_users,
                   std::function<void(DeliveryStats)> done);

    void FanoutNotice(std::shared_ptr<const MessageRecord> message, FanoutPlan plan,
                      std::function<void(DeliveryStats)> done);
    void SendNotice(const std::string& key, std::shared_ptr<const MessageRecord> notice, MemberList recipients);

    PresenceRegistry& presence_;
    GatewayDirectory& gateways_;
    HookApi* hooks_ = nullptr;
    uint32_t large_group_members_;
    struct Pending {
        std::shared_ptr<const MessageRecord> notice;  // the newest notice waiting for the one in flight
        MemberList recipients;
    };
    std::mutex notice_mu_;
    std::unordered_map<std::string, std::optional<Pending>> notices_in_flight_;
};

// Embedded mode's commit step: append to the store, then fan out in process.
class LocalCommitter final : public MessageCommitter {
public:
    LocalCommitter(MessageStore& messages, PushApi& push) : messages_(messages), push_(push) {}
    void Commit(AppendRequest request, FanoutPlan plan, Callback<AppendResult> done,
                std::function<void(DeliveryStats)> on_delivered) override;

private:
    MessageStore& messages_;
    PushApi& push_;
};

// The send path: validate, resolve the conversation, commit (durable, idempotent, dense seq; then
// fan-out), answer the sender. Reads go to the message store directly.
class MessageOrchestrator final : public MessagingApi {
public:
    MessageOrchestrator(const Limits& limits, ConversationApi& sessions, MessageStore& messages,
                        MessageCommitter& committer, const Clock& clock, IdGenerator& ids);

    void Send(SendCommand command, Callback<SendReceipt> done,
              std::function<void(DeliveryStats)> on_delivered = {}) override;
    void ReadHistory(std::string tenant_id, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                     Callback<MessagePage> done) override;
    void SyncMessages(const Principal& who, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                      Callback<MessagePage> done) override;
    // Pre-send hooks approve or rewrite users' messages; post-send, recall and reaction events are
    // published after the commit (may be null).
    void set_hooks(HookApi* hooks) { hooks_ = hooks; }

private:
    struct PreSendItem {
        SendCommand command;
        ResolvedConversation resolved;
        Callback<SendReceipt> done;
        std::function<void(DeliveryStats)> on_delivered;
    };
    // Pre-send hooks run one message at a time per conversation, so messages keep their order.
    bool NeedsPreSend(const std::string& conversation_id, const SendCommand& command);
    void EnqueuePreSend(PreSendItem item);
    void RunPreSend(const std::string& key);
    void AnswerRejected(PreSendItem item, Error rejection);
    void PublishCommitted(const MessageRecord& m);
    void SendOperation(SendCommand command, Callback<SendReceipt> done, std::function<void(DeliveryStats)> on_delivered);
    void CommitResolved(SendCommand command, ResolvedConversation resolved, Callback<SendReceipt> done,
                        std::function<void(DeliveryStats)> on_delivered);

    Limits limits_;
    ConversationApi& sessions_;
    MessageStore& messages_;
    MessageCommitter& committer_;
    const Clock& clock_;
    IdGenerator& ids_;
    HookApi* hooks_ = nullptr;
    std::mutex presend_mu_;
    std::unordered_map<std::string, std::deque<PreSendItem>> presend_queues_;
};

}  // namespace flare
