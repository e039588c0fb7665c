#include "common/clock.hpp"

#include <chrono>
#include <cstdio>
#include <random>

namespace flare {

int64_t SystemClock::NowMs() const {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

TimeOrderedIdGenerator::TimeOrderedIdGenerator(const Clock& clock, uint16_t node)
    : clock_(clock), node_(node), counter_(static_cast<uint32_t>(std::random_device{}())) {}

std::string TimeOrderedIdGenerator::NewId() {
    const uint64_t ms = static_cast<uint64_t>(clock_.NowMs()) & 0xFFFFFFFFFFFFull;
    const uint32_t n = counter_.fetch_add(1, std::memory_order_relaxed);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%012llx%04x%08x", static_cast<unsigned long long>(ms), node_, n);
    return buf;
}

std::string RandomHexId(int bytes) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    static constexpr char kHex[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes * 2);
    for (int i = 0; i < bytes; ++i) {
        const auto b = static_cast<unsigned>(rng() & 0xFF);
        out.push_back(kHex[b >> 4]);
        out.push_back(kHex[b & 0xF]);
    }
    return out;
}

}  // namespace flare
