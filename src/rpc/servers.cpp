#include "rpc/servers.hpp"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include "flare/hooks/v1/hooks.grpc.pb.h"
#include "flare/internal/v1/internal.grpc.pb.h"
#include "hooks/hook_config.hpp"
#include "hooks/hook_proto.hpp"
#include "rpc/convert.hpp"
#include "rpc/pipeline.hpp"
#include "rpc/status.hpp"

namespace flare::rpc {
namespace {

using Reactor = grpc::ServerUnaryReactor;

// Finishes the call with `r`'s error, or lets `fill` write the response and finishes OK.
template <typename T, typename Fill>
void Finish(Reactor* reactor, Result<T>& r, Fill fill) {
    if (!r.ok()) {
        reactor->Finish(ToGrpc(r.error()));
        return;
    }
    fill(*r);
    reactor->Finish(grpc::Status::OK);
}

void FinishStatus(Reactor* reactor, const Status& s) { reactor->Finish(ToGrpc(s)); }

class PresenceService final : public ipb::Presence::CallbackService {
public:
    explicit PresenceService(PresenceRegistry& p) : p_(p) {}

    Reactor* Register(grpc::CallbackServerContext* ctx, const ipb::DeviceSession* req, ipb::RegisterReply* resp) override {
        auto* reactor = ctx->DefaultReactor();
        p_.Register(FromProto(*req), [reactor, resp](Result<std::optional<DeviceSession>> r) {
            Finish(reactor, r, [resp](const std::optional<DeviceSession>& prev) {
                if (prev) {
                    resp->set_replaced(true);
                    ToProto(*prev, resp->mutable_previous());
                }
            });
        });
        return reactor;
    }
    Reactor* Unregister(grpc::CallbackServerContext* ctx, const ipb::UnregisterRequest* req, ipb::Empty*) override {
        p_.Unregister(req->tenant_id(), req->user_id(), req->device_id(), req->gateway_id(), req->connection_id());
        auto* reactor = ctx->DefaultReactor();
        reactor->Finish(grpc::Status::OK);
        return reactor;
    }
    Reactor* Lookup(grpc::CallbackServerContext* ctx, const ipb::LookupRequest* req, ipb::DeviceList* resp) override {
        auto* reactor = ctx->DefaultReactor();
        auto users = std::make_shared<const std::vector<std::string>>(req->user_ids().begin(), req->user_ids().end());
        p_.Lookup(req->tenant_id(), std::move(users), [reactor, resp](Result<std::vector<DeviceSession>> r) {
            Finish(reactor, r, [resp](const std::vector<DeviceSession>& l) { ToProto(l, resp); });
        });
        return reactor;
    }
    Reactor* ListTenant(grpc::CallbackServerContext* ctx, const ipb::ListTenantRequest* req,
                        ipb::DeviceList* resp) override {
        auto* reactor = ctx->DefaultReactor();
        p_.ListTenant(req->tenant_id(), [reactor, resp](Result<std::vector<DeviceSession>> r) {
            Finish(reactor, r, [resp](const std::vector<DeviceSession>& l) { ToProto(l, resp); });
        });
        return reactor;
    }
    Reactor* Refresh(grpc::CallbackServerContext* ctx, const ipb::DeviceList* req, ipb::Empty*) override {
        auto* reactor = ctx->DefaultReactor();
        p_.Refresh(FromProto(*req), [reactor](Status s) { FinishStatus(reactor, s); });
        return reactor;
    }

private:
    PresenceRegistry& p_;
};

class RoutesService final : public ipb::Routes::CallbackService {
public:
    explicit RoutesService(GatewayRouteStore& r) : r_(r) {}

    Reactor* Upsert(grpc::CallbackServerContext* ctx, const ipb::UpsertRouteRequest* req, ipb::Empty*) override {
        auto* reactor = ctx->DefaultReactor();
        if (req->route().gateway_id().empty() || req->ttl_ms() == 0) {
            reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "gateway_id and ttl_ms are required"));
            return reactor;
        }
        r_.Upsert(GatewayRoute{req->route().gateway_id(), req->route().region(), req->route().endpoint()},
                  std::chrono::milliseconds(req->ttl_ms()), [reactor](Status s) { FinishStatus(reactor, s); });
        return reactor;
    }
    Reactor* Remove(grpc::CallbackServerContext* ctx, const ipb::GatewayIdRequest* req, ipb::Empty*) override {
        auto* reactor = ctx->DefaultReactor();
        r_.Remove(req->gateway_id(), [reactor](Status s) { FinishStatus(reactor, s); });
        return reactor;
    }
    Reactor* Get(grpc::CallbackServerContext* ctx, const ipb::GatewayIdRequest* req, ipb::GetRouteReply* resp) override {
        auto* reactor = ctx->DefaultReactor();
        r_.Get(req->gateway_id(), [reactor, resp](Result<std::optional<GatewayRoute>> r) {
            Finish(reactor, r, [resp](const std::optional<GatewayRoute>& route) {
                if (route) {
                    resp->set_found(true);
                    resp->mutable_route()->set_gateway_id(route->gateway_id);
                    resp->mutable_route()->set_region(route->region);
                    resp->mutable_route()->set_endpoint(route->endpoint);
                }
            });
        });
        return reactor;
    }
    Reactor* List(grpc::CallbackServerContext* ctx, const ipb::Empty*, ipb::RouteList* resp) override {
        auto* reactor = ctx->DefaultReactor();
        r_.List([reactor, resp](Result<std::vector<GatewayRoute>> r) {
            Finish(reactor, r, [resp](const std::vector<GatewayRoute>& list) {
                for (const auto& route : list) {
                    auto* out = resp->add_routes();
                    out->set_gateway_id(route.gateway_id);
                    out->set_region(route.region);
                    out->set_endpoint(route.endpoint);
                }
            });
        });
        return reactor;
    }

private:
    GatewayRouteStore& r_;
};

class SessionsService final : public ipb::Sessions::CallbackService {
public:
    explicit SessionsService(ConversationApi& s) : s_(s) {}

    Reactor* Resolve(grpc::CallbackServerContext* ctx, const ipb::ResolveRequest* req, ipb::ResolveReply* resp) override {
        auto* reactor = ctx->DefaultReactor();
        s_.Resolve(req->tenant_id(), req->user_id(), req->conversation_id(),
                   [reactor, resp](Result<ResolvedConversation> r) {
                       Finish(reactor, r, [resp](const ResolvedConversation& c) { ToProto(c, resp); });
                   });
        return reactor;
    }
    Reactor* MarkDirectCreated(grpc::CallbackServerContext* ctx, const ipb::MarkDirectCreatedRequest* req,
                               ipb::Empty*) override {
        auto* reactor = ctx->DefaultReactor();
        auto ref = ParseConversationId(req->conversation_id());
        if (!ref) {
            reactor->Finish(ToGrpc(ref.error()));
            return reactor;
        }
        s_.MarkDirectCreated(req->tenant_id(), *ref);
        reactor->Finish(grpc::Status::OK);
        return reactor;
    }
    Reactor* JoinRoom(grpc::CallbackServerContext* ctx, const ipb::RoomRequest* req,
                      ipb::ConversationSummary* resp) override {
        auto* reactor = ctx->DefaultReactor();
        s_.JoinRoom(FromProto(req->who()), req->room(), [reactor, resp](Result<ConversationSummary> r) {
            Finish(reactor, r, [resp](const ConversationSummary& c) {
                resp->set_conversation_id(c.conversation_id);
                resp->set_type(static_cast<int32_t>(c.type));
                resp->set_last_seq(c.last_seq);
            });
        });
        return reactor;
    }
    Reactor* LeaveRoom(grpc::CallbackServerContext* ctx, const ipb::RoomRequest* req, ipb::Empty*) override {
        auto* reactor = ctx->DefaultReactor();
        s_.LeaveRoom(FromProto(req->who()), req->room(), [reactor](Status s) { FinishStatus(reactor, s); });
        return reactor;
    }
    Reactor* SyncConversations(grpc::CallbackServerContext* ctx, const ipb::SyncConversationsRequest* req,
                               ipb::ConversationStates* resp) override {
        auto* reactor = ctx->DefaultReactor();
        std::map<std::string, uint64_t> known(req->known().begin(), req->known().end());
        s_.SyncConversations(FromProto(req->who()), std::move(known), req->include_all(),
                             [reactor, resp](Result<std::vector<ConversationStateView>> r) {
                                 Finish(reactor, r, [resp](const std::vector<ConversationStateView>& list) {
                                     for (const auto& c : list) {
                                         auto* out = resp->add_conversations();
                                         out->set_conversation_id(c.conversation_id);
                                         out->set_type(static_cast<int32_t>(c.type));
                                         out->set_last_seq(c.last_seq);
                                         out->set_acked_seq(c.acked_seq);
                                         out->set_known_seq(c.known_seq);
                                     }
                                 });
                             });
        return reactor;
    }
    Reactor* Ack(grpc::CallbackServerContext* ctx, const ipb::AckRequest* req, ipb::AckReply* resp) override {
        auto* reactor = ctx->DefaultReactor();
        s_.Ack(FromProto(req->who()), req->conversation_id(), req->seq(), [reactor, resp](Result<uint64_t> r) {
            Finish(reactor, r, [resp](uint64_t seq) { resp->set_seq(seq); });
        });
        return reactor;
    }
    Reactor* ManageGroup(grpc::CallbackServerContext* ctx, const ipb::GroupCommand* req, ipb::GroupReply* resp) override {
        auto* reactor = ctx->DefaultReactor();
        s_.ManageGroup(FromProto(*req), [reactor, resp](Result<GroupResult> r) {
            Finish(reactor, r, [resp](const GroupResult& g) {
                ToProto(g.event, resp->mutable_event());
                resp->set_duplicate(g.duplicate);
            });
        });
        return reactor;
    }
    Reactor* UpdateUserState(grpc::CallbackServerContext* ctx, const ipb::UserStateCommand* req,
                             ipb::UserStateReply* resp) override {
        auto* reactor = ctx->DefaultReactor();
        s_.UpdateUserState(FromProto(*req), [reactor, resp](Result<UserStateResult> r) {
            Finish(reactor, r, [resp](const UserStateResult& u) {
                resp->set_read_seq(u.read_seq);
                resp->set_pinned(u.settings.pinned);
                resp->set_muted(u.settings.muted);
            });
        });
        return reactor;
    }
    Reactor* ListConversations(grpc::CallbackServerContext* ctx, const ipb::ListConversationsRequest* req,
                               ipb::ConversationListPage* resp) override {
        auto* reactor = ctx->DefaultReactor();
        s_.ListConversations(FromProto(req->who()), req->page_token(), req->limit(),
                             [reactor, resp](Result<ConversationListPage> r) {
                                 Finish(reactor, r, [resp](const ConversationListPage& p) { ToProto(p, resp); });
                             });
        return reactor;
    }
    Reactor* GetMessage(grpc::CallbackServerContext* ctx, const ipb::GetMessageRequest* req,
                        ipb::MessageDetail* resp) override {
        auto* reactor = ctx->DefaultReactor();
        s_.GetMessage(FromProto(req->who()), req->conversation_id(), req->seq(), [reactor, resp](Result<MessageDetail> r) {
            Finish(reactor, r, [resp](const MessageDetail& d) { ToProto(d, resp); });
        });
        return reactor;
    }

private:
    ConversationApi& s_;
};

class MessagesService final : public ipb::Messages::CallbackService {
public:
    MessagesService(MessagingApi& m, BusCommitter* committer) : m_(m), committer_(committer) {}

    Reactor* Send(grpc::CallbackServerContext* ctx, const ipb::SendRequest* req, ipb::SendReply* resp) override {
        auto* reactor = ctx->DefaultReactor();
        SendCommand c;
        c.sender = FromProto(req->sender());
        c.gateway_id = req->gateway_id();
        c.connection_id = req->connection_id();
        c.conversation_id = req->conversation_id();
        c.client_msg_id = req->client_msg_id();
        c.text = req->text();
        c.kind = req->kind() == static_cast<int32_t>(MessageKind::kSystem)  ? MessageKind::kSystem
                 : req->kind() == static_cast<int32_t>(MessageKind::kEvent) ? MessageKind::kEvent
                                                                            : MessageKind::kText;
        c.check_membership = req->check_membership();
        if (req->has_event()) {
            c.event = FromProto(req->event());
        }
        c.mentions.assign(req->mentions().begin(), req->mentions().end());
        c.mention_all = req->mention_all();
        std::function<void(DeliveryStats)> on_delivered;
        if (req->want_delivery_stats()) {
            on_delivered = [resp](DeliveryStats s) {
                resp->mutable_stats()->set_devices(s.devices);
                resp->mutable_stats()->set_users(s.users);
            };
        }
        m_.Send(
            std::move(c),
            [reactor, resp](Result<SendReceipt> r) {
                Finish(reactor, r, [resp](const SendReceipt& receipt) {
                    resp->set_conversation_id(receipt.conversation_id);
                    resp->set_server_msg_id(receipt.server_msg_id);
                    resp->set_seq(receipt.seq);
                    resp->set_server_time_ms(receipt.server_time_ms);
                    resp->set_duplicate(receipt.duplicate);
                    resp->set_text(receipt.text);
                });
            },
            std::move(on_delivered));
        return reactor;
    }
    Reactor* SyncMessages(grpc::CallbackServerContext* ctx, const ipb::SyncMessagesRequest* req,
                          ipb::MessagePage* resp) override {
        auto* reactor = ctx->DefaultReactor();
        auto done = [reactor, resp](Result<MessagePage> r) {
            Finish(reactor, r, [resp](const MessagePage& page) {
                for (const auto& m : page.messages) {
                    ToProto(m, resp->add_messages());
                }
                resp->set_has_more(page.has_more);
                resp->set_last_seq(page.last_seq);
            });
        };
        if (req->who().user_id().empty()) {
            m_.ReadHistory(req->who().tenant_id(), req->conversation_id(), req->after_seq(), req->limit(), done);
        } else {
            m_.SyncMessages(FromProto(req->who()), req->conversation_id(), req->after_seq(), req->limit(), done);
        }
        return reactor;
    }
    Reactor* CompleteAppend(grpc::CallbackServerContext* ctx, const ipb::AppendOutcome* req, ipb::Empty*) override {
        auto* reactor = ctx->DefaultReactor();
        if (committer_ == nullptr) {
            reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "this orchestrator commits locally"));
            return reactor;
        }
        committer_->OnOutcome(*req);
        reactor->Finish(grpc::Status::OK);
        return reactor;
    }

private:
    MessagingApi& m_;
    BusCommitter* committer_;
};

class PushGrpcService final : public ipb::Push::CallbackService {
public:
    explicit PushGrpcService(PushApi& p) : p_(p) {}

    Reactor* Fanout(grpc::CallbackServerContext* ctx, const ipb::MessageCommitted* req,
                    ipb::DeliveryStats* resp) override {
        auto* reactor = ctx->DefaultReactor();
        p_.Fanout(std::make_shared<const MessageRecord>(FromProto(req->message())), FromProto(req->plan()),
                  [reactor, resp](DeliveryStats s) {
                      resp->set_devices(s.devices);
                      resp->set_users(s.users);
                      reactor->Finish(grpc::Status::OK);
                  });
        return reactor;
    }
    Reactor* Broadcast(grpc::CallbackServerContext* ctx, const ipb::Message* req, ipb::DeliveryStats* resp) override {
        auto* reactor = ctx->DefaultReactor();
        p_.Broadcast(std::make_shared<const MessageRecord>(FromProto(*req)), [reactor, resp](DeliveryStats s) {
            resp->set_devices(s.devices);
            resp->set_users(s.users);
            reactor->Finish(grpc::Status::OK);
        });
        return reactor;
    }
    Reactor* Kick(grpc::CallbackServerContext* ctx, const ipb::KickRequest* req, ipb::KickReply* resp) override {
        auto* reactor = ctx->DefaultReactor();
        std::vector<DeviceSession> devices;
        for (const auto& d : req->devices()) {
            devices.push_back(FromProto(d));
        }
        p_.Kick(std::move(devices), req->device_id(), req->reason(), [reactor, resp](Result<uint32_t> r) {
            Finish(reactor, r, [resp](uint32_t n) { resp->set_kicked(n); });
        });
        return reactor;
    }

private:
    PushApi& p_;
};

class DeliveryService final : public ipb::Delivery::CallbackService {
public:
    explicit DeliveryService(DeliverySink& g) : g_(g) {}

    Reactor* Deliver(grpc::CallbackServerContext* ctx, const ipb::DeliverRequest* req, ipb::Empty*) override {
        auto* reactor = ctx->DefaultReactor();
        const MessageRecord m = FromProto(req->message());
        std::vector<uint64_t> ids(req->connection_ids().begin(), req->connection_ids().end());
        g_.Deliver(m, ids, [reactor](Status s) { FinishStatus(reactor, s); });
        return reactor;
    }
    Reactor* Disconnect(grpc::CallbackServerContext* ctx, const ipb::DisconnectRequest* req, ipb::Empty*) override {
        g_.Disconnect(req->connection_id(), req->reason(), req->message());
        auto* reactor = ctx->DefaultReactor();
        reactor->Finish(grpc::Status::OK);
        return reactor;
    }

private:
    DeliverySink& g_;
};

}  // namespace

struct RpcServer::Impl {
    std::vector<std::unique_ptr<grpc::Service>> services;
    std::unique_ptr<grpc::Server> server;
    int port = 0;
};

RpcServer::RpcServer() : impl_(std::make_unique<Impl>()) {}
RpcServer::~RpcServer() { Stop(); }

void RpcServer::AddPresence(PresenceRegistry& p) { impl_->services.push_back(std::make_unique<PresenceService>(p)); }
void RpcServer::AddRoutes(GatewayRouteStore& r) { impl_->services.push_back(std::make_unique<RoutesService>(r)); }
void RpcServer::AddSessions(ConversationApi& s) { impl_->services.push_back(std::make_unique<SessionsService>(s)); }
void RpcServer::AddMessages(MessagingApi& m, BusCommitter* c) {
    impl_->services.push_back(std::make_unique<MessagesService>(m, c));
}
namespace {

class HookEngineService final : public hooks::hpb::HookEngine::CallbackService {
public:
    explicit HookEngineService(HookApi& h) : h_(h) {}

    Reactor* PreSend(grpc::CallbackServerContext* ctx, const hooks::hpb::HookEvent* req,
                     hooks::hpb::PreSendReply* resp) override {
        auto* reactor = ctx->DefaultReactor();
        h_.PreSend(hooks::FromProto(*req), [reactor, resp](Result<PreSendVerdict> r) {
            Finish(reactor, r, [resp](const PreSendVerdict& v) { hooks::ToProto(v, resp); });
        });
        return reactor;
    }
    Reactor* Publish(grpc::CallbackServerContext* ctx, const hooks::hpb::HookEvent* req, hooks::hpb::EventAck*) override {
        h_.Publish(hooks::FromProto(*req));
        auto* reactor = ctx->DefaultReactor();
        reactor->Finish(grpc::Status::OK);
        return reactor;
    }
    Reactor* ActivePoints(grpc::CallbackServerContext* ctx, const hooks::hpb::EventAck*,
                          hooks::hpb::ActivePointsReply* resp) override {
        for (int i = 0; i < kHookPointCount; ++i) {
            if (h_.Wants(static_cast<HookPoint>(i))) {
                resp->add_points(std::string(HookPointName(static_cast<HookPoint>(i))));
            }
        }
        auto* reactor = ctx->DefaultReactor();
        reactor->Finish(grpc::Status::OK);
        return reactor;
    }
    Reactor* PutHook(grpc::CallbackServerContext* ctx, const hooks::hpb::PutHookRequest* req,
                     hooks::hpb::EventAck*) override {
        auto* reactor = ctx->DefaultReactor();
        auto spec = hooks::HookFromJson(req->spec_json());
        if (!spec) {
            reactor->Finish(ToGrpc(spec.error()));
            return reactor;
        }
        h_.PutHook(req->tenant_id(), std::move(*spec), [reactor](Status s) { FinishStatus(reactor, s); });
        return reactor;
    }
    Reactor* DeleteHook(grpc::CallbackServerContext* ctx, const hooks::hpb::DeleteHookRequest* req,
                        hooks::hpb::EventAck*) override {
        auto* reactor = ctx->DefaultReactor();
        h_.DeleteHook(req->tenant_id(), req->name(), [reactor](Status s) { FinishStatus(reactor, s); });
        return reactor;
    }
    Reactor* ListHooks(grpc::CallbackServerContext* ctx, const hooks::hpb::ListHooksRequest* req,
                       hooks::hpb::ListHooksReply* resp) override {
        auto* reactor = ctx->DefaultReactor();
        h_.ListHooks(req->tenant_id(), [reactor, resp](Result<std::vector<HookSpec>> r) {
            Finish(reactor, r, [resp](const std::vector<HookSpec>& list) {
                for (const auto& spec : list) {
                    resp->add_spec_json(hooks::HookToJson(spec));
                }
            });
        });
        return reactor;
    }

private:
    HookApi& h_;
};

}  // namespace

void RpcServer::AddHookEngine(HookApi& h) { impl_->services.push_back(std::make_unique<HookEngineService>(h)); }

void RpcServer::AddPush(PushApi& p) { impl_->services.push_back(std::make_unique<PushGrpcService>(p)); }
void RpcServer::AddDelivery(DeliverySink& g) { impl_->services.push_back(std::make_unique<DeliveryService>(g)); }
void RpcServer::AddService(std::unique_ptr<grpc::Service> service) { impl_->services.push_back(std::move(service)); }

Status RpcServer::Start(const std::string& address, uint16_t port) {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    const std::string target = address + ":" + std::to_string(port);
    builder.AddListeningPort(target, grpc::InsecureServerCredentials(), &impl_->port);
    // No SO_REUSEPORT: a second instance on a taken port must fail to start, not share it silently.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    // Accept the clients' keepalive pings (every 10 s, see rpc/clients.cpp) instead of answering them
    // with GOAWAY "too_many_pings".
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 5000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    for (auto& s : impl_->services) {
        builder.RegisterService(s.get());
    }
    impl_->server = builder.BuildAndStart();
    if (!impl_->server || impl_->port == 0) {
        impl_->server.reset();
        return MakeError(Errc::kUnavailable, "listen_failed", "cannot serve gRPC on " + target + " (is the port in use?)");
    }
    impl_->server->GetHealthCheckService()->SetServingStatus(true);
    return {};
}

uint16_t RpcServer::port() const { return static_cast<uint16_t>(impl_->port); }

void RpcServer::SetServing(bool serving) {
    if (impl_->server) {
        impl_->server->GetHealthCheckService()->SetServingStatus(serving);
    }
}

void RpcServer::Stop() {
    if (impl_->server) {
        impl_->server->GetHealthCheckService()->SetServingStatus(false);
        impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
        impl_->server->Wait();
        impl_->server.reset();
    }
}

}  // namespace flare::rpc
