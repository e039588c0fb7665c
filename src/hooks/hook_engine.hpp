// The hook engine: runs the configured hooks (webhooks, gRPC HookExtension services, the keyword
// filter and the per-user rate limit) at the extension points, with each hook's selector, priority,
// timeout, failure policy and retries. Embedded mode runs it in process; the distributed deployment
// runs it in the hook-engine service. Asio, Beast and gRPC stay in hook_engine.cpp.
#pragma once

#include <memory>
#include <string>

#include "common/clock.hpp"
#include "domain/hooks.hpp"

namespace flare::hooks {

struct HookEngineOptions {
    std::string file;  // a hooks TOML file (may be empty)
    std::string dir;   // a hooks.d/ folder of *.toml files (may be empty or missing)
    size_t max_queued = 10'000;  // asynchronous deliveries waiting or retrying; beyond, events are dropped
};

// What ListHooks shows in place of a secret; PutHook with it keeps the hook's secret.
inline constexpr const char* kSecretShown = "(set)";

class HookEngine final : public HookApi {
public:
    // `store` (may be null) keeps the hooks managed at runtime.
    HookEngine(HookEngineOptions options, HookStore* store, const Clock& clock);
    ~HookEngine() override;

    // Loads the files and the stored hooks and starts the engine's threads. Errors (kInvalidArgument)
    // name the file, line and key of the first mistake.
    Status Start();
    // Reads the files again. On an error the engine keeps the hooks it had and returns the error.
    Status Reload();
    // Stops the threads; deliveries still waiting are dropped.
    void Stop();

    // Prometheus text: per hook calls, rejections, failures, timeouts, latency; queue and drops.
    // With `tenant`, only the hooks that tenant manages through the business API.
    std::string RenderMetrics(const std::string* tenant = nullptr) const;
    size_t hook_count() const;

    void PreSend(HookEvent event, Callback<PreSendVerdict> done) override;
    void Publish(HookEvent event) override;
    bool Wants(HookPoint point) const override;
    void PutHook(std::string tenant_id, HookSpec spec, StatusCallback done) override;
    void DeleteHook(std::string tenant_id, std::string name, StatusCallback done) override;
    void ListHooks(std::string tenant_id, Callback<std::vector<HookSpec>> done) override;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace flare::hooks
