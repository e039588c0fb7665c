#include "app/config.hpp"

#include <cstdlib>
#include <limits>
#include <set>
#include <stdexcept>
#include <toml++/toml.h>

namespace flare::app {

namespace {

[[noreturn]] void Fail(const std::string& where, const std::string& what) {
    throw std::runtime_error(where + ": " + what);
}

class Reader {
public:
    Reader(const toml::table& root, std::string file) : root_(root), file_(std::move(file)) {}

    const toml::table* Section(const std::string& name, const std::set<std::string>& keys) {
        seen_sections_.insert(name);
        const toml::node* node = root_.get(name);
        if (node == nullptr) {
            return nullptr;
        }
        const toml::table* t = node->as_table();
        if (t == nullptr) {
            Fail(Where(node), "'" + name + "' must be a table ([" + name + "])");
        }
        for (const auto& [k, v] : *t) {
            if (!keys.contains(std::string(k.str()))) {
                Fail(Where(&v), "unknown key '" + name + "." + std::string(k.str()) + "'");
            }
        }
        return t;
    }

    void CheckTopLevel() {
        for (const auto& [k, v] : root_) {
            if (!seen_sections_.contains(std::string(k.str()))) {
                Fail(Where(&v), "unknown key '" + std::string(k.str()) + "'");
            }
        }
    }

    void Str(const toml::table* t, const char* key, std::string& out) {
        if (const toml::node* n = t ? t->get(key) : nullptr) {
            auto v = n->value<std::string>();
            if (!v) {
                Fail(Where(n), std::string("'") + key + "' must be a string");
            }
            out = *v;
        }
    }
    template <typename Int>
    void Num(const toml::table* t, const char* key, Int& out, int64_t min, int64_t max) {
        if (const toml::node* n = t ? t->get(key) : nullptr) {
            auto v = n->value<int64_t>();
            if (!v || !n->is_integer()) {
                Fail(Where(n), std::string("'") + key + "' must be an integer");
            }
            if (*v < min || *v > max) {
                Fail(Where(n), std::string("'") + key + "' must be in " + std::to_string(min) + ".." +
                                   std::to_string(max) + ", not " + std::to_string(*v));
            }
            out = static_cast<Int>(*v);
        }
    }
    void Bool(const toml::table* t, const char* key, bool& out) {
        if (const toml::node* n = t ? t->get(key) : nullptr) {
            auto v = n->value<bool>();
            if (!v || !n->is_boolean()) {
                Fail(Where(n), std::string("'") + key + "' must be true or false");
            }
            out = *v;
        }
    }

private:
    std::string Where(const toml::node* n) const {
        const auto& src = n->source();
        return file_ + ":" + std::to_string(src.begin.line);
    }

    const toml::table& root_;
    std::string file_;
    std::set<std::string> seen_sections_;
};

int64_t ParseEnvInt(const std::string& name, const std::string& value, int64_t min, int64_t max) {
    char* end = nullptr;
    errno = 0;
    long long v = std::strtoll(value.c_str(), &end, 10);
    if (value.empty() || *end != '\0' || errno != 0 || v < min || v > max) {
        Fail("environment", name + "='" + value + "' must be an integer in " + std::to_string(min) + ".." +
                                std::to_string(max));
    }
    return v;
}

}  // namespace

Config LoadConfig(const std::string& path, const std::map<std::string, std::string>& env) {
    Config c;
    if (!path.empty()) {
        toml::table root;
        try {
            root = toml::parse_file(path);
        } catch (const toml::parse_error& e) {
            Fail(path + ":" + std::to_string(e.source().begin.line), std::string(e.description()));
        }
        Reader r(root, path);
        auto& g = c.gateway;
        if (auto* t = r.Section("gateway", {"id", "region", "listen_address", "port", "max_frame_bytes",
                                            "hard_max_frame_bytes", "heartbeat_interval_ms", "idle_timeout_ms",
                                            "auth_timeout_ms", "max_inflight_requests", "max_queued_frames",
                                            "max_queued_bytes", "write_stall_timeout_ms"})) {
            r.Str(t, "id", g.gateway_id);
            r.Str(t, "region", g.region);
            r.Str(t, "listen_address", g.listen_address);
            r.Num(t, "port", g.port, 0, 65535);
            r.Num(t, "max_frame_bytes", g.max_frame_bytes, 1024, 16 << 20);
            r.Num(t, "hard_max_frame_bytes", g.hard_max_frame_bytes, 1024, 64 << 20);
            r.Num(t, "heartbeat_interval_ms", g.heartbeat_interval_ms, 100, 3'600'000);
            r.Num(t, "idle_timeout_ms", g.idle_timeout_ms, 200, 7'200'000);
            r.Num(t, "auth_timeout_ms", g.auth_timeout_ms, 100, 600'000);
            r.Num(t, "max_inflight_requests", g.max_inflight_requests, 1, 100'000);
            r.Num(t, "max_queued_frames", g.max_queued_frames, 16, 10'000'000);
            r.Num(t, "max_queued_bytes", g.max_queued_bytes, 4096, int64_t{1} << 34);
            r.Num(t, "write_stall_timeout_ms", g.write_stall_timeout_ms, 100, 600'000);
        }
        if (auto* t = r.Section("auth", {"token_secret", "default_tenant", "allow_insecure_secret"})) {
            r.Str(t, "token_secret", g.token_secret);
            r.Str(t, "default_tenant", g.default_tenant);
            r.Bool(t, "allow_insecure_secret", c.allow_insecure_secret);
        }
        if (auto* t = r.Section("limits", {"max_text_bytes", "max_client_msg_id_bytes", "sync_default_limit",
                                           "sync_max_limit", "recall_window_ms", "max_group_members",
                                           "large_group_members", "max_mentions"})) {
            r.Num(t, "recall_window_ms", c.limits.recall_window_ms, 0, 30u * 24 * 3600 * 1000);
            r.Num(t, "max_group_members", c.limits.max_group_members, 2, 1'000'000);
            r.Num(t, "large_group_members", c.limits.large_group_members, 0, 1'000'000);
            r.Num(t, "max_mentions", c.limits.max_mentions, 0, 10'000);
            r.Num(t, "max_text_bytes", c.limits.max_text_bytes, 1, 16 << 20);
            r.Num(t, "max_client_msg_id_bytes", c.limits.max_client_msg_id_bytes, 8, 1024);
            r.Num(t, "sync_default_limit", c.limits.sync_default_limit, 1, 10'000);
            r.Num(t, "sync_max_limit", c.limits.sync_max_limit, 1, 10'000);
        }
        if (auto* t = r.Section("hooks", {"file", "dir"})) {
            r.Str(t, "file", c.hooks_file);
            r.Str(t, "dir", c.hooks_dir);
        }
        if (auto* t = r.Section("storage", {"database_url", "synchronous", "max_batch"})) {
            r.Str(t, "database_url", c.database_url);
            r.Str(t, "synchronous", c.storage_synchronous);
            r.Num(t, "max_batch", c.sqlite_max_batch, 1, 100'000);
        }
        if (auto* t = r.Section("core_gateway", {"enabled", "listen_address", "grpc_port", "http_port",
                                                 "business_secret"})) {
            r.Bool(t, "enabled", c.core_gateway.enabled);
            r.Str(t, "listen_address", c.core_gateway.listen_address);
            r.Num(t, "grpc_port", c.core_gateway.grpc_port, 0, 65535);
            r.Num(t, "http_port", c.core_gateway.http_port, 0, 65535);
            r.Str(t, "business_secret", c.core_gateway.business_secret);
        }
        if (auto* t = r.Section("runtime", {"io_threads", "log_level"})) {
            r.Num(t, "io_threads", c.io_threads, 0, 256);
            r.Str(t, "log_level", c.log_level);
        }
        r.CheckTopLevel();
    }
    auto get = [&](const char* name) -> const std::string* {
        auto it = env.find(name);
        return it == env.end() ? nullptr : &it->second;
    };
    if (auto* v = get("PORT")) {
        c.gateway.port = static_cast<uint16_t>(ParseEnvInt("PORT", *v, 0, 65535));
    }
    if (auto* v = get("GATEWAY_ID")) {
        c.gateway.gateway_id = *v;
    }
    if (auto* v = get("GATEWAY_REGION")) {
        c.gateway.region = *v;
    }
    if (auto* v = get("LISTEN_ADDRESS")) {
        c.gateway.listen_address = *v;
    }
    if (auto* v = get("DATABASE_URL")) {
        c.database_url = *v;
    }
    if (auto* v = get("STORAGE_SYNCHRONOUS")) {
        if (*v != "full" && *v != "normal") {
            throw std::runtime_error("STORAGE_SYNCHRONOUS='" + *v + "' must be \"full\" or \"normal\"");
        }
        c.storage_synchronous = *v;
    }
    if (auto* v = get("TOKEN_SECRET")) {
        c.gateway.token_secret = *v;
    }
    if (auto* v = get("DEFAULT_TENANT")) {
        c.gateway.default_tenant = *v;
    }
    if (auto* v = get("LOG_LEVEL")) {
        c.log_level = *v;
    }
    if (auto* v = get("CORE_GATEWAY_GRPC_PORT")) {
        c.core_gateway.grpc_port = static_cast<uint16_t>(ParseEnvInt("CORE_GATEWAY_GRPC_PORT", *v, 0, 65535));
    }
    if (auto* v = get("CORE_GATEWAY_HTTP_PORT")) {
        c.core_gateway.http_port = static_cast<uint16_t>(ParseEnvInt("CORE_GATEWAY_HTTP_PORT", *v, 0, 65535));
    }
    if (auto* v = get("BUSINESS_SECRET")) {
        c.core_gateway.business_secret = *v;
    }
    if (auto* v = get("HOOKS_FILE")) {
        c.hooks_file = *v;
    }
    if (auto* v = get("HOOKS_DIR")) {
        c.hooks_dir = *v;
    }
    if (auto* v = get("RECALL_WINDOW_MS")) {
        c.limits.recall_window_ms = static_cast<uint32_t>(ParseEnvInt("RECALL_WINDOW_MS", *v, 0, 30LL * 24 * 3600 * 1000));
    }
    if (auto* v = get("LARGE_GROUP_MEMBERS")) {
        c.limits.large_group_members = static_cast<uint32_t>(ParseEnvInt("LARGE_GROUP_MEMBERS", *v, 0, 1'000'000));
    }
    if (auto* v = get("IO_THREADS")) {
        c.io_threads = static_cast<uint32_t>(ParseEnvInt("IO_THREADS", *v, 0, 256));
    }
    if (c.gateway.token_secret.empty()) {
        Fail("configuration", "auth.token_secret (TOKEN_SECRET) must not be empty");
    }
    if (c.core_gateway.business_secret.empty()) {
        c.core_gateway.business_secret = c.gateway.token_secret;
    }
    if (c.gateway.gateway_id.empty()) {
        c.gateway.gateway_id = "gateway-" + RandomHexId(4);
    }
    if (!IsValidName(c.gateway.gateway_id)) {
        Fail("configuration", "gateway id '" + c.gateway.gateway_id + "' must be 1..64 characters of A-Z a-z 0-9 _ . @ -");
    }
    if (!IsValidName(c.gateway.default_tenant)) {
        Fail("configuration", "auth.default_tenant '" + c.gateway.default_tenant + "' is not a valid tenant id");
    }
    if (c.limits.sync_default_limit > c.limits.sync_max_limit) {
        Fail("configuration", "limits.sync_default_limit must not exceed limits.sync_max_limit");
    }
    if (c.gateway.hard_max_frame_bytes < c.gateway.max_frame_bytes) {
        c.gateway.hard_max_frame_bytes = c.gateway.max_frame_bytes;
    }
    static const std::set<std::string> kLevels{"trace", "debug", "info", "warn", "error", "critical", "off"};
    if (!kLevels.contains(c.log_level)) {
        Fail("configuration", "log level '" + c.log_level + "' must be one of trace, debug, info, warn, error, off");
    }
    return c;
}

std::map<std::string, std::string> ReadEnvironment() {
    std::map<std::string, std::string> env;
    for (const char* name : {"PORT", "GATEWAY_ID", "GATEWAY_REGION", "LISTEN_ADDRESS", "DATABASE_URL", "STORAGE_SYNCHRONOUS", "TOKEN_SECRET",
                             "DEFAULT_TENANT", "LOG_LEVEL", "IO_THREADS", "CORE_GATEWAY_GRPC_PORT",
                             "CORE_GATEWAY_HTTP_PORT", "BUSINESS_SECRET", "RECALL_WINDOW_MS", "LARGE_GROUP_MEMBERS", "HOOKS_FILE", "HOOKS_DIR"}) {
        if (const char* v = std::getenv(name)) {
            env[name] = v;
        }
    }
    return env;
}

}  // namespace flare::app
