#include "gateway/client_session.hpp"

#include <map>
#include <utility>

#include "auth/jwt.hpp"

namespace flare::gateway {

namespace {

pb::ConversationType ToProto(ConversationType t) {
    switch (t) {
        case ConversationType::kDirect: return pb::CONVERSATION_TYPE_DIRECT;
        case ConversationType::kRoom: return pb::CONVERSATION_TYPE_ROOM;
        case ConversationType::kGroup: return pb::CONVERSATION_TYPE_GROUP;
        case ConversationType::kSystem: return pb::CONVERSATION_TYPE_SYSTEM;
    }
    return pb::CONVERSATION_TYPE_UNSPECIFIED;
}

constexpr size_t kMaxRequestIdBytes = 128;

pb::MemberRole ToProto(MemberRole r) {
    switch (r) {
        case MemberRole::kMember: return pb::MEMBER_ROLE_MEMBER;
        case MemberRole::kAdmin: return pb::MEMBER_ROLE_ADMIN;
        case MemberRole::kOwner: return pb::MEMBER_ROLE_OWNER;
    }
    return pb::MEMBER_ROLE_MEMBER;
}

Result<MemberRole> FromProto(pb::MemberRole r) {
    switch (r) {
        case pb::MEMBER_ROLE_MEMBER: return MemberRole::kMember;
        case pb::MEMBER_ROLE_ADMIN: return MemberRole::kAdmin;
        case pb::MEMBER_ROLE_OWNER: return MemberRole::kOwner;
        default: return MakeError(Errc::kInvalidArgument, "bad_role", "role must be MEMBER, ADMIN or OWNER");
    }
}

void ToProto(const MessageEvent& e, pb::Event* out) {
    out->set_type(static_cast<pb::EventType>(static_cast<int>(e.type)));
    out->set_target_seq(e.target_seq);
    for (const auto& u : e.user_ids) {
        out->add_user_ids(u);
    }
    switch (e.type) {
        case EventType::kGroupCreated:
        case EventType::kGroupRenamed: out->set_name(e.text); break;
        case EventType::kEdited: out->set_text(e.text); break;
        case EventType::kReactionAdded:
        case EventType::kReactionRemoved: out->set_emoji(e.text); break;
        default: break;
    }
    out->set_role(ToProto(e.role));
    out->set_muted_until_ms(e.until_ms);
}

}  // namespace

void ToProto(const MessageRecord& m, pb::Message* out) {
    out->set_conversation_id(m.conversation_id);
    out->set_conversation_type(ToProto(m.conversation_type));
    out->set_seq(m.seq);
    out->set_server_msg_id(m.server_msg_id);
    out->set_client_msg_id(m.client_msg_id);
    out->set_sender_id(m.sender_id);
    out->set_sender_device_id(m.sender_device_id);
    out->set_server_time_ms(m.server_time_ms);
    out->set_kind(m.kind == MessageKind::kSystem  ? pb::MESSAGE_KIND_SYSTEM
                  : m.kind == MessageKind::kEvent ? pb::MESSAGE_KIND_EVENT
                                                  : pb::MESSAGE_KIND_TEXT);
    out->set_text(m.text);
    for (const auto& u : m.mentions) {
        out->add_mentions(u);
    }
    out->set_mention_all(m.mention_all);
    if (m.kind == MessageKind::kEvent) {
        ToProto(m.event, out->mutable_event());
    }
    out->set_recalled(m.recalled);
    out->set_deleted(m.deleted);
    out->set_deleted_for_me(m.deleted_for_me);
    out->set_edit_version(m.edit_version);
    out->set_edited_time_ms(m.edited_ms);
    for (const auto& r : m.reactions) {
        auto* o = out->add_reactions();
        o->set_emoji(r.emoji);
        o->set_count(static_cast<uint32_t>(r.user_ids.size()));
        for (const auto& u : r.user_ids) {
            o->add_user_ids(u);
        }
    }
}

void ToNoticeProto(const MessageRecord& m, pb::Notice* out) {
    out->set_conversation_id(m.conversation_id);
    out->set_conversation_type(ToProto(m.conversation_type));
    out->set_user_id(m.sender_id);
    out->set_device_id(m.sender_device_id);
    out->set_server_time_ms(m.server_time_ms);
    const MessageEvent& e = m.event;
    switch (e.type) {
        case EventType::kTyping: out->mutable_typing()->set_stopped(!e.active); break;
        case EventType::kRead: out->mutable_read()->set_read_seq(e.target_seq); break;
        case EventType::kSettingsChanged:
            out->mutable_settings()->set_pinned(e.pinned.value_or(false));
            out->mutable_settings()->set_muted(e.muted.value_or(false));
            break;
        case EventType::kDeletedForMe:
            for (uint64_t s : e.seqs) {
                out->mutable_deleted_for_me()->add_seqs(s);
            }
            break;
        case EventType::kNewMessages: out->mutable_new_messages()->set_up_to_seq(e.target_seq); break;
        default: break;
    }
}

ClientSession::ClientSession(const GatewayOptions& options, GatewayServices services, Poster post,
                             SessionHost* host, uint64_t connection_id, std::string platform_hint)
    : options_(options),
      services_(services),
      post_(std::move(post)),
      host_(host),
      connection_id_(connection_id),
      platform_(std::move(platform_hint)) {}

template <typename Fn>
auto ClientSession::OnStrand(Fn fn) {
    ++inflight_;
    return [self = shared_from_this(), fn = std::move(fn)](auto result) mutable {
        Poster post = self->post_;
        post([self = std::move(self), fn = std::move(fn), result = std::move(result)]() mutable {
            --self->inflight_;
            if (self->state_ == State::kClosed) {
                return;
            }
            fn(std::move(result));
            if (!self->deferred_.empty()) {
                self->Pump();
            }
        });
    };
}

void ClientSession::Reply(pb::ServerFrame frame) {
    if (host_ != nullptr && state_ != State::kClosed) {
        host_->Send(frame);
    }
}

void ClientSession::ReplyError(const std::string& request_id, const Error& error) {
    Reply(ErrorFrame(request_id, error));
}

void ClientSession::Start(const std::string& upgrade_token) {
    if (!upgrade_token.empty()) {
        Authenticate("", upgrade_token, "", platform_, false);
    }
}

void ClientSession::OnBadFrame(const Error& error) { ReplyError("", error); }

void ClientSession::OnClosed() {
    if (state_ == State::kAuthenticated) {
        services_.presence.Unregister(principal_.tenant_id, principal_.user_id, principal_.device_id,
                                      options_.gateway_id, connection_id_);
        if (services_.on_unregistered) {
            services_.on_unregistered(connection_id_);
        }
    }
    state_ = State::kClosed;
    host_ = nullptr;
}

void ClientSession::Authenticate(const std::string& request_id, const std::string& token,
                                 const std::string& device_id, const std::string& platform, bool accept_batches) {
    auto claims = VerifyToken(token, options_.token_secret, services_.clock.NowMs() / 1000, options_.default_tenant);
    if (!claims) {
        ReplyError(request_id, claims.error());
        host_->Close("unauthenticated", claims.error().message);
        return;
    }
    if (claims->role == kBusinessRole) {
        // A business credential is for the business API; it is not a user's session.
        const Error e = MakeError(Errc::kUnauthenticated, "business_token",
                                  "this is a business token (role \"business\"): use it with the business API, "
                                  "and a user's token here");
        ReplyError(request_id, e);
        host_->Close("unauthenticated", e.message);
        return;
    }
    std::string device = !claims->device_id.empty() ? claims->device_id : device_id;
    if (device.empty()) {
        device = "dev-" + RandomHexId(8);
    }
    if (!IsValidName(device)) {
        ReplyError(request_id, MakeError(Errc::kInvalidArgument, "bad_device_id",
                                         "device_id must be 1..64 characters of A-Z a-z 0-9 _ . @ -"));
        host_->Close("unauthenticated", "bad device id");
        return;
    }
    state_ = State::kAuthenticating;
    if (accept_batches) {
        host_->EnableBatching();
    }
    principal_ = Principal{claims->tenant_id, claims->subject, device};
    if (!platform.empty()) {
        platform_ = Utf8Prefix(platform, 32);
    }
    DeviceSession ds{principal_.tenant_id,  principal_.user_id, principal_.device_id, platform_,
                     options_.gateway_id,    options_.region,    connection_id_,        services_.clock.NowMs()};
    auto self = shared_from_this();
    services_.presence.Register(
        ds, [self, request_id, ds](Result<std::optional<DeviceSession>> replaced) {
            Poster post = self->post_;
            post([self, request_id, ds, replaced = std::move(replaced)]() {
                if (self->state_ == State::kClosed) {
                    // The socket went away while registering: take the record back out.
                    self->services_.presence.Unregister(self->principal_.tenant_id, self->principal_.user_id,
                                                        self->principal_.device_id, self->options_.gateway_id,
                                                        self->connection_id_);
                    return;
                }
                if (!replaced) {
                    self->ReplyError(request_id, replaced.error());
                    self->host_->Close("unavailable", replaced.error().message);
                    return;
                }
                if (replaced->has_value()) {
                    const DeviceSession& old = **replaced;
                    if (old.gateway_id == self->options_.gateway_id && old.connection_id != self->connection_id_) {
                        self->services_.self.Disconnect(old.connection_id, "replaced",
                                                        "this device connected again elsewhere");
                    }
                }
                self->state_ = State::kAuthenticated;
                if (self->services_.on_registered) {
                    self->services_.on_registered(ds);
                }
                pb::ServerFrame f;
                f.set_request_id(request_id);
                auto* a = f.mutable_auth();
                a->set_user_id(self->principal_.user_id);
                a->set_tenant_id(self->principal_.tenant_id);
                a->set_device_id(self->principal_.device_id);
                a->set_session_id(self->options_.gateway_id + "/" + std::to_string(self->connection_id_));
                a->set_gateway_id(self->options_.gateway_id);
                a->set_server_time_ms(self->services_.clock.NowMs());
                a->set_heartbeat_interval_ms(self->options_.heartbeat_interval_ms);
                a->set_idle_timeout_ms(self->options_.idle_timeout_ms);
                self->Reply(std::move(f));
            });
        });
}

void ClientSession::OnFrame(pb::ClientFrame frame) {
    if (state_ == State::kClosed) {
        return;
    }
    const std::string& rid = frame.request_id();
    if (rid.size() > kMaxRequestIdBytes) {
        return ReplyError("", MakeError(Errc::kInvalidArgument, "request_id_too_long",
                                        "request_id is longer than 128 bytes"));
    }
    if (frame.body_case() == pb::ClientFrame::BODY_NOT_SET) {
        return ReplyError(rid, MakeError(Errc::kInvalidArgument, "empty_frame",
                                         "frame has no body: set one of auth, ping, send, ack, syncMessages, "
                                         "syncConversations, joinRoom, leaveRoom, group, messageOp, read, "
                                         "deleteForMe, updateSettings, listConversations, typing, getMessage"));
    }
    if (frame.has_ping()) {
        pb::ServerFrame f;
        f.set_request_id(rid);
        f.mutable_pong()->set_client_time_ms(frame.ping().client_time_ms());
        f.mutable_pong()->set_server_time_ms(services_.clock.NowMs());
        return Reply(std::move(f));
    }
    if (frame.has_auth()) {
        if (state_ != State::kAwaitingAuth) {
            return ReplyError(rid, MakeError(Errc::kFailedPrecondition, "already_authenticated",
                                             "this connection is already authenticated"));
        }
        return Authenticate(rid, frame.auth().token(), frame.auth().device_id(), frame.auth().platform(),
                            frame.auth().accept_batches());
    }
    if (state_ == State::kAwaitingAuth) {
        ReplyError(rid, MakeError(Errc::kUnauthenticated, "auth_required",
                                  "the first frame must be an auth frame (or pass ?token= in the URL)"));
        host_->Close("unauthenticated", "authentication required");
        return;
    }
    if (state_ == State::kAuthenticating) {
        return ReplyError(rid, MakeError(Errc::kFailedPrecondition, "auth_in_progress",
                                         "wait for the auth response before sending requests"));
    }
    if (rid.empty()) {
        return ReplyError("", MakeError(Errc::kInvalidArgument, "missing_request_id",
                                        "every request frame needs a requestId; it is echoed in the answer"));
    }
    if (inflight_ + deferred_.size() >= options_.max_inflight_requests) {
        return ReplyError(rid, MakeError(Errc::kResourceExhausted, "too_many_inflight",
                                         "more than " + std::to_string(options_.max_inflight_requests) +
                                             " requests are unanswered; wait for answers before sending more"));
    }
    deferred_.push_back(std::move(frame));
    Pump();
}

void ClientSession::EndBarrier() {
    barrier_ = false;
    Pump();
}

// Requests run in arrival order, except that a join or leave waits until every earlier request is
// answered, and later requests wait until it is applied: each sees the membership it was sent after.
void ClientSession::Pump() {
    while (!deferred_.empty() && !barrier_ && state_ == State::kAuthenticated) {
        const pb::ClientFrame& next = deferred_.front();
        if ((next.has_join_room() || next.has_leave_room() || next.has_group()) && inflight_ > 0) {
            return;  // resumed when the last earlier request is answered
        }
        pb::ClientFrame frame = std::move(deferred_.front());
        deferred_.pop_front();
        Dispatch(std::move(frame));
    }
}

void ClientSession::Dispatch(pb::ClientFrame frame) {
    const std::string rid = frame.request_id();
    switch (frame.body_case()) {
        case pb::ClientFrame::kSend: return HandleSend(rid, frame.send());
        case pb::ClientFrame::kAck: return HandleAck(rid, frame.ack());
        case pb::ClientFrame::kSyncMessages: return HandleSyncMessages(rid, frame.sync_messages());
        case pb::ClientFrame::kSyncConversations: return HandleSyncConversations(rid, frame.sync_conversations());
        case pb::ClientFrame::kJoinRoom: return HandleJoin(rid, frame.join_room());
        case pb::ClientFrame::kLeaveRoom: return HandleLeave(rid, frame.leave_room());
        case pb::ClientFrame::kGroup: return HandleGroup(rid, frame.group());
        case pb::ClientFrame::kMessageOp: return HandleMessageOp(rid, frame.message_op());
        case pb::ClientFrame::kRead: return HandleRead(rid, frame.read());
        case pb::ClientFrame::kDeleteForMe: return HandleDeleteForMe(rid, frame.delete_for_me());
        case pb::ClientFrame::kUpdateSettings: return HandleSettings(rid, frame.update_settings());
        case pb::ClientFrame::kListConversations: return HandleList(rid, frame.list_conversations());
        case pb::ClientFrame::kTyping: return HandleTyping(rid, frame.typing());
        case pb::ClientFrame::kGetMessage: return HandleGetMessage(rid, frame.get_message());
        default:
            return ReplyError(rid, MakeError(Errc::kInvalidArgument, "unsupported_frame", "unsupported frame type"));
    }
}

void ClientSession::HandleSend(const std::string& rid, const pb::SendRequest& req) {
    SendCommand cmd;
    cmd.sender = principal_;
    cmd.gateway_id = options_.gateway_id;
    cmd.connection_id = connection_id_;
    cmd.conversation_id = req.conversation_id();
    cmd.client_msg_id = req.client_msg_id();
    cmd.text = req.text();
    cmd.mentions.assign(req.mentions().begin(), req.mentions().end());
    cmd.mention_all = req.mention_all();
    SendAndReply(rid, std::move(cmd), false, req.text());
}

void ClientSession::SendAndReply(const std::string& rid, SendCommand cmd, bool op, std::string sent_text) {
    services_.orchestrator.Send(std::move(cmd), OnStrand([this, rid, op, sent_text = std::move(sent_text)](
                                                              Result<SendReceipt> r) {
        if (!r) {
            return ReplyError(rid, r.error());
        }
        pb::ServerFrame f;
        f.set_request_id(rid);
        auto* s = op ? f.mutable_message_op() : f.mutable_send();
        s->set_conversation_id(r->conversation_id);
        s->set_server_msg_id(r->server_msg_id);
        s->set_seq(r->seq);
        s->set_server_time_ms(r->server_time_ms);
        s->set_duplicate(r->duplicate);
        if (r->text != sent_text) {  // a pre-send hook rewrote the message (or the edit's text)
            s->set_text(r->text);
        }
        Reply(std::move(f));
    }));
}

void ClientSession::HandleAck(const std::string& rid, const pb::AckRequest& req) {
    services_.sessions.Ack(principal_, req.conversation_id(), req.seq(),
                           OnStrand([this, rid, conv = req.conversation_id()](Result<uint64_t> r) {
                               if (!r) {
                                   return ReplyError(rid, r.error());
                               }
                               pb::ServerFrame f;
                               f.set_request_id(rid);
                               f.mutable_ack()->set_conversation_id(conv);
                               f.mutable_ack()->set_acked_seq(*r);
                               Reply(std::move(f));
                           }));
}

void ClientSession::HandleSyncMessages(const std::string& rid, const pb::SyncMessagesRequest& req) {
    services_.orchestrator.SyncMessages(
        principal_, req.conversation_id(), req.after_seq(), req.limit(),
        OnStrand([this, rid, conv = req.conversation_id()](Result<MessagePage> r) {
            if (!r) {
                return ReplyError(rid, r.error());
            }
            pb::ServerFrame f;
            f.set_request_id(rid);
            auto* s = f.mutable_sync_messages();
            s->set_conversation_id(conv);
            for (const auto& m : r->messages) {
                ToProto(m, s->add_messages());
            }
            s->set_has_more(r->has_more);
            s->set_last_seq(r->last_seq);
            Reply(std::move(f));
        }));
}

void ClientSession::HandleSyncConversations(const std::string& rid, const pb::SyncConversationsRequest& req) {
    std::map<std::string, uint64_t> known;
    for (const auto& k : req.known()) {
        known[k.conversation_id()] = k.seq();
    }
    services_.sessions.SyncConversations(
        principal_, std::move(known), req.include_all(),
        OnStrand([this, rid](Result<std::vector<ConversationStateView>> r) {
            if (!r) {
                return ReplyError(rid, r.error());
            }
            pb::ServerFrame f;
            f.set_request_id(rid);
            auto* s = f.mutable_sync_conversations();
            for (const auto& c : *r) {
                auto* o = s->add_conversations();
                o->set_conversation_id(c.conversation_id);
                o->set_type(ToProto(c.type));
                o->set_last_seq(c.last_seq);
                o->set_acked_seq(c.acked_seq);
                o->set_known_seq(c.known_seq);
            }
            Reply(std::move(f));
        }));
}

void ClientSession::HandleJoin(const std::string& rid, const pb::JoinRoomRequest& req) {
    barrier_ = true;
    services_.sessions.JoinRoom(principal_, req.room(), OnStrand([this, rid](Result<ConversationSummary> r) {
                                    if (!r) {
                                        ReplyError(rid, r.error());
                                    } else {
                                        pb::ServerFrame f;
                                        f.set_request_id(rid);
                                        f.mutable_join_room()->set_conversation_id(r->conversation_id);
                                        f.mutable_join_room()->set_last_seq(r->last_seq);
                                        Reply(std::move(f));
                                    }
                                    EndBarrier();
                                }));
}

void ClientSession::HandleLeave(const std::string& rid, const pb::LeaveRoomRequest& req) {
    barrier_ = true;
    services_.sessions.LeaveRoom(principal_, req.room(),
                                 OnStrand([this, rid, conv = RoomConversationId(req.room())](Status s) {
                                     if (!s) {
                                         ReplyError(rid, s.error());
                                     } else {
                                         pb::ServerFrame f;
                                         f.set_request_id(rid);
                                         f.mutable_leave_room()->set_conversation_id(conv);
                                         Reply(std::move(f));
                                     }
                                     EndBarrier();
                                 }));
}

void ClientSession::HandleGroup(const std::string& rid, const pb::GroupRequest& req) {
    GroupCommand cmd;
    cmd.actor = principal_;
    cmd.gateway_id = options_.gateway_id;
    cmd.connection_id = connection_id_;
    cmd.conversation_id = req.conversation_id();
    cmd.client_msg_id = req.client_msg_id();
    switch (req.op_case()) {
        case pb::GroupRequest::kCreate:
            cmd.op = GroupOp::kCreate;
            cmd.name = req.create().name();
            cmd.group_id = req.create().group_id();
            cmd.user_ids.assign(req.create().member_ids().begin(), req.create().member_ids().end());
            break;
        case pb::GroupRequest::kRename:
            cmd.op = GroupOp::kRename;
            cmd.name = req.rename().name();
            break;
        case pb::GroupRequest::kAddMembers:
            cmd.op = GroupOp::kAddMembers;
            cmd.user_ids.assign(req.add_members().user_ids().begin(), req.add_members().user_ids().end());
            break;
        case pb::GroupRequest::kRemoveMembers:
            cmd.op = GroupOp::kRemoveMembers;
            cmd.user_ids.assign(req.remove_members().user_ids().begin(), req.remove_members().user_ids().end());
            break;
        case pb::GroupRequest::kLeave: cmd.op = GroupOp::kLeave; break;
        case pb::GroupRequest::kSetRole: {
            cmd.op = GroupOp::kSetRole;
            cmd.user_ids = {req.set_role().user_id()};
            auto role = FromProto(req.set_role().role());
            if (!role) {
                return ReplyError(rid, role.error());
            }
            cmd.role = *role;
            break;
        }
        case pb::GroupRequest::kMute:
            cmd.op = GroupOp::kMuteMember;
            cmd.user_ids = {req.mute().user_id()};
            cmd.mute_ms = req.mute().duration_ms();
            break;
        case pb::GroupRequest::kDissolve: cmd.op = GroupOp::kDissolve; break;
        default:
            return ReplyError(rid, MakeError(Errc::kInvalidArgument, "missing_operation",
                                             "group: set one of create, rename, addMembers, removeMembers, leave, "
                                             "setRole, mute, dissolve"));
    }
    barrier_ = true;
    services_.sessions.ManageGroup(std::move(cmd), OnStrand([this, rid](Result<GroupResult> r) {
                                       if (!r) {
                                           ReplyError(rid, r.error());
                                       } else {
                                           pb::ServerFrame f;
                                           f.set_request_id(rid);
                                           ToProto(r->event, f.mutable_group()->mutable_event());
                                           f.mutable_group()->set_duplicate(r->duplicate);
                                           Reply(std::move(f));
                                       }
                                       EndBarrier();
                                   }));
}

void ClientSession::HandleMessageOp(const std::string& rid, const pb::MessageOpRequest& req) {
    SendCommand cmd;
    cmd.sender = principal_;
    cmd.gateway_id = options_.gateway_id;
    cmd.connection_id = connection_id_;
    cmd.conversation_id = req.conversation_id();
    cmd.client_msg_id = req.client_msg_id();
    cmd.kind = MessageKind::kEvent;
    cmd.event.target_seq = req.seq();
    switch (req.op_case()) {
        case pb::MessageOpRequest::kRecall: cmd.event.type = EventType::kRecalled; break;
        case pb::MessageOpRequest::kEdit:
            cmd.event.type = EventType::kEdited;
            cmd.event.text = req.edit().text();
            break;
        case pb::MessageOpRequest::kDeleteForEveryone: cmd.event.type = EventType::kDeletedForEveryone; break;
        case pb::MessageOpRequest::kAddReaction:
            cmd.event.type = EventType::kReactionAdded;
            cmd.event.text = req.add_reaction().emoji();
            break;
        case pb::MessageOpRequest::kRemoveReaction:
            cmd.event.type = EventType::kReactionRemoved;
            cmd.event.text = req.remove_reaction().emoji();
            break;
        default:
            return ReplyError(rid, MakeError(Errc::kInvalidArgument, "missing_operation",
                                             "messageOp: set one of recall, edit, deleteForEveryone, addReaction, "
                                             "removeReaction"));
    }
    std::string edit_text = cmd.event.type == EventType::kEdited ? cmd.event.text : std::string();
    SendAndReply(rid, std::move(cmd), true, std::move(edit_text));
}

UserStateCommand ClientSession::UserCommand(UserOp op, const std::string& conversation_id) const {
    UserStateCommand cmd;
    cmd.who = principal_;
    cmd.gateway_id = options_.gateway_id;
    cmd.connection_id = connection_id_;
    cmd.op = op;
    cmd.conversation_id = conversation_id;
    return cmd;
}

void ClientSession::HandleRead(const std::string& rid, const pb::ReadRequest& req) {
    UserStateCommand cmd = UserCommand(UserOp::kRead, req.conversation_id());
    cmd.seq = req.seq();
    services_.sessions.UpdateUserState(
        std::move(cmd), OnStrand([this, rid, conv = req.conversation_id()](Result<UserStateResult> r) {
            if (!r) {
                return ReplyError(rid, r.error());
            }
            pb::ServerFrame f;
            f.set_request_id(rid);
            f.mutable_read()->set_conversation_id(conv);
            f.mutable_read()->set_read_seq(r->read_seq);
            Reply(std::move(f));
        }));
}

void ClientSession::HandleDeleteForMe(const std::string& rid, const pb::DeleteForMeRequest& req) {
    UserStateCommand cmd = UserCommand(UserOp::kDeleteForMe, req.conversation_id());
    cmd.seqs.assign(req.seqs().begin(), req.seqs().end());
    services_.sessions.UpdateUserState(
        std::move(cmd), OnStrand([this, rid, conv = req.conversation_id()](Result<UserStateResult> r) {
            if (!r) {
                return ReplyError(rid, r.error());
            }
            pb::ServerFrame f;
            f.set_request_id(rid);
            f.mutable_delete_for_me()->set_conversation_id(conv);
            Reply(std::move(f));
        }));
}

void ClientSession::HandleSettings(const std::string& rid, const pb::UpdateSettingsRequest& req) {
    UserStateCommand cmd = UserCommand(UserOp::kSettings, req.conversation_id());
    if (req.has_pinned()) {
        cmd.pinned = req.pinned();
    }
    if (req.has_muted()) {
        cmd.muted = req.muted();
    }
    services_.sessions.UpdateUserState(
        std::move(cmd), OnStrand([this, rid, conv = req.conversation_id()](Result<UserStateResult> r) {
            if (!r) {
                return ReplyError(rid, r.error());
            }
            pb::ServerFrame f;
            f.set_request_id(rid);
            auto* s = f.mutable_update_settings();
            s->set_conversation_id(conv);
            s->set_pinned(r->settings.pinned);
            s->set_muted(r->settings.muted);
            Reply(std::move(f));
        }));
}

bool ClientSession::TypingRepeat(const std::string& conversation_id, bool active) {
    constexpr int64_t kTypingIntervalMs = 1000;
    constexpr uint32_t kMaxForwardsPerInterval = 8;  // over all the connection's conversations
    const int64_t now = services_.clock.NowMs();
    if (!typing_sent_) {
        typing_sent_ = std::make_unique<TypingState>();
    }
    TypingState& st = *typing_sent_;
    TypingSent* slot = nullptr;
    TypingSent* oldest = &st.recent.front();
    for (auto& t : st.recent) {
        if (t.conversation_id == conversation_id) {
            slot = &t;
            break;
        }
        if (std::max(t.start_ms, t.stop_ms) < std::max(oldest->start_ms, oldest->stop_ms)) {
            oldest = &t;
        }
    }
    if (slot != nullptr) {
        const int64_t last = active ? slot->start_ms : slot->stop_ms;
        if (last != 0 && now - last < kTypingIntervalMs) {
            return true;  // this state was forwarded within the interval
        }
    }
    if (now - st.window_start_ms >= kTypingIntervalMs) {
        st.window_start_ms = now;
        st.forwarded = 0;
    }
    if (st.forwarded >= kMaxForwardsPerInterval) {
        return true;
    }
    ++st.forwarded;
    if (slot == nullptr) {
        slot = oldest;
        *slot = TypingSent{conversation_id, 0, 0};
    }
    (active ? slot->start_ms : slot->stop_ms) = now;
    return false;
}

void ClientSession::ForgetTyping(const std::string& conversation_id) {
    for (auto& t : typing_sent_->recent) {
        if (t.conversation_id == conversation_id) {
            t = TypingSent{};
        }
    }
}

void ClientSession::HandleTyping(const std::string& rid, const pb::TypingRequest& req) {
    // Typing is a hint: a device repeating itself is answered without bothering the members again,
    // so one device makes each member receive at most a start and a stop a second per conversation,
    // and at most 8 typing notices a second in all.
    if (TypingRepeat(req.conversation_id(), !req.stopped())) {
        pb::ServerFrame f;
        f.set_request_id(rid);
        f.mutable_typing();
        return Reply(std::move(f));
    }
    UserStateCommand cmd = UserCommand(UserOp::kTyping, req.conversation_id());
    cmd.active = !req.stopped();
    services_.sessions.UpdateUserState(std::move(cmd), OnStrand([this, rid, conv = req.conversation_id()](
                                                                     Result<UserStateResult> r) {
                                           if (!r) {
                                               ForgetTyping(conv);
                                               return ReplyError(rid, r.error());
                                           }
                                           pb::ServerFrame f;
                                           f.set_request_id(rid);
                                           f.mutable_typing();
                                           Reply(std::move(f));
                                       }));
}

void ClientSession::HandleList(const std::string& rid, const pb::ListConversationsRequest& req) {
    services_.sessions.ListConversations(
        principal_, req.page_token(), req.limit(), OnStrand([this, rid](Result<ConversationListPage> r) {
            if (!r) {
                return ReplyError(rid, r.error());
            }
            pb::ServerFrame f;
            f.set_request_id(rid);
            auto* out = f.mutable_list_conversations();
            for (const auto& e : r->entries) {
                auto* o = out->add_conversations();
                o->set_conversation_id(e.summary.conversation_id);
                o->set_type(ToProto(e.summary.type));
                o->set_name(e.name);
                o->set_role(ToProto(e.role));
                o->set_dissolved(e.dissolved);
                o->set_pinned(e.settings.pinned);
                o->set_muted(e.settings.muted);
                o->set_last_seq(e.summary.last_seq);
                o->set_read_seq(e.read_seq);
                o->set_peer_read_seq(e.peer_read_seq);
                o->set_unread_count(e.unread);
                o->set_unread_mentions(e.unread_mentions);
                if (e.last_message) {
                    ToProto(*e.last_message, o->mutable_last_message());
                }
                o->set_last_activity_time_ms(e.last_activity_ms);
                o->set_member_count(e.member_count);
            }
            out->set_next_page_token(r->next_page_token);
            Reply(std::move(f));
        }));
}

void ClientSession::HandleGetMessage(const std::string& rid, const pb::GetMessageRequest& req) {
    services_.sessions.GetMessage(principal_, req.conversation_id(), req.seq(),
                                  OnStrand([this, rid](Result<MessageDetail> r) {
                                      if (!r) {
                                          return ReplyError(rid, r.error());
                                      }
                                      pb::ServerFrame f;
                                      f.set_request_id(rid);
                                      auto* out = f.mutable_get_message();
                                      ToProto(r->message, out->mutable_message());
                                      for (const auto& e : r->edits) {
                                          auto* o = out->add_edits();
                                          o->set_version(e.version);
                                          o->set_text(e.text);
                                          o->set_time_ms(e.time_ms);
                                      }
                                      for (const auto& u : r->read_by) {
                                          out->add_read_by(u);
                                      }
                                      out->set_member_count(r->member_count);
                                      Reply(std::move(f));
                                  }));
}

}  // namespace flare::gateway
