// In-process ServiceRegistry: the fallback when no etcd is configured. Starts from a fixed map
// service -> endpoints (from configuration, see ParseStaticEndpoints) and keeps what Register adds in
// memory. Nothing expires; completions run inline on the caller's thread. Thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "domain/ports.hpp"

namespace flare {

// service -> endpoints ("host:port"), in the order given.
using StaticEndpoints = std::map<std::string, std::vector<std::string>>;

// Parses "service=host:port[,host:port...][;service=...]", e.g.
// "session=127.0.0.1:50090;message-orchestrator=127.0.0.1:50081,127.0.0.1:50082". Blanks around the
// separators are ignored, as are empty entries (a trailing ';'); an empty string is an empty map.
// IPv6 hosts are written in brackets ("[::1]:50090").
// Errors: kInvalidArgument "bad_static_endpoints" naming the offending entry: an entry without '=',
// an empty or invalid service name (empty, or containing '/' or blanks), a service listed twice or
// with no endpoints, an endpoint that is not host:port with a port in 1..65535, a repeated endpoint.
Result<StaticEndpoints> ParseStaticEndpoints(std::string_view text);

// Checks shared by every ServiceRegistry adapter. A service name or instance id is non-empty, at most
// 200 bytes, without '/', blanks or control characters; an endpoint is host:port as above.
// Errors: kInvalidArgument "bad_service_instance" naming the field (`what`, e.g. "service").
Status ValidateRegistryName(std::string_view what, std::string_view name);
Status ValidateEndpoint(std::string_view endpoint);
// Service and instance id as above, endpoint as above, ttl > 0.
Status ValidateServiceInstance(const ServiceInstance& instance, std::chrono::seconds ttl);

class StaticServiceRegistry final : public ServiceRegistry {
public:
    // Each static endpoint becomes an instance whose instance_id is the endpoint itself and whose
    // region is `region`.
    explicit StaticServiceRegistry(const StaticEndpoints& endpoints, std::string region = "");

    // Adds or replaces (same service and instance_id) the instance; `ttl` must be positive but is not
    // enforced (nothing expires in memory). Errors: kInvalidArgument (ValidateServiceInstance).
    void Register(ServiceInstance instance, std::chrono::seconds ttl, StatusCallback done) override;
    // Removes the instance, static or registered. Idempotent: removing an unknown instance succeeds.
    void Deregister(std::string service, std::string instance_id, StatusCallback done) override;
    // The instances of `service` ordered by instance_id; empty for an unknown service.
    void Resolve(std::string service, Callback<std::vector<ServiceInstance>> done) override;

private:
    std::mutex mu_;
    // service -> instance_id -> instance; std::map keeps the instance ids ordered.
    std::map<std::string, std::map<std::string, ServiceInstance>> instances_;
};

}  // namespace flare
