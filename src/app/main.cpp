// The flare binary: `flare serve embedded` runs every service in one process; `flare token` mints a
// client token for tools like websocat; `flare migrate`
// applies the PostgreSQL migrations. Distributed roles come with the distributed deployment.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "adapters/postgres/pg_migrations.hpp"
#include "app/distributed.hpp"
#include "app/embedded_server.hpp"
#include "auth/jwt.hpp"

namespace {

constexpr const char* kUsage = R"(usage:
  flare serve embedded [--config FILE] [--port N] [--ready-file FILE]
      Runs the whole IM core in this process (SQLite storage, in-process presence and push).
  flare serve ROLE [--config FILE] [--port N] [--ready-file FILE]
      Runs one service of the distributed deployment: signaling-online, signaling-route,
      hook-engine, session, message-orchestrator, storage-writer, push-server, access-gateway,
      core-gateway (also started as flare-ROLE). Environment: REDIS_URL, DATABASE_URL (postgres://),
      BUS_URL (nats://, kafka://) or KAFKA_BOOTSTRAP_SERVERS, ETCD_ENDPOINTS, ADVERTISE_HOST,
      GRPC_PORT, ADMIN_PORT, PRESENCE_TTL_MS, <SERVICE>_ENDPOINT (e.g. SESSION_ENDPOINT).
      Environment overrides: PORT, GATEWAY_ID, GATEWAY_REGION, LISTEN_ADDRESS, DATABASE_URL,
      STORAGE_SYNCHRONOUS, TOKEN_SECRET, DEFAULT_TENANT, LOG_LEVEL, IO_THREADS,
      CORE_GATEWAY_GRPC_PORT, CORE_GATEWAY_HTTP_PORT, BUSINESS_SECRET, RECALL_WINDOW_MS,
      LARGE_GROUP_MEMBERS, HOOKS_FILE, HOOKS_DIR.
  flare token USER [--tenant T] [--device D] [--ttl SECONDS] [--role business]
      Prints a JWT signed with TOKEN_SECRET (default 'insecure-secret'); --role business makes a
      token for the business API (sign with BUSINESS_SECRET if the server has one).
  flare migrate [--database-url URL]
      Applies the PostgreSQL migrations this binary carries (migrations/postgres/) that the database
      lacks; idempotent, never destructive. URL defaults to DATABASE_URL.
  flare version
)";

int Usage(const std::string& problem) {
    std::cerr << "flare: " << problem << "\n\n" << kUsage;
    return 2;
}

int Serve(const std::vector<std::string>& args) {
    if (args.empty()) {
        return Usage("serve needs a role");
    }
    const std::string& role = args[0];
    if (role != "embedded" && !flare::app::IsDistributedRole(role)) {
        return Usage("unknown role '" + role + "'");
    }
    std::string config_path, ready_file;
    std::map<std::string, std::string> env = flare::app::ReadEnvironment();
    for (size_t i = 1; i < args.size(); ++i) {
        auto value = [&]() -> std::string {
            if (i + 1 >= args.size()) {
                throw std::runtime_error(args[i] + " needs a value");
            }
            return args[++i];
        };
        if (args[i] == "--config") {
            config_path = value();
        } else if (args[i] == "--port") {
            env["PORT"] = value();
        } else if (args[i] == "--ready-file") {
            ready_file = value();
        } else {
            return Usage("unknown option '" + args[i] + "'");
        }
    }
    flare::app::Config config = flare::app::LoadConfig(config_path, env);
    spdlog::set_level(spdlog::level::from_str(config.log_level));
    if (config.gateway.token_secret == "insecure-secret") {
        spdlog::warn("************************************************************************");
        spdlog::warn("TOKEN_SECRET is the default 'insecure-secret': anyone can mint tokens.");
        spdlog::warn("Set TOKEN_SECRET (or auth.token_secret) before exposing this server.");
        spdlog::warn("************************************************************************");
        if (!config.allow_insecure_secret) {
            spdlog::error("auth.allow_insecure_secret is false: refusing to start with the default secret");
            return 1;
        }
    }

    // Signals are taken synchronously by this thread; every other thread inherits the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    if (role != "embedded") {
        std::map<std::string, std::string> denv = env;
        for (const auto& name : flare::app::DistributedEnvironmentNames()) {
            if (const char* v = std::getenv(name.c_str())) {
                denv[name] = v;
            }
        }
        if (config.database_url == "sqlite://data/flare.db" && !env.contains("DATABASE_URL")) {
            config.database_url = "postgres://flare:flare123@127.0.0.1:25432/flare";  // the guide's database
        }
        return flare::app::RunRole(role, config, flare::app::LoadDistributedConfig(denv), ready_file, signals);
    }
    flare::app::EmbeddedServer server(config);
    server.Start();
    const uint16_t port = server.gateway_port();
    spdlog::info("Flare IM Core (embedded) serving: gateway '{}'{} on ws://{}:{}/, storage {}",
                 config.gateway.gateway_id, config.gateway.region.empty() ? "" : " region " + config.gateway.region,
                 config.gateway.listen_address, port, config.database_url);
    if (config.core_gateway.enabled) {
        spdlog::info("core gateway (business API): gRPC on {}:{}, HTTP/JSON on http://{}:{}/api/v1/",
                     config.core_gateway.listen_address, server.grpc_port(), config.core_gateway.listen_address,
                     server.http_port());
    }
    if (!ready_file.empty()) {
        // First line: the WebSocket port (what scripts read); then the business API ports.
        std::ofstream(ready_file) << port << "\ngrpc_port=" << server.grpc_port() << "\nhttp_port=" << server.http_port()
                                  << "\n";
    }
    int sig = 0;
    for (;;) {
        sigwait(&signals, &sig);
        if (sig != SIGHUP) {
            break;
        }
        if (auto st = server.ReloadHooks(); st) {
            spdlog::info("SIGHUP: hooks reloaded");
        } else {
            spdlog::error("SIGHUP: hooks not reloaded, the ones in use stay: {}", st.error().message);
        }
    }
    spdlog::info("{} received: saying goodbye to clients and draining storage", sig == SIGINT ? "SIGINT" : "SIGTERM");
    server.Stop();
    spdlog::info("stopped");
    return 0;
}

int Migrate(const std::vector<std::string>& args) {
    const char* env_url = std::getenv("DATABASE_URL");
    std::string url = env_url ? env_url : "";
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--database-url" && i + 1 < args.size()) {
            url = args[++i];
        } else {
            return Usage("unknown option '" + args[i] + "'");
        }
    }
    if (url.empty()) {
        return Usage("migrate needs --database-url postgres://... or DATABASE_URL");
    }
    if (!url.starts_with("postgres://") && !url.starts_with("postgresql://")) {
        std::cerr << "flare: migrate is for PostgreSQL (postgres://...); SQLite databases migrate themselves when "
                     "opened\n";
        return 2;
    }
    auto applied = flare::PgMigrate(url);
    if (!applied.ok()) {
        std::cerr << "flare: migrate: " << applied.error().message << "\n";
        return 1;
    }
    if (applied->empty()) {
        std::cout << "database is up to date (" << flare::PgMigrations().size() << " migrations)\n";
    }
    for (const auto& name : *applied) {
        std::cout << "applied " << name << "\n";
    }
    return 0;
}

int Token(const std::vector<std::string>& args) {
    if (!args.empty() && (args[0] == "--help" || args[0] == "-h")) {
        std::cout << kUsage;
        return 0;
    }
    if (args.empty() || args[0].starts_with("--")) {
        return Usage("token needs a user id");
    }
    std::string tenant = "default", device, role;
    long ttl = 24 * 3600;
    for (size_t i = 1; i + 1 < args.size(); i += 2) {
        if (args[i] == "--tenant") {
            tenant = args[i + 1];
        } else if (args[i] == "--device") {
            device = args[i + 1];
        } else if (args[i] == "--role") {
            role = args[i + 1];
        } else if (args[i] == "--ttl") {
            char* end = nullptr;
            ttl = std::strtol(args[i + 1].c_str(), &end, 10);
            if (*end != '\0' || ttl <= 0) {
                return Usage("--ttl needs a positive number of seconds, not '" + args[i + 1] + "'");
            }
        } else {
            return Usage("unknown option '" + args[i] + "'");
        }
    }
    const char* secret = std::getenv(role == flare::kBusinessRole && std::getenv("BUSINESS_SECRET") ? "BUSINESS_SECRET"
                                                                                                  : "TOKEN_SECRET");
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    std::cout << flare::MintToken(secret ? secret : "insecure-secret", args[0], tenant, now + ttl, device, role) << "\n";
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    spdlog::set_default_logger(spdlog::stderr_color_mt("flare"));
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
    std::vector<std::string> args(argv + 1, argv + argc);
    // Started as flare-<role> (the operator-facing names are symlinks): `flare serve <role> ...`.
    const std::string self = std::filesystem::path(argv[0]).filename().string();
    if (self.starts_with("flare-") && flare::app::IsDistributedRole(self.substr(6))) {
        args.insert(args.begin(), {"serve", self.substr(6)});
    }
    if (args.empty()) {
        return Usage("no command");
    }
    try {
        const std::string cmd = args[0];
        args.erase(args.begin());
        if (cmd == "serve") {
            return Serve(args);
        }
        if (cmd == "token") {
            return Token(args);
        }
        if (cmd == "migrate") {
            return Migrate(args);
        }
        if (cmd == "version" || cmd == "--version") {
            std::cout << "flare " << FLARE_VERSION << "\n";
            return 0;
        }
        if (cmd == "help" || cmd == "--help" || cmd == "-h") {
            std::cout << kUsage;
            return 0;
        }
        return Usage("unknown command '" + cmd + "'");
    } catch (const std::exception& e) {
        std::cerr << "flare: " << e.what() << "\n";
        return 1;
    }
}
