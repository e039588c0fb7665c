#include "app/embedded_server.hpp"

#include <spdlog/spdlog.h>

#include <google/protobuf/stubs/logging.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <stdexcept>
#include <thread>

#include "adapters/memory/memory_presence.hpp"
#include "adapters/sqlite/sqlite_store.hpp"
#include "hooks/hook_engine.hpp"
#include "core_gateway/servers.hpp"
#include "gateway/ws_gateway.hpp"

namespace flare::app {

namespace {

// The one place that picks the storage adapter by URL scheme.
std::unique_ptr<SqliteStore> MakeStore(const Config& c) {
    auto path = SqlitePathFromUrl(c.database_url);
    if (!path) {
        throw std::runtime_error("DATABASE_URL: " + path.error().message +
                                 "; embedded mode stores in SQLite (postgres:// is for distributed mode)");
    }
    SqliteOptions o;
    o.path = *path;
    o.synchronous = c.storage_synchronous;
    o.max_batch = c.sqlite_max_batch;
    return std::make_unique<SqliteStore>(o);
}

}  // namespace

struct EmbeddedServer::Impl {
    explicit Impl(Config c)
        : config(std::move(c)),
          ids(clock, static_cast<uint16_t>(std::hash<std::string>{}(config.gateway.gateway_id))),
          store(MakeStore(config)),
          sessions(*store, *store, push, clock, ids, config.limits),
          push(presence, gateways, config.limits.large_group_members),
          committer(*store, push),
          orchestrator(config.limits, sessions, *store, committer, clock, ids),
          work(io.get_executor()),
          gateway(io, config.gateway, sessions, orchestrator, presence, clock),
          business(core_gateway::BusinessApiOptions{config.core_gateway.business_secret, config.gateway.default_tenant},
                   config.limits, sessions, orchestrator, push, presence, clock, ids),
          grpc(business),
          http(io, business),
          hooks(hooks::HookEngineOptions{config.hooks_file, config.hooks_dir}, store.get(), clock) {
        orchestrator.set_hooks(&hooks);
        sessions.set_hooks(&hooks);
        push.set_hooks(&hooks);
        business.set_hooks(&hooks);
        // The operator's tenant (gateway.default_tenant) sees every hook, file hooks too; another
        // tenant only the hooks it manages.
        business.set_metrics([this](const std::string& tenant) {
            return tenant == config.gateway.default_tenant ? hooks.RenderMetrics() : hooks.RenderMetrics(&tenant);
        });
    }

    Config config;
    SystemClock clock;
    TimeOrderedIdGenerator ids;
    std::unique_ptr<SqliteStore> store;
    MemoryPresenceRegistry presence;
    MemoryGatewayDirectory gateways;
    SessionService sessions;
    PushService push;
    LocalCommitter committer;
    MessageOrchestrator orchestrator;
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work;
    gateway::WsGateway gateway;
    core_gateway::BusinessApi business;
    core_gateway::GrpcServer grpc;
    core_gateway::HttpApiServer http;
    hooks::HookEngine hooks;
    std::vector<std::thread> threads;
    bool started = false, stopped = false;
};

EmbeddedServer::EmbeddedServer(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}

EmbeddedServer::~EmbeddedServer() { Stop(); }

const Config& EmbeddedServer::config() const { return impl_->config; }

uint16_t EmbeddedServer::gateway_port() const { return impl_->gateway.port(); }
Status EmbeddedServer::ReloadHooks() { return impl_->hooks.Reload(); }
uint16_t EmbeddedServer::grpc_port() const { return impl_->config.core_gateway.enabled ? impl_->grpc.port() : 0; }
uint16_t EmbeddedServer::http_port() const { return impl_->config.core_gateway.enabled ? impl_->http.port() : 0; }

void EmbeddedServer::Start() {
    Impl& s = *impl_;
    if (s.started) {
        return;
    }
    // libprotobuf logs every invalid UTF-8 string it meets; clients can send those at will, and they
    // already get an error frame: keep them out of the server log unless debugging.
    google::protobuf::SetLogHandler([](google::protobuf::LogLevel level, const char* file, int line,
                                       const std::string& message) {
        spdlog::debug("protobuf {}:{}: {}", file, line, message);
    });
    s.store->Start();
    if (auto st = s.hooks.Start(); !st) {
        s.store->Stop();
        throw std::runtime_error("hooks: " + st.error().message);
    }
    if (auto st = s.gateway.Listen(); !st) {
        s.store->Stop();
        throw std::runtime_error(st.error().message);
    }
    if (s.config.core_gateway.enabled) {
        const auto& cg = s.config.core_gateway;
        if (auto st = s.http.Listen(cg.listen_address, cg.http_port); !st) {
            s.store->Stop();
            throw std::runtime_error(st.error().message);
        }
        if (auto st = s.grpc.Start(cg.listen_address, cg.grpc_port); !st) {
            s.store->Stop();
            throw std::runtime_error(st.error().message);
        }
        s.http.Start();
    }
    s.gateways.Register(s.config.gateway.gateway_id, s.config.gateway.region, &s.gateway);
    s.gateway.Start();
    unsigned n = s.config.io_threads != 0 ? s.config.io_threads : std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i < n; ++i) {
        s.threads.emplace_back([&io = s.io] {
            for (;;) {
                try {
                    io.run();
                    return;
                } catch (const std::exception& e) {
                    spdlog::error("io thread: unhandled exception: {}", e.what());
                }
            }
        });
    }
    s.started = true;
}

void EmbeddedServer::Stop() {
    Impl& s = *impl_;
    if (!s.started || s.stopped) {
        return;
    }
    s.stopped = true;
    s.grpc.Stop();
    s.http.Stop();
    s.gateway.Stop();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (s.gateway.connection_count() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));  // shutdown only: waits for goodbyes to flush
    }
    s.gateways.Unregister(s.config.gateway.gateway_id);
    s.hooks.Stop();
    s.store->Stop();
    s.work.reset();
    s.io.stop();
    for (auto& t : s.threads) {
        t.join();
    }
    s.threads.clear();
}

}  // namespace flare::app
