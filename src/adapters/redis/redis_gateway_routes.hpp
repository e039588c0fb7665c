// Redis adapter of GatewayRouteStore for the distributed mode: the directory of access gateways
// (region and delivery endpoint) that push-server reads. Keys:
//   <prefix>gateway_routes      hash: gateway id -> record
//   <prefix>gateway_routes_exp  sorted set: gateway id -> expiry (ms, Redis server time)
// Both keys expire with the last live route, so a directory nobody refreshes vanishes entirely.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "adapters/redis/redis_client.hpp"
#include "domain/ports.hpp"

namespace flare {

// Each call is one Lua script (atomic); expired routes are filtered out by score on reads and trimmed
// by the next write. Completions run on the adapter's worker thread, in submission order. Errors of
// every call: kUnavailable "routes_unavailable" (message naming the URL) when Redis cannot be reached
// or does not answer within options.command_timeout (then it is unknown whether a change was made),
// after Stop(), and for calls still queued at Stop(); kInternal "redis_error" when Redis refuses a
// script. The adapter reconnects by itself. options.presence_ttl is not used.
class RedisGatewayRouteStore final : public GatewayRouteStore {
public:
    // Throws std::invalid_argument for a bad options.url or timeout. Does not connect yet.
    explicit RedisGatewayRouteStore(RedisOptions options);
    ~RedisGatewayRouteStore() override;  // Stop()

    // Starts the worker thread, which connects at once (and keeps trying in the background).
    void Start();
    // Fails queued calls with kUnavailable, waits for the round trip in flight and joins the worker.
    // Must not be called from a completion callback.
    void Stop();

    // Errors besides the above: kInvalidArgument "invalid_ttl" for a TTL below 1 ms.
    void Upsert(GatewayRoute route, std::chrono::milliseconds ttl, StatusCallback done) override;
    // Removing an unknown gateway is ok (idempotent).
    void Remove(std::string gateway_id, StatusCallback done) override;
    void Get(std::string gateway_id, Callback<std::optional<GatewayRoute>> done) override;
    void List(Callback<std::vector<GatewayRoute>> done) override;

private:
    std::vector<std::string> Keys() const;

    const RedisOptions options_;
    std::unique_ptr<RedisClient> client_;
};

}  // namespace flare
