// Contract tests of the PresenceRegistry port: one type-parameterized suite that every presence
// adapter instantiates (memory and Redis in the Redis backend tests). A Factory has
// `using Registry = ...;` and `std::unique_ptr<Registry> Open()`; each test gets a fresh, empty,
// started registry. Expiry is adapter-specific and tested beside the adapter.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "domain/ports.hpp"

namespace flare::contract {

inline DeviceSession MakeSession(std::string tenant, std::string user, std::string device, std::string gateway,
                                 uint64_t connection) {
    DeviceSession s;
    s.tenant_id = std::move(tenant);
    s.user_id = std::move(user);
    s.device_id = std::move(device);
    s.platform = "ios";
    s.gateway_id = std::move(gateway);
    s.region = "beijing";
    s.connection_id = connection;
    s.since_ms = 1'700'000'000'000 + static_cast<int64_t>(connection);
    return s;
}

inline auto SessionTuple(const DeviceSession& s) {
    return std::tie(s.tenant_id, s.user_id, s.device_id, s.platform, s.gateway_id, s.region, s.connection_id,
                    s.since_ms);
}

inline bool SameSession(const DeviceSession& a, const DeviceSession& b) { return SessionTuple(a) == SessionTuple(b); }

// Sorted by (tenant, user, device, gateway, connection), so that results can be compared exactly.
inline std::vector<DeviceSession> Sorted(std::vector<DeviceSession> v) {
    std::sort(v.begin(), v.end(), [](const DeviceSession& a, const DeviceSession& b) {
        return std::tie(a.tenant_id, a.user_id, a.device_id, a.gateway_id, a.connection_id) <
               std::tie(b.tenant_id, b.user_id, b.device_id, b.gateway_id, b.connection_id);
    });
    return v;
}

inline void ExpectSessions(std::vector<DeviceSession> got, std::vector<DeviceSession> want) {
    got = Sorted(std::move(got));
    want = Sorted(std::move(want));
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_TRUE(SameSession(got[i], want[i]))
            << "#" << i << ": got " << got[i].tenant_id << "/" << got[i].user_id << "/" << got[i].device_id << " @"
            << got[i].gateway_id << "#" << got[i].connection_id << ", want " << want[i].tenant_id << "/"
            << want[i].user_id << "/" << want[i].device_id << " @" << want[i].gateway_id << "#"
            << want[i].connection_id;
    }
}

template <typename Factory>
class PresenceContract : public ::testing::Test {
protected:
    void SetUp() override {
        registry_ = factory_.Open();
        ASSERT_NE(registry_, nullptr) << "the factory could not open a registry";
    }

    // Shared: set_value may still be running on the adapter's thread when get() returns here.
    template <typename T, typename F>
    static Result<T> Await(F call) {
        auto p = std::make_shared<std::promise<Result<T>>>();
        auto f = p->get_future();
        call([p](Result<T> r) { p->set_value(std::move(r)); });
        return f.get();
    }

    Result<std::optional<DeviceSession>> Register(DeviceSession s) {
        return Await<std::optional<DeviceSession>>([&](auto cb) { registry_->Register(std::move(s), cb); });
    }
    void Unregister(const DeviceSession& s) {
        registry_->Unregister(s.tenant_id, s.user_id, s.device_id, s.gateway_id, s.connection_id);
    }
    std::vector<DeviceSession> Lookup(const std::string& tenant, std::vector<std::string> users) {
        auto ids = std::make_shared<const std::vector<std::string>>(std::move(users));
        auto r = Await<std::vector<DeviceSession>>([&](auto cb) { registry_->Lookup(tenant, ids, cb); });
        EXPECT_TRUE(r.ok()) << r.error().message;
        return r.ok() ? std::move(r).value() : std::vector<DeviceSession>{};
    }
    std::vector<DeviceSession> ListTenant(const std::string& tenant) {
        auto r = Await<std::vector<DeviceSession>>([&](auto cb) { registry_->ListTenant(tenant, cb); });
        EXPECT_TRUE(r.ok()) << r.error().message;
        return r.ok() ? std::move(r).value() : std::vector<DeviceSession>{};
    }
    Status Refresh(std::vector<DeviceSession> sessions) {
        auto r = Await<bool>([&](Callback<bool> cb) {
            registry_->Refresh(std::move(sessions),
                               [cb](Status s) { cb(s ? Result<bool>(true) : Result<bool>(s.error())); });
        });
        return r.ok() ? Status{} : Status(r.error());
    }

    Factory factory_;
    std::unique_ptr<typename Factory::Registry> registry_;
};

TYPED_TEST_SUITE_P(PresenceContract);

TYPED_TEST_P(PresenceContract, EveryDeviceOfAUserIsListed) {
    auto phone = MakeSession("t1", "alice", "phone", "gw-a", 1);
    auto laptop = MakeSession("t1", "alice", "laptop", "gw-b", 2);
    laptop.platform = "linux";
    laptop.region = "shanghai";
    auto bob = MakeSession("t1", "bob", "phone", "gw-a", 3);
    for (const auto& s : {phone, laptop, bob}) {
        auto r = this->Register(s);
        ASSERT_TRUE(r.ok()) << r.error().message;
        EXPECT_FALSE(r->has_value()) << "nothing to replace for " << s.device_id;
    }
    ExpectSessions(this->Lookup("t1", {"alice"}), {phone, laptop});
    ExpectSessions(this->Lookup("t1", {"bob"}), {bob});
    EXPECT_TRUE(this->Lookup("t1", {"nobody"}).empty());
    EXPECT_TRUE(this->Lookup("t1", {}).empty());
}

TYPED_TEST_P(PresenceContract, ReRegisteringTheSameDeviceReplacesAndReturnsTheOldRecord) {
    auto first = MakeSession("t1", "alice", "phone", "gw-a", 1);
    auto second = MakeSession("t1", "alice", "phone", "gw-b", 7);
    second.platform = "android";
    ASSERT_TRUE(this->Register(first).ok());
    auto r = this->Register(second);
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_TRUE(r->has_value());
    EXPECT_TRUE(SameSession(**r, first));
    ExpectSessions(this->Lookup("t1", {"alice"}), {second});
}

TYPED_TEST_P(PresenceContract, LateUnregisterOfAReplacedConnectionKeepsItsSuccessor) {
    auto first = MakeSession("t1", "alice", "phone", "gw-a", 1);
    auto second = MakeSession("t1", "alice", "phone", "gw-a", 2);
    auto laptop = MakeSession("t1", "alice", "laptop", "gw-a", 3);
    ASSERT_TRUE(this->Register(first).ok());
    ASSERT_TRUE(this->Register(laptop).ok());
    ASSERT_TRUE(this->Register(second).ok());
    this->Unregister(first);
    // Same connection id on another gateway is another connection.
    auto elsewhere = MakeSession("t1", "alice", "phone", "gw-b", 2);
    this->Unregister(elsewhere);
    ExpectSessions(this->Lookup("t1", {"alice"}), {second, laptop});
    this->Unregister(second);
    ExpectSessions(this->Lookup("t1", {"alice"}), {laptop});
    this->Unregister(laptop);
    EXPECT_TRUE(this->Lookup("t1", {"alice"}).empty());
    EXPECT_TRUE(this->ListTenant("t1").empty());
}

TYPED_TEST_P(PresenceContract, LookupOfSeveralUsers) {
    std::vector<DeviceSession> all;
    uint64_t conn = 1;
    for (std::string user : {"u1", "u2", "u3", "u4"}) {
        for (std::string device : {"phone", "web"}) {
            all.push_back(MakeSession("t1", user, device, "gw-a", conn++));
            ASSERT_TRUE(this->Register(all.back()).ok());
        }
    }
    ExpectSessions(this->Lookup("t1", {"u1", "u3", "missing"}), {all[0], all[1], all[4], all[5]});
    ExpectSessions(this->Lookup("t1", {"u4", "u2", "u1", "u3"}), all);
}

TYPED_TEST_P(PresenceContract, ManyConcurrentRegistrationsAreAllListed) {
    constexpr int kUsers = 300;
    std::vector<DeviceSession> want;
    std::vector<std::future<Result<std::optional<DeviceSession>>>> pending;
    std::vector<std::string> users;
    for (int i = 0; i < kUsers; ++i) {
        users.push_back("user" + std::to_string(i));
        want.push_back(MakeSession("t1", users.back(), "phone", "gw-a", static_cast<uint64_t>(i + 1)));
        auto p = std::make_shared<std::promise<Result<std::optional<DeviceSession>>>>();
        pending.push_back(p->get_future());
        this->registry_->Register(want.back(),
                                  [p](Result<std::optional<DeviceSession>> r) { p->set_value(std::move(r)); });
    }
    for (auto& f : pending) {
        auto r = f.get();
        ASSERT_TRUE(r.ok()) << r.error().message;
        EXPECT_FALSE(r->has_value());
    }
    ExpectSessions(this->Lookup("t1", users), want);
    ExpectSessions(this->ListTenant("t1"), want);
}

TYPED_TEST_P(PresenceContract, ListTenantListsEveryDeviceOfTheTenantOnly) {
    auto a1 = MakeSession("t1", "alice", "phone", "gw-a", 1);
    auto a2 = MakeSession("t1", "alice", "web", "gw-b", 2);
    auto b1 = MakeSession("t1", "bob", "phone", "gw-a", 3);
    auto other = MakeSession("t2", "carol", "phone", "gw-a", 4);
    for (const auto& s : {a1, a2, b1, other}) {
        ASSERT_TRUE(this->Register(s).ok());
    }
    ExpectSessions(this->ListTenant("t1"), {a1, a2, b1});
    ExpectSessions(this->ListTenant("t2"), {other});
    EXPECT_TRUE(this->ListTenant("t3").empty());
}

TYPED_TEST_P(PresenceContract, TenantsAreSeparate) {
    auto t1 = MakeSession("t1", "alice", "phone", "gw-a", 1);
    auto t2 = MakeSession("t2", "alice", "phone", "gw-a", 2);
    ASSERT_TRUE(this->Register(t1).ok());
    auto r = this->Register(t2);
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->has_value()) << "a device of another tenant was replaced";
    ExpectSessions(this->Lookup("t1", {"alice"}), {t1});
    ExpectSessions(this->Lookup("t2", {"alice"}), {t2});
    this->Unregister(MakeSession("t2", "alice", "phone", "gw-a", 1));
    ExpectSessions(this->Lookup("t2", {"alice"}), {t2});
    this->Unregister(t2);
    ExpectSessions(this->Lookup("t1", {"alice"}), {t1});
    EXPECT_TRUE(this->Lookup("t2", {"alice"}).empty());
}

TYPED_TEST_P(PresenceContract, IdsWithSeparatorsDoNotCollide) {
    auto a = MakeSession("a:b", "c", "phone", "gw-a", 1);
    auto b = MakeSession("a", "b:c", "phone", "gw-a", 2);
    auto pct = MakeSession("a%3Ab", "c", "phone", "gw-a", 3);
    for (const auto& s : {a, b, pct}) {
        auto r = this->Register(s);
        ASSERT_TRUE(r.ok());
        EXPECT_FALSE(r->has_value()) << s.tenant_id << "/" << s.user_id;
    }
    ExpectSessions(this->Lookup("a:b", {"c"}), {a});
    ExpectSessions(this->Lookup("a", {"b:c"}), {b});
    ExpectSessions(this->Lookup("a%3Ab", {"c"}), {pct});
    ExpectSessions(this->ListTenant("a"), {b});
}

TYPED_TEST_P(PresenceContract, RefreshOfARecordHeldByAnotherConnectionLeavesItAlone) {
    auto first = MakeSession("t1", "alice", "phone", "gw-a", 1);
    auto second = MakeSession("t1", "alice", "phone", "gw-b", 2);
    second.platform = "android";
    ASSERT_TRUE(this->Register(first).ok());
    ASSERT_TRUE(this->Register(second).ok());
    auto s = this->Refresh({first});
    ASSERT_TRUE(s.ok()) << s.error().message;
    ExpectSessions(this->Lookup("t1", {"alice"}), {second});
    s = this->Refresh({second});
    ASSERT_TRUE(s.ok()) << s.error().message;
    ExpectSessions(this->Lookup("t1", {"alice"}), {second});
    ASSERT_TRUE(this->Refresh({}).ok());
}

REGISTER_TYPED_TEST_SUITE_P(PresenceContract, EveryDeviceOfAUserIsListed,
                            ReRegisteringTheSameDeviceReplacesAndReturnsTheOldRecord,
                            LateUnregisterOfAReplacedConnectionKeepsItsSuccessor, LookupOfSeveralUsers,
                            ManyConcurrentRegistrationsAreAllListed, ListTenantListsEveryDeviceOfTheTenantOnly,
                            TenantsAreSeparate, IdsWithSeparatorsDoNotCollide,
                            RefreshOfARecordHeldByAnotherConnectionLeavesItAlone);

}  // namespace flare::contract
