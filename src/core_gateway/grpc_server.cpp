#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <future>

#include "core_gateway/servers.hpp"
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
    explicit Impl(BusinessApi& api) : service(api) {}
    Service service;
    std::unique_ptr<grpc::Server> server;
    int port = 0;
};

GrpcServer::GrpcServer(BusinessApi& api) : impl_(std::make_unique<Impl>(api)) {}
GrpcServer::~GrpcServer() { Stop(); }

Status GrpcServer::Start(const std::string& address, uint16_t port) {
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
    builder.RegisterService(&impl_->service);
    impl_->server = builder.BuildAndStart();
    if (!impl_->server || impl_->port == 0) {
        impl_->server.reset();
        return MakeError(Errc::kUnavailable, "listen_failed",
                         "cannot serve gRPC on " + target + " (is the port in use? set core_gateway.grpc_port)");
    }
    impl_->server->GetHealthCheckService()->SetServingStatus(true);
    return {};
}

uint16_t GrpcServer::port() const { return static_cast<uint16_t>(impl_->port); }

void GrpcServer::Stop() {
    if (impl_->server) {
        impl_->server->GetHealthCheckService()->SetServingStatus(false);
        impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
        impl_->server->Wait();
        impl_->server.reset();
    }
}

}  // namespace flare::core_gateway
