#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "app/config.hpp"
#include "app/distributed.hpp"

namespace flare::app {
namespace {

std::string WriteFile(const std::string& name, const std::string& text) {
    auto path = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()) + ".toml");
    std::ofstream(path) << text;
    return path.string();
}

std::string LoadError(const std::string& text, const std::map<std::string, std::string>& env = {}) {
    try {
        LoadConfig(WriteFile("cfg", text), env);
    } catch (const std::exception& e) {
        return e.what();
    }
    return "";
}

TEST(Config, DefaultsWithoutAFile) {
    Config c = LoadConfig("", {});
    EXPECT_EQ(c.gateway.port, 60051);
    EXPECT_EQ(c.gateway.token_secret, "insecure-secret");
    EXPECT_EQ(c.database_url, "sqlite://data/flare.db");
    EXPECT_EQ(c.gateway.default_tenant, "default");
    EXPECT_FALSE(c.gateway.gateway_id.empty());
}

TEST(Config, TheShippedFileLoadsAndMatchesTheDefaults) {
    Config c = LoadConfig(FLARE_SOURCE_DIR "/config/flare.toml", {});
    Config d = LoadConfig("", {});
    EXPECT_EQ(c.gateway.port, d.gateway.port);
    EXPECT_EQ(c.gateway.max_frame_bytes, d.gateway.max_frame_bytes);
    EXPECT_EQ(c.gateway.idle_timeout_ms, d.gateway.idle_timeout_ms);
    EXPECT_EQ(c.limits.max_text_bytes, d.limits.max_text_bytes);
    EXPECT_EQ(c.database_url, d.database_url);
    EXPECT_EQ(c.storage_synchronous, d.storage_synchronous);
}

TEST(Config, UnknownKeysAreNamed) {
    EXPECT_NE(LoadError("[gateway]\nprot = 1\n").find("unknown key 'gateway.prot'"), std::string::npos);
    EXPECT_NE(LoadError("[gatway]\nport = 1\n").find("unknown key 'gatway'"), std::string::npos);
    auto e = LoadError("[storage]\n\n\nsynchronus = \"full\"\n");
    EXPECT_NE(e.find("unknown key 'storage.synchronus'"), std::string::npos) << e;
    EXPECT_NE(e.find(".toml:4"), std::string::npos) << e;  // the line is named
}

TEST(Config, TypesAndRangesAreChecked) {
    EXPECT_NE(LoadError("[gateway]\nport = \"x\"\n").find("'port' must be an integer"), std::string::npos);
    EXPECT_NE(LoadError("[gateway]\nport = 70000\n").find("must be in 0..65535"), std::string::npos);
    EXPECT_NE(LoadError("[gateway\n").find("cfg"), std::string::npos);  // syntax error names the file
}

TEST(Config, EnvironmentOverridesTheFile) {
    Config c = LoadConfig(WriteFile("env", "[gateway]\nport = 1234\nid = \"from-file\"\n"),
                          {{"PORT", "60052"}, {"GATEWAY_ID", "gateway-shanghai-1"}, {"GATEWAY_REGION", "shanghai"},
                           {"TOKEN_SECRET", "abc"}, {"DATABASE_URL", "sqlite:///tmp/x.db"}});
    EXPECT_EQ(c.gateway.port, 60052);
    EXPECT_EQ(c.gateway.gateway_id, "gateway-shanghai-1");
    EXPECT_EQ(c.gateway.region, "shanghai");
    EXPECT_EQ(c.gateway.token_secret, "abc");
    EXPECT_EQ(c.database_url, "sqlite:///tmp/x.db");
}

TEST(Config, BadEnvironmentValuesAreNamed) {
    try {
        LoadConfig("", {{"PORT", "sixty"}});
        FAIL() << "accepted PORT=sixty";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("PORT='sixty'"), std::string::npos) << e.what();
    }
}

TEST(Config, StorageSynchronousIsTheAckDurabilityLevel) {
    EXPECT_EQ(LoadConfig("", {{"STORAGE_SYNCHRONOUS", "normal"}}).storage_synchronous, "normal");
    EXPECT_EQ(LoadConfig("", {}).storage_synchronous, "full");
    try {
        LoadConfig("", {{"STORAGE_SYNCHRONOUS", "fast"}});
        FAIL() << "accepted STORAGE_SYNCHRONOUS=fast";
    } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("STORAGE_SYNCHRONOUS='fast'"), std::string::npos) << e.what();
    }
}

TEST(DistributedConfig, DefaultsAreTheGuidesPorts) {
    DistributedConfig d = LoadDistributedConfig({});
    EXPECT_EQ(d.redis_url, "redis://127.0.0.1:26379");
    EXPECT_EQ(d.bus_url, "nats://127.0.0.1:24222");
    EXPECT_TRUE(d.etcd_endpoints.empty());
    EXPECT_EQ(d.presence_ttl_ms, 30'000u);
    EXPECT_TRUE(d.endpoints.empty());
    ASSERT_EQ(DistributedRoles().size(), 9u);
    EXPECT_EQ(DistributedRoles().front().name, "signaling-online");
    EXPECT_EQ(DistributedRoles().front().grpc_port, 50051);
    EXPECT_TRUE(IsDistributedRole("storage-writer"));
    EXPECT_FALSE(IsDistributedRole("embedded"));
}

TEST(DistributedConfig, EnvironmentChoosesBusEndpointsAndPorts) {
    DistributedConfig d = LoadDistributedConfig({{"KAFKA_BOOTSTRAP_SERVERS", "k1:29092,k2:29092"},
                                                 {"SESSION_ENDPOINT", "10.0.0.5:50090"},
                                                 {"GRPC_PORT", "7000"},
                                                 {"PRESENCE_TTL_MS", "3000"}});
    EXPECT_EQ(d.bus_url, "kafka://k1:29092,k2:29092");
    EXPECT_EQ(d.endpoints.at("session"), "10.0.0.5:50090");
    EXPECT_EQ(d.grpc_port, 7000);
    EXPECT_EQ(d.presence_ttl_ms, 3000u);
    // BUS_URL wins over KAFKA_BOOTSTRAP_SERVERS.
    EXPECT_EQ(LoadDistributedConfig({{"BUS_URL", "nats://n:1"}, {"KAFKA_BOOTSTRAP_SERVERS", "k:1"}}).bus_url,
              "nats://n:1");
}

TEST(DistributedConfig, MalformedValuesAreNamed) {
    for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
             {"GRPC_PORT", "70000"}, {"ADMIN_PORT", "x"}, {"PRESENCE_TTL_MS", "5"}}) {
        try {
            LoadDistributedConfig({{name, value}});
            ADD_FAILURE() << "accepted " << name << "=" << value;
        } catch (const std::exception& e) {
            EXPECT_NE(std::string(e.what()).find(name + "='" + value + "'"), std::string::npos) << e.what();
        }
    }
}

}  // namespace
}  // namespace flare::app

#include "hooks/hook_config.hpp"

namespace flare {
namespace {

std::string WriteTemp(const std::string& name, const std::string& text) {
    const auto path = std::filesystem::temp_directory_path() / ("flare-hookcfg-" + RandomHexId(4) + "-" + name);
    std::ofstream(path) << text;
    return path.string();
}

// The README's complete example (config/hooks.example.toml) is a valid hooks file.
TEST(HookConfig, TheShippedExampleLoads) {
    auto hooks = hooks::LoadHookFiles(std::string(FLARE_SOURCE_DIR) + "/config/hooks.example.toml", "");
    ASSERT_TRUE(hooks.ok()) << hooks.error().message;
    ASSERT_EQ(hooks->size(), 5u);
    EXPECT_EQ((*hooks)[1].name, "moderation");
    EXPECT_FALSE((*hooks)[1].fail_open);
    EXPECT_EQ((*hooks)[1].timeout_ms, 300u);
}

// Mistakes are named by file, line and key; the first one in the file is the one reported.
TEST(HookConfig, MistakesNameFileLineAndKey) {
    struct Case {
        std::string toml, expect;
    };
    const std::vector<Case> cases = {
        {"[[hook]]\nname = \"a\"\nzeta = 1\npoints = [\"pre_send\"]\nalpha = 2\n", ":3: hook 'a': unknown key 'zeta'"},
        {"[[hook]]\nname = \"k\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\nkeywords = [\"x\"]\n"
         "url = \"http://h/\"\n",
         "'url' does not apply to transport 'keyword_filter'"},
        {"[[hook]]\nname = \"w\"\npoints = [\"pre_send\"]\ntransport = \"webhook\"\nsecret = \"s\"\n"
         "url = \"http://127.0.0.1:99999/x\"\n",
         "'url' must be http://host[:port]/path"},
        {"[[hook]]\nname = \"w\"\npoints = [\"pre_send\"]\ntransport = \"webhook\"\nsecret = \"s\"\n"
         "url = \"http://user:pw@h/x\"\n",
         "'url' must be http://host[:port]/path"},
        {"[[hook]]\nname = \"g\"\npoints = [\"post_send\"]\ntransport = \"grpc\"\ntarget = \":\"\n",
         "'target' must be host:port"},
        {"[[hook]]\nname = \"g\"\npoints = [\"post_send\"]\ntransport = \"grpc\"\ntarget = \"h:1\"\nfailure = \"closed\"\n",
         "'failure' applies to pre_send only"},
        {"[[hook]]\nname = \"r\"\npoints = [\"pre_send\"]\ntransport = \"rate_limit\"\nrate_limit = 0\n",
         ":5: hook 'r': 'rate_limit' must be in 1..1000000"},
        {"[[hook]]\nname = \"t\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\nkeywords = [\"x\"]\n"
         "tenants = [\"\"]\n",
         "'tenants': '' is not a tenant id"},
        {"hook = 3\n", ":1: 'hook' must be an array of tables"},
        {"[[hook]]\nname = \"a\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\nkeywords = [\"x\"]\n"
         "[[hook]]\nname = \"a\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\nkeywords = [\"y\"]\n",
         ":6: hook 'a': 'name' is already used"},
        {"[[hook]\n", ":1: "},
        {"[[hook]]\nname = \"p\"\npoints = [\"post_send\", \"read\", \"post_send\"]\ntransport = \"grpc\"\n"
         "target = \"h:1\"\n",
         "'points': 'post_send' is listed twice"},
        {"[[hook]]\nname = \"g\"\npoints = [\"post_send\"]\ntransport = \"grpc\"\ntarget = \"unix:abc:1\"\n",
         "'target' must be host:port"},
        {"[[hook]]\nname = \"g\"\npoints = [\"post_send\"]\ntransport = \"grpc\"\ntarget = \"ho\\nst:70\"\n",
         "'target' must be host:port"},
        {"[[hook]]\nname = \"g\"\npoints = [\"post_send\"]\ntransport = \"grpc\"\ntarget = \"host:0070\"\n",
         "'target' must be host:port"},
        {"[[hook]]\nname = \"k\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\nkeywords = [\"   \"]\n",
         "'keywords' must not contain an empty (or blank) word"},
        {"[[hook]]\nname = \"s\"\npoints = [\"pre_send\"]\ntransport = \"grpc\"\ntarget = \"h:1\"\ntimeout_ms = 9000\n",
         "'timeout_ms': a pre_send hook answers within 8000 ms"},
        {"[[hook]]\nname = \"k\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\nkeywords = [\"" +
             std::string(101, 'a') + "\"]\n",
         "is longer than 100 bytes"},
        {[] {
             std::string t = "[[hook]]\nname = \"k\"\npoints = [\"pre_send\"]\ntransport = \"keyword_filter\"\nkeywords = [";
             for (int i = 0; i < 1001; ++i) t += (i ? ", \"w" : "\"w") + std::to_string(i) + "\"";
             return t + "]\n";
         }(),
         "'keywords' lists at most 1000 words"},
    };
    for (const auto& c : cases) {
        const std::string path = WriteTemp("h.toml", c.toml);
        auto r = hooks::LoadHookFiles(path, "");
        ASSERT_FALSE(r.ok()) << c.toml;
        EXPECT_NE(r.error().message.find(path), std::string::npos) << r.error().message;
        EXPECT_NE(r.error().message.find(c.expect), std::string::npos) << r.error().message << "\nexpected: " << c.expect;
        std::filesystem::remove(path);
    }
    auto missing = hooks::LoadHookFiles("", "/nonexistent/hooks.d");
    ASSERT_FALSE(missing.ok());
    EXPECT_NE(missing.error().message.find("no such hooks folder"), std::string::npos);
}

}  // namespace
}  // namespace flare

#include "hooks/hook_proto.hpp"

namespace flare {
namespace {

// What the distributed services hand hook-engine (HookEvent over gRPC) keeps what webhooks show.
TEST(HookProto, EventsSurviveTheTripToHookEngine) {
    MessageRecord m;
    m.tenant_id = "t";
    m.conversation_id = "group:g";
    m.conversation_type = ConversationType::kGroup;
    m.seq = 9;
    m.sender_id = "alice";
    m.kind = MessageKind::kEvent;
    m.event.type = EventType::kRecalled;
    m.event.target_seq = 4;
    HookEvent e = HookEventFor(HookPoint::kRecall, m);
    e.seq = 4;
    hooks::hpb::HookEvent wire;
    hooks::ToProto(e, &wire);
    HookEvent back = hooks::FromProto(wire);
    hooks::hpb::HookEvent again;
    hooks::ToProto(back, &again);
    EXPECT_EQ(again.message().event_type(), "recalled");
    EXPECT_EQ(again.message().target_seq(), 4u);
    EXPECT_EQ(again.point(), "recall");
    EXPECT_EQ(again.conversation_type(), "group");
    EXPECT_EQ(again.SerializeAsString(), wire.SerializeAsString());
}

}  // namespace
}  // namespace flare
