// Configuration of the flare binary: a TOML file (config/flare.toml documents every key), then
// environment overrides with the operator names (PORT, GATEWAY_ID, ...). Unknown keys are an error.
#pragma once

#include <map>
#include <string>

#include "domain/services.hpp"
#include "gateway/client_session.hpp"

namespace flare::app {

struct CoreGatewayOptions {
    bool enabled = true;
    std::string listen_address = "0.0.0.0";
    uint16_t grpc_port = 50050;
    uint16_t http_port = 50052;
    std::string business_secret;  // empty: the token secret
};

struct Config {
    gateway::GatewayOptions gateway;
    CoreGatewayOptions core_gateway;
    Limits limits;
    std::string database_url = "sqlite://data/flare.db";
    std::string storage_synchronous = "full";  // the ACK durability level: "full" or "normal"
    uint32_t sqlite_max_batch = 1024;
    uint32_t io_threads = 0;  // 0: one per core
    std::string log_level = "info";
    bool allow_insecure_secret = true;
    // Hooks: a TOML file and a folder of *.toml files (either may be empty); see the README.
    std::string hooks_file;
    std::string hooks_dir;
};

// Reads `path` (empty: defaults only) and applies `env` overrides. Throws std::runtime_error with a
// message naming the file, key and problem.
Config LoadConfig(const std::string& path, const std::map<std::string, std::string>& env);

// The environment variables LoadConfig looks at, read from the process environment.
std::map<std::string, std::string> ReadEnvironment();

}  // namespace flare::app
