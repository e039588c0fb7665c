#include <grpcpp/grpcpp.h>

#include <future>

#include "core_gateway/servers.hpp"
#include "rpc/servers.hpp"
#include "rpc/status.hpp"
#include "flare/business/v1/business.grpc.pb.h"

namespace flare::core_gateway {

namespace {

using rpc::ToGrpc;  // the one mapping of Errc to gRPC status codes

class Service final : public bpb::BusinessService::Service {
public:
    explicit Service(BusinessApi& api) : api_(api) {}

    grpc::Status PushMessage(grpc::ServerContext* ctx, const bpb::PushMessageRequest* req,
                             bpb::PushMessageResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::PushMessage);
    }
    grpc::Status SendMessage(grpc::ServerContext* ctx, const bpb::SendMessageRequest* req,
                             bpb::SendMessageResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::SendMessage);
    }
    grpc::Status QueryUserStatus(grpc::ServerContext* ctx, const bpb::QueryUserStatusRequest* req,
                                 bpb::QueryUserStatusResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::QueryUserStatus);
    }
    grpc::Status KickUser(grpc::ServerContext* ctx, const bpb::KickUserRequest* req,
                          bpb::KickUserResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::KickUser);
    }
    grpc::Status GetHistory(grpc::ServerContext* ctx, const bpb::GetHistoryRequest* req,
                            bpb::GetHistoryResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::GetHistory);
    }
    grpc::Status CreateGroup(grpc::ServerContext* ctx, const bpb::CreateGroupRequest* req,
                             bpb::GroupChangeResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::CreateGroup);
    }
    grpc::Status AddGroupMembers(grpc::ServerContext* ctx, const bpb::GroupMembersRequest* req,
                                 bpb::GroupChangeResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::AddGroupMembers);
    }
    grpc::Status RemoveGroupMembers(grpc::ServerContext* ctx, const bpb::GroupMembersRequest* req,
                                    bpb::GroupChangeResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::RemoveGroupMembers);
    }
    grpc::Status ListConversations(grpc::ServerContext* ctx, const bpb::ListConversationsRequest* req,
                                   bpb::ListConversationsResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::ListConversations);
    }
    grpc::Status PutHook(grpc::ServerContext* ctx, const bpb::PutHookRequest* req, bpb::PutHookResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::PutHook);
    }
    grpc::Status DeleteHook(grpc::ServerContext* ctx, const bpb::DeleteHookRequest* req,
                            bpb::DeleteHookResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::DeleteHook);
    }
    grpc::Status ListHooks(grpc::ServerContext* ctx, const bpb::ListHooksRequest* req,
                           bpb::ListHooksResponse* resp) override {
        return Call(ctx, *req, resp, &BusinessApi::ListHooks);
    }

private:
    template <typename Req, typename Resp>
    grpc::Status Call(grpc::ServerContext* ctx, const Req& req, Resp* resp,
                      void (BusinessApi::*method)(const Caller&, const Req&, Callback<Resp>)) {
        const auto& md = ctx->client_metadata();
        auto it = md.find("authorization");
        std::string_view auth = it == md.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
        auto caller = api_.Authenticate(auth);
        if (!caller) {
            return ToGrpc(caller.error());
        }
        auto promise = std::make_shared<std::promise<Result<Resp>>>();
        auto future = promise->get_future();
        (api_.*method)(*caller, req, [promise](Result<Resp> r) { promise->set_value(std::move(r)); });
        if (future.wait_until(ctx->deadline()) != std::future_status::ready) {
            return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the call did not finish before its deadline");
        }
        auto r = future.get();
        if (!r) {
            return ToGrpc(r.error());
        }
        *resp = std::move(r.value());
        return grpc::Status::OK;
    }

    BusinessApi& api_;
};

}  // namespace

struct GrpcServer::Impl {
    rpc::RpcServer server;  // health, reflection and the listener options shared by every gRPC server
};

GrpcServer::GrpcServer(BusinessApi& api) : impl_(std::make_unique<Impl>()) {
    impl_->server.AddService(std::make_unique<Service>(api));
}
GrpcServer::~GrpcServer() { Stop(); }

Status GrpcServer::Start(const std::string& address, uint16_t port) {
    auto st = impl_->server.Start(address, port);
    if (!st) {
        return MakeError(st.error().code, st.error().reason, st.error().message + " (set core_gateway.grpc_port)");
    }
    return {};
}

uint16_t GrpcServer::port() const { return impl_->server.port(); }

void GrpcServer::Stop() { impl_->server.Stop(); }

}  // namespace flare::core_gateway
