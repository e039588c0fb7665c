#include "backend/backend_env.hpp"

#include <atomic>
#include <cstdlib>
#include <fstream>

#include <unistd.h>

#include "common/clock.hpp"

namespace flare::test {

namespace {

// FLARE_TEST_REDIS_URL -> REDIS_URL in the env file of scripts/infra.sh named by FLARE_TEST_INFRA_ENV.
std::string FromInfraFile(const std::string& env_name) {
    const char* file = std::getenv("FLARE_TEST_INFRA_ENV");
    const std::string prefix = "FLARE_TEST_";
    if (file == nullptr || !env_name.starts_with(prefix)) {
        return "";
    }
    std::ifstream in(file);
    const std::string key = env_name.substr(prefix.size()) + "=";
    for (std::string line; std::getline(in, line);) {
        if (line.starts_with(key)) {
            return line.substr(key.size());
        }
    }
    return "";
}

}  // namespace

std::string BackendUrl(const char* env_name) {
    const char* v = std::getenv(env_name);
    std::string value = v ? v : "";
    if (value.empty()) {
        value = FromInfraFile(env_name);
    }
    if (value.empty()) {
        ADD_FAILURE() << env_name
                      << " is not set and not in $FLARE_TEST_INFRA_ENV: run the backend tests through ctest (the `infra` "
                         "fixture starts Redis, PostgreSQL, etcd and NATS), or start them with scripts/infra.sh "
                         "and export it";
        return "";
    }
    return value;
}

std::string UniqueName(const std::string& prefix) {
    static std::atomic<int> counter{0};
    return prefix + std::to_string(::getpid()) + "_" + std::to_string(counter.fetch_add(1)) + "_" + RandomHexId(3);
}

}  // namespace flare::test
