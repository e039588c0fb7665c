// The embedded IM core: every service in one process, wired in one place. SQLite storage, in-process
// presence, gateway directory and push. Used by `flare serve embedded` and by the integration tests
// (which start it on port 0).
#pragma once

#include <memory>

#include "app/config.hpp"
#include "common/errc.hpp"

namespace flare::app {

class EmbeddedServer {
public:
    explicit EmbeddedServer(Config config);
    ~EmbeddedServer();

    // Opens storage, binds the gateway port and starts serving. Throws std::runtime_error on failure
    // (with a message that says what to do).
    void Start();
    // Says goodbye to every client, drains storage and stops. Idempotent.
    void Stop();

    uint16_t gateway_port() const;
    uint16_t grpc_port() const;  // 0 when the core gateway is disabled
    uint16_t http_port() const;
    const Config& config() const;
    // Reads the hooks file and folder again; on an error keeps the hooks in use and returns it.
    Status ReloadHooks();

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace flare::app
