// The distributed deployment: one role per process (`flare serve <role>`), each hosting the same
// domain classes as the embedded mode behind gRPC, with Redis, PostgreSQL, the event bus (NATS
// JetStream or Kafka) and optionally etcd as its adapters. Every role also serves /healthz, /readyz
// and /metrics on its admin port. Wiring for every role is in distributed.cpp, in one place.
#pragma once

#include <signal.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "app/config.hpp"

namespace flare::app {

struct RoleInfo {
    std::string name;        // as in `flare serve NAME`
    uint16_t grpc_port;      // 0: the role serves no gRPC (storage-writer)
    uint16_t admin_port;     // /healthz, /readyz, /metrics
};

// The roles in the operator guide's start order.
const std::vector<RoleInfo>& DistributedRoles();
bool IsDistributedRole(const std::string& role);

struct DistributedConfig {
    std::string redis_url = "redis://127.0.0.1:26379";
    std::string bus_url = "nats://127.0.0.1:24222";  // nats://host:port or kafka://host:port[,host:port]
    std::string etcd_endpoints;                       // empty: static endpoints only
    std::string advertise_host = "127.0.0.1";         // how other processes reach this one
    std::string listen_address = "0.0.0.0";
    uint16_t grpc_port = 0;   // 0: the role's default (access-gateway: PORT + 2)
    uint16_t admin_port = 0;  // 0: the role's default (access-gateway: PORT + 1000)
    uint32_t presence_ttl_ms = 30'000;
    std::map<std::string, std::string> endpoints;  // service -> host:port (gRPC target)
};

// From the environment: REDIS_URL, BUS_URL / KAFKA_BOOTSTRAP_SERVERS, ETCD_ENDPOINTS, ADVERTISE_HOST,
// GRPC_PORT, ADMIN_PORT, PRESENCE_TTL_MS and <SERVICE>_ENDPOINT (SIGNALING_ONLINE_ENDPOINT, ...).
// Throws std::runtime_error naming a malformed variable.
DistributedConfig LoadDistributedConfig(const std::map<std::string, std::string>& env);
// Names of the variables LoadDistributedConfig reads.
const std::vector<std::string>& DistributedEnvironmentNames();

// Runs `role` until SIGINT/SIGTERM (blocked in `signals` by the caller). Returns the exit code.
// Writes `ready_file` (when given) once serving: "grpc_port=N", "admin_port=N" (and the gateway's
// WebSocket port as the first line for access-gateway).
int RunRole(const std::string& role, const Config& config, const DistributedConfig& dist,
            const std::string& ready_file, sigset_t signals);

}  // namespace flare::app
