// The admin port every distributed role serves: GET /healthz (the process runs), GET /readyz (it
// can do its work: its own dependencies answered at start-up and it is not draining) and
// GET /metrics (Prometheus text). A small Beast server on its own thread; nothing else is served.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "common/errc.hpp"
#include "common/metrics.hpp"

namespace flare::app {

class AdminServer {
public:
    AdminServer(std::string role, Metrics& metrics);
    ~AdminServer();
    // Binds address:port (0: any free port). Errors: kUnavailable "listen_failed".
    Status Start(const std::string& address, uint16_t port);
    void Stop();
    uint16_t port() const;
    void SetReady(bool ready) { ready_.store(ready); }

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
    std::atomic<bool> ready_{false};
};

}  // namespace flare::app
