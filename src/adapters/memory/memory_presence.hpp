// In-process adapters for embedded mode: presence (every device of a user) and the gateway
// directory. Completions run inline on the caller's thread.
#pragma once

#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "domain/ports.hpp"

namespace flare {

class MemoryPresenceRegistry final : public PresenceRegistry {
public:
    void Register(DeviceSession session, Callback<std::optional<DeviceSession>> done) override;
    void Unregister(std::string tenant_id, std::string user_id, std::string device_id, std::string gateway_id,
                    uint64_t connection_id) override;
    void Lookup(std::string tenant_id, std::shared_ptr<const std::vector<std::string>> user_ids,
                Callback<std::vector<DeviceSession>> done) override;
    void ListTenant(std::string tenant_id, Callback<std::vector<DeviceSession>> done) override;
    // Records never expire here: nothing to extend.
    void Refresh(std::vector<DeviceSession> sessions, StatusCallback done) override { done(Status{}); }

private:
    static std::string Key(const std::string& tenant, const std::string& user) { return tenant + '\x1f' + user; }
    std::shared_mutex mu_;
    std::unordered_map<std::string, std::vector<DeviceSession>> devices_;
};

class MemoryGatewayDirectory final : public GatewayDirectory {
public:
    void Register(const std::string& gateway_id, const std::string& region, DeliverySink* sink) override;
    void Unregister(const std::string& gateway_id) override;
    DeliverySink* Find(const std::string& gateway_id) override;

private:
    std::shared_mutex mu_;
    std::unordered_map<std::string, DeliverySink*> sinks_;
};

}  // namespace flare
