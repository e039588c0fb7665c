// The access gateway's WebSocket server (Boost.Beast): accepts connections on the client port, runs
// one strand per connection with one read loop and one bounded write queue, and implements
// DeliverySink so the push service can reach its connections. Beast stays inside ws_gateway.cpp.
#pragma once

#include <cstdint>
#include <memory>

#include "gateway/client_session.hpp"

namespace boost::asio {
class io_context;
}

namespace flare::gateway {

class WsGateway final : public DeliverySink {
public:
    WsGateway(boost::asio::io_context& io, GatewayOptions options, ConversationApi& sessions,
              MessagingApi& orchestrator, PresenceRegistry& presence, const Clock& clock);
    ~WsGateway() override;

    // Binds the listening socket (port 0 picks a free port). Errors: kUnavailable naming address and cause.
    Status Listen();
    uint16_t port() const;
    void Start();
    // Stops accepting and says goodbye ("shutdown") to every connection; returns at once.
    void Stop();
    size_t connection_count() const;
    // The devices of this gateway registered in presence (for the TTL heartbeat).
    std::vector<DeviceSession> RegisteredDevices() const;
    bool IsRegistered(uint64_t connection_id) const;

    void Deliver(const MessageRecord& message, std::span<const uint64_t> connection_ids,
                 StatusCallback done) override;
    void Disconnect(uint64_t connection_id, std::string reason, std::string message) override;

    struct Impl;

private:
    void DeliverLocal(const MessageRecord& message, std::span<const uint64_t> connection_ids);

    std::shared_ptr<Impl> impl_;
};

}  // namespace flare::gateway
