// The business API of the core gateway, on protobuf request/response types: caller authentication
// (business JWTs), field validation naming the field, and the calls into the domain services. gRPC
// (grpc_server.cpp) and the HTTP/JSON mirror (http_api.cpp) both host this one class.
#pragma once

#include <string>
#include <string_view>

#include "common/clock.hpp"
#include "domain/hooks.hpp"
#include "domain/services.hpp"
#include "flare/business/v1/business.pb.h"

namespace flare::core_gateway {

namespace bpb = ::flare::business::v1;

struct Caller {
    std::string tenant_id;
    std::string subject;  // the calling system's id ("sub")
};

struct BusinessApiOptions {
    std::string business_secret;
    std::string default_tenant = "default";
    uint32_t max_users_per_call = 10'000;
};

class BusinessApi {
public:
    BusinessApi(BusinessApiOptions options, const Limits& limits, ConversationApi& sessions, MessagingApi& orchestrator,
                PushApi& push, PresenceRegistry& presence, const Clock& clock, IdGenerator& ids);

    // `authorization` is the header value ("Bearer <jwt>"). Errors: kUnauthenticated (missing, bad or
    // expired token), kPermissionDenied (a token without role "business", e.g. a client's).
    Result<Caller> Authenticate(std::string_view authorization) const;

    // Completions may run on any thread. Errors use Errc; kInvalidArgument messages start with the field.
    void PushMessage(const Caller& caller, const bpb::PushMessageRequest& req, Callback<bpb::PushMessageResponse> done);
    void SendMessage(const Caller& caller, const bpb::SendMessageRequest& req, Callback<bpb::SendMessageResponse> done);
    void QueryUserStatus(const Caller& caller, const bpb::QueryUserStatusRequest& req,
                         Callback<bpb::QueryUserStatusResponse> done);
    void KickUser(const Caller& caller, const bpb::KickUserRequest& req, Callback<bpb::KickUserResponse> done);
    void GetHistory(const Caller& caller, const bpb::GetHistoryRequest& req, Callback<bpb::GetHistoryResponse> done);
    void CreateGroup(const Caller& caller, const bpb::CreateGroupRequest& req, Callback<bpb::GroupChangeResponse> done);
    void AddGroupMembers(const Caller& caller, const bpb::GroupMembersRequest& req,
                         Callback<bpb::GroupChangeResponse> done);
    void RemoveGroupMembers(const Caller& caller, const bpb::GroupMembersRequest& req,
                            Callback<bpb::GroupChangeResponse> done);
    void ListConversations(const Caller& caller, const bpb::ListConversationsRequest& req,
                           Callback<bpb::ListConversationsResponse> done);
    void PutHook(const Caller& caller, const bpb::PutHookRequest& req, Callback<bpb::PutHookResponse> done);
    void DeleteHook(const Caller& caller, const bpb::DeleteHookRequest& req, Callback<bpb::DeleteHookResponse> done);
    void ListHooks(const Caller& caller, const bpb::ListHooksRequest& req, Callback<bpb::ListHooksResponse> done);

    // Hook management goes to `hooks` (null: the calls answer unavailable); `metrics` (may be empty)
    // renders what GET /metrics on the HTTP port answers to a caller of that tenant.
    void set_hooks(HookApi* hooks) { hooks_ = hooks; }
    void set_metrics(std::function<std::string(const std::string& tenant)> metrics) { metrics_ = std::move(metrics); }
    std::string RenderMetrics(const Caller& caller) const { return metrics_ ? metrics_(caller.tenant_id) : std::string(); }

private:
    BusinessApiOptions options_;
    void ChangeMembers(const Caller& caller, const bpb::GroupMembersRequest& req, GroupOp op,
                       Callback<bpb::GroupChangeResponse> done);

    Limits limits_;
    HookApi* hooks_ = nullptr;
    std::function<std::string(const std::string& tenant)> metrics_;
    ConversationApi& sessions_;
    MessagingApi& orchestrator_;
    PushApi& push_;
    PresenceRegistry& presence_;
    const Clock& clock_;
    IdGenerator& ids_;
};

}  // namespace flare::core_gateway
