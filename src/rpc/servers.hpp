// gRPC hosting of the internal services: each service class converts proto <-> domain and calls the
// same domain object the embedded mode calls directly (callback API: no thread waits on a call).
// RpcServer binds one port, registers the services given, and serves grpc.health.v1 and reflection;
// every gRPC server of the code base is one.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "domain/apis.hpp"
#include "domain/hooks.hpp"
#include "domain/ports.hpp"

namespace grpc {
class Service;
}

namespace flare::rpc {

class BusCommitter;  // pipeline.hpp

class RpcServer {
public:
    RpcServer();
    ~RpcServer();

    // Add services before Start; the referenced objects must outlive the server.
    void AddPresence(PresenceRegistry& presence);
    void AddRoutes(GatewayRouteStore& routes);
    void AddSessions(ConversationApi& sessions);
    void AddMessages(MessagingApi& messaging, BusCommitter* committer);
    void AddPush(PushApi& push);
    void AddDelivery(DeliverySink& gateway);
    void AddHookEngine(HookApi& hooks);
    // Any other service (the core gateway's BusinessService).
    void AddService(std::unique_ptr<grpc::Service> service);

    // Binds address:port (0: any free port). Errors: kUnavailable "listen_failed" naming the address.
    Status Start(const std::string& address, uint16_t port);
    uint16_t port() const;
    void SetServing(bool serving);  // grpc.health.v1 status
    // Stops accepting, lets calls in flight finish for up to 2 s, then cancels the rest.
    void Stop();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace flare::rpc
