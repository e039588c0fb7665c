// Where the backend tests find their servers: CTest sets FLARE_TEST_* from the `infra` fixture
// (tests/CMakeLists.txt). A missing variable is a failure with a hint, never a skip.
#pragma once

#include <gtest/gtest.h>

#include <string>

namespace flare::test {

// The value of `env_name`, or "" after recording a failure that says how to start the backends.
std::string BackendUrl(const char* env_name);

// A name unique to this process and call, for keys, databases and topics that tests must not share.
std::string UniqueName(const std::string& prefix);

}  // namespace flare::test

// In SetUp(): binds `var` to the backend URL or ends the test as failed.
#define FLARE_REQUIRE_BACKEND(var, env_name)                \
    std::string var = ::flare::test::BackendUrl(env_name); \
    if (var.empty()) {                                      \
        return;                                             \
    }
