// Contract tests of the EventBus port, instantiated for every bus adapter (memory, NATS, Kafka). A Factory
// has `std::unique_ptr<EventBus> Open()` (a started bus with names of its own, or nullptr after recording a
// failure), `void CreateTopic(const std::string&)` (for brokers whose topics are provisioned first; may do
// nothing), `kPatience` (the longest one delivery may take, e.g. a Kafka group join) and `kCountsDeliveries`
// (a record handed out again after Stop() has delivery_attempt > 1). All waits are conditions with deadlines.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/clock.hpp"
#include "domain/ports.hpp"

namespace flare::contract {

// How long a test keeps listening after the expected records, to catch duplicates and stray records.
constexpr std::chrono::milliseconds kSettle{300};

// What a handler saw, in the order it saw it, shared by the members of a test.
class RecordLog {
public:
    struct Entry {
        BusRecord record;
        int member = 0;
    };

    void Add(const BusRecord& r, int member) {
        std::lock_guard lock(mu_);
        entries_.push_back(Entry{r, member});
        cv_.notify_all();
    }
    // Waits until `pred(entries)` holds or `timeout` passes; returns whether it holds.
    bool WaitFor(std::chrono::milliseconds timeout, const std::function<bool(const std::vector<Entry>&)>& pred) {
        std::unique_lock lock(mu_);
        return cv_.wait_for(lock, timeout, [&] { return pred(entries_); });
    }
    bool WaitForCount(size_t n, std::chrono::milliseconds timeout) {
        return WaitFor(timeout, [n](const auto& e) { return e.size() >= n; });
    }
    std::vector<Entry> Snapshot() {
        std::lock_guard lock(mu_);
        return entries_;
    }
    size_t Size() {
        std::lock_guard lock(mu_);
        return entries_.size();
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    std::vector<Entry> entries_;
};

// Counts publish completions and keeps the failures.
class PublishTracker {
public:
    StatusCallback Callback() {
        {
            std::lock_guard lock(mu_);
            ++issued_;
        }
        return [this](Status s) {
            std::lock_guard lock(mu_);
            ++completed_;
            if (!s.ok()) {
                failures_.push_back(std::string(ErrcName(s.error().code)) + " " + s.error().message);
            }
            cv_.notify_all();
        };
    }
    // Every issued publish completed OK within `timeout`, each exactly once.
    ::testing::AssertionResult AllOk(std::chrono::milliseconds timeout) {
        std::unique_lock lock(mu_);
        if (!cv_.wait_for(lock, timeout, [&] { return completed_ >= issued_; })) {
            return ::testing::AssertionFailure() << completed_ << " of " << issued_ << " publishes completed";
        }
        if (!failures_.empty()) {
            return ::testing::AssertionFailure() << failures_.size() << " publishes failed, first: " << failures_[0];
        }
        if (completed_ != issued_) {
            return ::testing::AssertionFailure() << completed_ << " completions for " << issued_ << " publishes";
        }
        return ::testing::AssertionSuccess();
    }

private:
    std::mutex mu_;
    std::condition_variable cv_;
    int issued_ = 0;
    int completed_ = 0;
    std::vector<std::string> failures_;
};

// Acknowledges records from its own thread, in the order it got them (handlers that ack later).
class AsyncAcker {
public:
    AsyncAcker() : thread_([this] { Run(); }) {}
    ~AsyncAcker() {
        {
            std::lock_guard lock(mu_);
            stop_ = true;
            cv_.notify_all();
        }
        thread_.join();
    }
    void Post(std::function<void()> f) {
        std::lock_guard lock(mu_);
        jobs_.push_back(std::move(f));
        cv_.notify_all();
    }

private:
    void Run() {
        std::unique_lock lock(mu_);
        while (true) {
            cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
            if (jobs_.empty()) {
                return;
            }
            auto f = std::move(jobs_.front());
            jobs_.pop_front();
            lock.unlock();
            f();
            lock.lock();
        }
    }
    std::mutex mu_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> jobs_;
    bool stop_ = false;
    std::thread thread_;
};

template <typename Factory>
class EventBusContract : public ::testing::Test {
protected:
    static constexpr std::chrono::milliseconds kPatience = Factory::kPatience;

    // Each test has a topic of its own, created before the bus starts (as in production, where topics
    // exist before their publishers).
    void SetUp() override {
        topic_ = "topic_" + RandomHexId(4);
        factory_.CreateTopic(topic_);
        bus_ = factory_.Open();
        ASSERT_NE(bus_, nullptr);
    }

    std::unique_ptr<BusSubscription> Subscribe(const std::string& topic, const std::string& group, BusHandler h) {
        auto sub = bus_->Subscribe(topic, group, std::move(h));
        EXPECT_TRUE(sub.ok()) << (sub.ok() ? "" : sub.error().message);
        return sub.ok() ? std::move(*sub) : nullptr;
    }

    // A handler that logs every record and acknowledges it at once.
    static BusHandler AckingHandler(RecordLog& log, int member = 0) {
        return [&log, member](const BusRecord& r, BusAck ack) {
            log.Add(r, member);
            ack(Status{});
        };
    }

    Factory factory_;
    std::string topic_;
    std::unique_ptr<EventBus> bus_;
};

TYPED_TEST_SUITE_P(EventBusContract);

TYPED_TEST_P(EventBusContract, EveryRecordReachesTheGroupOnceWithItsPayloadIntact) {
    const std::string& topic = this->topic_;
    std::map<std::string, std::pair<std::string, std::string>> sent;  // payload -> (key, payload)
    PublishTracker published;
    for (int i = 0; i < 100; ++i) {
        std::string key = "key-" + std::to_string(i % 7);
        std::string payload = "p" + std::to_string(i) + std::string(1, '\0') + "\xff\x01" + std::string(i, 'x');
        sent[payload] = {key, payload};
        this->bus_->Publish(topic, key, payload, published.Callback());
    }
    ASSERT_TRUE(published.AllOk(this->kPatience));

    RecordLog log;
    auto sub = this->Subscribe(topic, "every-group", this->AckingHandler(log));
    ASSERT_NE(sub, nullptr);
    ASSERT_TRUE(log.WaitForCount(100, this->kPatience)) << "got " << log.Size() << " of 100";
    // Anything delivered twice would show up shortly after the last record.
    EXPECT_FALSE(log.WaitForCount(101, kSettle));
    sub->Stop();

    std::map<std::string, int> seen;
    for (const auto& e : log.Snapshot()) {
        ++seen[e.record.payload];
        EXPECT_EQ(e.record.topic, topic);
        EXPECT_EQ(e.record.delivery_attempt, 1u);
        auto it = sent.find(e.record.payload);
        ASSERT_NE(it, sent.end()) << "unexpected payload of " << e.record.payload.size() << " bytes";
        EXPECT_EQ(e.record.key, it->second.first);
    }
    EXPECT_EQ(seen.size(), sent.size());
    for (const auto& [payload, n] : seen) {
        EXPECT_EQ(n, 1) << "payload of " << payload.size() << " bytes seen " << n << " times";
    }
}

TYPED_TEST_P(EventBusContract, PerKeyOrderHoldsWithManyKeysInterleaved) {
    constexpr int kKeys = 50;
    constexpr int kPerKey = 40;
    const std::string& topic = this->topic_;
    PublishTracker published;
    for (int seq = 0; seq < kPerKey; ++seq) {
        for (int k = 0; k < kKeys; ++k) {
            this->bus_->Publish(topic, "key-" + std::to_string(k), std::to_string(k) + ":" + std::to_string(seq),
                                published.Callback());
        }
    }
    ASSERT_TRUE(published.AllOk(this->kPatience));

    // Acknowledgements come later from another thread; the next record of a key must wait for them.
    std::mutex mu;
    std::map<std::string, int> last;
    std::set<std::string> unacked;
    std::vector<std::string> violations;
    RecordLog log;
    AsyncAcker acker;
    auto sub = this->Subscribe(topic, "order-group", [&](const BusRecord& r, BusAck ack) {
        {
            std::lock_guard lock(mu);
            auto colon = r.payload.find(':');
            int seq = std::stoi(r.payload.substr(colon + 1));
            std::string key = "key-" + r.payload.substr(0, colon);
            if (key != r.key) {
                violations.push_back("record " + r.payload + " arrived with key " + r.key);
            }
            if (!unacked.insert(key).second) {
                violations.push_back(r.payload + " handed out before the previous record of its key was acked");
            }
            auto it = last.find(key);
            int expected = it == last.end() ? 0 : it->second + 1;
            if (seq != expected) {
                violations.push_back(key + ": got " + std::to_string(seq) + ", expected " + std::to_string(expected));
            }
            last[key] = seq;
        }
        log.Add(r, 0);
        acker.Post([&mu, &unacked, key = r.key, ack = std::move(ack)] {
            {
                std::lock_guard lock(mu);
                unacked.erase(key);
            }
            ack(Status{});
        });
    });
    ASSERT_NE(sub, nullptr);
    ASSERT_TRUE(log.WaitForCount(kKeys * kPerKey, this->kPatience)) << "got " << log.Size();
    EXPECT_FALSE(log.WaitForCount(kKeys * kPerKey + 1, kSettle));
    sub->Stop();

    std::lock_guard lock(mu);
    EXPECT_TRUE(violations.empty()) << violations.size() << " violations, first: " << violations.front();
    ASSERT_EQ(last.size(), static_cast<size_t>(kKeys));
    for (const auto& [key, seq] : last) {
        EXPECT_EQ(seq, kPerKey - 1) << key;
    }
}

TYPED_TEST_P(EventBusContract, EachGroupGetsEveryRecord) {
    const std::string& topic = this->topic_;
    PublishTracker published;
    for (int i = 0; i < 60; ++i) {
        this->bus_->Publish(topic, "key-" + std::to_string(i % 5), "r" + std::to_string(i), published.Callback());
    }
    ASSERT_TRUE(published.AllOk(this->kPatience));

    RecordLog a;
    RecordLog b;
    auto sub_a = this->Subscribe(topic, "group-a", this->AckingHandler(a));
    auto sub_b = this->Subscribe(topic, "group-b", this->AckingHandler(b));
    ASSERT_NE(sub_a, nullptr);
    ASSERT_NE(sub_b, nullptr);
    ASSERT_TRUE(a.WaitForCount(60, this->kPatience)) << "group a got " << a.Size();
    ASSERT_TRUE(b.WaitForCount(60, this->kPatience)) << "group b got " << b.Size();
    EXPECT_FALSE(a.WaitForCount(61, kSettle));
    EXPECT_EQ(b.Size(), 60u);
    sub_a->Stop();
    sub_b->Stop();
    for (RecordLog* log : {&a, &b}) {
        std::set<std::string> payloads;
        for (const auto& e : log->Snapshot()) {
            payloads.insert(e.record.payload);
        }
        EXPECT_EQ(payloads.size(), 60u);
    }
}

TYPED_TEST_P(EventBusContract, AFailedRecordComesBackAndLaterRecordsOfItsKeyWait) {
    const std::string& topic = this->topic_;
    PublishTracker published;
    for (int i = 0; i < 5; ++i) {
        this->bus_->Publish(topic, "k", "k" + std::to_string(i), published.Callback());
        this->bus_->Publish(topic, "other", "o" + std::to_string(i), published.Callback());
    }
    ASSERT_TRUE(published.AllOk(this->kPatience));

    RecordLog log;
    auto sub = this->Subscribe(topic, "retry-group", [&log](const BusRecord& r, BusAck ack) {
        log.Add(r, 0);
        if (r.payload == "k1" && r.delivery_attempt == 1) {
            ack(Status{MakeError(Errc::kUnavailable, "test_failure", "the handler fails the first attempt")});
            return;
        }
        ack(Status{});
    });
    ASSERT_NE(sub, nullptr);
    ASSERT_TRUE(log.WaitForCount(11, this->kPatience)) << "got " << log.Size() << " of 11";
    EXPECT_FALSE(log.WaitForCount(12, kSettle));
    sub->Stop();

    std::vector<std::string> k_seen;
    int others = 0;
    for (const auto& e : log.Snapshot()) {
        if (e.record.key == "k") {
            k_seen.push_back(e.record.payload + "@" + std::to_string(e.record.delivery_attempt));
        } else {
            ++others;
        }
    }
    EXPECT_EQ(k_seen, (std::vector<std::string>{"k0@1", "k1@1", "k1@2", "k2@1", "k3@1", "k4@1"}));
    EXPECT_EQ(others, 5);
}

TYPED_TEST_P(EventBusContract, AcknowledgedRecordsStayDoneAndUnacknowledgedOnesReturnAfterStop) {
    const std::string& topic = this->topic_;
    PublishTracker published;
    for (int i = 0; i < 10; ++i) {
        this->bus_->Publish(topic, "k", "r" + std::to_string(i), published.Callback());
    }
    ASSERT_TRUE(published.AllOk(this->kPatience));

    // The first member acknowledges r0..r4, takes r5 and "crashes" (stops) without acknowledging it.
    RecordLog first;
    std::mutex mu;
    BusAck held;
    auto sub1 = this->Subscribe(topic, "crash-group", [&](const BusRecord& r, BusAck ack) {
        if (r.payload == "r5") {
            std::lock_guard lock(mu);
            held = std::move(ack);
        } else {
            ack(Status{});
        }
        first.Add(r, 1);
    });
    ASSERT_NE(sub1, nullptr);
    ASSERT_TRUE(
        first.WaitFor(this->kPatience, [](const auto& e) { return !e.empty() && e.back().record.payload == "r5"; }))
        << "first member got " << first.Size();
    EXPECT_FALSE(first.WaitForCount(7, kSettle)) << "r6 was handed out while r5 was not acknowledged";
    sub1->Stop();
    {
        std::lock_guard lock(mu);
        ASSERT_TRUE(held);
        held(Status{});  // too late: the subscription had stopped
    }
    std::vector<std::string> first_seen;
    for (const auto& e : first.Snapshot()) {
        first_seen.push_back(e.record.payload);
    }
    EXPECT_EQ(first_seen, (std::vector<std::string>{"r0", "r1", "r2", "r3", "r4", "r5"}));

    RecordLog second;
    auto sub2 = this->Subscribe(topic, "crash-group", this->AckingHandler(second, 2));
    ASSERT_NE(sub2, nullptr);
    ASSERT_TRUE(second.WaitForCount(5, this->kPatience)) << "second member got " << second.Size();
    EXPECT_FALSE(second.WaitForCount(6, kSettle));
    sub2->Stop();
    auto entries = second.Snapshot();
    std::vector<std::string> second_seen;
    for (const auto& e : entries) {
        second_seen.push_back(e.record.payload);
    }
    EXPECT_EQ(second_seen, (std::vector<std::string>{"r5", "r6", "r7", "r8", "r9"}));
    ASSERT_FALSE(entries.empty());
    if (TypeParam::kCountsDeliveries) {
        EXPECT_EQ(entries[0].record.delivery_attempt, 2u);
    }
}

TYPED_TEST_P(EventBusContract, MembersOfOneGroupShareTheRecordsExactlyOnce) {
    const std::string& topic = this->topic_;
    RecordLog log;
    auto sub_a = this->Subscribe(topic, "share-group", this->AckingHandler(log, 1));
    auto sub_b = this->Subscribe(topic, "share-group", this->AckingHandler(log, 2));
    ASSERT_NE(sub_a, nullptr);
    ASSERT_NE(sub_b, nullptr);

    // Publish batches until both members have worked (a broker may need a rebalance to include both).
    constexpr int kKeys = 20;
    PublishTracker published;
    int sent = 0;
    auto both_worked = [](const std::vector<RecordLog::Entry>& e) {
        bool one = false;
        bool two = false;
        for (const auto& x : e) {
            one = one || x.member == 1;
            two = two || x.member == 2;
        }
        return one && two;
    };
    for (int batch = 0; batch < 10 && (batch == 0 || !both_worked(log.Snapshot())); ++batch) {
        for (int i = 0; i < 40; ++i, ++sent) {
            this->bus_->Publish(topic, "key-" + std::to_string(sent % kKeys), std::to_string(sent),
                                published.Callback());
        }
        ASSERT_TRUE(published.AllOk(this->kPatience));
        ASSERT_TRUE(log.WaitForCount(static_cast<size_t>(sent), this->kPatience))
            << "got " << log.Size() << " of " << sent;
    }
    EXPECT_FALSE(log.WaitForCount(static_cast<size_t>(sent) + 1, kSettle));
    sub_a->Stop();
    sub_b->Stop();

    auto entries = log.Snapshot();
    EXPECT_TRUE(both_worked(entries)) << "one member got every record";
    std::map<int, int> seen;
    std::map<std::string, int> last;
    for (const auto& e : entries) {
        int n = std::stoi(e.record.payload);
        ++seen[n];
        auto it = last.find(e.record.key);
        if (it != last.end()) {
            EXPECT_EQ(n, it->second + kKeys) << "key " << e.record.key << " out of order";
        }
        last[e.record.key] = n;
    }
    EXPECT_EQ(seen.size(), static_cast<size_t>(sent));
    for (const auto& [n, count] : seen) {
        EXPECT_EQ(count, 1) << "record " << n;
    }
}

REGISTER_TYPED_TEST_SUITE_P(EventBusContract, EveryRecordReachesTheGroupOnceWithItsPayloadIntact,
                            PerKeyOrderHoldsWithManyKeysInterleaved, EachGroupGetsEveryRecord,
                            AFailedRecordComesBackAndLaterRecordsOfItsKeyWait,
                            AcknowledgedRecordsStayDoneAndUnacknowledgedOnesReturnAfterStop,
                            MembersOfOneGroupShareTheRecordsExactlyOnce);

}  // namespace flare::contract
