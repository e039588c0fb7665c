// The ports the domain services talk to. Adapters (memory, SQLite, later Redis, PostgreSQL, gRPC)
// implement them; src/app/ wires one adapter per port. No technology headers here.
//
// Asynchronous calls take a completion callback that is invoked exactly once, on an adapter thread
// (or inline); callers must not block in it for long and must hop to their own executor if needed.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/errc.hpp"
#include "domain/types.hpp"

namespace flare {

template <typename T>
using Callback = std::function<void(Result<T>)>;
using StatusCallback = std::function<void(Status)>;

struct AppendRequest {
    // seq is ignored and assigned by the store; server_msg_id and server_time_ms are set by the caller.
    MessageRecord message;
    // Direct conversations come into being with their first message: create the conversation and make
    // both participants members in the same transaction. A kGroupCreated event creates its group with
    // these members (the sender is the owner).
    std::vector<std::string> create_with_members;
    // Checked again in the store's transaction for groups, since the caller's view may be stale: the
    // sender must be a member (kPermissionDenied "not_member") with at least `min_sender_role`
    // ("insufficient_role"), and not muted when `refuse_muted` ("member_muted").
    bool check_sender = false;
    MemberRole min_sender_role = MemberRole::kMember;
    bool refuse_muted = false;
    // kMembersRemoved / kRoleChanged / kMemberMuted: every user in event.user_ids must be a member
    // (kFailedPrecondition "not_member"), with a role below this one when set ("insufficient_role").
    // kMembersAdded: none may be a member yet ("already_member").
    std::optional<MemberRole> targets_below;
    // kMembersAdded: the group may not grow beyond this many members ("group_full"); 0: no limit.
    uint64_t max_members = 0;
};
// An event (message.kind kEvent) is applied in the transaction that stores it, after its
// preconditions are checked there; a failed precondition stores nothing and allocates no seq:
//   kGroupCreated: the conversation must not exist (kAlreadyExists "conversation_exists");
//   kMembersAdded / kMembersRemoved / kMemberLeft / kRoleChanged / kMemberMuted / kGroupRenamed /
//   kGroupDissolved: change the members or the group (permissions are the caller's job, but an
//   owner's kMemberLeft fails "owner_cannot_leave" when check_sender is set);
//   kRecalled / kDeletedForEveryone / kEdited / kReactionAdded / kReactionRemoved: target_seq must be
//   a text or system message (kNotFound "unknown_message") that is not recalled or deleted
//   (kFailedPrecondition "message_recalled" / "message_deleted"); an edit keeps the old text in the
//   message's edit history; adding a reaction the sender already made fails "already_reacted",
//   removing one they did not make "not_reacted".
// Any append to a dissolved group fails kFailedPrecondition "conversation_dissolved". A repeated
// client_msg_id answers the original only when it is the same kind of request (a message, or an
// event of the same type); otherwise kAlreadyExists "client_msg_id_reused".

struct AppendResult {
    MessageRecord message;   // as stored (for a duplicate: the original message)
    bool duplicate = false;  // an earlier append with the same idempotency key exists
};

struct MessagePage {
    std::vector<MessageRecord> messages;  // ascending seq
    bool has_more = false;
    uint64_t last_seq = 0;  // the conversation's newest seq when the page was read
};

// Durable message log, one dense seq space per conversation.
class MessageStore {
public:
    virtual ~MessageStore() = default;

    // Persists a message and assigns it the next seq of its conversation, atomically: seqs are dense and
    // strictly increasing, and a failure allocates nothing. Idempotent by (tenant, conversation, sender,
    // client_msg_id): a repeat returns the original with duplicate=true. `done` runs only after the
    // message is durable. For one conversation, completions run in seq order on one thread.
    // Errors: kNotFound "unknown_conversation" when the conversation does not exist and
    // create_with_members is empty; kUnavailable "storage_unavailable" on I/O failure.
    virtual void Append(AppendRequest request, Callback<AppendResult> done) = 0;

    // Messages with seq > after_seq, ascending, at most `limit`, in their current state (recalled,
    // edited, reactions). `reader_id` (may be empty) sees the messages it deleted for itself as
    // deleted_for_me, with no text.
    virtual void ReadAfter(std::string tenant_id, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                           std::string reader_id, Callback<MessagePage> done) = 0;

    // What `sender_id` appended with `client_msg_id` to the conversation, or std::nullopt. Only the
    // message's own row is read (a recalled message has no text; reactions and edits are not read).
    virtual void FindAppended(std::string tenant_id, std::string conversation_id, std::string sender_id,
                              std::string client_msg_id, Callback<std::optional<MessageRecord>> done) = 0;
};

struct MemberInfo {
    std::string user_id;
    uint64_t joined_seq = 0;  // last seq of the conversation when the user joined
    MemberRole role = MemberRole::kMember;
    int64_t muted_until_ms = 0;
};

struct ConversationInfo {
    ConversationSummary summary;
    std::vector<MemberInfo> members;
    std::string name;  // groups
    bool dissolved = false;
};

struct UserSettings {
    bool pinned = false;
    bool muted = false;  // no notifications (clients decide what that means); messages still arrive
};

// One row of a user's conversation list.
struct ConversationListEntry {
    ConversationSummary summary;
    std::string name;
    MemberRole role = MemberRole::kMember;
    bool dissolved = false;
    UserSettings settings;
    uint64_t read_seq = 0;       // the user's read cursor (at least the seq they joined at)
    uint64_t peer_read_seq = 0;  // direct conversations: the other participant's read cursor
    uint64_t unread = 0;         // text and system messages after read_seq, not the user's own, not recalled
    uint64_t unread_mentions = 0;  // of those, the ones mentioning the user or @all
    std::optional<MessageRecord> last_message;  // the newest text or system message
    int64_t last_activity_ms = 0;
    uint32_t member_count = 0;
};

struct ConversationListPage {
    std::vector<ConversationListEntry> entries;  // pinned first, then most recently active first
    std::string next_page_token;                 // empty: this was the last page
};

struct MessageEdit {
    uint32_t version = 0;  // 0 is the original text
    std::string text;
    int64_t time_ms = 0;  // when this version was written
};

struct MessageDetail {
    MessageRecord message;
    std::vector<MessageEdit> edits;     // the earlier versions, oldest first
    std::vector<std::string> read_by;   // members (not the sender) whose read cursor covers the message
    uint32_t member_count = 0;
};

struct UserConversation {
    ConversationSummary summary;
    uint64_t joined_seq = 0;
    std::optional<uint64_t> device_acked_seq;  // this device's cursor, if it ever acknowledged
};

// Conversations, membership and per-device delivery cursors.
class ConversationStore {
public:
    virtual ~ConversationStore() = default;

    // Creates the room when missing and makes the user a member; idempotent (joining twice keeps the
    // first join). Returns the room's summary.
    virtual void JoinRoom(std::string tenant_id, std::string conversation_id, std::string user_id,
                          Callback<ConversationSummary> done) = 0;
    // Errors: kFailedPrecondition "not_member" when the user is not a member.
    virtual void LeaveRoom(std::string tenant_id, std::string conversation_id, std::string user_id,
                           StatusCallback done) = 0;
    // std::nullopt when the conversation does not exist.
    virtual void LoadConversation(std::string tenant_id, std::string conversation_id,
                                  Callback<std::optional<ConversationInfo>> done) = 0;
    // Every conversation the user is a member of, with this device's cursor.
    virtual void ListUserConversations(std::string tenant_id, std::string user_id, std::string device_id,
                                       Callback<std::vector<UserConversation>> done) = 0;
    // Moves the device's cursor forward to min(seq, last_seq); never backwards. Returns the cursor.
    virtual void SaveDeviceCursor(std::string tenant_id, std::string user_id, std::string device_id,
                                  std::string conversation_id, uint64_t seq, Callback<uint64_t> done) = 0;

    // The user's read cursor (one for all of the user's devices): forward to min(seq, last_seq), never
    // backwards. Returns it. Errors: kFailedPrecondition "not_member".
    virtual void SaveReadCursor(std::string tenant_id, std::string user_id, std::string conversation_id,
                                uint64_t seq, Callback<uint64_t> done) = 0;
    // Sets the flags given; returns all of them. Errors: "not_member".
    virtual void SaveSettings(std::string tenant_id, std::string user_id, std::string conversation_id,
                              std::optional<bool> pinned, std::optional<bool> muted, Callback<UserSettings> done) = 0;
    // Deletes messages for this user only (they read back as deleted_for_me). Seqs above last_seq
    // are ignored.
    virtual void HideMessages(std::string tenant_id, std::string user_id, std::string conversation_id,
                              std::vector<uint64_t> seqs, StatusCallback done) = 0;
    // The user's conversation list, `limit` entries per page; `page_token` is empty or what the
    // previous page returned. Errors: kInvalidArgument "bad_page_token".
    virtual void ListConversationPage(std::string tenant_id, std::string user_id, std::string page_token,
                                      uint32_t limit, Callback<ConversationListPage> done) = 0;
    // One message with its edit history and who read it, as `reader_id` sees it (delete for me);
    // std::nullopt when there is no such seq.
    virtual void LoadMessage(std::string tenant_id, std::string conversation_id, uint64_t seq, std::string reader_id,
                             Callback<std::optional<MessageDetail>> done) = 0;
};

// Who is connected where: one record per connected device (a user may have many).
class PresenceRegistry {
public:
    virtual ~PresenceRegistry() = default;

    // Adds the device. If the same (tenant, user, device) was connected, its record is replaced and
    // returned so that the caller can close the old connection.
    virtual void Register(DeviceSession session, Callback<std::optional<DeviceSession>> done) = 0;
    // Removes the device only if it is still held by this gateway connection (a replaced device's late
    // unregister must not remove its successor).
    virtual void Unregister(std::string tenant_id, std::string user_id, std::string device_id,
                            std::string gateway_id, uint64_t connection_id) = 0;
    // Every connected device of the given users.
    virtual void Lookup(std::string tenant_id, std::shared_ptr<const std::vector<std::string>> user_ids,
                        Callback<std::vector<DeviceSession>> done) = 0;
    // Every connected device of the tenant (for broadcasts).
    virtual void ListTenant(std::string tenant_id, Callback<std::vector<DeviceSession>> done) = 0;
    // Heartbeat from a gateway: extends the lifetime of these records in adapters whose records expire
    // (Redis: a record not refreshed within its TTL disappears, so a crashed gateway's devices go
    // offline within a bounded time). A record now held by another connection is left alone; a
    // record that expired meanwhile is written again. In-process adapters never expire records.
    virtual void Refresh(std::vector<DeviceSession> sessions, StatusCallback done) = 0;
};

// Where each access gateway is: its region and the gRPC endpoint push-server delivers to. Entries
// expire unless the gateway refreshes them, so a crashed gateway drops out of the directory.
struct GatewayRoute {
    std::string gateway_id;
    std::string region;
    std::string endpoint;  // host:port of the gateway's gRPC delivery service
};

class GatewayRouteStore {
public:
    virtual ~GatewayRouteStore() = default;
    // Creates or replaces the route and (re)starts its time to live.
    virtual void Upsert(GatewayRoute route, std::chrono::milliseconds ttl, StatusCallback done) = 0;
    virtual void Remove(std::string gateway_id, StatusCallback done) = 0;
    // std::nullopt when unknown or expired.
    virtual void Get(std::string gateway_id, Callback<std::optional<GatewayRoute>> done) = 0;
    // Every live route, ordered by gateway id.
    virtual void List(Callback<std::vector<GatewayRoute>> done) = 0;
};

// A durable, partitioned event log between services (NATS JetStream or Kafka; in-process for tests).
struct BusRecord {
    std::string topic;
    std::string key;      // records with equal keys keep their publish order (e.g. one conversation)
    std::string payload;  // opaque bytes (a serialized protobuf)
    uint32_t delivery_attempt = 1;  // > 1 when the record is handed out again (redelivery)
};

// Settles one record: Status ok commits it; an error makes the consumer hand the same record out
// again after a back-off (later records of its partition wait, so order is kept).
using BusAck = std::function<void(Status)>;
using BusHandler = std::function<void(const BusRecord&, BusAck)>;

class BusSubscription {
public:
    virtual ~BusSubscription() = default;
    // Stops fetching; returns after the handler has been called for the last time. Records handed out
    // but not acknowledged are redelivered to the group later.
    virtual void Stop() = 0;
};

class EventBus {
public:
    virtual ~EventBus() = default;
    // Appends a record to `topic`. `done` runs once the broker has durably accepted it (kUnavailable
    // "bus_unavailable" when it could not be, kDeadlineExceeded when the broker did not answer in time).
    virtual void Publish(std::string topic, std::string key, std::string payload, StatusCallback done) = 0;
    // Consumes `topic` as a member of `group`: every record reaches the group at least once; within a
    // partition the handler sees records one at a time in publish order, and the next record only after
    // the previous one was acknowledged. Members of one group share the partitions; different groups
    // each get every record. Records acknowledged before a crash are not handed out again.
    virtual Result<std::unique_ptr<BusSubscription>> Subscribe(std::string topic, std::string group,
                                                                BusHandler handler) = 0;
};

// Service discovery: where the instances of a service are. Entries live under a lease the registering
// process keeps alive, so a crashed instance disappears within its TTL.
struct ServiceInstance {
    std::string service;      // e.g. "message-orchestrator"
    std::string instance_id;  // unique per process
    std::string endpoint;     // host:port
    std::string region;
};

class ServiceRegistry {
public:
    virtual ~ServiceRegistry() = default;
    // Registers the instance and keeps its lease alive until Deregister or destruction.
    virtual void Register(ServiceInstance instance, std::chrono::seconds ttl, StatusCallback done) = 0;
    virtual void Deregister(std::string service, std::string instance_id, StatusCallback done) = 0;
    // Live instances of `service`, ordered by instance id.
    virtual void Resolve(std::string service, Callback<std::vector<ServiceInstance>> done) = 0;
};

// A gateway's delivery side: it writes pushes to its own connections.
class DeliverySink {
public:
    virtual ~DeliverySink() = default;
    // Delivers one message to the listed connections of this gateway. Unknown connections are ignored
    // (the device went away); a connection that already got this conversation's seq (a redelivery)
    // does not get it again. Must not block. `done` (may be empty) runs once the gateway has queued the
    // message on its connections, or with kUnavailable when it could not be reached.
    virtual void Deliver(const MessageRecord& message, std::span<const uint64_t> connection_ids,
                         StatusCallback done) = 0;
    // Closes a connection with a reason frame first (used when a device is replaced).
    virtual void Disconnect(uint64_t connection_id, std::string reason, std::string message) = 0;
};

// Which gateways exist and how to reach them.
class GatewayDirectory {
public:
    virtual ~GatewayDirectory() = default;
    virtual void Register(const std::string& gateway_id, const std::string& region, DeliverySink* sink) = 0;
    virtual void Unregister(const std::string& gateway_id) = 0;
    // nullptr when the gateway is unknown.
    virtual DeliverySink* Find(const std::string& gateway_id) = 0;
};

}  // namespace flare
