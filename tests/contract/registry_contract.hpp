// Contract tests of the ServiceRegistry port: one type-parameterized suite that every registry adapter
// instantiates (etcd and the static in-process registry, both in tests/backend/registry_etcdtest.cpp).
// A Factory has `using Registry = ...;` and `std::unique_ptr<Registry> Open()`; each test gets a fresh,
// empty registry. Expiry and cross-process visibility are adapter-specific and tested beside the adapter.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "domain/ports.hpp"

namespace flare::contract {

// Waits for a registry completion; a callback that never runs fails the test instead of hanging it.
template <typename T>
Result<T> AwaitRegistry(const std::function<void(Callback<T>)>& call,
                        std::chrono::milliseconds limit = std::chrono::seconds(15)) {
    // Shared: the adapter's thread may still be inside set_value when get() returns here.
    auto p = std::make_shared<std::promise<Result<T>>>();
    auto f = p->get_future();
    call([p](Result<T> r) { p->set_value(std::move(r)); });
    if (f.wait_for(limit) != std::future_status::ready) {
        ADD_FAILURE() << "the registry did not complete the call within " << limit.count() << " ms";
        return MakeError(Errc::kDeadlineExceeded, "test_timeout", "callback not invoked");
    }
    return f.get();
}

inline Status AwaitStatus(const std::function<void(StatusCallback)>& call) {
    auto p = std::make_shared<std::promise<Status>>();
    auto f = p->get_future();
    call([p](Status s) { p->set_value(std::move(s)); });
    if (f.wait_for(std::chrono::seconds(15)) != std::future_status::ready) {
        ADD_FAILURE() << "the registry did not complete the call within 15 s";
        return MakeError(Errc::kDeadlineExceeded, "test_timeout", "callback not invoked");
    }
    return f.get();
}

inline ServiceInstance MakeInstance(std::string service, std::string id, std::string endpoint,
                                    std::string region = "eu-1") {
    return ServiceInstance{std::move(service), std::move(id), std::move(endpoint), std::move(region)};
}

template <typename Factory>
class RegistryContract : public ::testing::Test {
protected:
    void SetUp() override {
        registry_ = factory_.Open();
        ASSERT_NE(registry_, nullptr);
    }

    Status Register(ServiceInstance instance, std::chrono::seconds ttl = std::chrono::seconds(10)) {
        return AwaitStatus([&](StatusCallback cb) { registry_->Register(instance, ttl, std::move(cb)); });
    }
    Status Deregister(const std::string& service, const std::string& id) {
        return AwaitStatus([&](StatusCallback cb) { registry_->Deregister(service, id, std::move(cb)); });
    }
    Result<std::vector<ServiceInstance>> Resolve(const std::string& service) {
        return AwaitRegistry<std::vector<ServiceInstance>>(
            [&](Callback<std::vector<ServiceInstance>> cb) { registry_->Resolve(service, std::move(cb)); });
    }
    // Instance ids of a successful Resolve, in the order returned.
    std::vector<std::string> Ids(const std::string& service) {
        auto r = Resolve(service);
        EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
        std::vector<std::string> ids;
        if (r.ok()) {
            for (const auto& instance : *r) {
                ids.push_back(instance.instance_id);
            }
        }
        return ids;
    }

    Factory factory_;
    std::unique_ptr<typename Factory::Registry> registry_;
};

TYPED_TEST_SUITE_P(RegistryContract);

TYPED_TEST_P(RegistryContract, ResolvesRegisteredInstancesOrderedByInstanceId) {
    ASSERT_TRUE(this->Register(MakeInstance("orch", "orch-b", "10.0.0.2:50081", "eu-2")).ok());
    ASSERT_TRUE(this->Register(MakeInstance("orch", "orch-a", "10.0.0.1:50081", "eu-1")).ok());
    ASSERT_TRUE(this->Register(MakeInstance("orch", "orch-c", "[::1]:50083", "")).ok());
    auto r = this->Resolve("orch");
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_EQ(r->size(), 3u);
    EXPECT_EQ((*r)[0].service, "orch");
    EXPECT_EQ((*r)[0].instance_id, "orch-a");
    EXPECT_EQ((*r)[0].endpoint, "10.0.0.1:50081");
    EXPECT_EQ((*r)[0].region, "eu-1");
    EXPECT_EQ((*r)[1].instance_id, "orch-b");
    EXPECT_EQ((*r)[1].endpoint, "10.0.0.2:50081");
    EXPECT_EQ((*r)[1].region, "eu-2");
    EXPECT_EQ((*r)[2].instance_id, "orch-c");
    EXPECT_EQ((*r)[2].endpoint, "[::1]:50083");
    EXPECT_EQ((*r)[2].region, "");
}

TYPED_TEST_P(RegistryContract, DeregisterRemovesOnlyThatInstanceAndIsIdempotent) {
    ASSERT_TRUE(this->Register(MakeInstance("session", "s1", "127.0.0.1:50090")).ok());
    ASSERT_TRUE(this->Register(MakeInstance("session", "s2", "127.0.0.1:50091")).ok());
    ASSERT_TRUE(this->Deregister("session", "s1").ok());
    EXPECT_EQ(this->Ids("session"), std::vector<std::string>{"s2"});
    EXPECT_TRUE(this->Deregister("session", "s1").ok());
    EXPECT_TRUE(this->Deregister("session", "never-registered").ok());
    EXPECT_TRUE(this->Deregister("no-such-service", "x").ok());
    ASSERT_TRUE(this->Deregister("session", "s2").ok());
    EXPECT_TRUE(this->Ids("session").empty());
}

TYPED_TEST_P(RegistryContract, RegisteringAgainReplacesTheInstance) {
    ASSERT_TRUE(this->Register(MakeInstance("push", "p1", "127.0.0.1:1000", "eu-1")).ok());
    ASSERT_TRUE(this->Register(MakeInstance("push", "p1", "127.0.0.1:2000", "us-1"), std::chrono::seconds(5)).ok());
    auto r = this->Resolve("push");
    ASSERT_TRUE(r.ok()) << r.error().message;
    ASSERT_EQ(r->size(), 1u);
    EXPECT_EQ((*r)[0].endpoint, "127.0.0.1:2000");
    EXPECT_EQ((*r)[0].region, "us-1");
    // The replaced registration leaves nothing behind that a deregister would miss.
    ASSERT_TRUE(this->Deregister("push", "p1").ok());
    EXPECT_TRUE(this->Ids("push").empty());
}

TYPED_TEST_P(RegistryContract, ServicesDoNotSeeEachOther) {
    ASSERT_TRUE(this->Register(MakeInstance("orch", "a", "127.0.0.1:1")).ok());
    ASSERT_TRUE(this->Register(MakeInstance("orch-x", "b", "127.0.0.1:2")).ok());
    ASSERT_TRUE(this->Register(MakeInstance("orchestrator", "c", "127.0.0.1:3")).ok());
    ASSERT_TRUE(this->Register(MakeInstance("orc", "d", "127.0.0.1:4")).ok());
    EXPECT_EQ(this->Ids("orch"), std::vector<std::string>{"a"});
    EXPECT_EQ(this->Ids("orch-x"), std::vector<std::string>{"b"});
    EXPECT_EQ(this->Ids("orchestrator"), std::vector<std::string>{"c"});
    EXPECT_EQ(this->Ids("orc"), std::vector<std::string>{"d"});
    EXPECT_TRUE(this->Ids("unknown").empty());
}

TYPED_TEST_P(RegistryContract, InvalidArgumentsAreRefused) {
    auto expect_invalid = [](const Status& s, const char* what) {
        ASSERT_FALSE(s.ok()) << what;
        EXPECT_EQ(s.error().code, Errc::kInvalidArgument) << what;
        EXPECT_EQ(s.error().reason, "bad_service_instance") << what;
    };
    expect_invalid(this->Register(MakeInstance("", "a", "127.0.0.1:1")), "empty service");
    expect_invalid(this->Register(MakeInstance("svc", "", "127.0.0.1:1")), "empty instance id");
    expect_invalid(this->Register(MakeInstance("svc", "a/b", "127.0.0.1:1")), "'/' in instance id");
    expect_invalid(this->Register(MakeInstance("s/vc", "a", "127.0.0.1:1")), "'/' in service");
    expect_invalid(this->Register(MakeInstance("svc", "a b", "127.0.0.1:1")), "blank in instance id");
    expect_invalid(this->Register(MakeInstance("svc", "a", "127.0.0.1")), "endpoint without port");
    expect_invalid(this->Register(MakeInstance("svc", "a", "127.0.0.1:0")), "port 0");
    expect_invalid(this->Register(MakeInstance("svc", "a", "")), "empty endpoint");
    expect_invalid(this->Register(MakeInstance("svc", "a", "127.0.0.1:1"), std::chrono::seconds(0)), "ttl 0");
    expect_invalid(this->Deregister("svc", "a/b"), "deregister '/'");
    auto r = this->Resolve("");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    EXPECT_TRUE(this->Ids("svc").empty());
}

REGISTER_TYPED_TEST_SUITE_P(RegistryContract, ResolvesRegisteredInstancesOrderedByInstanceId,
                            DeregisterRemovesOnlyThatInstanceAndIsIdempotent, RegisteringAgainReplacesTheInstance,
                            ServicesDoNotSeeEachOther, InvalidArgumentsAreRefused);

}  // namespace flare::contract
