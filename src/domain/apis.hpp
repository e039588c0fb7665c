// The calls the services make to one another: conversations (session), messaging (orchestrator),
// push, and the commit step of the send path. In embedded mode the domain classes of services.hpp
// implement them and are called directly; in distributed mode gRPC clients implement them
// (src/rpc/) and the same domain classes run behind gRPC servers in their own processes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "domain/ports.hpp"

namespace flare {

// A shared, immutable member list: copied on write, so fan-out of a big room copies nothing.
using MemberList = std::shared_ptr<const std::vector<std::string>>;

struct MemberMeta {
    MemberRole role = MemberRole::kMember;
    int64_t muted_until_ms = 0;
};

// What a group has beyond its members; shared and immutable like MemberList.
struct GroupInfo {
    std::string name;
    bool dissolved = false;
    std::map<std::string, MemberMeta> meta;  // only members with a role above member or a mute
};

struct ResolvedConversation {
    ConversationRef ref;
    MemberList members;   // sorted user ids
    bool exists = false;  // false: a direct conversation not created yet
    std::shared_ptr<const GroupInfo> group;  // groups only

    MemberMeta MetaOf(const std::string& user) const {
        if (group) {
            auto it = group->meta.find(user);
            if (it != group->meta.end()) {
                return it->second;
            }
        }
        return {};
    }
    bool dissolved() const { return group && group->dissolved; }
};

struct ConversationStateView {
    std::string conversation_id;
    ConversationType type = ConversationType::kDirect;
    uint64_t last_seq = 0;
    uint64_t acked_seq = 0;  // this device's cursor (joined_seq when the device never acknowledged)
    uint64_t known_seq = 0;  // what the comparison used
};

struct DeliveryStats {
    uint64_t devices = 0;  // connections the message was handed to
    uint64_t users = 0;    // distinct users among them
    bool lookup_failed = false;  // presence could not be asked: nobody was reached, a retry may be
    uint64_t unknown_gateways = 0;  // devices sat on gateways the directory does not know (yet)
};

struct SendCommand {
    Principal sender;
    // kEvent with a message operation (recall, edit, delete for everyone, reactions) in `event`;
    // otherwise a text (or, from the system, system) message.
    std::string gateway_id;  // where the sending connection is, so it is skipped in fan-out
    uint64_t connection_id = 0;
    std::string conversation_id;
    std::string client_msg_id;
    std::string text;
    MessageKind kind = MessageKind::kText;
    MessageEvent event;
    std::vector<std::string> mentions;
    bool mention_all = false;
    // false for the system (a business caller): it may write into any conversation of its tenant.
    bool check_membership = true;
    // The role the sender needs in a group, checked again when the message is stored (a message
    // operation allowed to an admin only).
    MemberRole min_sender_role = MemberRole::kMember;
};

struct SendReceipt {
    std::string conversation_id;
    std::string server_msg_id;
    uint64_t seq = 0;
    int64_t server_time_ms = 0;
    bool duplicate = false;
    std::string text;  // as stored (a pre-send hook may have rewritten it)
};

// Who gets a committed message live: every device of `recipients` except the sending connection.
struct FanoutPlan {
    MemberList recipients;
    std::string skip_gateway_id;
    uint64_t skip_connection_id = 0;
};

enum class GroupOp { kCreate, kRename, kAddMembers, kRemoveMembers, kLeave, kSetRole, kMuteMember, kDissolve };

struct GroupCommand {
    Principal actor;  // an empty user_id is the system (the business API): it may do anything
    std::string gateway_id;  // the acting connection, skipped in the fan-out (it gets the answer)
    uint64_t connection_id = 0;
    GroupOp op = GroupOp::kCreate;
    std::string conversation_id;  // every op but create
    std::string group_id;         // create: optional, generated when empty
    std::string name;             // create, rename
    std::string owner_id;         // create by the system: who owns the group
    std::vector<std::string> user_ids;  // create: the other members; add/remove; set role / mute: one user
    MemberRole role = MemberRole::kMember;
    int64_t mute_ms = 0;        // mute: for how long; 0 unmutes
    std::string client_msg_id;  // optional: makes a retry return the original event
};

struct GroupResult {
    MessageRecord event;  // the stored event (its seq, who it concerned)
    bool duplicate = false;
};

enum class UserOp { kRead, kSettings, kDeleteForMe, kTyping };

// A user's own state in a conversation, and typing.
struct UserStateCommand {
    Principal who;
    std::string gateway_id;
    uint64_t connection_id = 0;
    UserOp op = UserOp::kRead;
    std::string conversation_id;
    uint64_t seq = 0;             // read: up to
    std::vector<uint64_t> seqs;   // delete for me
    std::optional<bool> pinned, muted;  // settings
    bool active = true;           // typing
};

struct UserStateResult {
    uint64_t read_seq = 0;
    UserSettings settings;
};

// Conversations and membership (the session service).
class ConversationApi {
public:
    virtual ~ConversationApi() = default;
    // Checks that `user` may use the conversation (an empty user: the system, which may use any).
    // Errors: kInvalidArgument "bad_conversation_id", kNotFound "unknown_conversation",
    // kPermissionDenied "not_member". Calls for one conversation are answered in the order made.
    virtual void Resolve(std::string tenant_id, std::string user_id, std::string conversation_id,
                         Callback<ResolvedConversation> done) = 0;
    // After the first message of a direct conversation is stored.
    virtual void MarkDirectCreated(const std::string& tenant_id, const ConversationRef& ref) = 0;
    virtual void JoinRoom(const Principal& who, std::string room, Callback<ConversationSummary> done) = 0;
    virtual void LeaveRoom(const Principal& who, std::string room, StatusCallback done) = 0;
    // Conversations with messages after what the device holds: `known` overrides the device cursor.
    virtual void SyncConversations(const Principal& who, std::map<std::string, uint64_t> known, bool include_all,
                                   Callback<std::vector<ConversationStateView>> done) = 0;
    virtual void Ack(const Principal& who, std::string conversation_id, uint64_t seq, Callback<uint64_t> done) = 0;

    // Groups: create, rename, members, roles, mutes, dissolve. Each change is an event in the group
    // (with a seq), pushed to every member (and to those it removed).
    virtual void ManageGroup(GroupCommand command, Callback<GroupResult> done) = 0;
    // Read cursor, pin/mute, delete for me, typing: pushed as notices to the user's other devices
    // (a read also to the other participant of a direct conversation; typing to the other members).
    virtual void UpdateUserState(UserStateCommand command, Callback<UserStateResult> done) = 0;
    virtual void ListConversations(const Principal& who, std::string page_token, uint32_t limit,
                                   Callback<ConversationListPage> done) = 0;
    // One message with its edit history, reactions and (for members to ask) who has read it.
    virtual void GetMessage(const Principal& who, std::string conversation_id, uint64_t seq,
                            Callback<MessageDetail> done) = 0;
};

// Live delivery (the push service).
class PushApi {
public:
    virtual ~PushApi() = default;
    // Delivers to every connected device of the plan's recipients except the sending connection;
    // `done` (optional) gets what was reached.
    virtual void Fanout(std::shared_ptr<const MessageRecord> message, FanoutPlan plan,
                        std::function<void(DeliveryStats)> done = {}) = 0;
    // Live only: every connected device of the message's tenant.
    virtual void Broadcast(std::shared_ptr<const MessageRecord> message, std::function<void(DeliveryStats)> done) = 0;
    // Closes the listed devices (all of them, or only `device_id`) with a "kicked" goodbye; answers how
    // many connections were closed.
    virtual void Kick(std::vector<DeviceSession> devices, std::string device_id, std::string reason,
                      Callback<uint32_t> done) = 0;
};

// The durable step of a send: append (idempotent, dense seq), then deliver per the plan.
// `done` runs once the message is durable; `on_delivered`, when given, after the fan-out with what
// it reached (before `done`). A duplicate is answered from the original and not delivered again.
class MessageCommitter {
public:
    virtual ~MessageCommitter() = default;
    virtual void Commit(AppendRequest request, FanoutPlan plan, Callback<AppendResult> done,
                        std::function<void(DeliveryStats)> on_delivered) = 0;
};

// Sending and reading messages (the message orchestrator).
class MessagingApi {
public:
    virtual ~MessagingApi() = default;
    // Validates, resolves the conversation and commits; the answer is never given before the message is
    // durable. `on_delivered`, when given, runs after the fan-out with what it reached, before `done`.
    virtual void Send(SendCommand command, Callback<SendReceipt> done,
                      std::function<void(DeliveryStats)> on_delivered = {}) = 0;
    // Like SyncMessages, without a membership check (for business callers).
    virtual void ReadHistory(std::string tenant_id, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                             Callback<MessagePage> done) = 0;
    // Paged history for a member. limit 0 means the default.
    virtual void SyncMessages(const Principal& who, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                              Callback<MessagePage> done) = 0;
};

}  // namespace flare
