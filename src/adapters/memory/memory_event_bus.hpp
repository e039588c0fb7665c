// In-process EventBus for embedded mode and tests. It behaves like the brokers it stands in for:
// records are kept per topic and partition (key hash), each consumer group has its own committed
// position per partition, one record per partition is in flight per group, failed records come back
// after a back-off, and records a stopped subscription did not acknowledge are handed out again.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "domain/ports.hpp"

namespace flare {

struct MemoryEventBusOptions {
    uint32_t partitions = 8;  // per topic; a key always maps to the same partition
    // Back-off before a record whose handler failed is handed out again: retry_backoff, doubling per
    // attempt, at most max_retry_backoff.
    std::chrono::milliseconds retry_backoff{100};
    std::chrono::milliseconds max_retry_backoff{5000};
    // Retention: beyond this many records a partition drops its oldest (like a broker's size limit);
    // a group that had not consumed them skips them.
    size_t max_records_per_partition = 1'000'000;
};

class MemoryEventBus final : public EventBus {
public:
    explicit MemoryEventBus(MemoryEventBusOptions options = {});
    // Stops every subscription still running (see Stop()).
    ~MemoryEventBus() override;

    MemoryEventBus(const MemoryEventBus&) = delete;
    MemoryEventBus& operator=(const MemoryEventBus&) = delete;

    // Appends the record and runs `done` inline with OK; after Stop(), `done` gets kUnavailable
    // "bus_unavailable". Thread-safe; records published from one thread keep their order.
    void Publish(std::string topic, std::string key, std::string payload, StatusCallback done) override;

    // Starts one delivery thread for this member; the handler runs on it. A group that is new starts at
    // the oldest retained record. The members of a group share the partitions (partition p goes to the
    // member at p modulo their number, in join order); a partition's record stays in flight for the group
    // until settled, even when a member joins or leaves meanwhile, so per-key order holds across members.
    // Errors: kInvalidArgument for an empty topic or group; kUnavailable "bus_unavailable" after Stop().
    Result<std::unique_ptr<BusSubscription>> Subscribe(std::string topic, std::string group,
                                                       BusHandler handler) override;

    // Refuses further publishes and subscriptions and stops every subscription (as BusSubscription::Stop).
    // Idempotent.
    void Stop();

    struct Core;

private:
    std::shared_ptr<Core> core_;
};

}  // namespace flare
