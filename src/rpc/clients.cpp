#include "rpc/clients.hpp"

#include "flare/hooks/v1/hooks.grpc.pb.h"
#include "hooks/hook_config.hpp"
#include "hooks/hook_proto.hpp"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <atomic>
#include <thread>
#include <unordered_map>

#include "flare/internal/v1/internal.grpc.pb.h"
#include "rpc/convert.hpp"
#include "rpc/status.hpp"

namespace flare::rpc {
namespace {

// Every channel's service config:
// - retries on UNAVAILABLE for the calls that are safe to repeat (all but Push.Broadcast and Delivery,
//   whose repeats could show a live-only broadcast twice);
// - client-side health checking: a backend whose grpc.health.v1 says NOT_SERVING (a draining process)
//   gets no new calls while another instance of the service is up.
constexpr const char* kServiceConfig = R"({
  "healthCheckConfig": {"serviceName": ""},
  "methodConfig": [{
    "name": [{"service": "flare.internal.v1.Presence"}, {"service": "flare.internal.v1.Routes"},
             {"service": "flare.internal.v1.Sessions"}, {"service": "flare.internal.v1.Messages"},
             {"service": "flare.internal.v1.Push", "method": "Kick"}],
    "retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.05s", "maxBackoff": "0.5s",
                    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
  }]
})";

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& endpoint) {
    grpc::ChannelArguments args;
    args.SetServiceConfigJSON(kServiceConfig);
    // A restarted service is found again within about a second (the default backoff grows to 120 s).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10'000);
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5'000);
    args.SetLoadBalancingPolicyName("round_robin");
    return grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
}

// One unary call through the callback API: keeps context, request and response alive until done.
// `done(status, response)` runs on a gRPC thread.
template <typename Req, typename Resp, typename Method, typename Done>
void Call(Method method, Req request, std::chrono::milliseconds deadline, Done done) {
    struct State {
        grpc::ClientContext ctx;
        Req req;
        Resp resp;
    };
    auto st = std::make_shared<State>();
    st->req = std::move(request);
    st->ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    method(&st->ctx, &st->req, &st->resp, [st, done = std::move(done)](grpc::Status s) mutable { done(s, st->resp); });
}

auto DeviceListDone(Callback<std::vector<DeviceSession>> done, const char* what) {
    return [done = std::move(done), what](const grpc::Status& s, const ipb::DeviceList& r) {
        if (!s.ok()) {
            return done(FromGrpc(s, what));
        }
        done(FromProto(r));
    };
}

auto StatusDone(StatusCallback done, const char* what) {
    return [done = std::move(done), what](const grpc::Status& s, const ipb::Empty&) {
        done(s.ok() ? Status{} : Status{FromGrpc(s, what)});
    };
}

#define FLARE_RPC(stub, Method) \
    [stub = stub_.get()](auto* ctx, auto* req, auto* resp, auto cb) { stub->async()->Method(ctx, req, resp, std::move(cb)); }

// ------------------------------------------------------------------------------------------ presence

class PresenceClient final : public PresenceRegistry {
public:
    explicit PresenceClient(const ChannelOptions& o)
        : stub_(ipb::Presence::NewStub(MakeChannel(o.endpoint))), deadline_(o.deadline) {}

    void Register(DeviceSession session, Callback<std::optional<DeviceSession>> done) override {
        ipb::DeviceSession req;
        ToProto(session, &req);
        Call<ipb::DeviceSession, ipb::RegisterReply>(
            FLARE_RPC(stub_, Register), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const ipb::RegisterReply& r) {
                if (!s.ok()) {
                    return done(FromGrpc(s, "signaling-online Register"));
                }
                std::optional<DeviceSession> previous;
                if (r.replaced()) {
                    previous = FromProto(r.previous());
                }
                done(std::move(previous));
            });
    }

    void Unregister(std::string tenant_id, std::string user_id, std::string device_id, std::string gateway_id,
                    uint64_t connection_id) override {
        ipb::UnregisterRequest req;
        req.set_tenant_id(std::move(tenant_id));
        req.set_user_id(std::move(user_id));
        req.set_device_id(std::move(device_id));
        req.set_gateway_id(std::move(gateway_id));
        req.set_connection_id(connection_id);
        Call<ipb::UnregisterRequest, ipb::Empty>(FLARE_RPC(stub_, Unregister), std::move(req), deadline_,
                                                 [](const grpc::Status& s, const ipb::Empty&) {
                                                     if (!s.ok()) {  // the record expires by its TTL
                                                         spdlog::debug("presence: unregister failed: {}",
                                                                       s.error_message());
                                                     }
                                                 });
    }

    void Lookup(std::string tenant_id, std::shared_ptr<const std::vector<std::string>> user_ids,
                Callback<std::vector<DeviceSession>> done) override {
        ipb::LookupRequest req;
        req.set_tenant_id(std::move(tenant_id));
        if (user_ids) {
            req.mutable_user_ids()->Reserve(static_cast<int>(user_ids->size()));
            for (const auto& u : *user_ids) {
                req.add_user_ids(u);
            }
        }
        Call<ipb::LookupRequest, ipb::DeviceList>(FLARE_RPC(stub_, Lookup), std::move(req), deadline_,
                                                  DeviceListDone(std::move(done), "signaling-online Lookup"));
    }

    void ListTenant(std::string tenant_id, Callback<std::vector<DeviceSession>> done) override {
        ipb::ListTenantRequest req;
        req.set_tenant_id(std::move(tenant_id));
        Call<ipb::ListTenantRequest, ipb::DeviceList>(FLARE_RPC(stub_, ListTenant), std::move(req), deadline_,
                                                      DeviceListDone(std::move(done), "signaling-online ListTenant"));
    }

    void Refresh(std::vector<DeviceSession> sessions, StatusCallback done) override {
        ipb::DeviceList req;
        ToProto(sessions, &req);
        Call<ipb::DeviceList, ipb::Empty>(FLARE_RPC(stub_, Refresh), std::move(req), deadline_,
                                          [done = std::move(done)](const grpc::Status& s, const ipb::Empty&) {
                                              done(s.ok() ? Status{} : Status{FromGrpc(s, "signaling-online Refresh")});
                                          });
    }

private:
    std::unique_ptr<ipb::Presence::Stub> stub_;
    std::chrono::milliseconds deadline_;
};

// ------------------------------------------------------------------------------------------- routes

GatewayRoute RouteFromProto(const ipb::GatewayRoute& r) { return GatewayRoute{r.gateway_id(), r.region(), r.endpoint()}; }

class RouteClient final : public GatewayRouteStore {
public:
    explicit RouteClient(const ChannelOptions& o)
        : stub_(ipb::Routes::NewStub(MakeChannel(o.endpoint))), deadline_(o.deadline) {}

    void Upsert(GatewayRoute route, std::chrono::milliseconds ttl, StatusCallback done) override {
        ipb::UpsertRouteRequest req;
        req.mutable_route()->set_gateway_id(route.gateway_id);
        req.mutable_route()->set_region(route.region);
        req.mutable_route()->set_endpoint(route.endpoint);
        req.set_ttl_ms(static_cast<uint32_t>(ttl.count()));
        Call<ipb::UpsertRouteRequest, ipb::Empty>(FLARE_RPC(stub_, Upsert), std::move(req), deadline_,
                                                  StatusDone(std::move(done), "signaling-route Upsert"));
    }
    void Remove(std::string gateway_id, StatusCallback done) override {
        ipb::GatewayIdRequest req;
        req.set_gateway_id(std::move(gateway_id));
        Call<ipb::GatewayIdRequest, ipb::Empty>(FLARE_RPC(stub_, Remove), std::move(req), deadline_,
                                                StatusDone(std::move(done), "signaling-route Remove"));
    }
    void Get(std::string gateway_id, Callback<std::optional<GatewayRoute>> done) override {
        ipb::GatewayIdRequest req;
        req.set_gateway_id(std::move(gateway_id));
        Call<ipb::GatewayIdRequest, ipb::GetRouteReply>(
            FLARE_RPC(stub_, Get), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const ipb::GetRouteReply& r) {
                if (!s.ok()) {
                    return done(FromGrpc(s, "signaling-route Get"));
                }
                std::optional<GatewayRoute> route;
                if (r.found()) {
                    route = RouteFromProto(r.route());
                }
                done(std::move(route));
            });
    }
    void List(Callback<std::vector<GatewayRoute>> done) override {
        Call<ipb::Empty, ipb::RouteList>(FLARE_RPC(stub_, List), ipb::Empty{}, deadline_,
                                         [done = std::move(done)](const grpc::Status& s, const ipb::RouteList& r) {
                                             if (!s.ok()) {
                                                 return done(FromGrpc(s, "signaling-route List"));
                                             }
                                             std::vector<GatewayRoute> out;
                                             for (const auto& route : r.routes()) {
                                                 out.push_back(RouteFromProto(route));
                                             }
                                             done(std::move(out));
                                         });
    }

private:
    std::unique_ptr<ipb::Routes::Stub> stub_;
    std::chrono::milliseconds deadline_;
};

// ------------------------------------------------------------------------------------------ session

class SessionClient final : public ConversationApi {
public:
    explicit SessionClient(const ChannelOptions& o)
        : stub_(ipb::Sessions::NewStub(MakeChannel(o.endpoint))), deadline_(o.deadline) {}

    void Resolve(std::string tenant_id, std::string user_id, std::string conversation_id,
                 Callback<ResolvedConversation> done) override {
        ipb::ResolveRequest req;
        req.set_tenant_id(std::move(tenant_id));
        req.set_user_id(std::move(user_id));
        req.set_conversation_id(std::move(conversation_id));
        Call<ipb::ResolveRequest, ipb::ResolveReply>(
            FLARE_RPC(stub_, Resolve), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const ipb::ResolveReply& r) {
                if (!s.ok()) {
                    return done(FromGrpc(s, "session Resolve"));
                }
                done(FromProto(r));
            });
    }

    void MarkDirectCreated(const std::string& tenant_id, const ConversationRef& ref) override {
        ipb::MarkDirectCreatedRequest req;
        req.set_tenant_id(tenant_id);
        req.set_conversation_id(ref.id);
        Call<ipb::MarkDirectCreatedRequest, ipb::Empty>(FLARE_RPC(stub_, MarkDirectCreated), std::move(req), deadline_,
                                                        [](const grpc::Status&, const ipb::Empty&) {});
    }

    void JoinRoom(const Principal& who, std::string room, Callback<ConversationSummary> done) override {
        ipb::RoomRequest req;
        ToProto(who, req.mutable_who());
        req.set_room(std::move(room));
        Call<ipb::RoomRequest, ipb::ConversationSummary>(
            FLARE_RPC(stub_, JoinRoom), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const ipb::ConversationSummary& r) {
                if (!s.ok()) {
                    return done(FromGrpc(s, "session JoinRoom"));
                }
                done(ConversationSummary{r.conversation_id(), static_cast<ConversationType>(r.type()), r.last_seq()});
            });
    }

    void LeaveRoom(const Principal& who, std::string room, StatusCallback done) override {
        ipb::RoomRequest req;
        ToProto(who, req.mutable_who());
        req.set_room(std::move(room));
        Call<ipb::RoomRequest, ipb::Empty>(FLARE_RPC(stub_, LeaveRoom), std::move(req), deadline_,
                                           [done = std::move(done)](const grpc::Status& s, const ipb::Empty&) {
                                               done(s.ok() ? Status{} : Status{FromGrpc(s, "session LeaveRoom")});
                                           });
    }

    void SyncConversations(const Principal& who, std::map<std::string, uint64_t> known, bool include_all,
                           Callback<std::vector<ConversationStateView>> done) override {
        ipb::SyncConversationsRequest req;
        ToProto(who, req.mutable_who());
        for (const auto& [conv, seq] : known) {
            (*req.mutable_known())[conv] = seq;
        }
        req.set_include_all(include_all);
        Call<ipb::SyncConversationsRequest, ipb::ConversationStates>(
            FLARE_RPC(stub_, SyncConversations), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const ipb::ConversationStates& r) {
                if (!s.ok()) {
                    return done(FromGrpc(s, "session SyncConversations"));
                }
                std::vector<ConversationStateView> out;
                out.reserve(static_cast<size_t>(r.conversations_size()));
                for (const auto& c : r.conversations()) {
                    out.push_back(ConversationStateView{c.conversation_id(), static_cast<ConversationType>(c.type()),
                                                        c.last_seq(), c.acked_seq(), c.known_seq()});
                }
                done(std::move(out));
            });
    }

    void Ack(const Principal& who, std::string conversation_id, uint64_t seq, Callback<uint64_t> done) override {
        ipb::AckRequest req;
        ToProto(who, req.mutable_who());
        req.set_conversation_id(std::move(conversation_id));
        req.set_seq(seq);
        Call<ipb::AckRequest, ipb::AckReply>(FLARE_RPC(stub_, Ack), std::move(req), deadline_,
                                             [done = std::move(done)](const grpc::Status& s, const ipb::AckReply& r) {
                                                 if (!s.ok()) {
                                                     return done(FromGrpc(s, "session Ack"));
                                                 }
                                                 done(r.seq());
                                             });
    }

    void ManageGroup(GroupCommand command, Callback<GroupResult> done) override {
        ipb::GroupCommand req;
        ToProto(command, &req);
        Call<ipb::GroupCommand, ipb::GroupReply>(
            FLARE_RPC(stub_, ManageGroup), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const ipb::GroupReply& r) {
                if (!s.ok()) {
                    return done(FromGrpc(s, "session ManageGroup"));
                }
                done(GroupResult{FromProto(r.event()), r.duplicate()});
            });
    }

    void UpdateUserState(UserStateCommand command, Callback<UserStateResult> done) override {
        ipb::UserStateCommand req;
        ToProto(command, &req);
        Call<ipb::UserStateCommand, ipb::UserStateReply>(
            FLARE_RPC(stub_, UpdateUserState), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const ipb::UserStateReply& r) {
                if (!s.ok()) {
                    return done(FromGrpc(s, "session UpdateUserState"));
                }
                UserStateResult out;
                out.read_seq = r.read_seq();
                out.settings = UserSettings{r.pinned(), r.muted()};
                done(out);
            });
    }

    void ListConversations(const Principal& who, std::string page_token, uint32_t limit,
                           Callback<ConversationListPage> done) override {
        ipb::ListConversationsRequest req;
        ToProto(who, req.mutable_who());
        req.set_page_token(std::move(page_token));
        req.set_limit(limit);
        Call<ipb::ListConversationsRequest, ipb::ConversationListPage>(
            FLARE_RPC(stub_, ListConversations), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const ipb::ConversationListPage& r) {
                if (!s.ok()) {
                    return done(FromGrpc(s, "session ListConversations"));
                }
                done(FromProto(r));
            });
    }

    void GetMessage(const Principal& who, std::string conversation_id, uint64_t seq,
                    Callback<MessageDetail> done) override {
        ipb::GetMessageRequest req;
        ToProto(who, req.mutable_who());
        req.set_conversation_id(std::move(conversation_id));
        req.set_seq(seq);
        Call<ipb::GetMessageRequest, ipb::MessageDetail>(
            FLARE_RPC(stub_, GetMessage), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const ipb::MessageDetail& r) {
                if (!s.ok()) {
                    return done(FromGrpc(s, "session GetMessage"));
                }
                done(FromProto(r));
            });
    }

private:
    std::unique_ptr<ipb::Sessions::Stub> stub_;
    std::chrono::milliseconds deadline_;
};

// -------------------------------------------------------------------------------------- messaging

// Shared with every call it has in flight (they hold it), so a call that completes after the client's
// owner let go finds its state.
class MessagingClient final : public MessagingApi, public std::enable_shared_from_this<MessagingClient> {
public:
    explicit MessagingClient(const ChannelOptions& o)
        : stub_(ipb::Messages::NewStub(MakeChannel(o.endpoint))),
          // A send waits for storage-writer's commit: allow it more than the plain calls.
          deadline_(o.deadline), send_deadline_(std::max(o.deadline * 2, std::chrono::milliseconds(10'000))) {}

    void Send(SendCommand command, Callback<SendReceipt> done,
              std::function<void(DeliveryStats)> on_delivered) override {
        Pending p{std::move(command), std::move(done), std::move(on_delivered)};
        if (p.command.connection_id == 0) {
            return Forward(std::move(p), "");  // business calls: no order to keep
        }
        // One send in flight per connection: the next is forwarded when the previous one is answered.
        const std::string key = p.command.gateway_id + '\x1f' + std::to_string(p.command.connection_id);
        {
            std::lock_guard lock(mu_);
            auto& q = queues_[key];
            q.push_back(std::move(p));
            if (q.size() > 1) {
                return;
            }
        }
        ForwardHead(key);
    }

    void ReadHistory(std::string tenant_id, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                     Callback<MessagePage> done) override {
        SyncMessages(Principal{std::move(tenant_id), "", ""}, std::move(conversation_id), after_seq, limit,
                     std::move(done));
    }

    void SyncMessages(const Principal& who, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                      Callback<MessagePage> done) override {
        ipb::SyncMessagesRequest req;
        ToProto(who, req.mutable_who());
        req.set_conversation_id(std::move(conversation_id));
        req.set_after_seq(after_seq);
        req.set_limit(limit);
        Call<ipb::SyncMessagesRequest, ipb::MessagePage>(
            FLARE_RPC(stub_, SyncMessages), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const ipb::MessagePage& r) {
                if (!s.ok()) {
                    return done(FromGrpc(s, "message-orchestrator SyncMessages"));
                }
                MessagePage page;
                page.has_more = r.has_more();
                page.last_seq = r.last_seq();
                page.messages.reserve(static_cast<size_t>(r.messages_size()));
                for (const auto& m : r.messages()) {
                    page.messages.push_back(FromProto(m));
                }
                done(std::move(page));
            });
    }

private:
    struct Pending {
        SendCommand command;
        Callback<SendReceipt> done;
        std::function<void(DeliveryStats)> on_delivered;
    };

    void ForwardHead(const std::string& key) {
        Pending p;
        {
            std::lock_guard lock(mu_);
            auto& q = queues_[key];
            p.command = q.front().command;  // the entry stays queued (it marks "in flight") until answered
            p.done = std::move(q.front().done);
            p.on_delivered = std::move(q.front().on_delivered);
        }
        Forward(std::move(p), key);
    }

    void Forward(Pending p, std::string key) {
        ipb::SendRequest req;
        const SendCommand& c = p.command;
        ToProto(c.sender, req.mutable_sender());
        req.set_gateway_id(c.gateway_id);
        req.set_connection_id(c.connection_id);
        req.set_conversation_id(c.conversation_id);
        req.set_client_msg_id(c.client_msg_id);
        req.set_text(c.text);
        req.set_kind(static_cast<int32_t>(c.kind));
        req.set_check_membership(c.check_membership);
        if (c.event.type != EventType::kNone) {
            ToProto(c.event, req.mutable_event());
        }
        for (const auto& u : c.mentions) {
            req.add_mentions(u);
        }
        req.set_mention_all(c.mention_all);
        req.set_want_delivery_stats(static_cast<bool>(p.on_delivered));
        ++in_flight_;
        Call<ipb::SendRequest, ipb::SendReply>(
            FLARE_RPC(stub_, Send), std::move(req), send_deadline_,
            [this, self = shared_from_this(), key = std::move(key), done = std::move(p.done),
             on_delivered = std::move(p.on_delivered)](const grpc::Status& s, const ipb::SendReply& r) {
                struct Leave {
                    std::atomic<size_t>& n;
                    ~Leave() { --n; }
                } leave{in_flight_};
                if (!s.ok()) {
                    Error err = FromGrpc(s, "message-orchestrator Send");
                    done(err);
                    if (!key.empty() && (err.code == Errc::kUnavailable || err.code == Errc::kDeadlineExceeded)) {
                        // The sends queued behind would wait out the same outage one by one: fail them now,
                        // in order, so the client can retry them (same client_msg_id) in order.
                        std::deque<Pending> rest;
                        {
                            std::lock_guard lock(mu_);
                            auto it = queues_.find(key);
                            it->second.pop_front();
                            rest.swap(it->second);
                            queues_.erase(it);
                        }
                        for (auto& q : rest) {
                            q.done(err);
                        }
                        return;
                    }
                } else {
                    if (on_delivered) {
                        on_delivered(DeliveryStats{r.stats().devices(), r.stats().users()});
                    }
                    done(SendReceipt{r.conversation_id(), r.server_msg_id(), r.seq(), r.server_time_ms(),
                                     r.duplicate(), r.text()});
                }
                if (key.empty()) {
                    return;
                }
                bool more = false;
                {
                    std::lock_guard lock(mu_);
                    auto it = queues_.find(key);
                    it->second.pop_front();
                    more = !it->second.empty();
                    if (!more) {
                        queues_.erase(it);
                    }
                }
                if (more) {
                    ForwardHead(key);
                }
            });
    }

public:
    size_t in_flight() const { return in_flight_.load(); }

private:
    std::unique_ptr<ipb::Messages::Stub> stub_;
    std::chrono::milliseconds deadline_, send_deadline_;
    std::mutex mu_;
    std::unordered_map<std::string, std::deque<Pending>> queues_;
    std::atomic<size_t> in_flight_{0};
};

// What MakeMessagingClient hands out: the owner's handle on the shared client.
class MessagingHandle final : public MessagingApi {
public:
    explicit MessagingHandle(const ChannelOptions& o) : client_(std::make_shared<MessagingClient>(o)) {}
    void Send(SendCommand command, Callback<SendReceipt> done,
              std::function<void(DeliveryStats)> on_delivered) override {
        client_->Send(std::move(command), std::move(done), std::move(on_delivered));
    }
    void ReadHistory(std::string tenant_id, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                     Callback<MessagePage> done) override {
        client_->ReadHistory(std::move(tenant_id), std::move(conversation_id), after_seq, limit, std::move(done));
    }
    void SyncMessages(const Principal& who, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                      Callback<MessagePage> done) override {
        client_->SyncMessages(who, std::move(conversation_id), after_seq, limit, std::move(done));
    }
    size_t in_flight() const { return client_->in_flight(); }

private:
    std::shared_ptr<MessagingClient> client_;
};

// --------------------------------------------------------------------------------------------- push

class PushClient final : public PushApi {
public:
    explicit PushClient(const ChannelOptions& o)
        : stub_(ipb::Push::NewStub(MakeChannel(o.endpoint))), deadline_(o.deadline) {}

    void Fanout(std::shared_ptr<const MessageRecord> message, FanoutPlan plan,
                std::function<void(DeliveryStats)> done) override {
        ipb::MessageCommitted req;
        ToProto(*message, req.mutable_message());
        ToProto(plan, req.mutable_plan());
        Call<ipb::MessageCommitted, ipb::DeliveryStats>(
            FLARE_RPC(stub_, Fanout), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const ipb::DeliveryStats& r) {
                if (done) {
                    done(s.ok() ? DeliveryStats{r.devices(), r.users()} : DeliveryStats{});
                }
            });
    }

    void Broadcast(std::shared_ptr<const MessageRecord> message, std::function<void(DeliveryStats)> done) override {
        ipb::Message req;
        ToProto(*message, &req);
        Call<ipb::Message, ipb::DeliveryStats>(FLARE_RPC(stub_, Broadcast), std::move(req), deadline_,
                                               [done = std::move(done)](const grpc::Status& s,
                                                                        const ipb::DeliveryStats& r) {
                                                   if (!s.ok()) {
                                                       spdlog::warn("push-server Broadcast failed: {}",
                                                                    s.error_message());
                                                   }
                                                   done(s.ok() ? DeliveryStats{r.devices(), r.users()}
                                                               : DeliveryStats{});
                                               });
    }

    void Kick(std::vector<DeviceSession> devices, std::string device_id, std::string reason,
              Callback<uint32_t> done) override {
        ipb::KickRequest req;
        for (const auto& d : devices) {
            ToProto(d, req.add_devices());
        }
        req.set_device_id(std::move(device_id));
        req.set_reason(std::move(reason));
        Call<ipb::KickRequest, ipb::KickReply>(FLARE_RPC(stub_, Kick), std::move(req), deadline_,
                                               [done = std::move(done)](const grpc::Status& s, const ipb::KickReply& r) {
                                                   if (!s.ok()) {
                                                       return done(FromGrpc(s, "push-server Kick"));
                                                   }
                                                   done(r.kicked());
                                               });
    }

private:
    std::unique_ptr<ipb::Push::Stub> stub_;
    std::chrono::milliseconds deadline_;
};

// ---------------------------------------------------------------------------------- remote gateway

class RemoteGatewaySink final : public DeliverySink {
public:
    RemoteGatewaySink(std::string gateway_id, std::string endpoint, std::chrono::milliseconds deadline)
        : gateway_id_(std::move(gateway_id)), deadline_(deadline) {
        SetEndpoint(std::move(endpoint));
    }

    void SetEndpoint(std::string endpoint) {
        std::lock_guard lock(mu_);
        if (endpoint == endpoint_) {
            return;
        }
        endpoint_ = std::move(endpoint);
        stub_ = ipb::Delivery::NewStub(MakeChannel(endpoint_));
    }

    void Deliver(const MessageRecord& message, std::span<const uint64_t> connection_ids,
                 StatusCallback done) override {
        ipb::DeliverRequest req;
        ToProto(message, req.mutable_message());
        req.mutable_connection_ids()->Add(connection_ids.begin(), connection_ids.end());
        std::shared_ptr<ipb::Delivery::Stub> stub = Stub();
        Call<ipb::DeliverRequest, ipb::Empty>(
            [stub](auto* ctx, auto* r, auto* resp, auto cb) { stub->async()->Deliver(ctx, r, resp, std::move(cb)); },
            std::move(req), deadline_, [done = std::move(done), id = gateway_id_](const grpc::Status& s, const ipb::Empty&) {
                if (!s.ok()) {
                    spdlog::warn("push: gateway {} did not take a delivery: {}", id, s.error_message());
                }
                if (done) {
                    done(s.ok() ? Status{} : Status{FromGrpc(s, "access-gateway Deliver")});
                }
            });
    }

    void Disconnect(uint64_t connection_id, std::string reason, std::string message) override {
        ipb::DisconnectRequest req;
        req.set_connection_id(connection_id);
        req.set_reason(std::move(reason));
        req.set_message(std::move(message));
        std::shared_ptr<ipb::Delivery::Stub> stub = Stub();
        Call<ipb::DisconnectRequest, ipb::Empty>(
            [stub](auto* ctx, auto* r, auto* resp, auto cb) { stub->async()->Disconnect(ctx, r, resp, std::move(cb)); },
            std::move(req), deadline_, [](const grpc::Status&, const ipb::Empty&) {});
    }

private:
    std::shared_ptr<ipb::Delivery::Stub> Stub() {
        std::lock_guard lock(mu_);
        return stub_;
    }
    std::string gateway_id_;
    std::chrono::milliseconds deadline_;
    std::mutex mu_;
    std::string endpoint_;
    std::shared_ptr<ipb::Delivery::Stub> stub_;
};

}  // namespace

std::unique_ptr<PresenceRegistry> MakePresenceClient(const ChannelOptions& o) {
    return std::make_unique<PresenceClient>(o);
}
std::unique_ptr<GatewayRouteStore> MakeRouteClient(const ChannelOptions& o) { return std::make_unique<RouteClient>(o); }
std::unique_ptr<ConversationApi> MakeSessionClient(const ChannelOptions& o) {
    return std::make_unique<SessionClient>(o);
}
std::unique_ptr<MessagingApi> MakeMessagingClient(const ChannelOptions& o) {
    return std::make_unique<MessagingHandle>(o);
}

bool WaitForSends(MessagingApi& client, std::chrono::milliseconds patience) {
    auto* h = dynamic_cast<MessagingHandle*>(&client);
    if (h == nullptr) {
        return true;
    }
    const auto deadline = std::chrono::steady_clock::now() + patience;
    while (h->in_flight() > 0) {
        if (std::chrono::steady_clock::now() >= deadline) {
            return false;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));  // shutdown only
    }
    return true;
}
std::unique_ptr<PushApi> MakePushClient(const ChannelOptions& o) { return std::make_unique<PushClient>(o); }

// ------------------------------------------------------------------------------------ hook engine

namespace {

// The hook-engine service seen as the HookApi. Which points have hooks is polled every second, so
// the callers skip building events nobody wants (and a hook added through the business API takes
// effect within about a second).
class HookClient final : public HookApi {
public:
    explicit HookClient(const ChannelOptions& o)
        : stub_(hooks::hpb::HookEngine::NewStub(MakeChannel(o.endpoint))), deadline_(o.deadline) {
        Poll();
        poller_ = std::thread([this] {
            std::unique_lock lock(mu_);
            while (!stop_) {
                cv_.wait_for(lock, std::chrono::seconds(1));
                if (stop_) {
                    break;
                }
                lock.unlock();
                Poll();
                lock.lock();
            }
        });
    }
    ~HookClient() override {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        poller_.join();
    }

    void PreSend(HookEvent event, Callback<PreSendVerdict> done) override {
        hooks::hpb::HookEvent req;
        hooks::ToProto(event, &req);
        // Long enough for a chain of hooks; each hook has its own timeout inside the engine.
        Call<hooks::hpb::HookEvent, hooks::hpb::PreSendReply>(
            FLARE_RPC(stub_, PreSend), std::move(req), std::chrono::milliseconds(10'000),
            [done = std::move(done)](const grpc::Status& s, const hooks::hpb::PreSendReply& r) {
                if (!s.ok()) {
                    spdlog::warn("hook-engine PreSend failed ({}): the message is allowed", s.error_message());
                    return done(FromGrpc(s, "hook-engine PreSend"));
                }
                done(hooks::FromProto(r));
            });
    }
    void Publish(HookEvent event) override {
        hooks::hpb::HookEvent req;
        hooks::ToProto(event, &req);
        Call<hooks::hpb::HookEvent, hooks::hpb::EventAck>(FLARE_RPC(stub_, Publish), std::move(req), deadline_,
                                                          [](const grpc::Status& s, const hooks::hpb::EventAck&) {
                                                              if (!s.ok()) {
                                                                  spdlog::warn("hook-engine Publish failed: {}",
                                                                               s.error_message());
                                                              }
                                                          });
    }
    bool Wants(HookPoint point) const override { return (active_.load() & (1u << static_cast<int>(point))) != 0; }

    void PutHook(std::string tenant_id, HookSpec spec, StatusCallback done) override {
        hooks::hpb::PutHookRequest req;
        req.set_tenant_id(std::move(tenant_id));
        req.set_spec_json(hooks::HookToJson(spec));
        Call<hooks::hpb::PutHookRequest, hooks::hpb::EventAck>(
            FLARE_RPC(stub_, PutHook), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const hooks::hpb::EventAck&) {
                done(s.ok() ? Status{} : Status{FromGrpc(s, "hook-engine PutHook")});
            });
    }
    void DeleteHook(std::string tenant_id, std::string name, StatusCallback done) override {
        hooks::hpb::DeleteHookRequest req;
        req.set_tenant_id(std::move(tenant_id));
        req.set_name(std::move(name));
        Call<hooks::hpb::DeleteHookRequest, hooks::hpb::EventAck>(
            FLARE_RPC(stub_, DeleteHook), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const hooks::hpb::EventAck&) {
                done(s.ok() ? Status{} : Status{FromGrpc(s, "hook-engine DeleteHook")});
            });
    }
    void ListHooks(std::string tenant_id, Callback<std::vector<HookSpec>> done) override {
        hooks::hpb::ListHooksRequest req;
        req.set_tenant_id(std::move(tenant_id));
        Call<hooks::hpb::ListHooksRequest, hooks::hpb::ListHooksReply>(
            FLARE_RPC(stub_, ListHooks), std::move(req), deadline_,
            [done = std::move(done)](const grpc::Status& s, const hooks::hpb::ListHooksReply& r) {
                if (!s.ok()) {
                    return done(FromGrpc(s, "hook-engine ListHooks"));
                }
                std::vector<HookSpec> out;
                for (const auto& j : r.spec_json()) {
                    if (auto spec = hooks::HookFromJson(j)) {
                        out.push_back(std::move(*spec));
                    }
                }
                done(std::move(out));
            });
    }

private:
    void Poll() {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
        hooks::hpb::EventAck req;
        hooks::hpb::ActivePointsReply reply;
        if (!stub_->ActivePoints(&ctx, req, &reply).ok()) {
            return;  // keep what we knew
        }
        uint32_t bits = 0;
        for (const auto& p : reply.points()) {
            if (auto point = ParseHookPoint(p)) {
                bits |= 1u << static_cast<int>(*point);
            }
        }
        active_ = bits;
    }

    std::unique_ptr<hooks::hpb::HookEngine::Stub> stub_;
    std::chrono::milliseconds deadline_;
    std::atomic<uint32_t> active_{0};
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread poller_;
};

}  // namespace

std::unique_ptr<HookApi> MakeHookClient(const ChannelOptions& o) { return std::make_unique<HookClient>(o); }

// ------------------------------------------------------------------------------ gateway directory

struct RemoteGatewayDirectory::Impl {
    GatewayRouteStore& routes;
    std::chrono::milliseconds refresh, deadline;
    std::mutex mu;
    std::condition_variable cv;
    bool stopping = false, refresh_now = false;
    std::map<std::string, DeliverySink*> local;
    std::map<std::string, std::unique_ptr<RemoteGatewaySink>> remote;  // never erased: Find's pointers stay valid
    std::thread thread;

    Impl(GatewayRouteStore& r, std::chrono::milliseconds refresh, std::chrono::milliseconds deadline)
        : routes(r), refresh(refresh), deadline(deadline) {}

    void Apply(const std::vector<GatewayRoute>& list) {
        std::lock_guard lock(mu);
        for (const auto& route : list) {
            auto it = remote.find(route.gateway_id);
            if (it == remote.end()) {
                spdlog::info("push: gateway {} (region '{}') at {}", route.gateway_id, route.region, route.endpoint);
                remote.emplace(route.gateway_id,
                               std::make_unique<RemoteGatewaySink>(route.gateway_id, route.endpoint, deadline));
            } else {
                it->second->SetEndpoint(route.endpoint);
            }
        }
    }

    void Loop() {
        std::unique_lock lock(mu);
        while (!stopping) {
            lock.unlock();
            auto p = std::make_shared<std::promise<Result<std::vector<GatewayRoute>>>>();
            auto f = p->get_future();
            routes.List([p](Result<std::vector<GatewayRoute>> r) { p->set_value(std::move(r)); });
            auto r = f.get();
            if (r) {
                Apply(*r);
            } else {
                spdlog::warn("push: cannot list gateways: {}", r.error().message);
            }
            lock.lock();
            cv.wait_for(lock, refresh, [&] { return stopping || refresh_now; });
            refresh_now = false;
        }
    }
};

RemoteGatewayDirectory::RemoteGatewayDirectory(GatewayRouteStore& routes, std::chrono::milliseconds refresh,
                                               std::chrono::milliseconds deadline)
    : impl_(std::make_shared<Impl>(routes, refresh, deadline)) {}

RemoteGatewayDirectory::~RemoteGatewayDirectory() { Stop(); }

void RemoteGatewayDirectory::Start() {
    if (!impl_->thread.joinable()) {
        impl_->thread = std::thread([impl = impl_.get()] { impl->Loop(); });
    }
}

void RemoteGatewayDirectory::Stop() {
    {
        std::lock_guard lock(impl_->mu);
        impl_->stopping = true;
    }
    impl_->cv.notify_all();
    if (impl_->thread.joinable()) {
        impl_->thread.join();
    }
}

void RemoteGatewayDirectory::Register(const std::string& gateway_id, const std::string&, DeliverySink* sink) {
    std::lock_guard lock(impl_->mu);
    impl_->local[gateway_id] = sink;
}

void RemoteGatewayDirectory::Unregister(const std::string& gateway_id) {
    std::lock_guard lock(impl_->mu);
    impl_->local.erase(gateway_id);
}

DeliverySink* RemoteGatewayDirectory::Find(const std::string& gateway_id) {
    std::lock_guard lock(impl_->mu);
    if (auto it = impl_->local.find(gateway_id); it != impl_->local.end()) {
        return it->second;
    }
    if (auto it = impl_->remote.find(gateway_id); it != impl_->remote.end()) {
        return it->second.get();
    }
    impl_->refresh_now = true;
    impl_->cv.notify_all();
    return nullptr;
}

size_t RemoteGatewayDirectory::known_gateways() {
    std::lock_guard lock(impl_->mu);
    return impl_->remote.size();
}

// ----------------------------------------------------------------------------------- append replier

struct AppendReplier::Impl {
    std::chrono::milliseconds deadline;
    std::mutex mu;
    std::map<std::string, std::shared_ptr<ipb::Messages::Stub>> stubs;
};

AppendReplier::AppendReplier(std::chrono::milliseconds deadline) : impl_(std::make_unique<Impl>()) {
    impl_->deadline = deadline;
}
AppendReplier::~AppendReplier() = default;

void AppendReplier::Reply(const std::string& endpoint, std::string outcome, StatusCallback done) {
    std::shared_ptr<ipb::Messages::Stub> stub;
    {
        std::lock_guard lock(impl_->mu);
        auto& s = impl_->stubs[endpoint];
        if (!s) {
            s = ipb::Messages::NewStub(MakeChannel(endpoint));
        }
        stub = s;
    }
    ipb::AppendOutcome req;
    if (!req.ParseFromString(outcome)) {
        return done(MakeError(Errc::kInternal, "bad_outcome", "AppendOutcome does not parse"));
    }
    Call<ipb::AppendOutcome, ipb::Empty>(
        [stub](auto* ctx, auto* r, auto* resp, auto cb) { stub->async()->CompleteAppend(ctx, r, resp, std::move(cb)); },
        std::move(req), impl_->deadline, [done = std::move(done)](const grpc::Status& s, const ipb::Empty&) {
            done(s.ok() ? Status{} : Status{FromGrpc(s, "message-orchestrator CompleteAppend")});
        });
}

}  // namespace flare::rpc
