#include "hooks/hook_config.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <toml++/toml.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

namespace flare::hooks {

namespace json = boost::json;

namespace {

// A keyword filter runs on the hook engine's one thread for every message: its cost is bounded.
constexpr size_t kMaxKeywords = 1000;
constexpr size_t kMaxKeywordBytes = 100;

Error Bad(const std::string& what) { return MakeError(Errc::kInvalidArgument, "bad_hook", what); }

const std::set<std::string>& Transports() {
    static const std::set<std::string> t{"webhook", "grpc", "keyword_filter", "rate_limit"};
    return t;
}

// The fields of one hook, from TOML or JSON: each setter gets the key and a way to say "bad value".
struct Fields {
    HookSpec spec;
    std::string failure = "open";
    std::set<std::string> keys;  // the keys given
};

// Which keys each transport uses (besides name, points, transport, priority and the selectors).
const std::map<std::string, std::set<std::string>>& TransportKeys() {
    static const std::map<std::string, std::set<std::string>> k{
        {"webhook", {"url", "secret", "timeout_ms", "failure", "max_attempts", "retry_backoff_ms"}},
        {"grpc", {"target", "timeout_ms", "failure", "max_attempts", "retry_backoff_ms"}},
        {"keyword_filter", {"keywords", "mask"}},
        {"rate_limit", {"rate_limit", "rate_window_ms"}},
    };
    return k;
}

bool ValidPort(std::string_view p) {
    if (p.empty() || p.size() > 5 || p[0] == '0') return false;  // 1..65535, no leading zeros
    int v = 0;
    for (char c : p) {
        if (c < '0' || c > '9') return false;
        v = v * 10 + (c - '0');
    }
    return v >= 1 && v <= 65535;
}

// Applies one key; returns an error text (without location) or "".
template <typename GetStr, typename GetInt, typename GetBool, typename GetList>
std::string ApplyKey(Fields& f, const std::string& key, GetStr str, GetInt num, GetBool boolean, GetList list) {
    HookSpec& s = f.spec;
    f.keys.insert(key);
    auto str_list = [&](std::vector<std::string>& out) -> std::string {
        auto v = list();
        if (!v) return "'" + key + "' must be a list of strings";
        out = *v;
        return "";
    };
    auto range = [&](auto& out, int64_t lo, int64_t hi) -> std::string {
        auto v = num();
        if (!v) return "'" + key + "' must be an integer";
        if (*v < lo || *v > hi) return "'" + key + "' must be in " + std::to_string(lo) + ".." + std::to_string(hi);
        out = static_cast<std::remove_reference_t<decltype(out)>>(*v);
        return "";
    };
    if (key == "name" || key == "transport" || key == "url" || key == "target" || key == "secret" || key == "failure") {
        auto v = str();
        if (!v) return "'" + key + "' must be a string";
        if (key == "name") s.name = *v;
        if (key == "transport") s.transport = *v;
        if (key == "url") s.url = *v;
        if (key == "target") s.target = *v;
        if (key == "secret") s.secret = *v;
        if (key == "failure") f.failure = *v;
        return "";
    }
    if (key == "points") {
        std::vector<std::string> names;
        if (auto e = str_list(names); !e.empty()) return e;
        s.points.clear();
        for (const auto& n : names) {
            auto p = ParseHookPoint(n);
            if (!p) {
                return "'points': unknown point '" + n +
                       "' (pre_send, post_send, delivery, recall, read, reaction, conversation_created, "
                       "conversation_dissolved, membership_changed)";
            }
            s.points.push_back(*p);
        }
        return "";
    }
    if (key == "tenants" || key == "keywords") {
        return str_list(key == "tenants" ? s.tenants : s.keywords);
    }
    if (key == "conversation_types" || key == "message_kinds") {
        std::vector<std::string> names;
        if (auto e = str_list(names); !e.empty()) return e;
        for (const auto& n : names) {
            if (key == "conversation_types") {
                auto t = ParseConversationTypeName(n);
                if (!t) return "'conversation_types': unknown type '" + n + "' (direct, room, group, system)";
                s.conversation_types.push_back(*t);
            } else {
                auto k = ParseMessageKindName(n);
                if (!k) return "'message_kinds': unknown kind '" + n + "' (text, system, event)";
                s.message_kinds.push_back(*k);
            }
        }
        return "";
    }
    if (key == "priority") return range(s.priority, -1000000, 1000000);
    if (key == "timeout_ms") return range(s.timeout_ms, 1, 60000);
    if (key == "max_attempts") return range(s.max_attempts, 1, 20);
    if (key == "retry_backoff_ms") return range(s.retry_backoff_ms, 1, 600000);
    if (key == "rate_limit") return range(s.rate_limit, 1, 1000000);
    if (key == "rate_window_ms") return range(s.rate_window_ms, 1, 86400000);
    if (key == "mask") {
        auto v = boolean();
        if (!v) return "'mask' must be true or false";
        s.mask = *v;
        return "";
    }
    return "unknown key '" + key + "'";
}

std::string Finish(Fields& f) {
    if (f.failure != "open" && f.failure != "closed") {
        return "'failure' must be \"open\" or \"closed\"";
    }
    f.spec.fail_open = f.failure == "open";
    static const std::set<std::string> kCommon{"name", "points", "transport", "priority", "tenants",
                                                "conversation_types", "message_kinds"};
    auto t = TransportKeys().find(f.spec.transport);
    if (t != TransportKeys().end()) {
        for (const auto& k : f.keys) {
            if (!kCommon.contains(k) && !t->second.contains(k)) {
                return "'" + k + "' does not apply to transport '" + f.spec.transport + "'";
            }
        }
    }
    if (f.failure == "closed" &&
        std::find(f.spec.points.begin(), f.spec.points.end(), HookPoint::kPreSend) == f.spec.points.end()) {
        return "'failure' applies to pre_send only (the other points are retried instead)";
    }
    if (auto s = ValidateHook(f.spec); !s) {
        return s.error().message;
    }
    return "";
}

Status LoadFile(const std::filesystem::path& path, std::vector<HookSpec>& out) {
    const std::string file = path.string();
    toml::table root;
    try {
        root = toml::parse_file(file);
    } catch (const toml::parse_error& e) {
        return Bad(file + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
    }
    auto where = [&](const toml::node& n) { return file + ":" + std::to_string(n.source().begin.line); };
    for (auto&& [k, v] : root) {
        if (k.str() != "hook") {
            return Bad(where(v) + ": unknown key '" + std::string(k.str()) + "' (hooks are [[hook]] tables)");
        }
    }
    const toml::node* hooks = root.get("hook");
    if (hooks == nullptr) {
        return {};
    }
    const toml::array* arr = hooks->as_array();
    if (arr == nullptr) {
        return Bad(where(*hooks) + ": 'hook' must be an array of tables ([[hook]])");
    }
    for (const toml::node& item : *arr) {
        const toml::table* t = item.as_table();
        if (t == nullptr) {
            return Bad(where(item) + ": each hook must be a table ([[hook]])");
        }
        Fields f;
        std::string name_for_errors;
        if (auto n = t->get_as<std::string>("name")) {
            name_for_errors = n->get();
        }
        const std::string label = name_for_errors.empty() ? "hook" : "hook '" + name_for_errors + "'";
        // toml++ lists a table's keys in name order: report the mistake that comes first in the file.
        std::optional<std::pair<int64_t, std::string>> first_error;
        for (auto&& [key, value] : *t) {
            const std::string k(key.str());
            const toml::node* node = &value;
            auto str = [&]() -> std::optional<std::string> {
                if (auto s = node->as_string()) return s->get();
                return std::nullopt;
            };
            auto num = [&]() -> std::optional<int64_t> {
                if (auto i = node->as_integer()) return i->get();
                return std::nullopt;
            };
            auto boolean = [&]() -> std::optional<bool> {
                if (auto b = node->as_boolean()) return b->get();
                return std::nullopt;
            };
            auto list = [&]() -> std::optional<std::vector<std::string>> {
                const toml::array* a = node->as_array();
                if (a == nullptr) return std::nullopt;
                std::vector<std::string> out;
                for (const auto& e : *a) {
                    auto s = e.as_string();
                    if (s == nullptr) return std::nullopt;
                    out.push_back(s->get());
                }
                return out;
            };
            if (auto e = ApplyKey(f, k, str, num, boolean, list); !e.empty()) {
                const int64_t line = value.source().begin.line;
                if (!first_error || line < first_error->first) {
                    first_error.emplace(line, where(value) + ": " + label + ": " + e);
                }
            }
        }
        if (first_error) {
            return Bad(first_error->second);
        }
        f.spec.source = where(item);
        if (auto e = Finish(f); !e.empty()) {
            return Bad(where(item) + ": " + label + ": " + e);
        }
        out.push_back(std::move(f.spec));
    }
    return {};
}

}  // namespace


Status ValidateHook(const HookSpec& s) {
    if (!IsValidName(s.name)) {
        return Bad("'name' is required: 1..64 characters of A-Z a-z 0-9 _ . @ -");
    }
    if (s.points.empty()) {
        return Bad("'points' must list at least one point");
    }
    if (!Transports().contains(s.transport)) {
        return Bad("'transport' must be one of webhook, grpc, keyword_filter, rate_limit");
    }
    const bool only_pre_send = std::all_of(s.points.begin(), s.points.end(),
                                           [](HookPoint p) { return p == HookPoint::kPreSend; });
    for (size_t i = 0; i < s.points.size(); ++i) {
        if (std::find(s.points.begin() + static_cast<std::ptrdiff_t>(i) + 1, s.points.end(), s.points[i]) !=
            s.points.end()) {
            return Bad("'points': '" + std::string(HookPointName(s.points[i])) + "' is listed twice");
        }
    }
    const bool pre_send = std::find(s.points.begin(), s.points.end(), HookPoint::kPreSend) != s.points.end();
    if (pre_send && s.timeout_ms > kPreSendBudgetMs) {
        return Bad("'timeout_ms': a pre_send hook answers within " + std::to_string(kPreSendBudgetMs) +
                   " ms (the whole pre_send chain has that long)");
    }
    for (const auto& t : s.tenants) {
        if (!IsValidName(t)) {
            return Bad("'tenants': '" + Utf8Prefix(t, 80) + "' is not a tenant id");
        }
    }
    if (s.transport == "webhook") {
        if (s.url.empty()) {
            return Bad("'url' is required for a webhook: http://host[:port]/path");
        }
        auto u = boost::urls::parse_uri(s.url);
        if (!u || u->scheme() != "http" || u->host().empty() || u->host().find_first_of(" []") != std::string::npos ||
            (u->has_port() && !ValidPort(u->port())) || u->has_userinfo()) {
            return Bad("'url' must be http://host[:port]/path (no user info; an IPv4 address or a name; put TLS in "
                       "front of the receiver)");
        }
        if (s.secret.empty()) {
            return Bad("'secret' is required for a webhook: it signs X-Flare-Signature");
        }
    }
    if (s.transport == "grpc") {
        const auto colon = s.target.rfind(':');
        if (colon == std::string::npos || colon == 0 || !ValidPort(std::string_view(s.target).substr(colon + 1)) ||
            s.target.find_first_of(" /") != std::string::npos || HasControlCharacter(s.target) ||
            (s.target[0] != '[' && s.target.substr(0, colon).find(':') != std::string::npos)) {
            return Bad("'target' must be host:port of a HookExtension service");
        }
    }
    if (s.transport == "keyword_filter") {
        if (s.keywords.empty()) return Bad("'keywords' must list at least one word");
        if (s.keywords.size() > kMaxKeywords) {
            return Bad("'keywords' lists at most " + std::to_string(kMaxKeywords) + " words");
        }
        if (!only_pre_send) return Bad("'points': keyword_filter runs at pre_send only");
        for (const auto& k : s.keywords) {
            if (k.find_first_not_of(" \t") == std::string::npos) {
                return Bad("'keywords' must not contain an empty (or blank) word");
            }
            if (k.size() > kMaxKeywordBytes) {
                return Bad("'keywords': '" + Utf8Prefix(k, 40) + "...' is longer than " +
                           std::to_string(kMaxKeywordBytes) + " bytes");
            }
        }
    }
    if (s.transport == "rate_limit") {
        if (s.rate_limit == 0) return Bad("'rate_limit' is required: messages per window per user");
        if (!only_pre_send) return Bad("'points': rate_limit runs at pre_send only");
    }
    return {};
}

Result<std::vector<HookSpec>> LoadHookFiles(const std::string& file, const std::string& dir) {
    std::vector<HookSpec> out;
    if (!file.empty()) {
        if (!std::filesystem::exists(file)) {
            return Bad(file + ": no such hooks file");
        }
        if (auto s = LoadFile(file, out); !s) {
            return s.error();
        }
    }
    if (!dir.empty() && !std::filesystem::is_directory(dir)) {
        return Bad(dir + ": no such hooks folder");
    }
    if (!dir.empty()) {
        std::vector<std::filesystem::path> files;
        for (const auto& e : std::filesystem::directory_iterator(dir)) {
            if (e.is_regular_file() && e.path().extension() == ".toml") {
                files.push_back(e.path());
            }
        }
        std::sort(files.begin(), files.end());
        for (const auto& f : files) {
            if (auto s = LoadFile(f, out); !s) {
                return s.error();
            }
        }
    }
    std::set<std::string> names;
    for (const auto& h : out) {
        if (!names.insert(h.name).second) {
            return Bad(h.source + ": hook '" + h.name + "': 'name' is already used by another hook");
        }
    }
    return out;
}

std::string HookToJson(const HookSpec& s) {
    json::object o;
    o["name"] = s.name;
    json::array points;
    for (auto p : s.points) points.emplace_back(std::string(HookPointName(p)));
    o["points"] = std::move(points);
    o["transport"] = s.transport;
    if (!s.url.empty()) o["url"] = s.url;
    if (!s.target.empty()) o["target"] = s.target;
    if (!s.secret.empty()) o["secret"] = s.secret;
    auto strings = [](const std::vector<std::string>& v) {
        json::array a;
        for (const auto& x : v) a.emplace_back(x);
        return a;
    };
    if (!s.tenants.empty()) o["tenants"] = strings(s.tenants);
    if (!s.conversation_types.empty()) {
        json::array a;
        for (auto t : s.conversation_types) a.emplace_back(std::string(ConversationTypeName(t)));
        o["conversation_types"] = std::move(a);
    }
    if (!s.message_kinds.empty()) {
        json::array a;
        for (auto k : s.message_kinds) a.emplace_back(std::string(MessageKindName(k)));
        o["message_kinds"] = std::move(a);
    }
    o["priority"] = s.priority;
    if (s.transport == "webhook" || s.transport == "grpc") {  // only the keys the transport uses
        o["timeout_ms"] = s.timeout_ms;
        o["failure"] = s.fail_open ? "open" : "closed";
        o["max_attempts"] = s.max_attempts;
        o["retry_backoff_ms"] = s.retry_backoff_ms;
    }
    if (!s.keywords.empty()) o["keywords"] = strings(s.keywords);
    if (s.mask) o["mask"] = true;
    if (s.rate_limit != 0) {
        o["rate_limit"] = s.rate_limit;
        o["rate_window_ms"] = s.rate_window_ms;
    }
    return json::serialize(o);
}

Result<HookSpec> HookFromJson(const std::string& text) {
    boost::system::error_code ec;
    json::value v = json::parse(text, ec);
    if (ec || !v.is_object()) {
        return Bad("stored hook is not a JSON object");
    }
    Fields f;
    for (const auto& [k, value] : v.as_object()) {
        const std::string key(k);
        auto str = [&]() -> std::optional<std::string> {
            if (value.is_string()) return std::string(value.as_string());
            return std::nullopt;
        };
        auto num = [&]() -> std::optional<int64_t> {
            if (value.is_int64()) return value.as_int64();
            if (value.is_uint64()) return static_cast<int64_t>(value.as_uint64());
            return std::nullopt;
        };
        auto boolean = [&]() -> std::optional<bool> {
            if (value.is_bool()) return value.as_bool();
            return std::nullopt;
        };
        auto list = [&]() -> std::optional<std::vector<std::string>> {
            if (!value.is_array()) return std::nullopt;
            std::vector<std::string> out;
            for (const auto& e : value.as_array()) {
                if (!e.is_string()) return std::nullopt;
                out.emplace_back(e.as_string());
            }
            return out;
        };
        if (auto e = ApplyKey(f, key, str, num, boolean, list); !e.empty()) {
            return Bad(e);
        }
    }
    if (auto e = Finish(f); !e.empty()) {
        return Bad(e);
    }
    return f.spec;
}

}  // namespace flare::hooks
