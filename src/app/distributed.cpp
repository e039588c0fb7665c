#include "app/distributed.hpp"

#include "hooks/hook_engine.hpp"

#include <spdlog/spdlog.h>

#include <google/protobuf/stubs/logging.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address_v4.hpp>
#include <condition_variable>
#include <fstream>
#include <future>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "adapters/etcd/etcd_registry.hpp"
#include "adapters/kafka/kafka_event_bus.hpp"
#include "adapters/nats/nats_event_bus.hpp"
#include "adapters/postgres/pg_store.hpp"
#include "adapters/redis/redis_gateway_routes.hpp"
#include "adapters/redis/redis_presence.hpp"
#include "app/admin_http.hpp"
#include "common/metrics.hpp"
#include "core_gateway/servers.hpp"
#include "gateway/ws_gateway.hpp"
#include "rpc/clients.hpp"
#include "rpc/pipeline.hpp"
#include "rpc/servers.hpp"

namespace flare::app {

namespace {

uint16_t ParsePort(const std::string& name, const std::string& v) {
    char* end = nullptr;
    const long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < 0 || n > 65535) {
        throw std::runtime_error(name + "='" + v + "' is not a port number (0..65535)");
    }
    return static_cast<uint16_t>(n);
}

// Service name -> the environment variable naming its endpoint.
const std::vector<std::pair<std::string, std::string>>& EndpointVariables() {
    static const std::vector<std::pair<std::string, std::string>> kVars{
        {"signaling-online", "SIGNALING_ONLINE_ENDPOINT"}, {"signaling-route", "SIGNALING_ROUTE_ENDPOINT"},
        {"hook-engine", "HOOK_ENGINE_ENDPOINT"},           {"session", "SESSION_ENDPOINT"},
        {"message-orchestrator", "MESSAGE_ORCHESTRATOR_ENDPOINT"}, {"push-server", "PUSH_SERVER_ENDPOINT"}};
    return kVars;
}

const RoleInfo& Role(const std::string& name) {
    for (const auto& r : DistributedRoles()) {
        if (r.name == name) {
            return r;
        }
    }
    throw std::runtime_error("unknown role '" + name + "'");
}

template <typename T>
Result<T> Await(const std::function<void(Callback<T>)>& call) {
    auto p = std::make_shared<std::promise<Result<T>>>();
    auto f = p->get_future();
    call([p](Result<T> r) { p->set_value(std::move(r)); });
    return f.get();
}

Status AwaitStatus(const std::function<void(StatusCallback)>& call) {
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    call([p](Status s) { p->set_value(std::move(s)); });
    return f.get();
}

std::string GrpcTarget(const std::vector<ServiceInstance>& found);

void Require(const Status& s, const std::string& what) {
    if (!s.ok()) {
        throw std::runtime_error(what + ": " + s.error().message);
    }
}

// Runs `fn` every `period` on its own thread until destroyed (heartbeats).
class Ticker {
public:
    Ticker(std::chrono::milliseconds period, std::function<void()> fn) : thread_([this, period, fn = std::move(fn)] {
        std::unique_lock lock(mu_);
        while (!cv_.wait_for(lock, period, [this] { return stop_; })) {
            lock.unlock();
            fn();
            lock.lock();
        }
    }) {}
    ~Ticker() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
        }
        cv_.notify_all();
        thread_.join();
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
};

// Everything one role process owns, torn down in reverse order of construction.
struct RoleHost {
    const Config& config;
    const DistributedConfig& dist;
    RoleInfo role;
    Metrics metrics;
    AdminServer admin;
    SystemClock clock;
    std::vector<std::function<void()>> stops;  // run in reverse on shutdown
    std::unique_ptr<EtcdServiceRegistry> registry;

    RoleHost(const Config& c, const DistributedConfig& d, RoleInfo r)
        : config(c), dist(d), role(std::move(r)), admin(role.name, metrics) {}

    void OnStop(std::function<void()> fn) { stops.push_back(std::move(fn)); }
    void StopAll() {
        for (auto it = stops.rbegin(); it != stops.rend(); ++it) {
            (*it)();
        }
        stops.clear();
    }

    uint16_t GrpcPort() const { return dist.grpc_port != 0 ? dist.grpc_port : role.grpc_port; }
    uint16_t AdminPort() const { return dist.admin_port != 0 ? dist.admin_port : role.admin_port; }

    rpc::ChannelOptions Peer(const std::string& service) {
        auto it = dist.endpoints.find(service);
        std::string endpoint = it != dist.endpoints.end() ? it->second : "";
        if (endpoint.empty() && registry) {
            auto found = Await<std::vector<ServiceInstance>>(
                [&](auto cb) { registry->Resolve(service, std::move(cb)); });
            if (found && !found->empty()) {
                endpoint = GrpcTarget(*found);
                spdlog::info("{}: {} found in etcd at {}", role.name, service, endpoint);
            }
        }
        if (endpoint.empty()) {
            endpoint = "127.0.0.1:" + std::to_string(Role(service).grpc_port);
        }
        return rpc::ChannelOptions{endpoint};
    }

    std::unique_ptr<EventBus> Bus() {
        const std::string& url = dist.bus_url;
        if (url.starts_with("nats://")) {
            NatsEventBusOptions o;
            o.url = url;
            // A crashed consumer's records are handed out again after this (running handlers report
            // progress, so a slow one is not mistaken for a dead one).
            o.ack_wait = std::chrono::milliseconds(5000);
            // Records of one partition are handled one at a time: more partitions, more appends in
            // flight for PostgreSQL to commit in one group (measured in docs/BENCHMARKS.md).
            o.partitions = 32;
            auto bus = std::make_unique<NatsEventBus>(o);
            Require(bus->Start(), "event bus " + url);
            return bus;
        }
        if (url.starts_with("kafka://")) {
            KafkaEventBusOptions o;
            o.bootstrap_servers = url.substr(8);
            o.session_timeout = std::chrono::milliseconds(6000);  // the broker's default minimum
            auto bus = std::make_unique<KafkaEventBus>(o);
            Require(bus->Start(), "event bus " + url);
            return bus;
        }
        throw std::runtime_error("BUS_URL='" + url + "': use nats://host:port or kafka://host:port[,host:port]");
    }

    std::unique_ptr<PgStore> Store() {
        const std::string& url = config.database_url;
        if (!url.starts_with("postgres://") && !url.starts_with("postgresql://")) {
            throw std::runtime_error("DATABASE_URL='" + url +
                                     "': the distributed roles store in PostgreSQL (postgres://user:pass@host:port/db)");
        }
        PgOptions o{url};
        o.synchronous_commit = config.storage_synchronous == "full";
        auto store = std::make_unique<PgStore>(o);
        store->Start();
        return store;
    }

    RedisOptions Redis() const {
        RedisOptions o;
        o.url = dist.redis_url;
        o.presence_ttl = std::chrono::milliseconds(dist.presence_ttl_ms);
        return o;
    }

    void Register(const std::string& service, uint16_t port) {
        if (!registry || port == 0) {
            return;
        }
        const std::string endpoint = dist.advertise_host + ":" + std::to_string(port);
        ServiceInstance inst{service, service + "@" + endpoint, endpoint, config.gateway.region};
        Require(AwaitStatus([&](auto cb) { registry->Register(inst, std::chrono::seconds(10), std::move(cb)); }),
                "registering with etcd");
        OnStop([this, service, id = inst.instance_id] {
            (void)AwaitStatus([&](auto cb) { registry->Deregister(service, id, std::move(cb)); });
        });
    }

    void AddStandardMetrics() {
        const auto started = std::chrono::steady_clock::now();
        metrics.Add("flare_up", "1 while the process serves", Metrics::Type::kGauge, [] { return 1.0; },
                    "role=\"" + role.name + "\"");
        metrics.Add("flare_uptime_seconds", "seconds since start", Metrics::Type::kGauge, [started] {
            return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        });
    }

    // `appends`: storage-writer also counts duplicates and refusals (push-server has neither).
    void AddPipelineMetrics(const std::string& prefix, const rpc::PipelineCounters& c, bool appends) {
        metrics.Add(prefix + "_processed_total", "bus records whose work succeeded", Metrics::Type::kCounter,
                    [&c] { return static_cast<double>(c.processed.load()); });
        metrics.Add(prefix + "_retried_total", "bus records handed back for another attempt", Metrics::Type::kCounter,
                    [&c] { return static_cast<double>(c.retried.load()); });
        metrics.Add(prefix + "_malformed_total", "records that did not parse (skipped)", Metrics::Type::kCounter,
                    [&c] { return static_cast<double>(c.malformed.load()); });
        if (appends) {
            metrics.Add(prefix + "_duplicates_total", "appends answered from the original (retries, redeliveries)",
                        Metrics::Type::kCounter, [&c] { return static_cast<double>(c.duplicates.load()); });
            metrics.Add(prefix + "_rejected_total", "appends refused (unknown conversation, bad content)",
                        Metrics::Type::kCounter, [&c] { return static_cast<double>(c.rejected.load()); });
        }
    }
};

// Several instances balance round-robin through an "ipv4:" target, which takes numeric addresses only;
// with host names the first instance is used (DNS may still list several addresses for it).
std::string GrpcTarget(const std::vector<ServiceInstance>& found) {
    auto numeric = [](const std::string& ep) {
        const auto colon = ep.rfind(':');
        boost::system::error_code ec;
        boost::asio::ip::make_address_v4(ep.substr(0, colon), ec);
        return colon != std::string::npos && !ec;
    };
    if (found.size() == 1 || !std::all_of(found.begin(), found.end(), [&](const auto& i) { return numeric(i.endpoint); })) {
        return found.front().endpoint;
    }
    std::string target = "ipv4:";
    for (size_t i = 0; i < found.size(); ++i) {
        target += (i ? "," : "") + found[i].endpoint;
    }
    return target;
}

void WriteReady(const std::string& file, const std::string& text) {
    if (!file.empty()) {
        std::ofstream(file) << text;
    }
}

}  // namespace

const std::vector<RoleInfo>& DistributedRoles() {
    static const std::vector<RoleInfo> kRoles{
        {"signaling-online", 50051, 9151}, {"signaling-route", 50062, 9162},      {"hook-engine", 50110, 9210},
        {"session", 50090, 9190},          {"message-orchestrator", 50081, 9181}, {"storage-writer", 0, 9170},
        {"push-server", 50091, 9191},      {"access-gateway", 0, 0},              {"core-gateway", 50050, 9150}};
    return kRoles;
}

bool IsDistributedRole(const std::string& role) {
    for (const auto& r : DistributedRoles()) {
        if (r.name == role) {
            return true;
        }
    }
    return false;
}

const std::vector<std::string>& DistributedEnvironmentNames() {
    static const std::vector<std::string> kNames = [] {
        std::vector<std::string> n{"REDIS_URL", "BUS_URL",   "KAFKA_BOOTSTRAP_SERVERS", "ETCD_ENDPOINTS",
                                   "ADVERTISE_HOST", "GRPC_PORT", "ADMIN_PORT", "PRESENCE_TTL_MS", "LISTEN_ADDRESS"};
        for (const auto& [service, var] : EndpointVariables()) {
            n.push_back(var);
        }
        return n;
    }();
    return kNames;
}

DistributedConfig LoadDistributedConfig(const std::map<std::string, std::string>& env) {
    DistributedConfig d;
    auto get = [&](const char* name) -> std::string {
        auto it = env.find(name);
        return it == env.end() ? "" : it->second;
    };
    if (auto v = get("REDIS_URL"); !v.empty()) {
        d.redis_url = v;
    }
    if (auto v = get("BUS_URL"); !v.empty()) {
        d.bus_url = v;
    } else if (auto k = get("KAFKA_BOOTSTRAP_SERVERS"); !k.empty()) {
        d.bus_url = "kafka://" + k;
    }
    d.etcd_endpoints = get("ETCD_ENDPOINTS");
    if (auto v = get("ADVERTISE_HOST"); !v.empty()) {
        d.advertise_host = v;
    }
    if (auto v = get("LISTEN_ADDRESS"); !v.empty()) {
        d.listen_address = v;
    }
    if (auto v = get("GRPC_PORT"); !v.empty()) {
        d.grpc_port = ParsePort("GRPC_PORT", v);
    }
    if (auto v = get("ADMIN_PORT"); !v.empty()) {
        d.admin_port = ParsePort("ADMIN_PORT", v);
    }
    if (auto v = get("PRESENCE_TTL_MS"); !v.empty()) {
        char* end = nullptr;
        const long n = std::strtol(v.c_str(), &end, 10);
        if (*end != '\0' || n < 300 || n > 3'600'000) {
            throw std::runtime_error("PRESENCE_TTL_MS='" + v + "' must be 300..3600000 milliseconds");
        }
        d.presence_ttl_ms = static_cast<uint32_t>(n);
    }
    for (const auto& [service, var] : EndpointVariables()) {
        if (auto v = get(var.c_str()); !v.empty()) {
            d.endpoints[service] = v;
        }
    }
    return d;
}

int RunRole(const std::string& role_name, const Config& config, const DistributedConfig& dist,
            const std::string& ready_file, sigset_t signals) {
    google::protobuf::SetLogHandler([](google::protobuf::LogLevel, const char* file, int line, const std::string& m) {
        spdlog::debug("protobuf {}:{}: {}", file, line, m);
    });
    RoleInfo info = Role(role_name);
    if (role_name == "access-gateway") {
        info.grpc_port = static_cast<uint16_t>(config.gateway.port + 2);
        info.admin_port = static_cast<uint16_t>(config.gateway.port + 1000);
    }
    RoleHost host(config, dist, info);
    host.AddStandardMetrics();
    if (!dist.etcd_endpoints.empty()) {
        EtcdRegistryOptions o;
        o.endpoints = dist.etcd_endpoints;
        host.registry = std::make_unique<EtcdServiceRegistry>(o);
    }
    Require(host.admin.Start(dist.listen_address, host.AdminPort()), "admin port");
    host.OnStop([&host] { host.admin.Stop(); });

    uint16_t grpc_port = 0, ws_port = 0, http_port = 0;  // what this role serves, once bound
    rpc::RpcServer rpc_server;
    auto serve_rpc = [&](uint16_t port) {
        Require(rpc_server.Start(dist.listen_address, port), role_name + " gRPC");
        host.OnStop([&rpc_server] { rpc_server.Stop(); });
        grpc_port = rpc_server.port();
        host.Register(role_name, grpc_port);
    };

    // Objects that must outlive the servers that reference them are declared here, before any server.
    std::unique_ptr<RedisPresenceRegistry> redis_presence;
    std::unique_ptr<RedisGatewayRouteStore> redis_routes;
    std::unique_ptr<PgStore> store;
    std::unique_ptr<EventBus> bus;
    std::unique_ptr<SessionService> sessions;
    std::unique_ptr<ConversationApi> session_client;
    std::unique_ptr<PresenceRegistry> presence_client;
    std::unique_ptr<GatewayRouteStore> route_client;
    std::unique_ptr<MessagingApi> messaging_client;
    std::unique_ptr<PushApi> push_client;
    std::unique_ptr<rpc::BusCommitter> committer;
    std::unique_ptr<TimeOrderedIdGenerator> ids;
    std::unique_ptr<MessageOrchestrator> orchestrator;
    std::unique_ptr<rpc::AppendReplier> replier;
    std::unique_ptr<rpc::StorageWriter> writer;
    std::unique_ptr<rpc::RemoteGatewayDirectory> gateways;
    std::unique_ptr<PushService> push;
    std::unique_ptr<rpc::PushWorker> push_worker;
    boost::asio::io_context io;
    auto work = boost::asio::make_work_guard(io);
    std::vector<std::thread> io_threads;
    std::unique_ptr<gateway::WsGateway> ws;
    std::unique_ptr<Ticker> heartbeat;
    struct Guard {
        std::mutex mu;
        bool alive = true;
    };
    auto heartbeat_guard = std::make_shared<Guard>();
    std::unique_ptr<core_gateway::BusinessApi> business;
    std::unique_ptr<hooks::HookEngine> hook_engine;
    std::unique_ptr<HookApi> hook_client;
    std::function<void()> on_reload;
    std::unique_ptr<core_gateway::GrpcServer> business_grpc;
    std::unique_ptr<core_gateway::HttpApiServer> business_http;
    auto run_io = [&] {
        const unsigned n = config.io_threads != 0 ? config.io_threads : std::max(1u, std::thread::hardware_concurrency());
        for (unsigned i = 0; i < n; ++i) {
            io_threads.emplace_back([&io] { io.run(); });
        }
        host.OnStop([&] {
            work.reset();
            io.stop();
            for (auto& t : io_threads) {
                t.join();
            }
            io_threads.clear();
        });
    };

    try {
        if (role_name == "signaling-online") {
            redis_presence = std::make_unique<RedisPresenceRegistry>(host.Redis());
            redis_presence->Start();
            host.OnStop([&] { redis_presence->Stop(); });
            rpc_server.AddPresence(*redis_presence);
            serve_rpc(host.GrpcPort());
        } else if (role_name == "signaling-route") {
            redis_routes = std::make_unique<RedisGatewayRouteStore>(host.Redis());
            redis_routes->Start();
            host.OnStop([&] { redis_routes->Stop(); });
            rpc_server.AddRoutes(*redis_routes);
            serve_rpc(host.GrpcPort());
        } else if (role_name == "hook-engine") {
            // The hook engine: the hooks files, plus the hooks managed through the business API (kept in
            // PostgreSQL); the orchestrator, session, push-server and core-gateway call it.
            store = host.Store();
            host.OnStop([&] { store->Stop(); });
            hook_engine = std::make_unique<hooks::HookEngine>(
                hooks::HookEngineOptions{config.hooks_file, config.hooks_dir}, store.get(), host.clock);
            if (auto st = hook_engine->Start(); !st) {
                throw std::runtime_error("hooks: " + st.error().message);
            }
            host.OnStop([&] { hook_engine->Stop(); });
            host.metrics.AddRenderer([&] { return hook_engine->RenderMetrics(); });
            on_reload = [&] {
                if (auto st = hook_engine->Reload(); st) {
                    spdlog::info("hook-engine: SIGHUP: hooks reloaded");
                } else {
                    spdlog::error("hook-engine: SIGHUP: hooks not reloaded, the ones in use stay: {}", st.error().message);
                }
            };
            rpc_server.AddHookEngine(*hook_engine);
            serve_rpc(host.GrpcPort());
        } else if (role_name == "session") {
            store = host.Store();
            host.OnStop([&] { store->Stop(); });
            // Group changes and per-user state are written here and pushed through push-server.
            push_client = rpc::MakePushClient(host.Peer("push-server"));
            ids = std::make_unique<TimeOrderedIdGenerator>(
                host.clock, static_cast<uint16_t>(std::hash<std::string>{}(dist.advertise_host + RandomHexId(4))));
            sessions = std::make_unique<SessionService>(*store, *store, *push_client, host.clock, *ids, config.limits,
                                                        100'000, /*remember_missing=*/false);
            hook_client = rpc::MakeHookClient(host.Peer("hook-engine"));
            sessions->set_hooks(hook_client.get());
            host.metrics.Add("flare_session_cached_conversations", "conversations in the member cache",
                             Metrics::Type::kGauge, [&] { return static_cast<double>(sessions->cached_conversations()); });
            rpc_server.AddSessions(*sessions);
            serve_rpc(host.GrpcPort());
        } else if (role_name == "message-orchestrator") {
            store = host.Store();  // reads (history and sync) go straight to PostgreSQL
            host.OnStop([&] { store->Stop(); });
            bus = host.Bus();
            // Stopped (pending publishes completed) before the objects their callbacks point to go away.
            host.OnStop([&] { bus.reset(); });
            session_client = rpc::MakeSessionClient(host.Peer("session"));
            presence_client = rpc::MakePresenceClient(host.Peer("signaling-online"));
            const uint16_t port = host.GrpcPort();  // 0 only when asked for: then known after serve_rpc
            committer = std::make_unique<rpc::BusCommitter>(
                *bus, presence_client.get(),
                rpc::BusCommitterOptions{dist.advertise_host + ":" + std::to_string(port)});
            committer->Start();
            host.OnStop([&] { committer->Stop(); });
            host.metrics.Add("flare_orchestrator_waiting_sends", "sends waiting for storage-writer",
                             Metrics::Type::kGauge, [&] { return static_cast<double>(committer->waiting()); });
            ids = std::make_unique<TimeOrderedIdGenerator>(
                host.clock, static_cast<uint16_t>(std::hash<std::string>{}(dist.advertise_host + ":" +
                                                                          std::to_string(port) + RandomHexId(4))));
            orchestrator = std::make_unique<MessageOrchestrator>(config.limits, *session_client, *store, *committer,
                                                                 host.clock, *ids);
            hook_client = rpc::MakeHookClient(host.Peer("hook-engine"));
            orchestrator->set_hooks(hook_client.get());
            rpc_server.AddMessages(*orchestrator, committer.get());
            serve_rpc(port);
            if (port == 0) {
                committer->set_reply_endpoint(dist.advertise_host + ":" + std::to_string(rpc_server.port()));
            }
        } else if (role_name == "storage-writer") {
            // Shutdown runs: writer stop, store drain (its last appends still publish), bus stop, in that
            // order, so no publish completes into a destroyed object.
            bus = host.Bus();
            host.OnStop([&] { bus.reset(); });
            store = host.Store();
            host.OnStop([&] { store->Stop(); });
            replier = std::make_unique<rpc::AppendReplier>();
            writer = std::make_unique<rpc::StorageWriter>(*bus, *store, *replier);
            Require(writer->Start(), "consuming the append topic");
            host.OnStop([&] { writer->Stop(); });
            host.AddPipelineMetrics("flare_storage_writer", writer->counters(), /*appends=*/true);
        } else if (role_name == "push-server") {
            presence_client = rpc::MakePresenceClient(host.Peer("signaling-online"));
            route_client = rpc::MakeRouteClient(host.Peer("signaling-route"));
            gateways = std::make_unique<rpc::RemoteGatewayDirectory>(*route_client, std::chrono::milliseconds(1000));
            gateways->Start();
            host.OnStop([&] { gateways->Stop(); });
            host.metrics.Add("flare_push_known_gateways", "gateways in the route directory", Metrics::Type::kGauge,
                             [&] { return static_cast<double>(gateways->known_gateways()); });
            push = std::make_unique<PushService>(*presence_client, *gateways, config.limits.large_group_members);
            hook_client = rpc::MakeHookClient(host.Peer("hook-engine"));
            push->set_hooks(hook_client.get());
            rpc_server.AddPush(*push);
            serve_rpc(host.GrpcPort());
            bus = host.Bus();
            host.OnStop([&] { bus.reset(); });
            push_worker = std::make_unique<rpc::PushWorker>(*bus, *push);
            Require(push_worker->Start(), "consuming the committed topic");
            host.OnStop([&] { push_worker->Stop(); });
            host.AddPipelineMetrics("flare_push", push_worker->counters(), /*appends=*/false);
        } else if (role_name == "access-gateway") {
            presence_client = rpc::MakePresenceClient(host.Peer("signaling-online"));
            route_client = rpc::MakeRouteClient(host.Peer("signaling-route"));
            session_client = rpc::MakeSessionClient(host.Peer("session"));
            messaging_client = rpc::MakeMessagingClient(host.Peer("message-orchestrator"));
            ws = std::make_unique<gateway::WsGateway>(io, config.gateway, *session_client, *messaging_client,
                                                      *presence_client, host.clock);
            Require(ws->Listen(), "gateway");
            rpc_server.AddDelivery(*ws);
            serve_rpc(host.GrpcPort());
            // The route directory learns where this gateway is; push-server delivers through it.
            const GatewayRoute route{config.gateway.gateway_id, config.gateway.region,
                                     dist.advertise_host + ":" + std::to_string(rpc_server.port())};
            const auto route_ttl = std::chrono::milliseconds(std::max<uint32_t>(dist.presence_ttl_ms, 3000));
            Require(AwaitStatus([&](auto cb) { route_client->Upsert(route, route_ttl, std::move(cb)); }),
                    "registering the gateway with signaling-route");
            ws->Start();
            run_io();
            host.metrics.Add("flare_gateway_connections", "open WebSocket connections", Metrics::Type::kGauge,
                             [&] { return static_cast<double>(ws->connection_count()); });
            heartbeat = std::make_unique<Ticker>(
                std::chrono::milliseconds(std::max<uint32_t>(dist.presence_ttl_ms / 3, 100)), [&, route, route_ttl] {
                    route_client->Upsert(route, route_ttl, [](Status s) {
                        if (!s.ok()) {
                            spdlog::warn("gateway: route heartbeat failed: {}", s.error().message);
                        }
                    });
                    auto devices = ws->RegisteredDevices();
                    for (size_t i = 0; i < devices.size(); i += 500) {
                        std::vector<DeviceSession> chunk(devices.begin() + static_cast<long>(i),
                                                         devices.begin() + static_cast<long>(std::min(i + 500, devices.size())));
                        auto sent = std::make_shared<std::vector<DeviceSession>>(chunk);
                        presence_client->Refresh(std::move(chunk), [&, sent, guard = heartbeat_guard](Status s) {
                            std::lock_guard alive(guard->mu);  // the gateway is not torn down meanwhile
                            if (!guard->alive) {
                                return;
                            }
                            if (!s.ok()) {
                                spdlog::warn("gateway: presence heartbeat failed: {}", s.error().message);
                                return;
                            }
                            // A device that disconnected while this refresh was on its way may have been
                            // written back by it: take those out again (their Unregister went first).
                            for (const auto& d : *sent) {
                                if (!ws->IsRegistered(d.connection_id)) {
                                    presence_client->Unregister(d.tenant_id, d.user_id, d.device_id, d.gateway_id,
                                                                d.connection_id);
                                }
                            }
                        });
                    }
                });
            host.OnStop([&] {
                heartbeat.reset();
                {
                    std::lock_guard lock(heartbeat_guard->mu);
                    heartbeat_guard->alive = false;  // refreshes still answered from now on touch nothing
                }
                ws->Stop();
                const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(3);
                while (ws->connection_count() > 0 && std::chrono::steady_clock::now() < deadline) {
                    std::this_thread::sleep_for(std::chrono::milliseconds(10));  // shutdown: goodbyes flush
                }
                // Sends still forwarded complete into the connections' strands: let them land first.
                if (!rpc::WaitForSends(*messaging_client, std::chrono::seconds(12))) {
                    spdlog::warn("gateway: sends still in flight at shutdown");
                }
                (void)AwaitStatus([&](auto cb) { route_client->Remove(config.gateway.gateway_id, std::move(cb)); });
            });
            ws_port = ws->port();
        } else if (role_name == "core-gateway") {
            presence_client = rpc::MakePresenceClient(host.Peer("signaling-online"));
            messaging_client = rpc::MakeMessagingClient(host.Peer("message-orchestrator"));
            push_client = rpc::MakePushClient(host.Peer("push-server"));
            session_client = rpc::MakeSessionClient(host.Peer("session"));
            ids = std::make_unique<TimeOrderedIdGenerator>(host.clock, static_cast<uint16_t>(::getpid()));
            business = std::make_unique<core_gateway::BusinessApi>(
                core_gateway::BusinessApiOptions{config.core_gateway.business_secret, config.gateway.default_tenant},
                config.limits, *session_client, *messaging_client, *push_client, *presence_client, host.clock, *ids);
            hook_client = rpc::MakeHookClient(host.Peer("hook-engine"));
            business->set_hooks(hook_client.get());
            business_grpc = std::make_unique<core_gateway::GrpcServer>(*business);
            business_http = std::make_unique<core_gateway::HttpApiServer>(io, *business);
            const auto& cg = config.core_gateway;
            Require(business_http->Listen(cg.listen_address, cg.http_port), "core gateway HTTP");
            Require(business_grpc->Start(cg.listen_address, dist.grpc_port != 0 ? dist.grpc_port : cg.grpc_port),
                    "core gateway gRPC");
            host.OnStop([&] { business_grpc->Stop(); });
            business_http->Start();
            run_io();
            host.OnStop([&] { business_http->Stop(); });
            grpc_port = business_grpc->port();
            http_port = business_http->port();
            host.Register(role_name, grpc_port);
        }
    } catch (const std::exception& e) {
        spdlog::error("{}: cannot start: {}", role_name, e.what());
        host.StopAll();
        return 1;
    }
    // The gateway's WebSocket port first (what scripts read, as for `serve embedded`), then the rest.
    std::string ready = ws_port != 0 ? std::to_string(ws_port) + "\n" : "";
    ready += "grpc_port=" + std::to_string(grpc_port) + "\n";
    if (http_port != 0) {
        ready += "http_port=" + std::to_string(http_port) + "\n";
    }
    ready += "admin_port=" + std::to_string(host.admin.port()) + "\n";
    WriteReady(ready_file, ready);
    host.admin.SetReady(true);
    std::string serving;
    if (ws_port != 0) {
        serving += "WebSocket port " + std::to_string(ws_port) + ", ";
    }
    if (grpc_port != 0) {
        serving += "gRPC port " + std::to_string(grpc_port) + ", ";
    }
    if (http_port != 0) {
        serving += "HTTP port " + std::to_string(http_port) + ", ";
    }
    spdlog::info("{} serving: {}admin http://{}:{}/metrics", role_name, serving, dist.listen_address,
                 host.admin.port());
    int sig = 0;
    for (;;) {
        sigwait(&signals, &sig);
        if (sig != SIGHUP) {
            break;
        }
        if (on_reload) {
            on_reload();
        }
    }
    spdlog::info("{}: {} received, draining", role_name, sig == SIGINT ? "SIGINT" : "SIGTERM");
    host.admin.SetReady(false);
    host.StopAll();
    spdlog::info("{}: stopped", role_name);
    return 0;
}

}  // namespace flare::app
