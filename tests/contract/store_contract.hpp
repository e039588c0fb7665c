// Contract tests of the MessageStore and ConversationStore ports: one type-parameterized suite that
// every storage adapter instantiates (SQLite in the unit tests, PostgreSQL in the backend tests).
// A Factory has `using Store = ...;` and `std::unique_ptr<Store> Open()`; each test gets a fresh,
// empty store, and Open() called again must reach the same data (a restart).
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <future>
#include <memory>
#include <map>
#include <optional>
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
    // An event (group change or message operation) from `sender`.
    Result<AppendResult> Event(const std::string& conv, const std::string& sender, const std::string& cid,
                               MessageEvent ev, std::vector<std::string> create = {}, int64_t time_ms = 2000) {
        AppendRequest req;
        req.message.tenant_id = "t1";
        req.message.conversation_id = conv;
        req.message.conversation_type = ConversationType::kGroup;
        req.message.server_msg_id = "srv-" + cid;
        req.message.client_msg_id = cid;
        req.message.sender_id = sender;
        req.message.sender_device_id = "d1";
        req.message.server_time_ms = time_ms;
        req.message.kind = MessageKind::kEvent;
        req.message.event = std::move(ev);
        req.create_with_members = std::move(create);
        return Await<AppendResult>([&](auto cb) { store_->Append(std::move(req), cb); });
    }
    Result<AppendResult> Op(const std::string& conv, const std::string& sender, const std::string& cid, EventType t,
                            uint64_t target, std::string text = "") {
        MessageEvent ev;
        ev.type = t;
        ev.target_seq = target;
        ev.text = std::move(text);
        return Event(conv, sender, cid, std::move(ev));
    }
    // A group owned by `owner` with `members` (owner included), created by its first event.
    void CreateGroup(const std::string& conv, const std::string& owner, std::vector<std::string> members) {
        MessageEvent ev;
        ev.type = EventType::kGroupCreated;
        ev.text = "Team";
        ev.user_ids = members;
        auto r = Event(conv, owner, "create", ev, members);
        ASSERT_TRUE(r.ok()) << r.error().message;
        ASSERT_EQ(r->message.seq, 1u);
    }
    Result<std::optional<ConversationInfo>> Load(const std::string& conv) {
        return Await<std::optional<ConversationInfo>>([&](auto cb) { store_->LoadConversation("t1", conv, cb); });
    }
    Result<ConversationListPage> List(const std::string& user, std::string token = "", uint32_t limit = 20) {
        return Await<ConversationListPage>(
            [&](auto cb) { store_->ListConversationPage("t1", user, std::move(token), limit, cb); });
    }
    Result<uint64_t> MarkRead(const std::string& user, const std::string& conv, uint64_t seq) {
        return Await<uint64_t>([&](auto cb) { store_->SaveReadCursor("t1", user, conv, seq, cb); });
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

// A group is created by its first event, with its owner, name and members; membership events change
// the members in the transaction that stores them; a second create is refused, its retry answered.
TYPED_TEST_P(StoreContract, GroupEventsChangeMembersAndRoles) {
    this->CreateGroup("group:g", "alice", {"alice", "bob", "carol"});
    auto info = this->Load("group:g");
    ASSERT_TRUE(info.ok() && info->has_value());
    EXPECT_EQ((*info)->summary.type, ConversationType::kGroup);
    EXPECT_EQ((*info)->name, "Team");
    ASSERT_EQ((*info)->members.size(), 3u);
    for (const auto& m : (*info)->members) {
        EXPECT_EQ(m.role, m.user_id == "alice" ? MemberRole::kOwner : MemberRole::kMember) << m.user_id;
    }
    MessageEvent again;
    again.type = EventType::kGroupCreated;
    again.text = "Other";
    auto exists = this->Event("group:g", "dave", "create", again, {"dave"});
    ASSERT_FALSE(exists.ok());
    EXPECT_EQ(exists.error().reason, "conversation_exists");
    MessageEvent retry;
    retry.type = EventType::kGroupCreated;
    auto dup = this->Event("group:g", "alice", "create", retry, {"alice"});
    ASSERT_TRUE(dup.ok());
    EXPECT_TRUE(dup->duplicate);
    EXPECT_EQ(dup->message.seq, 1u);
    EXPECT_EQ(dup->message.event.type, EventType::kGroupCreated);
    EXPECT_EQ(dup->message.event.user_ids, (std::vector<std::string>{"alice", "bob", "carol"}));

    MessageEvent add;
    add.type = EventType::kMembersAdded;
    add.user_ids = {"dave"};
    auto added = this->Event("group:g", "alice", "e2", add);
    ASSERT_TRUE(added.ok());
    EXPECT_EQ(added->message.seq, 2u);
    MessageEvent role;
    role.type = EventType::kRoleChanged;
    role.user_ids = {"bob"};
    role.role = MemberRole::kAdmin;
    ASSERT_TRUE(this->Event("group:g", "alice", "e3", role).ok());
    MessageEvent mute;
    mute.type = EventType::kMemberMuted;
    mute.user_ids = {"carol"};
    mute.until_ms = 99'000;
    ASSERT_TRUE(this->Event("group:g", "alice", "e4", mute).ok());
    MessageEvent remove;
    remove.type = EventType::kMembersRemoved;
    remove.user_ids = {"carol"};
    ASSERT_TRUE(this->Event("group:g", "bob", "e5", remove).ok());
    MessageEvent rename;
    rename.type = EventType::kGroupRenamed;
    rename.text = "Renamed";
    ASSERT_TRUE(this->Event("group:g", "bob", "e6", rename).ok());
    info = this->Load("group:g");
    ASSERT_TRUE(info.ok() && info->has_value());
    EXPECT_EQ((*info)->name, "Renamed");
    EXPECT_EQ((*info)->summary.last_seq, 6u);
    std::map<std::string, MemberInfo> by_user;
    for (const auto& m : (*info)->members) {
        by_user[m.user_id] = m;
    }
    ASSERT_EQ(by_user.size(), 3u);  // alice, bob, dave
    EXPECT_FALSE(by_user.contains("carol"));
    EXPECT_EQ(by_user["bob"].role, MemberRole::kAdmin);
    EXPECT_EQ(by_user["dave"].joined_seq, 1u);  // sees the conversation from its "added" event (seq 2) on

    // The stored events read back with their fields.
    auto page = this->Read("group:g", 0, 10);
    ASSERT_TRUE(page.ok());
    ASSERT_EQ(page->messages.size(), 6u);
    EXPECT_EQ(page->messages[1].kind, MessageKind::kEvent);
    EXPECT_EQ(page->messages[1].event.type, EventType::kMembersAdded);
    EXPECT_EQ(page->messages[1].event.user_ids, std::vector<std::string>{"dave"});
    EXPECT_EQ(page->messages[2].event.role, MemberRole::kAdmin);
    EXPECT_EQ(page->messages[3].event.until_ms, 99'000);

    // Handing the group over demotes the old owner to admin.
    MessageEvent transfer;
    transfer.type = EventType::kRoleChanged;
    transfer.user_ids = {"dave"};
    transfer.role = MemberRole::kOwner;
    ASSERT_TRUE(this->Event("group:g", "alice", "e7", transfer).ok());
    info = this->Load("group:g");
    for (const auto& m : (*info)->members) {
        if (m.user_id == "alice") {
            EXPECT_EQ(m.role, MemberRole::kAdmin);
        }
        if (m.user_id == "dave") {
            EXPECT_EQ(m.role, MemberRole::kOwner);
        }
    }

    // After dissolution nothing more is appended (a retry of an earlier event is still answered).
    MessageEvent dissolve;
    dissolve.type = EventType::kGroupDissolved;
    ASSERT_TRUE(this->Event("group:g", "dave", "e8", dissolve).ok());
    info = this->Load("group:g");
    EXPECT_TRUE((*info)->dissolved);
    auto late = this->Append("group:g", "bob", "late", "hello?");
    ASSERT_FALSE(late.ok());
    EXPECT_EQ(late.error().reason, "conversation_dissolved");
    auto late_dup = this->Event("group:g", "alice", "e7", transfer);
    ASSERT_TRUE(late_dup.ok());
    EXPECT_TRUE(late_dup->duplicate);
    this->Reopen();
    late = this->Append("group:g", "bob", "late2", "hello?");
    ASSERT_FALSE(late.ok());
    EXPECT_EQ(late.error().reason, "conversation_dissolved");
}

// Recall, edit, deletion and reactions change the target message in the event's transaction; their
// preconditions are checked there and a failure allocates no seq.
TYPED_TEST_P(StoreContract, MessageOperationsChangeTheTargetAtomically) {
    this->CreateGroup("group:m", "alice", {"alice", "bob"});
    ASSERT_TRUE(this->Append("group:m", "bob", "c2", "hello").ok());     // seq 2
    ASSERT_TRUE(this->Append("group:m", "bob", "c3", "second").ok());    // seq 3
    ASSERT_TRUE(this->Op("group:m", "bob", "o4", EventType::kEdited, 2, "hello, edited").ok());       // 4
    ASSERT_TRUE(this->Op("group:m", "bob", "o5", EventType::kEdited, 2, "hello, edited twice").ok()); // 5
    ASSERT_TRUE(this->Op("group:m", "alice", "o6", EventType::kReactionAdded, 2, "+1").ok());          // 6
    ASSERT_TRUE(this->Op("group:m", "bob", "o7", EventType::kReactionAdded, 2, "+1").ok());            // 7
    ASSERT_TRUE(this->Op("group:m", "bob", "o8", EventType::kReactionAdded, 2, "heart").ok());         // 8

    auto again = this->Op("group:m", "bob", "o9", EventType::kReactionAdded, 2, "heart");
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().reason, "already_reacted");
    auto never = this->Op("group:m", "alice", "o9", EventType::kReactionRemoved, 2, "heart");
    ASSERT_FALSE(never.ok());
    EXPECT_EQ(never.error().reason, "not_reacted");
    auto missing = this->Op("group:m", "bob", "o9", EventType::kRecalled, 77);
    ASSERT_FALSE(missing.ok());
    EXPECT_EQ(missing.error().reason, "unknown_message");
    auto event_target = this->Op("group:m", "bob", "o9", EventType::kRecalled, 4);  // an event, not a message
    ASSERT_FALSE(event_target.ok());
    EXPECT_EQ(event_target.error().reason, "unknown_message");

    auto page = this->Read("group:m", 1, 1);
    ASSERT_TRUE(page.ok());
    ASSERT_EQ(page->messages.size(), 1u);
    const MessageRecord& m = page->messages[0];
    EXPECT_EQ(m.text, "hello, edited twice");
    EXPECT_EQ(m.edit_version, 2u);
    ASSERT_EQ(m.reactions.size(), 2u);
    EXPECT_EQ(m.reactions[0].emoji, "+1");
    EXPECT_EQ(m.reactions[0].user_ids, (std::vector<std::string>{"alice", "bob"}));
    EXPECT_EQ(m.reactions[1].emoji, "heart");
    EXPECT_EQ(m.reactions[1].user_ids, std::vector<std::string>{"bob"});
    EXPECT_EQ(page->last_seq, 8u);  // failed operations took no seq

    auto detail = Await<std::optional<MessageDetail>>(
        [&](auto cb) { this->store_->LoadMessage("t1", "group:m", 2, "", cb); });
    ASSERT_TRUE(detail.ok() && detail->has_value());
    ASSERT_EQ((*detail)->edits.size(), 2u);
    EXPECT_EQ((*detail)->edits[0].version, 0u);
    EXPECT_EQ((*detail)->edits[0].text, "hello");
    EXPECT_EQ((*detail)->edits[1].text, "hello, edited");
    EXPECT_EQ((*detail)->member_count, 2u);

    ASSERT_TRUE(this->Op("group:m", "alice", "o9", EventType::kReactionRemoved, 2, "+1").ok());  // 9
    ASSERT_TRUE(this->Op("group:m", "bob", "o10", EventType::kRecalled, 2).ok());                // 10
    auto recalled = this->Read("group:m", 1, 1);
    ASSERT_TRUE(recalled.ok());
    EXPECT_TRUE(recalled->messages[0].recalled);
    EXPECT_EQ(recalled->messages[0].text, "");
    EXPECT_TRUE(recalled->messages[0].reactions.empty());
    EXPECT_EQ(recalled->messages[0].edit_version, 0u);
    for (EventType t : {EventType::kEdited, EventType::kReactionAdded, EventType::kRecalled}) {
        auto after = this->Op("group:m", "bob", "o11", t, 2, "x");
        ASSERT_FALSE(after.ok());
        EXPECT_EQ(after.error().reason, "message_recalled");
    }
    ASSERT_TRUE(this->Op("group:m", "bob", "o11", EventType::kDeletedForEveryone, 3).ok());  // 11
    auto deleted = this->Read("group:m", 2, 1);
    EXPECT_TRUE(deleted->messages[0].deleted);
    EXPECT_EQ(deleted->messages[0].text, "");
    // A retried recall is answered as a duplicate of the first.
    auto retry = this->Op("group:m", "bob", "o10", EventType::kRecalled, 2);
    ASSERT_TRUE(retry.ok());
    EXPECT_TRUE(retry->duplicate);
    EXPECT_EQ(retry->message.seq, 10u);
}

// The conversation list: unread counts after the user's read cursor (not their own messages, not
// recalled ones), mentions, the newest message, the other side's read cursor, pins, and paging.
TYPED_TEST_P(StoreContract, ConversationListCountsUnreadAndPages) {
    ASSERT_TRUE(this->Append("direct:alice:bob", "alice", "d1", "hi bob", {"alice", "bob"}).ok());
    ASSERT_TRUE(this->Append("direct:alice:bob", "alice", "d2", "there?").ok());
    ASSERT_TRUE(this->Append("direct:alice:bob", "bob", "d3", "yes").ok());
    this->CreateGroup("group:l", "alice", {"alice", "bob", "carol"});
    {
        AppendRequest req;
        req.message = MessageRecord{};
        req.message.tenant_id = "t1";
        req.message.conversation_id = "group:l";
        req.message.conversation_type = ConversationType::kGroup;
        req.message.server_msg_id = "s-mention";
        req.message.client_msg_id = "g2";
        req.message.sender_id = "alice";
        req.message.server_time_ms = 3000;
        req.message.text = "@bob look";
        req.message.mentions = {"bob"};
        auto r = Await<AppendResult>([&](auto cb) { this->store_->Append(std::move(req), cb); });
        ASSERT_TRUE(r.ok());
        EXPECT_EQ(r->message.seq, 2u);
    }
    ASSERT_TRUE(this->Append("group:l", "carol", "g3", "hello all").ok());  // seq 3

    auto list = this->List("bob");
    ASSERT_TRUE(list.ok()) << list.error().message;
    ASSERT_EQ(list->entries.size(), 2u);
    std::map<std::string, ConversationListEntry> by_id;
    for (const auto& e : list->entries) {
        by_id[e.summary.conversation_id] = e;
    }
    EXPECT_EQ(by_id["direct:alice:bob"].unread, 2u);  // bob's own "yes" does not count
    EXPECT_EQ(by_id["group:l"].unread, 2u);           // the creation event does not count
    EXPECT_EQ(by_id["group:l"].unread_mentions, 1u);
    EXPECT_EQ(by_id["group:l"].name, "Team");
    EXPECT_EQ(by_id["group:l"].member_count, 3u);
    ASSERT_TRUE(by_id["group:l"].last_message.has_value());
    EXPECT_EQ(by_id["group:l"].last_message->text, "hello all");
    EXPECT_EQ(by_id["direct:alice:bob"].last_message->text, "yes");

    auto read = this->MarkRead("bob", "group:l", 2);
    ASSERT_TRUE(read.ok());
    EXPECT_EQ(*read, 2u);
    auto back = this->MarkRead("bob", "group:l", 1);  // never backwards
    EXPECT_EQ(*back, 2u);
    auto capped = this->MarkRead("alice", "direct:alice:bob", 1000);  // capped at the newest seq
    EXPECT_EQ(*capped, 3u);
    auto stranger = this->MarkRead("zed", "group:l", 1);
    ASSERT_FALSE(stranger.ok());
    EXPECT_EQ(stranger.error().reason, "not_member");

    // carol's message is recalled: it no longer counts.
    ASSERT_TRUE(this->Op("group:l", "carol", "g4", EventType::kRecalled, 3).ok());
    auto pinned = Await<UserSettings>(
        [&](auto cb) { this->store_->SaveSettings("t1", "bob", "direct:alice:bob", true, std::nullopt, cb); });
    ASSERT_TRUE(pinned.ok());
    EXPECT_TRUE(pinned->pinned);
    EXPECT_FALSE(pinned->muted);
    list = this->List("bob");
    ASSERT_TRUE(list.ok());
    ASSERT_EQ(list->entries.size(), 2u);
    EXPECT_EQ(list->entries[0].summary.conversation_id, "direct:alice:bob");  // pinned first
    EXPECT_TRUE(list->entries[0].settings.pinned);
    EXPECT_EQ(list->entries[0].peer_read_seq, 3u);  // alice read everything
    EXPECT_EQ(list->entries[1].unread, 0u);
    EXPECT_EQ(list->entries[1].unread_mentions, 0u);
    EXPECT_EQ(list->entries[1].read_seq, 2u);

    // Pages of one.
    auto first = this->List("bob", "", 1);
    ASSERT_TRUE(first.ok());
    ASSERT_EQ(first->entries.size(), 1u);
    ASSERT_FALSE(first->next_page_token.empty());
    auto second = this->List("bob", first->next_page_token, 1);
    ASSERT_TRUE(second.ok());
    ASSERT_EQ(second->entries.size(), 1u);
    EXPECT_NE(second->entries[0].summary.conversation_id, first->entries[0].summary.conversation_id);
    EXPECT_TRUE(second->next_page_token.empty());
    auto bad = this->List("bob", "garbage", 1);
    ASSERT_FALSE(bad.ok());
    EXPECT_EQ(bad.error().reason, "bad_page_token");

    // Delete for me: only bob reads it as deleted, and it stops counting for him.
    auto hidden = Await<bool>([&](Callback<bool> cb) {
        this->store_->HideMessages("t1", "bob", "direct:alice:bob", {1, 99}, [cb](Status s) {
            cb(s ? Result<bool>(true) : Result<bool>(s.error()));
        });
    });
    ASSERT_TRUE(hidden.ok());
    auto as_bob = Await<MessagePage>([&](auto cb) { this->store_->ReadAfter("t1", "direct:alice:bob", 0, 10, "bob", cb); });
    ASSERT_TRUE(as_bob.ok());
    EXPECT_TRUE(as_bob->messages[0].deleted_for_me);
    EXPECT_EQ(as_bob->messages[0].text, "");
    EXPECT_FALSE(as_bob->messages[1].deleted_for_me);
    auto as_alice =
        Await<MessagePage>([&](auto cb) { this->store_->ReadAfter("t1", "direct:alice:bob", 0, 10, "alice", cb); });
    EXPECT_FALSE(as_alice->messages[0].deleted_for_me);
    EXPECT_EQ(as_alice->messages[0].text, "hi bob");
    list = this->List("bob");
    EXPECT_EQ(list->entries[0].unread, 1u);
    auto hidden_detail = Await<std::optional<MessageDetail>>(
        [&](auto cb) { this->store_->LoadMessage("t1", "direct:alice:bob", 1, "bob", cb); });
    ASSERT_TRUE(hidden_detail.ok() && hidden_detail->has_value());
    EXPECT_TRUE((*hidden_detail)->message.deleted_for_me);
    EXPECT_EQ((*hidden_detail)->message.text, "");

    // Read receipts in a group: who has read message 2.
    ASSERT_TRUE(this->MarkRead("carol", "group:l", 5).ok());
    auto detail = Await<std::optional<MessageDetail>>(
        [&](auto cb) { this->store_->LoadMessage("t1", "group:l", 2, "", cb); });
    ASSERT_TRUE(detail.ok() && detail->has_value());
    EXPECT_EQ((*detail)->read_by, (std::vector<std::string>{"bob", "carol"}));
}

// The store checks the sender's and the targets' membership again in its transaction (the caller's
// view may be stale), keeps idempotency keys to one kind of request, and a recall takes the edits'
// texts with it.
TYPED_TEST_P(StoreContract, ChecksThatRaceWithChangesHoldInTheTransaction) {
    this->CreateGroup("group:r", "alice", {"alice", "bob", "carol"});
    MessageEvent remove;
    remove.type = EventType::kMembersRemoved;
    remove.user_ids = {"bob"};
    ASSERT_TRUE(this->Event("group:r", "alice", "rm-bob", remove).ok());  // seq 2
    // bob, removed, was still an admin in someone's cache: his change is refused now.
    AppendRequest stale;
    stale.message.tenant_id = "t1";
    stale.message.conversation_id = "group:r";
    stale.message.conversation_type = ConversationType::kGroup;
    stale.message.server_msg_id = "s-stale";
    stale.message.client_msg_id = "stale";
    stale.message.sender_id = "bob";
    stale.message.server_time_ms = 3000;
    stale.message.kind = MessageKind::kEvent;
    stale.message.event.type = EventType::kMembersRemoved;
    stale.message.event.user_ids = {"carol"};
    stale.check_sender = true;
    stale.min_sender_role = MemberRole::kAdmin;
    auto refused = Await<AppendResult>([&](auto cb) { this->store_->Append(stale, cb); });
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().reason, "not_member");
    // Promoting a user who was just removed fails; so does a member removing the owner.
    MessageEvent promote;
    promote.type = EventType::kRoleChanged;
    promote.user_ids = {"bob"};
    promote.role = MemberRole::kOwner;
    auto gone = this->Event("group:r", "alice", "promote-bob", promote);
    ASSERT_FALSE(gone.ok());
    EXPECT_EQ(gone.error().reason, "not_member");
    AppendRequest coup = stale;
    coup.message.client_msg_id = "coup";
    coup.message.sender_id = "carol";
    coup.message.event.user_ids = {"alice"};
    coup.min_sender_role = MemberRole::kMember;
    coup.targets_below = MemberRole::kMember;
    auto no = Await<AppendResult>([&](auto cb) { this->store_->Append(coup, cb); });
    ASSERT_FALSE(no.ok());
    EXPECT_EQ(no.error().reason, "insufficient_role");
    MessageEvent add_again;
    add_again.type = EventType::kMembersAdded;
    add_again.user_ids = {"carol"};
    auto twice = this->Event("group:r", "alice", "add-carol", add_again);
    ASSERT_FALSE(twice.ok());
    EXPECT_EQ(twice.error().reason, "already_member");
    auto page = this->Read("group:r", 0, 10);
    EXPECT_EQ(page->last_seq, 2u) << "refused changes take no seq";

    // A message's client_msg_id cannot be reused for an operation (and the other way round).
    ASSERT_TRUE(this->Append("group:r", "carol", "recall:3", "looks like a key").ok());  // seq 3
    auto reused = this->Op("group:r", "carol", "recall:3", EventType::kRecalled, 3);
    ASSERT_FALSE(reused.ok());
    EXPECT_EQ(reused.error().reason, "client_msg_id_reused");
    // Recall takes the edited texts with it.
    ASSERT_TRUE(this->Op("group:r", "carol", "e4", EventType::kEdited, 3, "secret edit").ok());  // seq 4
    auto before = this->Read("group:r", 3, 1);
    ASSERT_EQ(before->messages.size(), 1u);
    EXPECT_EQ(before->messages[0].event.text, "secret edit");
    ASSERT_TRUE(this->Op("group:r", "carol", "r5", EventType::kRecalled, 3).ok());
    auto after = this->Read("group:r", 3, 1);
    EXPECT_EQ(after->messages[0].event.type, EventType::kEdited);
    EXPECT_EQ(after->messages[0].event.text, "");

    // A dissolved group's id is not created again, even by a retry of its creation.
    MessageEvent dissolve;
    dissolve.type = EventType::kGroupDissolved;
    ASSERT_TRUE(this->Event("group:r", "alice", "bye", dissolve).ok());
    MessageEvent again;
    again.type = EventType::kGroupCreated;
    again.text = "Fresh";
    again.user_ids = {"alice"};
    auto recreate = this->Event("group:r", "alice", "create", again, {"alice"});
    ASSERT_FALSE(recreate.ok());
    EXPECT_EQ(recreate.error().reason, "conversation_exists");
}

// Rules that a concurrent change could break between the caller's check and the write hold in the
// transaction: the owner cannot leave, a group does not grow past its limit, an operation allowed
// to admins only needs the role still; a retry is found by its client_msg_id; a user's text never
// answers with a system message that has the same sender id and client_msg_id.
TYPED_TEST_P(StoreContract, OwnershipSizeAndAdminRightsHoldInTheTransaction) {
    this->CreateGroup("group:o", "alice", {"alice", "bob", "carol"});
    auto request = [](std::string sender, std::string cid, MessageEvent ev) {
        AppendRequest req;
        req.message.tenant_id = "t1";
        req.message.conversation_id = "group:o";
        req.message.conversation_type = ConversationType::kGroup;
        req.message.server_msg_id = "s-" + cid;
        req.message.client_msg_id = cid;
        req.message.sender_id = std::move(sender);
        req.message.server_time_ms = 3000;
        req.message.kind = MessageKind::kEvent;
        req.message.event = std::move(ev);
        req.check_sender = true;
        return req;
    };
    auto append = [&](const AppendRequest& req) {
        return Await<AppendResult>([&](auto cb) { this->store_->Append(req, cb); });
    };
    MessageEvent leave;
    leave.type = EventType::kMemberLeft;
    leave.user_ids = {"alice"};
    auto owner_leaves = append(request("alice", "leave-a", leave));
    ASSERT_FALSE(owner_leaves.ok());
    EXPECT_EQ(owner_leaves.error().reason, "owner_cannot_leave");
    leave.user_ids = {"carol"};
    ASSERT_TRUE(append(request("carol", "leave-c", leave)).ok());  // seq 2: alice, bob left

    MessageEvent add;
    add.type = EventType::kMembersAdded;
    add.user_ids = {"dave", "erin"};
    AppendRequest too_many = request("alice", "add-2", add);
    too_many.min_sender_role = MemberRole::kAdmin;
    too_many.max_members = 3;
    auto full = append(too_many);
    ASSERT_FALSE(full.ok());
    EXPECT_EQ(full.error().reason, "group_full");
    too_many.message.event.user_ids = {"dave"};
    ASSERT_TRUE(append(too_many).ok());  // seq 3: three members, the limit

    ASSERT_TRUE(this->Append("group:o", "alice", "m4", "from alice").ok());  // seq 4
    MessageEvent recall;
    recall.type = EventType::kRecalled;
    recall.target_seq = 4;
    AppendRequest by_admin = request("bob", "recall-4", recall);
    by_admin.min_sender_role = MemberRole::kAdmin;  // bob is not the sender: only as an admin
    auto not_admin = append(by_admin);
    ASSERT_FALSE(not_admin.ok());
    EXPECT_EQ(not_admin.error().reason, "insufficient_role");
    MessageEvent promote;
    promote.type = EventType::kRoleChanged;
    promote.user_ids = {"bob"};
    promote.role = MemberRole::kAdmin;
    ASSERT_TRUE(this->Event("group:o", "alice", "promote-bob", promote).ok());  // seq 5
    auto recalled = append(by_admin);
    ASSERT_TRUE(recalled.ok()) << recalled.error().message;
    EXPECT_EQ(recalled->message.seq, 6u);

    auto found = Await<std::optional<MessageRecord>>(
        [&](auto cb) { this->store_->FindAppended("t1", "group:o", "alice", "m4", cb); });
    ASSERT_TRUE(found.ok());
    ASSERT_TRUE(found->has_value());
    EXPECT_EQ((*found)->seq, 4u);
    EXPECT_EQ((*found)->kind, MessageKind::kText);
    EXPECT_EQ((*found)->server_msg_id, "srv-m4");
    auto missing = Await<std::optional<MessageRecord>>(
        [&](auto cb) { this->store_->FindAppended("t1", "group:o", "bob", "m4", cb); });
    ASSERT_TRUE(missing.ok());
    EXPECT_FALSE(missing->has_value());

    AppendRequest official;  // from a business system whose name is "crm"
    official.message.tenant_id = "t1";
    official.message.conversation_id = "group:o";
    official.message.conversation_type = ConversationType::kGroup;
    official.message.client_msg_id = "k1";
    official.message.server_msg_id = "s-k1";
    official.message.sender_id = "crm";
    official.message.server_time_ms = 4000;
    official.message.kind = MessageKind::kSystem;
    official.message.text = "Official";
    ASSERT_TRUE(append(official).ok());
    AppendRequest impostor = official;
    impostor.message.kind = MessageKind::kText;
    impostor.message.server_msg_id = "s-k1b";
    auto reused = append(impostor);
    ASSERT_FALSE(reused.ok());
    EXPECT_EQ(reused.error().reason, "client_msg_id_reused");
}

// What one message carries is bounded: its edits, its different emoji, one user's reactions.
TYPED_TEST_P(StoreContract, ReactionsAndEditsPerMessageAreBounded) {
    ASSERT_TRUE(this->Append("direct:a:b", "a", "m1", "v0", {"a", "b"}).ok());  // seq 1
    for (int i = 1; i <= 100; ++i) {
        auto e = this->Op("direct:a:b", "a", "e" + std::to_string(i), EventType::kEdited, 1, "v" + std::to_string(i));
        ASSERT_TRUE(e.ok()) << i << ": " << e.error().message;
    }
    auto edit = this->Op("direct:a:b", "a", "e101", EventType::kEdited, 1, "one too many");
    ASSERT_FALSE(edit.ok());
    EXPECT_EQ(edit.error().reason, "too_many_edits");

    ASSERT_TRUE(this->Append("direct:a:b", "a", "m2", "react to me").ok());
    const uint64_t target = this->Read("direct:a:b", 0, 200)->last_seq;
    for (int i = 0; i < 20; ++i) {
        auto r = this->Op("direct:a:b", "b", "rb" + std::to_string(i), EventType::kReactionAdded, target,
                          "e" + std::to_string(i));
        ASSERT_TRUE(r.ok()) << r.error().message;
    }
    auto mine = this->Op("direct:a:b", "b", "rb20", EventType::kReactionAdded, target, "e20");
    ASSERT_FALSE(mine.ok());
    EXPECT_EQ(mine.error().reason, "too_many_reactions");
    for (int i = 20; i < 40; ++i) {  // a's twenty: e20..e39
        auto r = this->Op("direct:a:b", "a", "ra" + std::to_string(i), EventType::kReactionAdded, target,
                          "e" + std::to_string(i));
        ASSERT_TRUE(r.ok()) << r.error().message;
    }
    // 40 different emoji so far; ten other users (the store leaves membership to its caller here)
    // bring them to 50.
    for (int i = 40; i < 50; ++i) {
        MessageEvent ev;
        ev.type = EventType::kReactionAdded;
        ev.target_seq = target;
        ev.text = "e" + std::to_string(i);
        auto r = this->Event("direct:a:b", "u" + std::to_string(i), "ru" + std::to_string(i), ev);
        ASSERT_TRUE(r.ok()) << r.error().message;
    }
    MessageEvent fifty_first;
    fifty_first.type = EventType::kReactionAdded;
    fifty_first.target_seq = target;
    fifty_first.text = "e50";
    auto refused = this->Event("direct:a:b", "u50", "ru50", fifty_first);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.error().reason, "too_many_reactions");
    fifty_first.text = "e0";  // one of the fifty: fine
    EXPECT_TRUE(this->Event("direct:a:b", "u50", "ru50b", fifty_first).ok());
}

REGISTER_TYPED_TEST_SUITE_P(StoreContract,
                            ReactionsAndEditsPerMessageAreBounded,
                            ChecksThatRaceWithChangesHoldInTheTransaction,
                            OwnershipSizeAndAdminRightsHoldInTheTransaction,
                            GroupEventsChangeMembersAndRoles,
                            MessageOperationsChangeTheTargetAtomically,
                            ConversationListCountsUnreadAndPages,
                            SeqsAreDenseFromOneAndIdempotent,
                            ConcurrentAppendsStayDenseAndDistinct,
                            UnknownConversationIsRefusedAndDirectIsCreatedWithMembers,
                            ReadAfterPagesInOrder,
                            MembershipAndCursors,
                            TenantsAreSeparate,
                            EverythingSurvivesReopen,
                            StoppedStoreRefusesWithUnavailable);

}  // namespace flare::contract
