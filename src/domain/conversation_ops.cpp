// The session service's group, user-state and message-detail calls: validation and permissions
// here, the change itself in one store transaction, then a push to everyone concerned.
#include <algorithm>
#include <set>
#include <utility>

#include "domain/services.hpp"

namespace flare {

namespace {

constexpr const char* kSystemSender = "system";

// The system outranks every member.
int Rank(const Principal& actor, const ResolvedConversation& r) {
    if (actor.user_id.empty()) {
        return 3;
    }
    return static_cast<int>(r.MetaOf(actor.user_id).role);
}

Error Insufficient(std::string_view need) {
    return MakeError(Errc::kPermissionDenied, "insufficient_role", "only the group's " + std::string(need) + " may do this");
}

bool IsMember(const ResolvedConversation& r, const std::string& user) {
    return std::binary_search(r.members->begin(), r.members->end(), user);
}

Result<std::vector<std::string>> ValidUsers(const std::vector<std::string>& in, const char* field) {
    std::vector<std::string> out;
    for (const auto& u : in) {
        if (!IsValidName(u)) {
            return MakeError(Errc::kInvalidArgument, "bad_user_id",
                             std::string(field) + ": '" + Utf8Prefix(u, 80) +
                                 "' is not a user id (1..64 characters of A-Z a-z 0-9 _ . @ -)");
        }
        out.push_back(u);
    }
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

Status ValidName(const std::string& name, const Limits& limits) {
    if (name.empty() || name.size() > limits.max_name_bytes) {
        return MakeError(Errc::kInvalidArgument, "bad_group_name",
                         "name must be 1.." + std::to_string(limits.max_name_bytes) + " bytes");
    }
    if (HasControlCharacter(name)) {
        return MakeError(Errc::kInvalidArgument, "bad_group_name", "name must not contain control characters");
    }
    return {};
}

// The event a group operation stores.
EventType GroupEventType(GroupOp op) {
    switch (op) {
        case GroupOp::kCreate: return EventType::kGroupCreated;
        case GroupOp::kRename: return EventType::kGroupRenamed;
        case GroupOp::kAddMembers: return EventType::kMembersAdded;
        case GroupOp::kRemoveMembers: return EventType::kMembersRemoved;
        case GroupOp::kLeave: return EventType::kMemberLeft;
        case GroupOp::kSetRole: return EventType::kRoleChanged;
        case GroupOp::kMuteMember: return EventType::kMemberMuted;
        case GroupOp::kDissolve: return EventType::kGroupDissolved;
    }
    return EventType::kGroupRenamed;
}

// A group id that a creation's retry finds again: 128 bits of FNV-1a (two 64-bit runs) over the
// tenant, the owner and the client_msg_id, in hex. Not a secret, only stable.
std::string StableGroupId(const std::string& tenant, const std::string& owner, const std::string& client_msg_id) {
    auto fnv = [&](uint64_t h) {
        for (const std::string* part : {&tenant, &owner, &client_msg_id}) {
            for (unsigned char c : *part) {
                h = (h ^ c) * 0x100000001b3ULL;
            }
            h = (h ^ 0x1f) * 0x100000001b3ULL;  // a separator no id contains
        }
        return h;
    };
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out = "c";
    for (uint64_t h : {fnv(0xcbf29ce484222325ULL), fnv(0x84222325cbf29ce4ULL)}) {
        for (int i = 60; i >= 0; i -= 4) {
            out += kHex[(h >> i) & 0xf];
        }
    }
    return out;
}

bool IsDerivedGroupId(const std::string& id) {
    return id.size() == 33 && id[0] == 'c' &&
           std::all_of(id.begin() + 1, id.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

MemberList Union(const MemberList& a, const std::vector<std::string>& b) {
    auto out = std::make_shared<std::vector<std::string>>(*a);
    out->insert(out->end(), b.begin(), b.end());
    std::sort(out->begin(), out->end());
    out->erase(std::unique(out->begin(), out->end()), out->end());
    return out;
}

}  // namespace

bool SessionService::operational(const std::function<void(Error)>& fail) const {
    if (messages_ == nullptr || push_ == nullptr) {
        fail(MakeError(Errc::kInternal, "not_configured", "this session service is not set up for changes"));
        return false;
    }
    return true;
}

void SessionService::AppendEvent(AppendRequest request, MemberList recipients, std::string skip_gateway,
                                 uint64_t skip_connection, Callback<AppendResult> done) {
    const std::string key = Key(request.message.tenant_id, request.message.conversation_id);
    messages_->Append(std::move(request), [this, key, recipients = std::move(recipients),
                                           skip_gateway = std::move(skip_gateway), skip_connection,
                                           done = std::move(done)](Result<AppendResult> r) mutable {
        if (!r || r->duplicate) {
            return done(std::move(r));
        }
        Invalidate(key);
        if (hooks_ != nullptr) {
            const MessageRecord& m = r->message;
            HookEvent e = HookEventFor(HookPoint::kMembershipChanged, m);
            switch (m.event.type) {
                case EventType::kGroupCreated: e.point = HookPoint::kConversationCreated; break;
                case EventType::kGroupDissolved: e.point = HookPoint::kConversationDissolved; break;
                case EventType::kMembersAdded: e.action = "added"; break;
                case EventType::kMembersRemoved: e.action = "removed"; break;
                case EventType::kMemberLeft: e.action = "left"; break;
                case EventType::kRoleChanged: e.action = "role_changed"; break;
                case EventType::kMemberMuted: e.action = "muted"; break;
                default: e.action.clear(); break;
            }
            if ((e.point != HookPoint::kMembershipChanged || !e.action.empty()) && hooks_->Wants(e.point)) {
                e.user_ids = m.event.user_ids;
                hooks_->Publish(std::move(e));
            }
        }
        // Answered once the event is handed to the gateways: the actor's next request (a message, say)
        // cannot overtake it on the way to the other members.
        auto message = std::make_shared<const MessageRecord>(r->message);
        push_->Fanout(std::move(message), FanoutPlan{std::move(recipients), std::move(skip_gateway), skip_connection},
                      [r = std::move(r), done = std::move(done)](DeliveryStats) mutable { done(std::move(r)); });
    });
}

void SessionService::Notify(MessageRecord notice, MemberList recipients, std::string skip_gateway,
                            uint64_t skip_connection) {
    notice.kind = MessageKind::kNotice;
    notice.seq = 0;
    notice.server_time_ms = clock_->NowMs();
    push_->Fanout(std::make_shared<const MessageRecord>(std::move(notice)),
                  FanoutPlan{std::move(recipients), std::move(skip_gateway), skip_connection});
}

// ------------------------------------------------------------------------------------------- groups

void SessionService::CreateGroup(GroupCommand cmd, Callback<GroupResult> done) {
    const std::string owner = cmd.actor.user_id.empty() ? cmd.owner_id : cmd.actor.user_id;
    if (!IsValidName(owner)) {
        return done(MakeError(Errc::kInvalidArgument, "bad_owner_id",
                              cmd.actor.user_id.empty() ? "owner_id is required: the user who owns the group"
                                                        : "owner_id is not a user id"));
    }
    if (auto s = ValidName(cmd.name, limits_); !s) {
        return done(s.error());
    }
    if (!cmd.group_id.empty() && !IsValidName(cmd.group_id)) {
        return done(MakeError(Errc::kInvalidArgument, "bad_group_id",
                              "group_id must be 1..64 characters of A-Z a-z 0-9 _ . @ -"));
    }
    if (IsDerivedGroupId(cmd.group_id)) {
        return done(MakeError(Errc::kInvalidArgument, "bad_group_id",
                              "group ids of 'c' and 32 hex digits are the server's (a create's retry finds its "
                              "group by them): choose another"));
    }
    auto users = ValidUsers(cmd.user_ids, "member_ids");
    if (!users) {
        return done(users.error());
    }
    users->push_back(owner);
    std::sort(users->begin(), users->end());
    users->erase(std::unique(users->begin(), users->end()), users->end());
    if (users->size() > limits_.max_group_members) {
        return done(MakeError(Errc::kResourceExhausted, "group_full",
                              "a group has at most " + std::to_string(limits_.max_group_members) + " members"));
    }
    // Without a group_id, a creation with a client_msg_id is idempotent too: its retry names the same group.
    const std::string group_id = !cmd.group_id.empty()       ? cmd.group_id
                                 : cmd.client_msg_id.empty() ? ids_->NewId()
                                                             : StableGroupId(cmd.actor.tenant_id,
                                                                             // a business system's keys are not the owner's
                                                                             cmd.actor.user_id.empty() ? "\x1f" + owner : owner,
                                                                             cmd.client_msg_id);
    AppendRequest req;
    MessageRecord& m = req.message;
    m.tenant_id = cmd.actor.tenant_id;
    m.conversation_id = GroupConversationId(group_id);
    m.conversation_type = ConversationType::kGroup;
    m.server_msg_id = ids_->NewId();
    m.client_msg_id = cmd.client_msg_id.empty() ? "create" : cmd.client_msg_id;
    m.sender_id = owner;
    m.sender_device_id = cmd.actor.device_id;
    m.server_time_ms = clock_->NowMs();
    m.kind = MessageKind::kEvent;
    m.event.type = EventType::kGroupCreated;
    m.event.text = cmd.name;
    m.event.user_ids = *users;
    req.create_with_members = *users;
    auto recipients = std::make_shared<const std::vector<std::string>>(std::move(*users));
    AppendEvent(std::move(req), recipients, cmd.gateway_id, cmd.connection_id,
                [done = std::move(done)](Result<AppendResult> r) {
                    if (!r) {
                        return done(r.error());
                    }
                    done(GroupResult{std::move(r->message), r->duplicate});
                });
}

void SessionService::ManageGroup(GroupCommand cmd, Callback<GroupResult> done) {
    if (!operational([&](Error e) { done(std::move(e)); })) {
        return;
    }
    if (cmd.op == GroupOp::kCreate) {
        return CreateGroup(std::move(cmd), std::move(done));
    }
    if (auto ref = ParseConversationId(cmd.conversation_id); ref && !cmd.client_msg_id.empty()) {
        // A retry refused because its own first run changed the group (already a member, role
        // unchanged, ...) is answered with the stored original.
        done = [this, tenant = cmd.actor.tenant_id, conv = ref->id,
                sender = cmd.actor.user_id.empty() ? std::string(kSystemSender) : cmd.actor.user_id,
                cmid = cmd.client_msg_id, type = GroupEventType(cmd.op),
                done = std::move(done)](Result<GroupResult> r) mutable {
            if (r) {
                return done(std::move(r));
            }
            OriginalOrRefusal(*messages_, tenant, conv, sender, cmid, MessageKind::kEvent, type, r.error(),
                              [done = std::move(done)](Result<MessageRecord> o) {
                                  if (!o) {
                                      return done(o.error());
                                  }
                                  done(GroupResult{std::move(*o), true});
                              });
        };
    }
    const std::string tenant = cmd.actor.tenant_id, user = cmd.actor.user_id, conv = cmd.conversation_id;
    Resolve(tenant, user, conv, [this, cmd = std::move(cmd), done = std::move(done)](Result<Resolved> r) mutable {
        if (!r) {
            return done(r.error());
        }
        if (r->ref.type != ConversationType::kGroup) {
            return done(MakeError(Errc::kFailedPrecondition, "not_a_group",
                                  "'" + r->ref.id + "' is not a group; only groups have these operations"));
        }
        if (r->dissolved()) {
            return done(MakeError(Errc::kFailedPrecondition, "conversation_dissolved",
                                  "group '" + r->ref.id + "' was dissolved"));
        }
        const int rank = Rank(cmd.actor, *r);
        MessageEvent ev;
        std::vector<std::string> extra_recipients;
        auto one_member = [&]() -> Result<std::string> {
            if (cmd.user_ids.size() != 1 || !IsValidName(cmd.user_ids[0])) {
                return MakeError(Errc::kInvalidArgument, "bad_user_id", "user_id: name one member");
            }
            if (!IsMember(*r, cmd.user_ids[0])) {
                return MakeError(Errc::kFailedPrecondition, "not_member",
                                 "'" + cmd.user_ids[0] + "' is not a member of '" + r->ref.id + "'");
            }
            return cmd.user_ids[0];
        };
        switch (cmd.op) {
            case GroupOp::kCreate: break;
            case GroupOp::kRename: {
                if (rank < static_cast<int>(MemberRole::kAdmin)) {
                    return done(Insufficient("owner or admins"));
                }
                if (auto s = ValidName(cmd.name, limits_); !s) {
                    return done(s.error());
                }
                ev.type = EventType::kGroupRenamed;
                ev.text = cmd.name;
                break;
            }
            case GroupOp::kAddMembers: {
                if (rank < static_cast<int>(MemberRole::kAdmin)) {
                    return done(Insufficient("owner or admins"));
                }
                auto users = ValidUsers(cmd.user_ids, "user_ids");
                if (!users) {
                    return done(users.error());
                }
                if (users->empty()) {
                    return done(MakeError(Errc::kInvalidArgument, "bad_user_id", "user_ids is empty"));
                }
                std::erase_if(*users, [&](const std::string& u) { return IsMember(*r, u); });
                if (users->empty()) {
                    return done(MakeError(Errc::kFailedPrecondition, "already_member", "every user named is already a member"));
                }
                if (r->members->size() + users->size() > limits_.max_group_members) {
                    return done(MakeError(Errc::kResourceExhausted, "group_full",
                                          "a group has at most " + std::to_string(limits_.max_group_members) +
                                              " members"));
                }
                ev.type = EventType::kMembersAdded;
                ev.user_ids = *users;
                extra_recipients = *users;
                break;
            }
            case GroupOp::kRemoveMembers: {
                if (rank < static_cast<int>(MemberRole::kAdmin)) {
                    return done(Insufficient("owner or admins"));
                }
                auto users = ValidUsers(cmd.user_ids, "user_ids");
                if (!users) {
                    return done(users.error());
                }
                if (users->empty()) {
                    return done(MakeError(Errc::kInvalidArgument, "bad_user_id", "user_ids is empty"));
                }
                for (const auto& u : *users) {
                    if (!IsMember(*r, u)) {
                        return done(MakeError(Errc::kFailedPrecondition, "not_member",
                                              "'" + u + "' is not a member of '" + r->ref.id + "'"));
                    }
                    if (u == cmd.actor.user_id) {
                        return done(MakeError(Errc::kInvalidArgument, "use_leave",
                                              "to remove yourself, leave the group"));
                    }
                    if (static_cast<int>(r->MetaOf(u).role) >= std::min(rank, static_cast<int>(MemberRole::kOwner))) {
                        return done(MakeError(Errc::kPermissionDenied, "insufficient_role",
                                              rank > static_cast<int>(MemberRole::kOwner)
                                                  ? "'" + u + "' owns the group: hand it over first"
                                                  : "'" + u + "' has the same role as you or a higher one"));
                    }
                }
                ev.type = EventType::kMembersRemoved;
                ev.user_ids = *users;
                break;
            }
            case GroupOp::kLeave: {
                if (cmd.actor.user_id.empty()) {
                    return done(MakeError(Errc::kInvalidArgument, "bad_user_id", "the system is not a member"));
                }
                if (r->MetaOf(cmd.actor.user_id).role == MemberRole::kOwner) {
                    return done(MakeError(Errc::kFailedPrecondition, "owner_cannot_leave",
                                          "the owner cannot leave: hand the group to another member "
                                          "(setRole owner) or dissolve it"));
                }
                ev.type = EventType::kMemberLeft;
                ev.user_ids = {cmd.actor.user_id};
                break;
            }
            case GroupOp::kSetRole: {
                if (rank < static_cast<int>(MemberRole::kOwner)) {
                    return done(Insufficient("owner"));
                }
                auto target = one_member();
                if (!target) {
                    return done(target.error());
                }
                if (*target == cmd.actor.user_id) {
                    return done(MakeError(Errc::kInvalidArgument, "bad_user_id", "you cannot change your own role"));
                }
                if (r->MetaOf(*target).role == cmd.role) {
                    return done(MakeError(Errc::kFailedPrecondition, "role_unchanged",
                                          "'" + *target + "' already is " + std::string(RoleName(cmd.role))));
                }
                ev.type = EventType::kRoleChanged;
                ev.user_ids = {*target};
                ev.role = cmd.role;
                break;
            }
            case GroupOp::kMuteMember: {
                if (rank < static_cast<int>(MemberRole::kAdmin)) {
                    return done(Insufficient("owner or admins"));
                }
                auto target = one_member();
                if (!target) {
                    return done(target.error());
                }
                if (static_cast<int>(r->MetaOf(*target).role) >= std::min(rank, static_cast<int>(MemberRole::kOwner))) {
                    return done(MakeError(Errc::kPermissionDenied, "insufficient_role",
                                          "'" + *target + "' has the same role as you or a higher one"));
                }
                constexpr int64_t kMaxMuteMs = 366LL * 24 * 3600 * 1000;
                if (cmd.mute_ms < 0 || cmd.mute_ms > kMaxMuteMs) {
                    return done(MakeError(Errc::kInvalidArgument, "bad_duration",
                                          "duration_ms must be 0 (unmute) .. one year"));
                }
                ev.type = EventType::kMemberMuted;
                ev.user_ids = {*target};
                ev.until_ms = cmd.mute_ms == 0 ? 0 : clock_->NowMs() + cmd.mute_ms;
                break;
            }
            case GroupOp::kDissolve: {
                if (rank < static_cast<int>(MemberRole::kOwner)) {
                    return done(Insufficient("owner"));
                }
                ev.type = EventType::kGroupDissolved;
                break;
            }
            default:
                return done(MakeError(Errc::kInvalidArgument, "missing_operation", "unknown group operation"));
        }
        AppendRequest req;
        MessageRecord& m = req.message;
        m.tenant_id = cmd.actor.tenant_id;
        m.conversation_id = r->ref.id;
        m.conversation_type = ConversationType::kGroup;
        m.server_msg_id = ids_->NewId();
        m.client_msg_id = cmd.client_msg_id.empty() ? "op:" + m.server_msg_id : cmd.client_msg_id;
        m.sender_id = cmd.actor.user_id.empty() ? kSystemSender : cmd.actor.user_id;
        m.sender_device_id = cmd.actor.device_id;
        m.server_time_ms = clock_->NowMs();
        m.kind = MessageKind::kEvent;
        // What the store checks again in its transaction (this check used a cached view).
        if (!cmd.actor.user_id.empty()) {
            req.check_sender = true;
            req.min_sender_role = cmd.op == GroupOp::kLeave ? MemberRole::kMember
                                  : (cmd.op == GroupOp::kSetRole || cmd.op == GroupOp::kDissolve) ? MemberRole::kOwner
                                                                                                   : MemberRole::kAdmin;
        }
        if (cmd.op == GroupOp::kAddMembers) {
            req.max_members = limits_.max_group_members;
        }
        if (cmd.op == GroupOp::kRemoveMembers || cmd.op == GroupOp::kMuteMember) {
            req.targets_below = static_cast<MemberRole>(std::min(rank, static_cast<int>(MemberRole::kOwner)));
        }
        m.event = std::move(ev);
        // Everyone who was a member (so the removed see their removal) and everyone added.
        MemberList recipients = extra_recipients.empty() ? r->members : Union(r->members, extra_recipients);
        AppendEvent(std::move(req), std::move(recipients), cmd.gateway_id, cmd.connection_id,
                    [done = std::move(done)](Result<AppendResult> a) {
                        if (!a) {
                            return done(a.error());
                        }
                        done(GroupResult{std::move(a->message), a->duplicate});
                    });
    });
}

// --------------------------------------------------------------------------------------- user state

void SessionService::UpdateUserState(UserStateCommand cmd, Callback<UserStateResult> done) {
    if (!operational([&](Error e) { done(std::move(e)); })) {
        return;
    }
    if (cmd.op == UserOp::kDeleteForMe) {
        if (cmd.seqs.empty() || cmd.seqs.size() > limits_.max_delete_for_me) {
            return done(MakeError(Errc::kInvalidArgument, "bad_seqs",
                                  "seqs must list 1.." + std::to_string(limits_.max_delete_for_me) + " messages"));
        }
        for (uint64_t s : cmd.seqs) {
            if (s == 0) {
                return done(MakeError(Errc::kInvalidArgument, "bad_seqs", "seqs start at 1"));
            }
        }
        std::sort(cmd.seqs.begin(), cmd.seqs.end());
        cmd.seqs.erase(std::unique(cmd.seqs.begin(), cmd.seqs.end()), cmd.seqs.end());
    }
    if (cmd.op == UserOp::kSettings && !cmd.pinned && !cmd.muted) {
        return done(MakeError(Errc::kInvalidArgument, "nothing_to_change", "set pinned, muted or both"));
    }
    const std::string tenant = cmd.who.tenant_id, user = cmd.who.user_id, conv = cmd.conversation_id;
    Resolve(tenant, user, conv, [this, cmd = std::move(cmd), done = std::move(done)](Result<Resolved> r) mutable {
        if (!r) {
            return done(r.error());
        }
        if (!r->exists) {
            return done(MakeError(Errc::kNotFound, "unknown_conversation",
                                  "conversation '" + r->ref.id + "' has no messages yet"));
        }
        MessageRecord notice;
        notice.tenant_id = cmd.who.tenant_id;
        notice.conversation_id = r->ref.id;
        notice.conversation_type = r->ref.type;
        notice.sender_id = cmd.who.user_id;
        notice.sender_device_id = cmd.who.device_id;
        auto self_only = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{cmd.who.user_id});
        switch (cmd.op) {
            case UserOp::kTyping: {
                if (r->ref.type == ConversationType::kSystem) {
                    return done(MakeError(Errc::kPermissionDenied, "read_only_conversation",
                                          "'" + r->ref.id + "' receives system messages only"));
                }
                if (r->dissolved()) {
                    return done(MakeError(Errc::kFailedPrecondition, "conversation_dissolved",
                                          "group '" + r->ref.id + "' was dissolved"));
                }
                // Transient: never stored; to the other members (not the typer's own devices). Large
                // conversations do not get typing at all.
                if (limits_.large_group_members == 0 || r->members->size() <= limits_.large_group_members) {
                    notice.event.type = EventType::kTyping;
                    notice.event.active = cmd.active;
                    auto others = std::make_shared<std::vector<std::string>>();
                    others->reserve(r->members->size());
                    for (const auto& u : *r->members) {
                        if (u != cmd.who.user_id) {
                            others->push_back(u);
                        }
                    }
                    Notify(std::move(notice), std::move(others), cmd.gateway_id, cmd.connection_id);
                }
                return done(UserStateResult{});
            }
            case UserOp::kRead: {
                const ConversationRef ref = r->ref;
                store_.SaveReadCursor(
                    cmd.who.tenant_id, cmd.who.user_id, ref.id, cmd.seq,
                    [this, cmd, ref, notice = std::move(notice), self_only,
                     done = std::move(done)](Result<uint64_t> saved) mutable {
                        if (!saved) {
                            return done(saved.error());
                        }
                        notice.event.type = EventType::kRead;
                        notice.event.target_seq = *saved;
                        if (hooks_ != nullptr && hooks_->Wants(HookPoint::kRead)) {
                            HookEvent e;
                            e.point = HookPoint::kRead;
                            e.tenant_id = cmd.who.tenant_id;
                            e.conversation_id = ref.id;
                            e.conversation_type = ref.type;
                            e.user_id = cmd.who.user_id;
                            e.device_id = cmd.who.device_id;
                            e.seq = *saved;
                            e.time_ms = clock_->NowMs();
                            hooks_->Publish(std::move(e));
                        }
                        // The user's other devices; in a direct conversation also the other participant.
                        MemberList to = self_only;
                        if (ref.type == ConversationType::kDirect) {
                            to = std::make_shared<const std::vector<std::string>>(std::vector<std::string>{ref.a, ref.b});
                        }
                        Notify(std::move(notice), std::move(to), cmd.gateway_id, cmd.connection_id);
                        UserStateResult out;
                        out.read_seq = *saved;
                        done(out);
                    });
                return;
            }
            case UserOp::kSettings: {
                store_.SaveSettings(cmd.who.tenant_id, cmd.who.user_id, r->ref.id, cmd.pinned, cmd.muted,
                                    [this, cmd, notice = std::move(notice), self_only,
                                     done = std::move(done)](Result<UserSettings> saved) mutable {
                                        if (!saved) {
                                            return done(saved.error());
                                        }
                                        notice.event.type = EventType::kSettingsChanged;
                                        notice.event.pinned = saved->pinned;
                                        notice.event.muted = saved->muted;
                                        Notify(std::move(notice), self_only, cmd.gateway_id, cmd.connection_id);
                                        UserStateResult out;
                                        out.settings = *saved;
                                        done(out);
                                    });
                return;
            }
            case UserOp::kDeleteForMe: {
                std::vector<uint64_t> seqs = cmd.seqs;
                store_.HideMessages(cmd.who.tenant_id, cmd.who.user_id, r->ref.id, std::move(seqs),
                                    [this, cmd, notice = std::move(notice), self_only,
                                     done = std::move(done)](Status s) mutable {
                                        if (!s) {
                                            return done(s.error());
                                        }
                                        notice.event.type = EventType::kDeletedForMe;
                                        notice.event.seqs = cmd.seqs;
                                        Notify(std::move(notice), self_only, cmd.gateway_id, cmd.connection_id);
                                        done(UserStateResult{});
                                    });
                return;
            }
        }
        done(MakeError(Errc::kInvalidArgument, "bad_operation", "unknown user-state operation"));
    });
}

void SessionService::ListConversations(const Principal& who, std::string page_token, uint32_t limit,
                                       Callback<ConversationListPage> done) {
    if (limit == 0) {
        limit = limits_.list_default_limit;
    }
    if (limit > limits_.list_max_limit) {
        return done(MakeError(Errc::kInvalidArgument, "limit_too_large",
                              "limit must be 1.." + std::to_string(limits_.list_max_limit)));
    }
    store_.ListConversationPage(who.tenant_id, who.user_id, std::move(page_token), limit, std::move(done));
}

void SessionService::GetMessage(const Principal& who, std::string conversation_id, uint64_t seq,
                                Callback<MessageDetail> done) {
    const std::string tenant = who.tenant_id;
    Resolve(tenant, who.user_id, conversation_id,
            [this, tenant, reader = who.user_id, seq, done = std::move(done)](Result<Resolved> r) mutable {
                if (!r) {
                    return done(r.error());
                }
                store_.LoadMessage(tenant, r->ref.id, seq, reader,
                                   [seq, conv = r->ref.id, done = std::move(done)](
                                       Result<std::optional<MessageDetail>> d) mutable {
                                       if (!d) {
                                           return done(d.error());
                                       }
                                       if (!d->has_value()) {
                                           return done(MakeError(Errc::kNotFound, "unknown_message",
                                                                 "'" + conv + "' has no message " + std::to_string(seq)));
                                       }
                                       done(std::move(**d));
                                   });
            });
}

// -------------------------------------------------------------------------------- message operations

namespace {

Status ValidEmoji(const std::string& e, const Limits& limits) {
    if (e.empty() || e.size() > limits.max_emoji_bytes) {
        return MakeError(Errc::kInvalidArgument, "bad_emoji",
                         "emoji must be 1.." + std::to_string(limits.max_emoji_bytes) + " bytes");
    }
    if (e.find(' ') != std::string::npos || HasControlCharacter(e)) {
        return MakeError(Errc::kInvalidArgument, "bad_emoji", "emoji must not contain spaces or control characters");
    }
    return {};
}

}  // namespace

// Recall, edit, delete for everyone, reactions: the target must exist and be a message; who may do
// what is checked here, the rest in the store's transaction.
void MessageOrchestrator::SendOperation(SendCommand command, Callback<SendReceipt> done,
                                        std::function<void(DeliveryStats)> on_delivered) {
    const EventType type = command.event.type;
    if (!IsMessageOperation(type)) {
        return done(MakeError(Errc::kInvalidArgument, "bad_operation", "not a message operation"));
    }
    if (command.event.target_seq == 0) {
        return done(MakeError(Errc::kInvalidArgument, "bad_seq", "seq: name the message (its seq, from 1)"));
    }
    if (type == EventType::kEdited) {
        if (command.event.text.empty()) {
            return done(MakeError(Errc::kInvalidArgument, "empty_text", "text must not be empty"));
        }
        if (command.event.text.size() > limits_.max_text_bytes) {
            return done(MakeError(Errc::kInvalidArgument, "text_too_long",
                                  "text is " + std::to_string(command.event.text.size()) + " bytes; the limit is " +
                                      std::to_string(limits_.max_text_bytes)));
        }
    }
    if (type == EventType::kReactionAdded || type == EventType::kReactionRemoved) {
        if (auto s = ValidEmoji(command.event.text, limits_); !s) {
            return done(s.error());
        }
    }
    if (command.client_msg_id.size() > limits_.max_client_msg_id_bytes) {
        return done(MakeError(Errc::kInvalidArgument, "client_msg_id_too_long",
                              "client_msg_id is longer than " + std::to_string(limits_.max_client_msg_id_bytes) +
                                  " bytes"));
    }
    // A fresh id (an operation without one that may happen more than once) is never a retry.
    bool may_be_retry = true;
    if (command.client_msg_id.empty()) {
        // Recall and delete happen once per message: a retry without an id is still answered once.
        const std::string target = std::to_string(command.event.target_seq);
        may_be_retry = type == EventType::kRecalled || type == EventType::kDeletedForEveryone;
        command.client_msg_id = type == EventType::kRecalled             ? "recall:" + target
                                : type == EventType::kDeletedForEveryone ? "delete:" + target
                                                                         : "op:" + ids_.NewId();
    }
    if (auto ref = ParseConversationId(command.conversation_id); ref && may_be_retry) {
        // A retry refused because its own first run changed the message (recalled, reacted) gets the original.
        done = [this, tenant = command.sender.tenant_id, conv = ref->id, sender = StoredSenderId(command),
                cmid = command.client_msg_id, type,
                done = std::move(done)](Result<SendReceipt> r) mutable {
            if (r) {
                return done(std::move(r));
            }
            OriginalOrRefusal(messages_, tenant, conv, sender, cmid, MessageKind::kEvent, type, r.error(),
                              [done = std::move(done)](Result<MessageRecord> o) {
                                  if (!o) {
                                      return done(o.error());
                                  }
                                  done(ReceiptOf(*o, true));
                              });
        };
    }
    const std::string tenant = command.sender.tenant_id, conv = command.conversation_id;
    const std::string user = command.check_membership ? command.sender.user_id : std::string();
    sessions_.Resolve(tenant, user, conv, [this, command = std::move(command), done = std::move(done),
                                           on_delivered = std::move(on_delivered)](Result<ResolvedConversation> r) mutable {
        if (!r) {
            return done(r.error());
        }
        if (r->dissolved()) {
            return done(MakeError(Errc::kFailedPrecondition, "conversation_dissolved",
                                  "group '" + r->ref.id + "' was dissolved"));
        }
        if (r->ref.type == ConversationType::kSystem && command.check_membership) {
            return done(MakeError(Errc::kPermissionDenied, "read_only_conversation",
                                  "'" + r->ref.id + "' receives system messages only"));
        }
        if (!r->exists) {
            return done(MakeError(Errc::kNotFound, "unknown_message", "'" + r->ref.id + "' has no messages yet"));
        }
        const uint64_t target = command.event.target_seq;
        const std::string tenant = command.sender.tenant_id, conv_id = r->ref.id;
        messages_.ReadAfter(
            tenant, conv_id, target - 1, 1, "",
            [this, command = std::move(command), resolved = std::move(r.value()), target, done = std::move(done),
             on_delivered = std::move(on_delivered)](Result<MessagePage> page) mutable {
                if (!page) {
                    return done(page.error());
                }
                if (page->messages.empty() || page->messages[0].seq != target ||
                    (page->messages[0].kind != MessageKind::kText && page->messages[0].kind != MessageKind::kSystem)) {
                    return done(MakeError(Errc::kNotFound, "unknown_message",
                                          "'" + resolved.ref.id + "' has no message " + std::to_string(target)));
                }
                const MessageRecord& t = page->messages[0];
                if (t.recalled || t.deleted) {
                    return done(MakeError(Errc::kFailedPrecondition, t.recalled ? "message_recalled" : "message_deleted",
                                          "message " + std::to_string(target) + " was " +
                                              (t.recalled ? "recalled" : "deleted")));
                }
                const bool system = !command.check_membership;
                // A user is never the sender of a system message, whatever its sender id says.
                const bool is_sender = t.sender_id == command.sender.user_id &&
                                       (system || t.kind != MessageKind::kSystem);
                const bool admin = system || (resolved.ref.type == ConversationType::kGroup &&
                                              resolved.MetaOf(command.sender.user_id).role != MemberRole::kMember);
                const EventType type = command.event.type;
                if (type == EventType::kRecalled || type == EventType::kDeletedForEveryone) {
                    const bool in_window =
                        clock_.NowMs() - t.server_time_ms <= static_cast<int64_t>(limits_.recall_window_ms);
                    if (!system && (!is_sender || !in_window)) {
                        // Allowed by the role the cached view shows: the store checks it again.
                        command.min_sender_role = MemberRole::kAdmin;
                    }
                    if (!admin) {
                        if (!is_sender) {
                            return done(MakeError(Errc::kPermissionDenied, "not_sender",
                                                  "only the sender (or a group admin) may do this"));
                        }
                        if (!in_window) {
                            return done(MakeError(Errc::kFailedPrecondition, "recall_window_expired",
                                                  "messages can be recalled for " +
                                                      std::to_string(limits_.recall_window_ms / 1000) +
                                                      " s after they were sent"));
                        }
                    }
                } else if (type == EventType::kEdited) {
                    if (!is_sender) {
                        return done(MakeError(Errc::kPermissionDenied, "not_sender",
                                              "only the sender may edit a message"));
                    }
                    if (resolved.MetaOf(command.sender.user_id).muted_until_ms > clock_.NowMs()) {
                        return done(MakeError(Errc::kPermissionDenied, "member_muted", "you are muted in this group"));
                    }
                }
                command.text.clear();
                if (type == EventType::kEdited && hooks_ != nullptr && command.check_membership &&
                    NeedsPreSend(resolved.ref.id, command)) {
                    // The new text passes the pre_send hooks like a message's.
                    return EnqueuePreSend(
                        PreSendItem{std::move(command), std::move(resolved), std::move(done), std::move(on_delivered)});
                }
                CommitResolved(std::move(command), std::move(resolved), std::move(done), std::move(on_delivered));
            });
    });
}

}  // namespace flare
