// EventBus on Apache Kafka through librdkafka (this header stays free of it). One idempotent producer
// (acks=all) per bus, key-partitioned by murmur2 like the Java client; one consumer-group member per
// subscription that commits a record's offset only after its handler acknowledged it and hands a
// partition's next record out only after that. Topics are provisioned beforehand (admin or operator).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "domain/ports.hpp"

namespace flare {

struct KafkaEventBusOptions {
    std::string bootstrap_servers = "127.0.0.1:9092";  // host:port,host:port (KAFKA_BOOTSTRAP_SERVERS)
    std::string group_prefix = "flare.";               // consumer group id = group_prefix + group
    std::string client_id = "flare-event-bus";
    // A publish not acknowledged by the in-sync replicas within this time fails with kDeadlineExceeded
    // (librdkafka's message.timeout.ms; it retries internally until then).
    std::chrono::milliseconds publish_timeout{10000};
    std::chrono::milliseconds connect_timeout{5000};   // Start() and Subscribe() metadata requests
    std::chrono::milliseconds session_timeout{10000};  // a crashed member's partitions move after this
    std::chrono::milliseconds heartbeat_interval{1000};
    std::chrono::milliseconds fetch_wait{100};     // fetch.wait.max.ms: latency of an idle partition
    std::chrono::milliseconds retry_backoff{100};  // after a failed handler; doubles per attempt
    std::chrono::milliseconds max_retry_backoff{5000};
    // Records fetched ahead per partition before the partition is paused (memory bound).
    size_t max_queued_per_partition = 1000;
    // Passed to every client as-is (security.protocol, sasl.*, or test.mock.* for tests).
    std::vector<std::pair<std::string, std::string>> extra_config;
};

class KafkaEventBus final : public EventBus {
public:
    explicit KafkaEventBus(KafkaEventBusOptions options);
    // Stop().
    ~KafkaEventBus() override;

    KafkaEventBus(const KafkaEventBus&) = delete;
    KafkaEventBus& operator=(const KafkaEventBus&) = delete;

    // Creates the producer and waits (up to connect_timeout) for a broker to answer a metadata request.
    // Errors: kUnavailable "bus_unavailable" naming the bootstrap servers; kInvalidArgument for a
    // configuration librdkafka rejects; kFailedPrecondition when called twice.
    Status Start();

    // Stops every subscription (committing what was acknowledged), gives in-flight publishes a short
    // moment, then completes the rest with kUnavailable "bus_unavailable". Idempotent.
    void Stop();

    // Enqueues the record in the producer without blocking. `done` runs exactly once on the bus's poll
    // thread (or inline for an immediate refusal): OK when the in-sync replicas have it; kDeadlineExceeded
    // after publish_timeout; kUnavailable "bus_unavailable" when not started, stopped, or refused.
    void Publish(std::string topic, std::string key, std::string payload, StatusCallback done) override;

    // Joins consumer group group_prefix+group with its own consumer and poll thread; the handler runs on
    // that thread. A new group starts at the oldest retained record. Joining takes a rebalance.
    // Errors: kFailedPrecondition "unknown_topic" when the topic does not exist; kUnavailable
    // "bus_unavailable" when not started or the cluster does not answer; kInvalidArgument.
    Result<std::unique_ptr<BusSubscription>> Subscribe(std::string topic, std::string group,
                                                       BusHandler handler) override;

    struct Impl;

private:
    std::shared_ptr<Impl> impl_;
};

}  // namespace flare
