// Redis adapter of PresenceRegistry for the distributed mode: every gateway and push-server sees the
// same online devices, and a record not refreshed within its TTL disappears, so a crashed gateway's
// devices go offline within a bounded time. Keys (Redis 7.0 has no per-field hash TTL):
//   <prefix>session:<tenant>:<user>      hash: device id -> record
//   <prefix>session_exp:<tenant>:<user>  sorted set: device id -> expiry (ms, Redis server time)
//   <prefix>online:<tenant>              sorted set: user id -> expiry of the user's last device
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "adapters/redis/redis_client.hpp"
#include "domain/ports.hpp"

namespace flare {

// Every change is one Lua script, so "register and return the replaced record", "unregister only if
// still held by this connection" and "refresh only if still held by this connection" are atomic.
// Expired devices are filtered out by score on every read and trimmed by the next write to the user;
// all keys of a user also carry a PEXPIREAT of its last device's expiry, so an abandoned user vanishes
// entirely. Ids may hold any bytes (':' and '%' are escaped in key names).
//
// Completions run on the adapter's worker thread, in submission order (so an Unregister followed by a
// Lookup sees its effect). Errors of every call: kUnavailable "presence_unavailable" (message naming
// the URL) when Redis cannot be reached or does not answer within options.command_timeout (then it is
// unknown whether a change was made), after Stop(), and for calls still queued at Stop(); kInternal
// "redis_error" when Redis refuses a script. The adapter reconnects by itself.
class RedisPresenceRegistry final : public PresenceRegistry {
public:
    // Throws std::invalid_argument for a bad options.url or a non-positive TTL or timeout. Does not
    // connect yet.
    explicit RedisPresenceRegistry(RedisOptions options);
    ~RedisPresenceRegistry() override;  // Stop()

    // Starts the worker thread, which connects at once (and keeps trying in the background).
    void Start();
    // Fails queued calls with kUnavailable, waits for the round trip in flight and joins the worker.
    // Must not be called from a completion callback.
    void Stop();

    // Starts the record's TTL (options.presence_ttl). A replaced record that had already expired is
    // not returned.
    void Register(DeviceSession session, Callback<std::optional<DeviceSession>> done) override;
    // Fire and forget; a failure is logged.
    void Unregister(std::string tenant_id, std::string user_id, std::string device_id, std::string gateway_id,
                    uint64_t connection_id) override;
    // Devices come grouped by user in the order of user_ids; users listed twice are listed twice.
    void Lookup(std::string tenant_id, std::shared_ptr<const std::vector<std::string>> user_ids,
                Callback<std::vector<DeviceSession>> done) override;
    void ListTenant(std::string tenant_id, Callback<std::vector<DeviceSession>> done) override;
    // Restarts the TTL of each record still held by its (gateway_id, connection_id), and writes back
    // those that expired meanwhile; records held by another live connection are left alone (not an
    // error). A missing record cannot be told from an expired one, so a heartbeat racing an Unregister
    // brings the record back for at most one TTL. Ok only when every record was handled.
    void Refresh(std::vector<DeviceSession> sessions, StatusCallback done) override;

private:
    void LookupUsers(const std::string& tenant_id, const std::vector<std::string>& user_ids,
                     Callback<std::vector<DeviceSession>> done);
    std::vector<std::string> UserKeys(const std::string& tenant_id, const std::string& user_id) const;

    const RedisOptions options_;
    const std::string ttl_ms_;
    std::unique_ptr<RedisClient> client_;
};

}  // namespace flare
