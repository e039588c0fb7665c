// business_push_client: pushes a message through the core gateway's business API (gRPC), to the
// users in USER_IDS or, when it is empty, to every online user of the tenant; prints the statistics.
// Environment: GATEWAY_ENDPOINT (default http://localhost:50050), MESSAGE_CONTENT, USER_IDS,
// TOKEN_SECRET (default insecure-secret), TENANT_ID (default default), BUSINESS_USER_ID
// (default business-system).
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <string>

#include "auth/jwt.hpp"
#include "flare/business/v1/business.grpc.pb.h"

namespace {

std::string Env(const char* name, const char* fallback) {
    const char* v = std::getenv(name);
    return v && *v ? v : fallback;
}

std::string Target(std::string endpoint) {
    for (const char* prefix : {"http://", "grpc://", "dns:///"}) {
        if (endpoint.starts_with(prefix)) {
            endpoint = endpoint.substr(std::string(prefix).size());
        }
    }
    if (!endpoint.empty() && endpoint.back() == '/') {
        endpoint.pop_back();
    }
    return endpoint;
}

const char* CodeName(grpc::StatusCode c) {
    switch (c) {
        case grpc::StatusCode::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
        case grpc::StatusCode::UNAUTHENTICATED: return "UNAUTHENTICATED";
        case grpc::StatusCode::PERMISSION_DENIED: return "PERMISSION_DENIED";
        case grpc::StatusCode::UNAVAILABLE: return "UNAVAILABLE";
        case grpc::StatusCode::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
        case grpc::StatusCode::NOT_FOUND: return "NOT_FOUND";
        default: return "ERROR";
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc > 1 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) {
        std::cout << "usage: business_push_client\n"
                     "environment: GATEWAY_ENDPOINT (http://localhost:50050), MESSAGE_CONTENT (Hello from business\n"
                     "system), USER_IDS (comma list; empty = every online user), TOKEN_SECRET (insecure-secret),\n"
                     "TENANT_ID (default), BUSINESS_USER_ID (business-system)\n";
        return 0;
    }
    const std::string endpoint = Env("GATEWAY_ENDPOINT", "http://localhost:50050");
    const std::string target = Target(endpoint);
    const std::string tenant = Env("TENANT_ID", "default");
    const std::string business_user = Env("BUSINESS_USER_ID", "business-system");

    flare::business::v1::PushMessageRequest req;
    req.set_text(Env("MESSAGE_CONTENT", "Hello from business system"));
    std::stringstream ids(Env("USER_IDS", ""));
    for (std::string id; std::getline(ids, id, ',');) {
        while (!id.empty() && id.front() == ' ') {
            id.erase(id.begin());
        }
        while (!id.empty() && id.back() == ' ') {
            id.pop_back();
        }
        if (!id.empty()) {
            req.add_user_ids(id);
        }
    }

    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    const std::string token = flare::MintToken(Env("TOKEN_SECRET", "insecure-secret"), business_user, tenant,
                                               now + 300, "", flare::kBusinessRole);
    auto channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
    auto stub = flare::business::v1::BusinessService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    flare::business::v1::PushMessageResponse resp;
    grpc::Status st = stub->PushMessage(&ctx, req, &resp);
    if (!st.ok()) {
        if (st.error_code() == grpc::StatusCode::UNAVAILABLE) {
            std::cerr << "business_push_client: cannot reach the core gateway at " << endpoint << " (" << target
                      << "): " << st.error_message()
                      << "\n  is the server running (make run) and GATEWAY_ENDPOINT right?\n";
        } else {
            std::cerr << "business_push_client: the core gateway refused the push: " << CodeName(st.error_code())
                      << ": " << st.error_message() << "\n";
        }
        return 1;
    }
    std::printf("Push via %s (tenant %s, as %s)\n", target.c_str(), tenant.c_str(), business_user.c_str());
    std::printf("+--------------------+------------+\n");
    std::printf("| %-18s | %10s |\n", "mode", resp.broadcast() ? "broadcast" : "users");
    std::printf("| %-18s | %10u |\n", "target users", resp.target_users());
    std::printf("| %-18s | %10u |\n", "online users", resp.online_users());
    std::printf("| %-18s | %10u |\n", "devices delivered", resp.delivered_devices());
    std::printf("| %-18s | %10u |\n", "offline users", resp.offline_users());
    std::printf("| %-18s | %7.2f ms |\n", "elapsed", static_cast<double>(resp.elapsed_us()) / 1000.0);
    std::printf("+--------------------+------------+\n");
    if (resp.results_size() > 0) {
        std::printf("%-24s %-30s %8s %8s\n", "user", "conversation", "seq", "devices");
        for (const auto& r : resp.results()) {
            std::printf("%-24s %-30s %8llu %8u%s\n", r.user_id().c_str(), r.conversation_id().c_str(),
                        static_cast<unsigned long long>(r.seq()), r.devices(), r.duplicate() ? "  (retry)" : "");
        }
    }
    return 0;
}
