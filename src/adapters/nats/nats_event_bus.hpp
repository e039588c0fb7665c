// EventBus on NATS JetStream (libnats; this header stays free of it). One file-backed stream per topic
// with subjects <prefix>.<topic>.<partition>; a record's key picks its partition. Each group has one
// durable pull consumer per partition with at most one unacknowledged record, so a partition's records
// reach the group one at a time and in order, however many members fetch from it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "domain/ports.hpp"

namespace flare {

struct NatsEventBusOptions {
    std::string url = "nats://127.0.0.1:24222";  // comma-separated list for a cluster
    // Subjects are <subject_prefix>.<topic>.<partition>; streams are named <PREFIX>_<topic> (dots become
    // underscores). Topic and group names may use letters, digits, '_' and '-'.
    std::string subject_prefix = "flare.bus";
    uint32_t partitions = 8;     // must be the same in every process using the topic
    bool create_streams = true;  // false: streams are provisioned by operators; the bus only publishes
    std::chrono::milliseconds publish_timeout{5000};  // broker acknowledgement of one publish
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds request_timeout{5000};  // JetStream API calls (streams, consumers, acks)
    // How long one pull waits for a record; it also bounds how long Stop() takes.
    std::chrono::milliseconds fetch_wait{500};
    // The server hands a record out again when a member neither acknowledged it nor reported progress for
    // this long (a crashed process). Running handlers are kept alive with progress reports.
    std::chrono::milliseconds ack_wait{30000};
    std::chrono::milliseconds retry_backoff{100};  // after a failed handler; doubles per attempt
    std::chrono::milliseconds max_retry_backoff{5000};
    std::chrono::milliseconds reconnect_wait{250};
    int replicas = 1;
    std::chrono::seconds max_age{0};  // stream retention; 0 keeps records until limits are configured
};

class NatsEventBus final : public EventBus {
public:
    explicit NatsEventBus(NatsEventBusOptions options);
    // Stop().
    ~NatsEventBus() override;

    NatsEventBus(const NatsEventBus&) = delete;
    NatsEventBus& operator=(const NatsEventBus&) = delete;

    // Connects and checks that JetStream answers. Errors: kUnavailable "bus_unavailable" naming the URL
    // when the server cannot be reached or has no JetStream; kFailedPrecondition when already started.
    // Afterwards the connection reconnects by itself.
    Status Start();

    // Stops every subscription, then completes publishes still waiting for the broker with kUnavailable
    // "bus_unavailable" and closes the connection. Idempotent.
    void Stop();

    // Publishes asynchronously; the caller is not blocked on network I/O (the first publish to a topic
    // hands its stream creation to the bus's admin thread). `done` runs exactly once on a library or
    // bus thread: OK once the stream stored the record; kDeadlineExceeded when no acknowledgement came
    // within publish_timeout; kUnavailable "bus_unavailable" when not started, stopped, or the broker
    // refused it; kInvalidArgument for a topic that is not a valid subject token.
    void Publish(std::string topic, std::string key, std::string payload, StatusCallback done) override;

    // Creates the topic's stream and the group's consumers when missing (blocking, bounded by
    // request_timeout) and starts one fetch thread per partition; handlers run on those threads. A new
    // group starts at the oldest record in the stream.
    // Errors: kInvalidArgument (names), kUnavailable "bus_unavailable", kDeadlineExceeded.
    Result<std::unique_ptr<BusSubscription>> Subscribe(std::string topic, std::string group,
                                                       BusHandler handler) override;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace flare
