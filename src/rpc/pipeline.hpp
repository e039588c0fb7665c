// The distributed send pipeline over the event bus:
//   message-orchestrator --(topic "append")--> storage-writer --(topic "committed")--> push-server
// BusCommitter is the orchestrator's commit step: it publishes the append and answers the sender once
// storage-writer reports the stored message (Messages.CompleteAppend). StorageWriter appends each
// command to the message store (idempotent; seqs dense per conversation) and publishes what it stored;
// PushWorker fans each committed message out to the gateways. Both consume at least once, acknowledge
// a record only after its work succeeded, and are safe to run again on a redelivered record.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "domain/apis.hpp"
#include "domain/ports.hpp"

namespace flare::internal::v1 {
class AppendOutcome;
}

namespace flare::rpc {

class AppendReplier;

inline constexpr const char* kAppendTopic = "append";
inline constexpr const char* kCommittedTopic = "committed";
std::string BusKey(const std::string& tenant_id, const std::string& conversation_id);

struct BusCommitterOptions {
    std::string reply_endpoint;  // this orchestrator's gRPC endpoint, as storage-writer can reach it
    // How long a send waits for storage-writer; then it fails with kDeadlineExceeded "storage_timeout"
    // (not retried by the channel) and the client retries with the same client_msg_id (answered
    // idempotently once stored).
    std::chrono::milliseconds timeout{5000};
};

class BusCommitter final : public MessageCommitter {
public:
    // `presence` (optional) counts the devices a business push is addressed to, for on_delivered.
    BusCommitter(EventBus& bus, PresenceRegistry* presence, BusCommitterOptions options);
    ~BusCommitter() override;
    void Start();
    // Fails every send still waiting with kUnavailable.
    void Stop();
    // When the endpoint is known only once the gRPC server bound its port (before the first Commit).
    void set_reply_endpoint(std::string endpoint) { options_.reply_endpoint = std::move(endpoint); }

    void Commit(AppendRequest request, FanoutPlan plan, Callback<AppendResult> done,
                std::function<void(DeliveryStats)> on_delivered) override;
    // storage-writer's answer (an unknown or late request id is ignored).
    void OnOutcome(const flare::internal::v1::AppendOutcome& outcome);

    size_t waiting();

private:
    struct Waiting {
        Callback<AppendResult> done;
        std::function<void(DeliveryStats)> on_delivered;
        FanoutPlan plan;
        std::chrono::steady_clock::time_point deadline;
    };
    void Finish(Waiting w, Result<AppendResult> r);
    void TimeoutLoop();

    EventBus& bus_;
    PresenceRegistry* presence_;
    BusCommitterOptions options_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stopping_ = false;
    std::unordered_map<std::string, Waiting> waiting_;
    std::thread timer_;
};

struct PipelineCounters {
    std::atomic<uint64_t> processed{0};   // records whose work succeeded
    std::atomic<uint64_t> retried{0};     // records handed back to the bus for another attempt
    std::atomic<uint64_t> duplicates{0};  // appends answered from the original (retries, redeliveries)
    std::atomic<uint64_t> rejected{0};    // appends refused (unknown conversation, bad content)
    std::atomic<uint64_t> malformed{0};   // records that do not parse (skipped)
};

class StorageWriter {
public:
    StorageWriter(EventBus& bus, MessageStore& store, AppendReplier& replier, std::string group = "storage-writer");
    Status Start();
    void Stop();
    const PipelineCounters& counters() const { return counters_; }

private:
    void Handle(const BusRecord& record, BusAck ack);

    EventBus& bus_;
    MessageStore& store_;
    AppendReplier& replier_;
    std::string group_;
    std::unique_ptr<BusSubscription> sub_;
    PipelineCounters counters_;
};

class PushWorker {
public:
    PushWorker(EventBus& bus, PushApi& push, std::string group = "push-server");
    Status Start();
    void Stop();
    const PipelineCounters& counters() const { return counters_; }

private:
    EventBus& bus_;
    PushApi& push_;
    std::string group_;
    std::unique_ptr<BusSubscription> sub_;
    PipelineCounters counters_;
};

}  // namespace flare::rpc
