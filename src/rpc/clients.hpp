// gRPC clients of the internal services (proto/flare/internal/v1/internal.proto), each implementing the
// port or service interface its callers already use, so the domain code of the distributed roles is
// the embedded mode's. Every call has a deadline; idempotent calls are retried by the channel when the
// peer is unavailable; completions run on gRPC's threads. No gRPC header leaks out of this file.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "domain/apis.hpp"
#include "domain/hooks.hpp"
#include "domain/ports.hpp"

namespace flare::rpc {

struct ChannelOptions {
    std::string endpoint;  // host:port, or a gRPC target such as "ipv4:127.0.0.1:1,127.0.0.1:2"
    std::chrono::milliseconds deadline{5000};
};

// signaling-online
std::unique_ptr<PresenceRegistry> MakePresenceClient(const ChannelOptions& options);
// signaling-route
std::unique_ptr<GatewayRouteStore> MakeRouteClient(const ChannelOptions& options);
// session
std::unique_ptr<ConversationApi> MakeSessionClient(const ChannelOptions& options);
// message-orchestrator. A connection's sends are forwarded one at a time (the next after the previous
// one's answer), so a device's pipelined messages are stored in the order it sent them.
std::unique_ptr<MessagingApi> MakeMessagingClient(const ChannelOptions& options);
// Shutdown: waits until a messaging client made by MakeMessagingClient has no send in flight (their
// completions run the callers' callbacks), at most `patience`. False when sends were still running.
bool WaitForSends(MessagingApi& client, std::chrono::milliseconds patience);
// push-server
std::unique_ptr<PushApi> MakePushClient(const ChannelOptions& options);

// hook-engine
std::unique_ptr<HookApi> MakeHookClient(const ChannelOptions& options);

// Where push-server delivers: the gateways listed by the route directory, each reached through its
// Delivery service. The list is refreshed every `refresh` and when an unknown gateway is asked for.
class RemoteGatewayDirectory final : public GatewayDirectory {
public:
    RemoteGatewayDirectory(GatewayRouteStore& routes, std::chrono::milliseconds refresh,
                           std::chrono::milliseconds deadline = std::chrono::milliseconds(3000));
    ~RemoteGatewayDirectory() override;
    void Start();
    void Stop();

    // In-process sinks (none in push-server) take precedence over routes.
    void Register(const std::string& gateway_id, const std::string& region, DeliverySink* sink) override;
    void Unregister(const std::string& gateway_id) override;
    // nullptr while the gateway is not (yet) in the route directory. The pointer stays valid for the
    // directory's lifetime.
    DeliverySink* Find(const std::string& gateway_id) override;
    size_t known_gateways();

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

// Answers storage-writer's AppendOutcome to the orchestrator that asked (Messages.CompleteAppend on the
// endpoint the command named). Channels are cached per endpoint.
class AppendReplier {
public:
    explicit AppendReplier(std::chrono::milliseconds deadline = std::chrono::milliseconds(3000));
    ~AppendReplier();
    // `outcome` is a serialized flare.internal.v1.AppendOutcome; `done` gets the call's status.
    void Reply(const std::string& endpoint, std::string outcome, StatusCallback done);

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace flare::rpc
