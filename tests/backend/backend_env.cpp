#include "backend/backend_env.hpp"

#include <atomic>
#include <cstdlib>

#include <unistd.h>

#include "common/clock.hpp"

namespace flare::test {

std::string BackendUrl(const char* env_name) {
    const char* v = std::getenv(env_name);
    if (v == nullptr || *v == '\0') {
        ADD_FAILURE() << env_name
                      << " is not set: run the backend tests through ctest (the `infra` fixture starts Redis, "
                         "PostgreSQL, etcd and NATS), or start them with scripts/infra.sh and export it";
        return "";
    }
    return v;
}

std::string UniqueName(const std::string& prefix) {
    static std::atomic<int> counter{0};
    return prefix + std::to_string(::getpid()) + "_" + std::to_string(counter.fetch_add(1)) + "_" + RandomHexId(3);
}

}  // namespace flare::test
