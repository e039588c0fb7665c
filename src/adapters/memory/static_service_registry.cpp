// StaticServiceRegistry and the static endpoint list parser (see static_service_registry.hpp).
#include "adapters/memory/static_service_registry.hpp"

#include <charconv>
#include <set>
#include <utility>

namespace flare {
namespace {

constexpr size_t kMaxNameBytes = 200;

std::string_view Trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r')) {
        s.remove_prefix(1);
    }
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n' || s.back() == '\r')) {
        s.remove_suffix(1);
    }
    return s;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
    std::vector<std::string_view> parts;
    size_t start = 0;
    while (true) {
        size_t pos = s.find(sep, start);
        if (pos == std::string_view::npos) {
            parts.push_back(s.substr(start));
            return parts;
        }
        parts.push_back(s.substr(start, pos - start));
        start = pos + 1;
    }
}

Error BadInstance(std::string message) {
    return MakeError(Errc::kInvalidArgument, "bad_service_instance", std::move(message));
}

Error BadStatic(std::string message) {
    return MakeError(Errc::kInvalidArgument, "bad_static_endpoints", std::move(message));
}

bool IsBadNameChar(char c) {
    auto u = static_cast<unsigned char>(c);
    return c == '/' || c == ' ' || u < 0x20 || u == 0x7f;
}

}  // namespace

Status ValidateRegistryName(std::string_view what, std::string_view name) {
    if (name.empty()) {
        return BadInstance(std::string(what) + " is empty");
    }
    if (name.size() > kMaxNameBytes) {
        return BadInstance(std::string(what) + " is longer than " + std::to_string(kMaxNameBytes) + " bytes");
    }
    for (char c : name) {
        if (IsBadNameChar(c)) {
            return BadInstance(std::string(what) + " '" + std::string(name) +
                               "' contains '/', a blank or a control character");
        }
    }
    return Status{};
}

Status ValidateEndpoint(std::string_view endpoint) {
    std::string_view host;
    std::string_view port;
    if (endpoint.starts_with('[')) {
        size_t close = endpoint.find(']');
        if (close == std::string_view::npos || close + 1 >= endpoint.size() || endpoint[close + 1] != ':') {
            return BadInstance("endpoint '" + std::string(endpoint) + "' is not [ipv6]:port");
        }
        host = endpoint.substr(1, close - 1);
        port = endpoint.substr(close + 2);
    } else {
        size_t colon = endpoint.rfind(':');
        if (colon == std::string_view::npos) {
            return BadInstance("endpoint '" + std::string(endpoint) + "' is not host:port");
        }
        host = endpoint.substr(0, colon);
        port = endpoint.substr(colon + 1);
        if (host.find(':') != std::string_view::npos) {
            return BadInstance("endpoint '" + std::string(endpoint) + "': write an IPv6 host in brackets, [::1]:port");
        }
    }
    if (host.empty()) {
        return BadInstance("endpoint '" + std::string(endpoint) + "' has no host");
    }
    for (char c : host) {
        if (IsBadNameChar(c)) {
            return BadInstance("endpoint '" + std::string(endpoint) + "' has a blank, '/' or control character");
        }
    }
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (port.empty() || ec != std::errc{} || end != port.data() + port.size() || value == 0 || value > 65535) {
        return BadInstance("endpoint '" + std::string(endpoint) + "' needs a port in 1..65535");
    }
    return Status{};
}

Status ValidateServiceInstance(const ServiceInstance& instance, std::chrono::seconds ttl) {
    if (auto s = ValidateRegistryName("service", instance.service); !s) {
        return s;
    }
    if (auto s = ValidateRegistryName("instance_id", instance.instance_id); !s) {
        return s;
    }
    if (auto s = ValidateEndpoint(instance.endpoint); !s) {
        return s;
    }
    if (ttl.count() <= 0) {
        return BadInstance("ttl must be at least one second, got " + std::to_string(ttl.count()));
    }
    return Status{};
}

Result<StaticEndpoints> ParseStaticEndpoints(std::string_view text) {
    StaticEndpoints out;
    for (std::string_view raw_entry : Split(text, ';')) {
        std::string_view entry = Trim(raw_entry);
        if (entry.empty()) {
            continue;
        }
        const std::string quoted = "'" + std::string(entry) + "'";
        size_t eq = entry.find('=');
        if (eq == std::string_view::npos) {
            return BadStatic("entry " + quoted + " is not service=host:port[,host:port...]");
        }
        std::string service(Trim(entry.substr(0, eq)));
        if (auto s = ValidateRegistryName("service", service); !s) {
            return BadStatic("entry " + quoted + ": " + s.error().message);
        }
        if (out.contains(service)) {
            return BadStatic("service '" + service + "' is listed twice; put all its endpoints in one entry");
        }
        std::vector<std::string> endpoints;
        std::set<std::string_view> seen;
        for (std::string_view raw_endpoint : Split(entry.substr(eq + 1), ',')) {
            std::string_view endpoint = Trim(raw_endpoint);
            if (endpoint.empty()) {
                return BadStatic("entry " + quoted + " has an empty endpoint");
            }
            if (auto s = ValidateEndpoint(endpoint); !s) {
                return BadStatic("entry " + quoted + ": " + s.error().message);
            }
            if (!seen.insert(endpoint).second) {
                return BadStatic("entry " + quoted + " lists endpoint '" + std::string(endpoint) + "' twice");
            }
            endpoints.emplace_back(endpoint);
        }
        out.emplace(std::move(service), std::move(endpoints));
    }
    return out;
}

StaticServiceRegistry::StaticServiceRegistry(const StaticEndpoints& endpoints, std::string region) {
    for (const auto& [service, list] : endpoints) {
        auto& instances = instances_[service];
        for (const auto& endpoint : list) {
            instances[endpoint] = ServiceInstance{service, endpoint, endpoint, region};
        }
    }
}

void StaticServiceRegistry::Register(ServiceInstance instance, std::chrono::seconds ttl, StatusCallback done) {
    if (auto s = ValidateServiceInstance(instance, ttl); !s) {
        done(std::move(s));
        return;
    }
    {
        std::lock_guard lock(mu_);
        auto& instances = instances_[instance.service];
        std::string id = instance.instance_id;
        instances.insert_or_assign(std::move(id), std::move(instance));
    }
    done(Status{});
}

void StaticServiceRegistry::Deregister(std::string service, std::string instance_id, StatusCallback done) {
    if (auto s = ValidateRegistryName("service", service); !s) {
        done(std::move(s));
        return;
    }
    if (auto s = ValidateRegistryName("instance_id", instance_id); !s) {
        done(std::move(s));
        return;
    }
    {
        std::lock_guard lock(mu_);
        auto it = instances_.find(service);
        if (it != instances_.end()) {
            it->second.erase(instance_id);
            if (it->second.empty()) {
                instances_.erase(it);
            }
        }
    }
    done(Status{});
}

void StaticServiceRegistry::Resolve(std::string service, Callback<std::vector<ServiceInstance>> done) {
    if (auto s = ValidateRegistryName("service", service); !s) {
        done(s.error());
        return;
    }
    std::vector<ServiceInstance> out;
    {
        std::lock_guard lock(mu_);
        auto it = instances_.find(service);
        if (it != instances_.end()) {
            out.reserve(it->second.size());
            for (const auto& [id, instance] : it->second) {
                out.push_back(instance);
            }
        }
    }
    done(std::move(out));
}

}  // namespace flare
