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
    out->set_kind(m.kind == MessageKind::kSystem ? pb::MESSAGE_KIND_SYSTEM : pb::MESSAGE_KIND_TEXT);
    out->set_text(m.text);
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
                                         "syncConversations, joinRoom, leaveRoom"));
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
        if ((next.has_join_room() || next.has_leave_room()) && inflight_ > 0) {
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
    services_.orchestrator.Send(std::move(cmd), OnStrand([this, rid](Result<SendReceipt> r) {
        if (!r) {
            return ReplyError(rid, r.error());
        }
        pb::ServerFrame f;
        f.set_request_id(rid);
        auto* s = f.mutable_send();
        s->set_conversation_id(r->conversation_id);
        s->set_server_msg_id(r->server_msg_id);
        s->set_seq(r->seq);
        s->set_server_time_ms(r->server_time_ms);
        s->set_duplicate(r->duplicate);
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

}  // namespace flare::gateway
