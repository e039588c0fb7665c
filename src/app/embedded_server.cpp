#include "app/embedded_server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <stdexcept>
#include <thread>

#include "adapters/memory/memory_presence.hpp"
#include "adapters/sqlite/sqlite_store.hpp"
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
    o.synchronous = c.sqlite_synchronous;
    o.max_batch = c.sqlite_max_batch;
    return std::make_unique<SqliteStore>(o);
}

}  // namespace

struct EmbeddedServer::Impl {
    explicit Impl(Config c)
        : config(std::move(c)),
          ids(clock, static_cast<uint16_t>(std::hash<std::string>{}(config.gateway.gateway_id))),
          store(MakeStore(config)),
          sessions(*store),
          push(presence, gateways),
          orchestrator(config.limits, sessions, *store, push, clock, ids),
          work(io.get_executor()),
          gateway(io, config.gateway, sessions, orchestrator, presence, clock) {}

    Config config;
    SystemClock clock;
    TimeOrderedIdGenerator ids;
    std::unique_ptr<SqliteStore> store;
    MemoryPresenceRegistry presence;
    MemoryGatewayDirectory gateways;
    SessionService sessions;
    PushService push;
    MessageOrchestrator orchestrator;
    boost::asio::io_context io;
    boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work;
    gateway::WsGateway gateway;
    std::vector<std::thread> threads;
    bool started = false, stopped = false;
};

EmbeddedServer::EmbeddedServer(Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}

EmbeddedServer::~EmbeddedServer() { Stop(); }

const Config& EmbeddedServer::config() const { return impl_->config; }

uint16_t EmbeddedServer::gateway_port() const { return impl_->gateway.port(); }

void EmbeddedServer::Start() {
    Impl& s = *impl_;
    if (s.started) {
        return;
    }
    s.store->Start();
    if (auto st = s.gateway.Listen(); !st) {
        s.store->Stop();
        throw std::runtime_error(st.error().message);
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
    s.gateway.Stop();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
    while (s.gateway.connection_count() > 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));  // shutdown only: waits for goodbyes to flush
    }
    s.gateways.Unregister(s.config.gateway.gateway_id);
    s.store->Stop();
    s.work.reset();
    s.io.stop();
    for (auto& t : s.threads) {
        t.join();
    }
    s.threads.clear();
}

}  // namespace flare::app
