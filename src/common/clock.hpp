// Time and id ports. Injected everywhere so protocol and domain tests are deterministic.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace flare {

class Clock {
public:
    virtual ~Clock() = default;
    // Wall-clock milliseconds since the Unix epoch. Thread-safe.
    virtual int64_t NowMs() const = 0;
};

class SystemClock final : public Clock {
public:
    int64_t NowMs() const override;
};

// A clock tests move by hand.
class ManualClock final : public Clock {
public:
    explicit ManualClock(int64_t start_ms = 1'700'000'000'000) : now_(start_ms) {}
    int64_t NowMs() const override { return now_.load(); }
    void Advance(int64_t ms) { now_ += ms; }

private:
    std::atomic<int64_t> now_;
};

class IdGenerator {
public:
    virtual ~IdGenerator() = default;
    // A new globally unique id (text, URL-safe, sortable by creation time). Thread-safe.
    virtual std::string NewId() = 0;
};

// Time-ordered ids: 48-bit ms timestamp, 16-bit node, 32-bit counter, as 24 lowercase hex chars,
// so that they sort like their creation order.
class TimeOrderedIdGenerator final : public IdGenerator {
public:
    TimeOrderedIdGenerator(const Clock& clock, uint16_t node);
    std::string NewId() override;

private:
    const Clock& clock_;
    uint16_t node_;
    std::atomic<uint32_t> counter_;
};

// 128 random bits as 32 hex chars, for ids nobody may guess (device ids, session ids).
std::string RandomHexId(int bytes = 16);

}  // namespace flare
