#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "app/config.hpp"

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

}  // namespace
}  // namespace flare::app
