#include "adapters/memory/memory_presence.hpp"

#include <algorithm>

namespace flare {

void MemoryPresenceRegistry::Register(DeviceSession session, Callback<std::optional<DeviceSession>> done) {
    std::optional<DeviceSession> replaced;
    {
        std::unique_lock lock(mu_);
        auto& list = devices_[Key(session.tenant_id, session.user_id)];
        auto it = std::find_if(list.begin(), list.end(),
                               [&](const DeviceSession& d) { return d.device_id == session.device_id; });
        if (it != list.end()) {
            replaced = std::move(*it);
            *it = std::move(session);
        } else {
            list.push_back(std::move(session));
        }
    }
    done(std::move(replaced));
}

void MemoryPresenceRegistry::Unregister(std::string tenant_id, std::string user_id, std::string device_id,
                                        std::string gateway_id, uint64_t connection_id) {
    std::unique_lock lock(mu_);
    auto it = devices_.find(Key(tenant_id, user_id));
    if (it == devices_.end()) {
        return;
    }
    auto& list = it->second;
    std::erase_if(list, [&](const DeviceSession& d) {
        return d.device_id == device_id && d.gateway_id == gateway_id && d.connection_id == connection_id;
    });
    if (list.empty()) {
        devices_.erase(it);
    }
}

void MemoryPresenceRegistry::Lookup(std::string tenant_id, std::shared_ptr<const std::vector<std::string>> user_ids,
                                    Callback<std::vector<DeviceSession>> done) {
    std::vector<DeviceSession> out;
    {
        std::shared_lock lock(mu_);
        std::string key = tenant_id + '\x1f';
        const size_t prefix = key.size();
        for (const auto& user : *user_ids) {
            key.resize(prefix);
            key += user;
            auto it = devices_.find(key);
            if (it != devices_.end()) {
                out.insert(out.end(), it->second.begin(), it->second.end());
            }
        }
    }
    done(std::move(out));
}

void MemoryPresenceRegistry::ListTenant(std::string tenant_id, Callback<std::vector<DeviceSession>> done) {
    std::vector<DeviceSession> out;
    {
        std::shared_lock lock(mu_);
        for (const auto& [key, list] : devices_) {
            if (!list.empty() && list.front().tenant_id == tenant_id) {
                out.insert(out.end(), list.begin(), list.end());
            }
        }
    }
    done(std::move(out));
}

void MemoryGatewayDirectory::Register(const std::string& gateway_id, const std::string&, DeliverySink* sink) {
    std::unique_lock lock(mu_);
    sinks_[gateway_id] = sink;
}

void MemoryGatewayDirectory::Unregister(const std::string& gateway_id) {
    std::unique_lock lock(mu_);
    sinks_.erase(gateway_id);
}

DeliverySink* MemoryGatewayDirectory::Find(const std::string& gateway_id) {
    std::shared_lock lock(mu_);
    auto it = sinks_.find(gateway_id);
    return it == sinks_.end() ? nullptr : it->second;
}

}  // namespace flare
