// Contract tests of the MessageStore and ConversationStore ports: one type-parameterized suite that
// every storage adapter instantiates (SQLite in the unit tests, PostgreSQL in the backend tests).
// A Factory has `using Store = ...;` and `std::unique_ptr<Store> Open()`; each test gets a fresh,
// empty store, and Open() called again must reach the same data (a restart).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "domain/ports.hpp"

namespace flare::contract {

template <typename T>
Result<T> Await(const std::function<void(Callback<T>)>& call) {
    // Shared: set_value may still be running on the store's thread when get() returns here.
    auto p = std::make_shared<std::promise<Result<T>>>();
    auto f = p->get_future();
    call([p](Result<T> r) { p->set_value(std::move(r)); });
    return f.get();
}

template <typename Factory>
class StoreContract : public ::testing::Test {
protected:
    void SetUp() override { store_ = factory_.Open(); }
    void Reopen() {
        store_.reset();
        store_ = factory_.Open();
    }

    Result<AppendResult> Append(const std::string& conv, const std::string& sender, const std::string& cid,
                                const std::string& text, std::vector<std::string> create = {}) {
        AppendRequest req;
        req.message.tenant_id = "t1";
        req.message.conversation_id = conv;
        req.message.conversation_type = conv.starts_with("room:") ? ConversationType::kRoom : ConversationType::kDirect;
        req.message.server_msg_id = "srv-" + cid;
        req.message.client_msg_id = cid;
        req.message.sender_id = sender;
        req.message.sender_device_id = "d1";
        req.message.server_time_ms = 1000;
        req.message.text = text;
        req.create_with_members = std::move(create);
        return Await<AppendResult>([&](auto cb) { store_->Append(std::move(req), cb); });
    }
    Result<ConversationSummary> Join(const std::string& conv, const std::string& user) {
        return Await<ConversationSummary>([&](auto cb) { store_->JoinRoom("t1", conv, user, cb); });
    }
    Result<MessagePage> Read(const std::string& conv, uint64_t after, uint32_t limit) {
        return Await<MessagePage>([&](auto cb) { store_->ReadAfter("t1", conv, after, limit, "", cb); });
    }

    Factory factory_;
    std::unique_ptr<typename Factory::Store> store_;
};

TYPED_TEST_SUITE_P(StoreContract);

TYPED_TEST_P(StoreContract, SeqsAreDenseFromOneAndIdempotent) {
    ASSERT_TRUE(this->Join("room:r", "alice").ok());
    for (int i = 1; i <= 20; ++i) {
        auto r = this->Append("room:r", "alice", "c" + std::to_string(i), "m" + std::to_string(i));
        ASSERT_TRUE(r.ok()) << r.error().message;
        EXPECT_EQ(r->message.seq, static_cast<uint64_t>(i));
        EXPECT_FALSE(r->duplicate);
    }
    auto again = this->Append("room:r", "alice", "c7", "different text");
    ASSERT_TRUE(again.ok());
    EXPECT_TRUE(again->duplicate);
    EXPECT_EQ(again->message.seq, 7u);
    EXPECT_EQ(again->message.text, "m7");
    EXPECT_EQ(again->message.server_msg_id, "srv-c7");
    // Same client id from another sender is another message.
    ASSERT_TRUE(this->Join("room:r", "bob").ok());
    auto bob = this->Append("room:r", "bob", "c7", "bob's");
    ASSERT_TRUE(bob.ok());
    EXPECT_FALSE(bob->duplicate);
    EXPECT_EQ(bob->message.seq, 21u);
}

TYPED_TEST_P(StoreContract, ConcurrentAppendsStayDenseAndDistinct) {
    ASSERT_TRUE(this->Join("room:c", "alice").ok());
    constexpr int kN = 500;
    auto ps = std::make_shared<std::vector<std::promise<Result<AppendResult>>>>(kN);
    for (int i = 0; i < kN; ++i) {
        AppendRequest req;
        req.message.tenant_id = "t1";
        req.message.conversation_id = "room:c";
        req.message.conversation_type = ConversationType::kRoom;
        req.message.server_msg_id = "s" + std::to_string(i);
        req.message.client_msg_id = "c" + std::to_string(i % 400);  // 100 retries mixed in
        req.message.sender_id = "alice";
        req.message.text = "x";
        this->store_->Append(std::move(req), [ps, i](Result<AppendResult> r) { (*ps)[i].set_value(std::move(r)); });
    }
    std::set<uint64_t> seqs;
    int duplicates = 0;
    for (auto& p : *ps) {
        auto r = p.get_future().get();
        ASSERT_TRUE(r.ok());
        if (r->duplicate) {
            ++duplicates;
        } else {
            EXPECT_TRUE(seqs.insert(r->message.seq).second);
        }
    }
    EXPECT_EQ(duplicates, 100);
    ASSERT_EQ(seqs.size(), 400u);
    EXPECT_EQ(*seqs.begin(), 1u);
    EXPECT_EQ(*seqs.rbegin(), 400u);
}

TYPED_TEST_P(StoreContract, UnknownConversationIsRefusedAndDirectIsCreatedWithMembers) {
    auto r = this->Append("room:nope", "alice", "c1", "x");
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kNotFound);
    EXPECT_EQ(r.error().reason, "unknown_conversation");
    auto d = this->Append("direct:alice:bob", "alice", "c1", "hi", {"alice", "bob"});
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->message.seq, 1u);
    auto info = Await<std::optional<ConversationInfo>>(
        [&](auto cb) { this->store_->LoadConversation("t1", "direct:alice:bob", cb); });
    ASSERT_TRUE(info.ok());
    ASSERT_TRUE(info->has_value());
    EXPECT_EQ((*info)->summary.last_seq, 1u);
    ASSERT_EQ((*info)->members.size(), 2u);
    auto missing = Await<std::optional<ConversationInfo>>(
        [&](auto cb) { this->store_->LoadConversation("t1", "room:zzz", cb); });
    ASSERT_TRUE(missing.ok());
    EXPECT_FALSE(missing->has_value());
}

TYPED_TEST_P(StoreContract, ReadAfterPagesInOrder) {
    ASSERT_TRUE(this->Join("room:p", "alice").ok());
    for (int i = 1; i <= 25; ++i) {
        ASSERT_TRUE(this->Append("room:p", "alice", "c" + std::to_string(i), std::to_string(i)).ok());
    }
    uint64_t after = 0;
    std::vector<uint64_t> got;
    for (;;) {
        auto page = this->Read("room:p", after, 10);
        ASSERT_TRUE(page.ok());
        EXPECT_EQ(page->last_seq, 25u);
        for (auto& m : page->messages) {
            got.push_back(m.seq);
            EXPECT_EQ(m.text, std::to_string(m.seq));
        }
        if (!page->has_more) {
            break;
        }
        after = page->messages.back().seq;
    }
    ASSERT_EQ(got.size(), 25u);
    for (size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i], i + 1);
    }
    auto empty = this->Read("room:p", 25, 10);
    ASSERT_TRUE(empty.ok());
    EXPECT_TRUE(empty->messages.empty());
    EXPECT_FALSE(empty->has_more);
}

TYPED_TEST_P(StoreContract, MembershipAndCursors) {
    auto j = this->Join("room:m", "alice");
    ASSERT_TRUE(j.ok());
    EXPECT_EQ(j->last_seq, 0u);
    ASSERT_TRUE(this->Append("room:m", "alice", "c1", "a").ok());
    ASSERT_TRUE(this->Append("room:m", "alice", "c2", "b").ok());
    auto bob = this->Join("room:m", "bob");
    ASSERT_TRUE(bob.ok());
    EXPECT_EQ(bob->last_seq, 2u);
    auto again = this->Join("room:m", "bob");  // idempotent
    ASSERT_TRUE(again.ok());

    auto list = Await<std::vector<UserConversation>>(
        [&](auto cb) { this->store_->ListUserConversations("t1", "bob", "phone", cb); });
    ASSERT_TRUE(list.ok());
    ASSERT_EQ(list->size(), 1u);
    EXPECT_EQ((*list)[0].joined_seq, 2u);
    EXPECT_FALSE((*list)[0].device_acked_seq.has_value());

    auto save = [&](uint64_t seq) {
        return Await<uint64_t>(
            [&](auto cb) { this->store_->SaveDeviceCursor("t1", "bob", "phone", "room:m", seq, cb); });
    };
    EXPECT_EQ(*save(1), 1u);
    EXPECT_EQ(*save(0), 1u);   // never backwards
    EXPECT_EQ(*save(99), 2u);  // clamped to the newest seq
    list = Await<std::vector<UserConversation>>(
        [&](auto cb) { this->store_->ListUserConversations("t1", "bob", "phone", cb); });
    ASSERT_TRUE(list.ok());
    EXPECT_EQ((*list)[0].device_acked_seq.value_or(0), 2u);

    auto leave = [&](const std::string& user) {
        return Await<bool>([&](Callback<bool> cb) {
            this->store_->LeaveRoom("t1", "room:m", user, [cb](Status s) {
                cb(s ? Result<bool>(true) : Result<bool>(s.error()));
            });
        });
    };
    EXPECT_TRUE(leave("bob").ok());
    auto twice = leave("bob");
    ASSERT_FALSE(twice.ok());
    EXPECT_EQ(twice.error().reason, "not_member");
}

TYPED_TEST_P(StoreContract, TenantsAreSeparate) {
    ASSERT_TRUE(this->Join("room:same", "alice").ok());
    ASSERT_TRUE(this->Append("room:same", "alice", "c1", "t1 text").ok());
    auto other = Await<MessagePage>([&](auto cb) { this->store_->ReadAfter("t2", "room:same", 0, 10, "", cb); });
    ASSERT_TRUE(other.ok());
    EXPECT_TRUE(other->messages.empty());
}

TYPED_TEST_P(StoreContract, EverythingSurvivesReopen) {
    ASSERT_TRUE(this->Join("room:d", "alice").ok());
    for (int i = 1; i <= 30; ++i) {
        ASSERT_TRUE(this->Append("room:d", "alice", "c" + std::to_string(i), "x").ok());
    }
    this->Reopen();
    auto page = this->Read("room:d", 0, 100);
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(page->messages.size(), 30u);
    EXPECT_EQ(page->last_seq, 30u);
    auto next = this->Append("room:d", "alice", "c31", "x");
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(next->message.seq, 31u);
    auto dup = this->Append("room:d", "alice", "c5", "x");
    ASSERT_TRUE(dup.ok());
    EXPECT_TRUE(dup->duplicate);
    EXPECT_EQ(dup->message.seq, 5u);
}

TYPED_TEST_P(StoreContract, StoppedStoreRefusesWithUnavailable) {
    this->store_->Stop();
    auto r = this->Read("room:x", 0, 10);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kUnavailable);
    auto j = this->Join("room:x", "alice");
    ASSERT_FALSE(j.ok());
    EXPECT_EQ(j.error().code, Errc::kUnavailable);
}

REGISTER_TYPED_TEST_SUITE_P(StoreContract,
                            SeqsAreDenseFromOneAndIdempotent,
                            ConcurrentAppendsStayDenseAndDistinct,
                            UnknownConversationIsRefusedAndDirectIsCreatedWithMembers,
                            ReadAfterPagesInOrder,
                            MembershipAndCursors,
                            TenantsAreSeparate,
                            EverythingSurvivesReopen,
                            StoppedStoreRefusesWithUnavailable);

}  // namespace flare::contract
