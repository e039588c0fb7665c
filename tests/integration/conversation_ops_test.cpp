// Groups, unread counts, read receipts, recall, edit, deletion, reactions, typing and mentions, over
// the client protocol, as users see them: live on the other participants' devices and in the final
// state after catch-up.
//
// By default the tests run against the embedded server, in process. With FLARE_OPS_GATEWAYS set
// ("60051,60052": two gateway ports on 127.0.0.1) they run against a running deployment instead; the
// distributed end-to-end test (tests/system/multi_gateway_e2e.sh) runs them that way against the
// beijing and shanghai gateways, with FLARE_OPS_TOKEN_SECRET, RECALL_WINDOW_MS=1000 and
// LARGE_GROUP_MEMBERS=3 set for the deployment as they are set here for the embedded server.
#include <gtest/gtest.h>

#include <algorithm>

#include <cstdlib>
#include <functional>
#include <map>
#include <thread>

#include "domain/types.hpp"
#include "test_support.hpp"

namespace flare::testing {
namespace {

constexpr uint32_t kRecallWindowMs = 1000;
constexpr uint32_t kLargeGroupMembers = 3;

// Where the tests run: two gateway ports (the same one twice in embedded mode).
struct Target {
    uint16_t a = 0, b = 0;
    std::string secret = kSecret;
    std::unique_ptr<TestServer> server;
};

Target& Env() {
    static Target* t = [] {
        auto* t = new Target;
        if (const char* g = std::getenv("FLARE_OPS_GATEWAYS"); g != nullptr && *g != '\0') {
            std::string s(g);
            const auto comma = s.find(',');
            t->a = static_cast<uint16_t>(std::stoi(s.substr(0, comma)));
            t->b = comma == std::string::npos ? t->a : static_cast<uint16_t>(std::stoi(s.substr(comma + 1)));
            if (const char* sec = std::getenv("FLARE_OPS_TOKEN_SECRET")) {
                t->secret = sec;
            }
        } else {
            t->server = std::make_unique<TestServer>([](app::Config& c) {
                c.limits.recall_window_ms = kRecallWindowMs;
                c.limits.large_group_members = kLargeGroupMembers;
            });
            t->server->Start();
            t->a = t->b = t->server->port();
        }
        return t;
    }();
    return *t;
}

// One connected device, with the pushes it received sorted out.
struct Device {
    std::unique_ptr<TestClient> c;
    std::vector<pb::Message> messages;  // message pushes, in arrival order
    std::vector<pb::Notice> notices;

    std::optional<pb::ServerFrame> Request(pb::ClientFrame f) {
        auto r = c->Request(std::move(f));
        Drain();
        return r;
    }
    void Drain() {
        while (auto f = c->NextPush(std::chrono::milliseconds(0))) {
            Sort(*f);
        }
    }
    void Sort(const pb::ServerFrame& f) {
        if (f.has_message()) {
            messages.push_back(f.message().message());
        } else if (f.has_notice()) {
            notices.push_back(f.notice());
        } else {
            ADD_FAILURE() << "unexpected push " << f.DebugString();
        }
    }
    // Waits until a pushed message matches (looking at those already received first).
    std::optional<pb::Message> WaitMessage(const std::function<bool(const pb::Message&)>& pred,
                                           std::chrono::milliseconds timeout = 5s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        size_t seen = 0;
        for (;;) {
            for (; seen < messages.size(); ++seen) {
                if (pred(messages[seen])) {
                    return messages[seen];
                }
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                return std::nullopt;
            }
            if (auto f = c->NextPush(left)) {
                Sort(*f);
            }
        }
    }
    std::optional<pb::Notice> WaitNotice(const std::function<bool(const pb::Notice&)>& pred,
                                         std::chrono::milliseconds timeout = 5s) {
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        size_t seen = 0;
        for (;;) {
            for (; seen < notices.size(); ++seen) {
                if (pred(notices[seen])) {
                    return notices[seen];
                }
            }
            const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
            if (left.count() <= 0) {
                return std::nullopt;
            }
            if (auto f = c->NextPush(left)) {
                Sort(*f);
            }
        }
    }
    // Waits for the event of `type` on `conv` (a pushed Message of kind EVENT).
    std::optional<pb::Message> WaitEvent(const std::string& conv, pb::EventType type) {
        return WaitMessage([&](const pb::Message& m) {
            return m.conversation_id() == conv && m.kind() == pb::MESSAGE_KIND_EVENT && m.event().type() == type;
        });
    }
    std::optional<pb::Message> WaitText(const std::string& conv, const std::string& text) {
        return WaitMessage([&](const pb::Message& m) { return m.conversation_id() == conv && m.text() == text; });
    }
    // The seqs of `conv` this device was pushed, in order.
    std::vector<uint64_t> Seqs(const std::string& conv) const {
        std::vector<uint64_t> out;
        for (const auto& m : messages) {
            if (m.conversation_id() == conv) {
                out.push_back(m.seq());
            }
        }
        return out;
    }
};

class ConversationOps : public ::testing::Test {
protected:
    void SetUp() override {
        // A tenant per test: runs against a long-lived deployment never meet earlier data.
            tenant_ = std::string("ops-") + RandomHexId(4);
    }

    Device Login(const std::string& user, const std::string& device, bool second_gateway = false) {
        Target& t = Env();
        Device d;
        d.c = TestClient::LoginTenant(second_gateway ? t.b : t.a, user, device, tenant_, t.secret);
        return d;
    }

    static pb::ClientFrame Group(const std::string& conv, const std::function<void(pb::GroupRequest*)>& fill) {
        pb::ClientFrame f;
        f.mutable_group()->set_conversation_id(conv);
        fill(f.mutable_group());
        return f;
    }
    // Creates a group; returns its conversation id.
    std::string CreateGroup(Device& owner, const std::vector<std::string>& members, const std::string& name = "Team") {
        auto r = owner.Request(Group("", [&](pb::GroupRequest* g) {
            g->mutable_create()->set_name(name);
            for (const auto& m : members) {
                g->mutable_create()->add_member_ids(m);
            }
        }));
        EXPECT_TRUE(r && r->has_group()) << (r ? r->DebugString() : "no answer");
        if (!r || !r->has_group()) {
            return "";
        }
        EXPECT_EQ(r->group().event().seq(), 1u);
        EXPECT_EQ(r->group().event().event().type(), pb::EVENT_TYPE_GROUP_CREATED);
        return r->group().event().conversation_id();
    }
    static uint64_t Send(Device& d, const std::string& conv, const std::string& text,
                         const std::vector<std::string>& mentions = {}, bool all = false) {
        pb::ClientFrame f;
        f.mutable_send()->set_conversation_id(conv);
        f.mutable_send()->set_client_msg_id("c-" + RandomHexId(6));
        f.mutable_send()->set_text(text);
        for (const auto& m : mentions) {
            f.mutable_send()->add_mentions(m);
        }
        f.mutable_send()->set_mention_all(all);
        auto r = d.Request(f);
        EXPECT_TRUE(r && r->has_send()) << (r ? r->DebugString() : "no answer");
        return r && r->has_send() ? r->send().seq() : 0;
    }
    static std::optional<pb::ServerFrame> Op(Device& d, const std::string& conv, uint64_t seq,
                                             const std::function<void(pb::MessageOpRequest*)>& fill) {
        pb::ClientFrame f;
        f.mutable_message_op()->set_conversation_id(conv);
        f.mutable_message_op()->set_seq(seq);
        fill(f.mutable_message_op());
        return d.Request(f);
    }
    static std::optional<pb::ServerFrame> Recall(Device& d, const std::string& conv, uint64_t seq) {
        return Op(d, conv, seq, [](pb::MessageOpRequest* o) { o->mutable_recall(); });
    }
    static std::optional<pb::ServerFrame> React(Device& d, const std::string& conv, uint64_t seq,
                                                const std::string& emoji, bool remove = false) {
        return Op(d, conv, seq, [&](pb::MessageOpRequest* o) {
            (remove ? o->mutable_remove_reaction() : o->mutable_add_reaction())->set_emoji(emoji);
        });
    }
    static std::vector<pb::Message> History(Device& d, const std::string& conv, uint64_t after = 0) {
        return d.c->SyncAll(conv, after);
    }
    static std::map<std::string, pb::ConversationEntry> List(Device& d) {
        pb::ClientFrame f;
        f.mutable_list_conversations()->set_limit(100);
        auto r = d.Request(f);
        EXPECT_TRUE(r && r->has_list_conversations()) << (r ? r->DebugString() : "no answer");
        std::map<std::string, pb::ConversationEntry> out;
        if (r && r->has_list_conversations()) {
            for (const auto& e : r->list_conversations().conversations()) {
                out[e.conversation_id()] = e;
            }
        }
        return out;
    }
    static std::optional<pb::ServerFrame> Read(Device& d, const std::string& conv, uint64_t seq) {
        pb::ClientFrame f;
        f.mutable_read()->set_conversation_id(conv);
        f.mutable_read()->set_seq(seq);
        return d.Request(f);
    }
    static void ExpectError(const std::optional<pb::ServerFrame>& r, const std::string& reason) {
        ASSERT_TRUE(r.has_value()) << "no answer; expected " << reason;
        ASSERT_TRUE(r->has_error()) << "expected error " << reason << ", got " << r->DebugString();
        EXPECT_EQ(r->error().reason(), reason) << r->error().message();
    }

    std::string tenant_;
};

// A group of three with one member offline: the online member gets every event and message live,
// once and in seq order; the offline member finds the group, its unread count and every message when
// it connects.
TEST_F(ConversationOps, GroupOfThreeFansOutLiveAndTheOfflineMemberCatchesUp) {
    Device alice = Login("alice", "phone");
    Device bob = Login("bob", "laptop", /*second_gateway=*/true);
    const std::string g = CreateGroup(alice, {"bob", "carol"});
    ASSERT_FALSE(g.empty());
    ASSERT_TRUE(g.starts_with("group:"));
    ASSERT_TRUE(bob.WaitEvent(g, pb::EVENT_TYPE_GROUP_CREATED));
    for (int i = 1; i <= 3; ++i) {
        EXPECT_EQ(Send(alice, g, "m" + std::to_string(i)), static_cast<uint64_t>(i + 1));
    }
    ASSERT_TRUE(bob.WaitText(g, "m3"));
    EXPECT_EQ(bob.Seqs(g), (std::vector<uint64_t>{1, 2, 3, 4}));
    EXPECT_TRUE(alice.Seqs(g).empty());  // the sender's own connection gets answers, not pushes

    Device carol = Login("carol", "tablet");
    auto list = List(carol);
    ASSERT_TRUE(list.contains(g));
    EXPECT_EQ(list[g].type(), pb::CONVERSATION_TYPE_GROUP);
    EXPECT_EQ(list[g].name(), "Team");
    EXPECT_EQ(list[g].unread_count(), 3u);
    EXPECT_EQ(list[g].member_count(), 3u);
    EXPECT_EQ(list[g].last_message().text(), "m3");
    auto history = History(carol, g);
    ASSERT_EQ(history.size(), 4u);
    EXPECT_EQ(history[0].kind(), pb::MESSAGE_KIND_EVENT);
    EXPECT_EQ(history[0].event().name(), "Team");
    EXPECT_EQ(history[0].event().user_ids_size(), 3);
    for (size_t i = 1; i < 4; ++i) {
        EXPECT_EQ(history[i].seq(), i + 1);
        EXPECT_EQ(history[i].text(), "m" + std::to_string(i));
    }
    // carol sends; both others get it live.
    Send(carol, g, "from carol");
    EXPECT_TRUE(alice.WaitText(g, "from carol"));
    EXPECT_TRUE(bob.WaitText(g, "from carol"));
}

// Membership changes are events with seqs that every member sees; roles decide who may do what.
TEST_F(ConversationOps, MembershipChangesAreEventsAndRolesAreEnforced) {
    Device alice = Login("alice", "phone");
    Device bob = Login("bob", "laptop", true);
    Device dave = Login("dave", "phone", true);
    const std::string g = CreateGroup(alice, {"bob"});
    ASSERT_TRUE(bob.WaitEvent(g, pb::EVENT_TYPE_GROUP_CREATED));

    // A plain member may not add anyone; the owner may.
    ExpectError(bob.Request(Group(g, [](pb::GroupRequest* r) { r->mutable_add_members()->add_user_ids("dave"); })),
                "insufficient_role");
    auto added = alice.Request(Group(g, [](pb::GroupRequest* r) { r->mutable_add_members()->add_user_ids("dave"); }));
    ASSERT_TRUE(added && added->has_group()) << added->DebugString();
    EXPECT_EQ(added->group().event().seq(), 2u);
    ASSERT_TRUE(bob.WaitEvent(g, pb::EVENT_TYPE_MEMBERS_ADDED));
    auto seen_by_dave = dave.WaitEvent(g, pb::EVENT_TYPE_MEMBERS_ADDED);
    ASSERT_TRUE(seen_by_dave);
    EXPECT_EQ(seen_by_dave->event().user_ids(0), "dave");
    ExpectError(alice.Request(Group(g, [](pb::GroupRequest* r) { r->mutable_add_members()->add_user_ids("dave"); })),
                "already_member");

    // dave may read the group's earlier history; his unread count starts at the event that added him.
    auto dave_history = History(dave, g);
    ASSERT_FALSE(dave_history.empty());
    EXPECT_EQ(dave_history.front().seq(), 1u);
    auto dave_list = List(dave);
    EXPECT_EQ(dave_list[g].read_seq(), 1u);
    EXPECT_EQ(dave_list[g].unread_count(), 0u);

    // Promote bob; an admin may mute and remove plain members, not the owner.
    auto promoted = alice.Request(Group(g, [](pb::GroupRequest* r) {
        r->mutable_set_role()->set_user_id("bob");
        r->mutable_set_role()->set_role(pb::MEMBER_ROLE_ADMIN);
    }));
    ASSERT_TRUE(promoted && promoted->has_group()) << promoted->DebugString();
    ASSERT_TRUE(dave.WaitEvent(g, pb::EVENT_TYPE_ROLE_CHANGED));
    ExpectError(bob.Request(Group(g, [](pb::GroupRequest* r) { r->mutable_remove_members()->add_user_ids("alice"); })),
                "insufficient_role");
    auto muted = bob.Request(Group(g, [](pb::GroupRequest* r) {
        r->mutable_mute()->set_user_id("dave");
        r->mutable_mute()->set_duration_ms(60'000);
    }));
    ASSERT_TRUE(muted && muted->has_group()) << muted->DebugString();
    auto mute_event = dave.WaitEvent(g, pb::EVENT_TYPE_MEMBER_MUTED);
    ASSERT_TRUE(mute_event);
    EXPECT_GT(mute_event->event().muted_until_ms(), 0);
    pb::ClientFrame send;
    send.mutable_send()->set_conversation_id(g);
    send.mutable_send()->set_client_msg_id("muted-1");
    send.mutable_send()->set_text("can I speak?");
    ExpectError(dave.Request(send), "member_muted");

    auto renamed = bob.Request(Group(g, [](pb::GroupRequest* r) { r->mutable_rename()->set_name("Renamed"); }));
    ASSERT_TRUE(renamed && renamed->has_group());
    auto rename_event = alice.WaitEvent(g, pb::EVENT_TYPE_GROUP_RENAMED);
    ASSERT_TRUE(rename_event);
    EXPECT_EQ(rename_event->event().name(), "Renamed");

    auto removed = bob.Request(Group(g, [](pb::GroupRequest* r) { r->mutable_remove_members()->add_user_ids("dave"); }));
    ASSERT_TRUE(removed && removed->has_group()) << removed->DebugString();
    ASSERT_TRUE(dave.WaitEvent(g, pb::EVENT_TYPE_MEMBERS_REMOVED));  // the removed see their removal
    ASSERT_TRUE(alice.WaitEvent(g, pb::EVENT_TYPE_MEMBERS_REMOVED));
    send.mutable_send()->set_client_msg_id("removed-1");
    ExpectError(dave.Request(send), "not_member");

    // The owner cannot leave; a member can.
    ExpectError(alice.Request(Group(g, [](pb::GroupRequest* r) { r->mutable_leave(); })), "owner_cannot_leave");
    ExpectError(bob.Request(Group(g, [](pb::GroupRequest* r) { r->mutable_dissolve(); })), "insufficient_role");
    auto left = bob.Request(Group(g, [](pb::GroupRequest* r) { r->mutable_leave(); }));
    ASSERT_TRUE(left && left->has_group());
    ASSERT_TRUE(alice.WaitEvent(g, pb::EVENT_TYPE_MEMBER_LEFT));

    // Dissolved: nothing more happens in it; its history stays readable.
    auto dissolved = alice.Request(Group(g, [](pb::GroupRequest* r) { r->mutable_dissolve(); }));
    ASSERT_TRUE(dissolved && dissolved->has_group());
    send.mutable_send()->set_client_msg_id("after-dissolve");
    send.mutable_send()->set_text("anyone?");
    auto late = alice.Request(send);
    ExpectError(late, "conversation_dissolved");
    auto history = History(alice, g);
    ASSERT_FALSE(history.empty());
    EXPECT_EQ(history.back().event().type(), pb::EVENT_TYPE_GROUP_DISSOLVED);
    std::vector<uint64_t> seqs;
    for (const auto& m : history) {
        seqs.push_back(m.seq());
    }
    for (size_t i = 0; i < seqs.size(); ++i) {
        EXPECT_EQ(seqs[i], i + 1) << "seqs are dense";
    }
    EXPECT_TRUE(List(alice)[g].dissolved());
}

// Unread counts come from one read cursor per user: the same on both of bob's devices; reading on one
// updates the other live, and in a direct conversation tells the sender "read up to N".
TEST_F(ConversationOps, UnreadCountsAreTheSameOnTwoDevicesOfOneUser) {
    Device alice = Login("alice", "phone");
    Device phone = Login("bob", "phone", true);
    Device laptop = Login("bob", "laptop");
    const std::string d = DirectConversationId("alice", "bob");
    for (int i = 1; i <= 3; ++i) {
        Send(alice, d, "hello " + std::to_string(i));
    }
    ASSERT_TRUE(phone.WaitText(d, "hello 3"));
    ASSERT_TRUE(laptop.WaitText(d, "hello 3"));
    EXPECT_EQ(List(phone)[d].unread_count(), 3u);
    EXPECT_EQ(List(laptop)[d].unread_count(), 3u);
    EXPECT_EQ(List(alice)[d].unread_count(), 0u);  // her own messages

    auto read = Read(phone, d, 2);
    ASSERT_TRUE(read && read->has_read()) << read->DebugString();
    EXPECT_EQ(read->read().read_seq(), 2u);
    auto on_laptop = laptop.WaitNotice([&](const pb::Notice& n) { return n.has_read() && n.conversation_id() == d; });
    ASSERT_TRUE(on_laptop);
    EXPECT_EQ(on_laptop->user_id(), "bob");
    EXPECT_EQ(on_laptop->read().read_seq(), 2u);
    auto on_alice = alice.WaitNotice([&](const pb::Notice& n) { return n.has_read() && n.conversation_id() == d; });
    ASSERT_TRUE(on_alice) << "the sender sees how far bob has read";
    EXPECT_EQ(on_alice->read().read_seq(), 2u);
    EXPECT_TRUE(phone.notices.empty()) << "the reading device itself gets the answer, not a notice";

    EXPECT_EQ(List(phone)[d].unread_count(), 1u);
    EXPECT_EQ(List(laptop)[d].unread_count(), 1u);
    EXPECT_EQ(List(alice)[d].peer_read_seq(), 2u);
    // A later device of bob's sees the same.
    Device tablet = Login("bob", "tablet", true);
    EXPECT_EQ(List(tablet)[d].unread_count(), 1u);
    EXPECT_EQ(List(tablet)[d].read_seq(), 2u);
    // Never backwards, capped at the newest seq.
    auto back = Read(laptop, d, 1);
    EXPECT_EQ(back->read().read_seq(), 2u);
    auto all = Read(laptop, d, 1000);
    EXPECT_EQ(all->read().read_seq(), 3u);
    EXPECT_EQ(List(phone)[d].unread_count(), 0u);
}

// Recall: by the sender within the window, by a group admin at any time, never by another member.
TEST_F(ConversationOps, RecallInsideAndOutsideTheWindowAndByANonSender) {
    Device alice = Login("alice", "phone");  // the owner
    Device bob = Login("bob", "laptop", true);
    Device carol = Login("carol", "phone", true);
    const std::string g = CreateGroup(alice, {"bob", "carol"});
    ASSERT_TRUE(carol.WaitEvent(g, pb::EVENT_TYPE_GROUP_CREATED));
    const uint64_t m1 = Send(bob, g, "oops");
    const uint64_t m2 = Send(bob, g, "stays");
    ASSERT_TRUE(carol.WaitText(g, "stays"));

    ExpectError(Recall(carol, g, m1), "not_sender");
    auto ok = Recall(bob, g, m1);
    ASSERT_TRUE(ok && ok->has_message_op()) << ok->DebugString();
    auto live = carol.WaitEvent(g, pb::EVENT_TYPE_RECALLED);
    ASSERT_TRUE(live);
    EXPECT_EQ(live->event().target_seq(), m1);
    EXPECT_EQ(live->sender_id(), "bob");
    // bob's repeat is a retry of his recall (the same default key, "recall:SEQ"): answered with the
    // original. The owner's recall of the recalled message is refused.
    auto again = Recall(bob, g, m1);
    ASSERT_TRUE(again && again->has_message_op()) << again->DebugString();
    EXPECT_TRUE(again->message_op().duplicate());
    EXPECT_EQ(again->message_op().seq(), ok->message_op().seq());
    ExpectError(Recall(alice, g, m1), "message_recalled");

    std::this_thread::sleep_for(std::chrono::milliseconds(kRecallWindowMs + 300));
    ExpectError(Recall(bob, g, m2), "recall_window_expired");
    auto by_owner = Recall(alice, g, m2);  // the owner may at any time
    ASSERT_TRUE(by_owner && by_owner->has_message_op()) << by_owner->DebugString();
    ASSERT_TRUE(bob.WaitMessage([&](const pb::Message& m) {
        return m.kind() == pb::MESSAGE_KIND_EVENT && m.event().type() == pb::EVENT_TYPE_RECALLED &&
               m.event().target_seq() == m2;
    }));

    // In a direct conversation there are no admins: only the sender, only in time.
    const std::string d = DirectConversationId("alice", "bob");
    const uint64_t dm = Send(alice, d, "direct one");
    ExpectError(Recall(bob, d, dm), "not_sender");

    // A device that was offline finds both recalled, with no text, and the recall events.
    Device late = Login("carol", "laptop");
    auto history = History(late, g);
    ASSERT_GE(history.size(), 5u);
    EXPECT_TRUE(history[m1 - 1].recalled());
    EXPECT_EQ(history[m1 - 1].text(), "");
    EXPECT_TRUE(history[m2 - 1].recalled());
    EXPECT_EQ(List(late)[g].unread_count(), 0u) << "recalled messages are not unread";
    ExpectError(Recall(alice, g, 999), "unknown_message");
    ExpectError(Recall(alice, g, 1), "unknown_message");  // seq 1 is the creation event
}

// Only the sender edits; every version is kept; the others see the edit live and in history.
TEST_F(ConversationOps, EditByTheSenderOnlyWithHistory) {
    Device alice = Login("alice", "phone");
    Device bob = Login("bob", "laptop", true);
    const std::string d = DirectConversationId("alice", "bob");
    const uint64_t m = Send(alice, d, "helo");
    ASSERT_TRUE(bob.WaitText(d, "helo"));

    auto edit = [&](Device& who, const std::string& text) {
        return Op(who, d, m, [&](pb::MessageOpRequest* o) { o->mutable_edit()->set_text(text); });
    };
    ExpectError(edit(bob, "hijacked"), "not_sender");
    ExpectError(edit(alice, ""), "empty_text");
    auto ok = edit(alice, "hello");
    ASSERT_TRUE(ok && ok->has_message_op()) << ok->DebugString();
    auto live = bob.WaitEvent(d, pb::EVENT_TYPE_EDITED);
    ASSERT_TRUE(live);
    EXPECT_EQ(live->event().target_seq(), m);
    EXPECT_EQ(live->event().text(), "hello");
    ASSERT_TRUE(edit(alice, "hello!")->has_message_op());

    pb::ClientFrame get;
    get.mutable_get_message()->set_conversation_id(d);
    get.mutable_get_message()->set_seq(m);
    auto detail = bob.Request(get);
    ASSERT_TRUE(detail && detail->has_get_message()) << detail->DebugString();
    EXPECT_EQ(detail->get_message().message().text(), "hello!");
    EXPECT_EQ(detail->get_message().message().edit_version(), 2u);
    ASSERT_EQ(detail->get_message().edits_size(), 2);
    EXPECT_EQ(detail->get_message().edits(0).text(), "helo");
    EXPECT_EQ(detail->get_message().edits(1).text(), "hello");

    Device late = Login("bob", "tablet");
    auto history = History(late, d);
    ASSERT_EQ(history.size(), 3u);  // the message and its two edit events
    EXPECT_EQ(history[0].text(), "hello!");
    EXPECT_EQ(history[0].edit_version(), 2u);
    EXPECT_GT(history[0].edited_time_ms(), 0);
}

// Reactions from two users aggregate per emoji, live and in history.
TEST_F(ConversationOps, ReactionsFromTwoUsersAggregate) {
    Device alice = Login("alice", "phone");
    Device bob = Login("bob", "laptop", true);
    Device carol = Login("carol", "phone", true);
    const std::string g = CreateGroup(alice, {"bob", "carol"});
    const uint64_t m = Send(carol, g, "lunch?");
    ASSERT_TRUE(bob.WaitText(g, "lunch?"));

    ASSERT_TRUE(React(alice, g, m, "👍")->has_message_op());
    ASSERT_TRUE(React(bob, g, m, "👍")->has_message_op());
    ASSERT_TRUE(React(bob, g, m, "🎉")->has_message_op());
    ExpectError(React(bob, g, m, "👍"), "already_reacted");
    ExpectError(React(alice, g, m, "🎉", true), "not_reacted");
    ExpectError(React(alice, g, m, ""), "bad_emoji");
    ASSERT_TRUE(carol.WaitMessage([&](const pb::Message& x) {
        return x.event().type() == pb::EVENT_TYPE_REACTION_ADDED && x.event().emoji() == "🎉";
    }));
    size_t live_reactions = 0;
    for (const auto& x : carol.messages) {
        if (x.event().type() == pb::EVENT_TYPE_REACTION_ADDED) {
            ++live_reactions;
            EXPECT_EQ(x.event().target_seq(), m);
        }
    }
    EXPECT_EQ(live_reactions, 3u);

    auto history = History(carol, g, m - 1);
    ASSERT_FALSE(history.empty());
    const pb::Message& msg = history[0];
    ASSERT_EQ(msg.reactions_size(), 2);
    std::map<std::string, pb::Reaction> by_emoji;
    for (const auto& r : msg.reactions()) {
        by_emoji[r.emoji()] = r;
    }
    EXPECT_EQ(by_emoji["👍"].count(), 2u);
    EXPECT_EQ(by_emoji["👍"].user_ids(0), "alice");
    EXPECT_EQ(by_emoji["👍"].user_ids(1), "bob");
    EXPECT_EQ(by_emoji["🎉"].count(), 1u);

    ASSERT_TRUE(React(alice, g, m, "👍", true)->has_message_op());
    ASSERT_TRUE(carol.WaitEvent(g, pb::EVENT_TYPE_REACTION_REMOVED));
    history = History(carol, g, m - 1);
    for (const auto& r : history[0].reactions()) {
        if (r.emoji() == "👍") {
            EXPECT_EQ(r.count(), 1u);
        }
    }
}

// Typing is pushed to the other members and leaves no trace: no seq, nothing in history.
TEST_F(ConversationOps, TypingIsLiveAndNeverInHistory) {
    Device alice = Login("alice", "phone");
    Device bob = Login("bob", "laptop", true);
    const std::string d = DirectConversationId("alice", "bob");
    Send(alice, d, "hi");
    ASSERT_TRUE(bob.WaitText(d, "hi"));
    pb::ClientFrame typing;
    typing.mutable_typing()->set_conversation_id(d);
    auto r = bob.Request(typing);
    ASSERT_TRUE(r && r->has_typing()) << r->DebugString();
    auto seen = alice.WaitNotice([](const pb::Notice& n) { return n.has_typing(); });
    ASSERT_TRUE(seen);
    EXPECT_EQ(seen->user_id(), "bob");
    EXPECT_EQ(seen->conversation_id(), d);
    EXPECT_FALSE(seen->typing().stopped());
    typing.mutable_typing()->set_stopped(true);
    bob.Request(typing);
    auto stopped = alice.WaitNotice([](const pb::Notice& n) { return n.has_typing() && n.typing().stopped(); });
    ASSERT_TRUE(stopped);

    // Not to the typer's own other devices (alice gets this one: it changes the state).
    Device bob_phone = Login("bob", "phone");
    const auto typing_notices = [&] {
        return std::count_if(alice.notices.begin(), alice.notices.end(),
                             [](const pb::Notice& n) { return n.has_typing() && !n.typing().stopped(); });
    };
    ASSERT_EQ(typing_notices(), 1);
    // A start is forwarded again once the last forwarded start is a second old.
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    typing.mutable_typing()->set_stopped(false);
    auto again = bob.Request(typing);
    ASSERT_TRUE(again && again->has_typing()) << again->DebugString();
    // Repeats within a second are answered but not forwarded: a device cannot flood the members.
    for (int i = 0; i < 10; ++i) {
        auto repeat = bob.Request(typing);
        ASSERT_TRUE(repeat && repeat->has_typing()) << repeat->DebugString();
    }
    ASSERT_TRUE(alice.WaitNotice([&](const pb::Notice&) { return typing_notices() == 2; }));
    EXPECT_FALSE(bob_phone.WaitNotice([](const pb::Notice& n) { return n.has_typing(); },
                                      std::chrono::milliseconds(300)));
    EXPECT_FALSE(alice.WaitNotice([&](const pb::Notice&) { return typing_notices() > 2; },
                                  std::chrono::milliseconds(300)));
    EXPECT_EQ(typing_notices(), 2);
    pb::ClientFrame stranger;
    stranger.mutable_typing()->set_conversation_id(DirectConversationId("carol", "dave"));
    ExpectError(bob.Request(stranger), "not_member");
    // Toggling start and stop does not get round it: of ten alternations, one stop goes through.
    const auto stop_notices = [&] {
        return std::count_if(alice.notices.begin(), alice.notices.end(),
                             [](const pb::Notice& n) { return n.has_typing() && n.typing().stopped(); });
    };
    ASSERT_EQ(stop_notices(), 1);
    for (int i = 0; i < 10; ++i) {
        typing.mutable_typing()->set_stopped(i % 2 == 0);
        auto toggle = bob.Request(typing);
        ASSERT_TRUE(toggle && toggle->has_typing()) << toggle->DebugString();
    }
    ASSERT_TRUE(alice.WaitNotice([&](const pb::Notice&) { return stop_notices() == 2; }));
    EXPECT_FALSE(alice.WaitNotice([&](const pb::Notice&) { return stop_notices() > 2 || typing_notices() > 2; },
                                  std::chrono::milliseconds(300)));
    // Nor does typing in many conversations: at most 8 typing notices a second leave one device.
    std::vector<std::string> groups;
    for (int i = 0; i < 10; ++i) {
        groups.push_back(CreateGroup(alice, {"bob"}, "T" + std::to_string(i)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1100));
    const auto before = typing_notices();
    for (const auto& g : groups) {
        pb::ClientFrame t;
        t.mutable_typing()->set_conversation_id(g);
        auto answered = bob.Request(t);
        ASSERT_TRUE(answered && answered->has_typing()) << answered->DebugString();
    }
    ASSERT_TRUE(alice.WaitNotice([&](const pb::Notice&) { return typing_notices() - before == 8; }));
    EXPECT_FALSE(alice.WaitNotice([&](const pb::Notice&) { return typing_notices() - before > 8; },
                                  std::chrono::milliseconds(300)));
    auto history = History(bob, d);
    ASSERT_EQ(history.size(), 1u);
    EXPECT_EQ(history[0].text(), "hi");
    EXPECT_EQ(List(bob)[d].last_seq(), 1u);
}

// A retry (same client_msg_id) whose first run changed the state it is checked against is answered
// with the stored original, not with the refusal that state now gives: a group created without a
// group_id, members added, a reaction.
TEST_F(ConversationOps, RetriesAreAnsweredWithTheOriginal) {
    Device alice = Login("alice", "phone");
    Device bob = Login("bob", "laptop", true);
    auto create = Group("", [](pb::GroupRequest* g) {
        g->mutable_create()->set_name("Retry");
        g->mutable_create()->add_member_ids("bob");
    });
    create.mutable_group()->set_client_msg_id("gc-" + RandomHexId(4));
    auto first = alice.Request(create);
    ASSERT_TRUE(first && first->has_group()) << first->DebugString();
    EXPECT_FALSE(first->group().duplicate());
    auto second = alice.Request(create);
    ASSERT_TRUE(second && second->has_group()) << second->DebugString();
    EXPECT_TRUE(second->group().duplicate());
    const std::string g = first->group().event().conversation_id();
    EXPECT_EQ(second->group().event().conversation_id(), g);
    create.mutable_group()->set_client_msg_id("gc-other");
    auto other = alice.Request(create);
    ASSERT_TRUE(other && other->has_group()) << other->DebugString();
    EXPECT_NE(other->group().event().conversation_id(), g) << "another id is another group";

    auto add = Group(g, [](pb::GroupRequest* r) { r->mutable_add_members()->add_user_ids("carol"); });
    add.mutable_group()->set_client_msg_id("add-1");
    auto added = alice.Request(add);
    ASSERT_TRUE(added && added->has_group()) << added->DebugString();
    auto added_again = alice.Request(add);
    ASSERT_TRUE(added_again && added_again->has_group()) << added_again->DebugString();
    EXPECT_TRUE(added_again->group().duplicate());
    EXPECT_EQ(added_again->group().event().seq(), added->group().event().seq());
    add.mutable_group()->set_client_msg_id("add-2");
    ExpectError(alice.Request(add), "already_member");

    const uint64_t m = Send(bob, g, "retry me");
    pb::ClientFrame react;
    react.mutable_message_op()->set_conversation_id(g);
    react.mutable_message_op()->set_seq(m);
    react.mutable_message_op()->set_client_msg_id("re-1");
    react.mutable_message_op()->mutable_add_reaction()->set_emoji("👍");
    auto reacted = alice.Request(react);
    ASSERT_TRUE(reacted && reacted->has_message_op()) << reacted->DebugString();
    auto reacted_again = alice.Request(react);
    ASSERT_TRUE(reacted_again && reacted_again->has_message_op()) << reacted_again->DebugString();
    EXPECT_TRUE(reacted_again->message_op().duplicate());
    EXPECT_EQ(reacted_again->message_op().seq(), reacted->message_op().seq());
    react.mutable_message_op()->set_client_msg_id("re-2");
    ExpectError(alice.Request(react), "already_reacted");
    EXPECT_EQ(History(bob, g).back().seq(), reacted->message_op().seq()) << "retries stored nothing";
}

// Delete for me hides a message from one user's history only (and their other devices hear of it);
// delete for everyone removes it for all.
TEST_F(ConversationOps, DeleteForMeAndForEveryone) {
    Device alice = Login("alice", "phone");
    Device bob = Login("bob", "laptop", true);
    Device bob2 = Login("bob", "phone");
    const std::string d = DirectConversationId("alice", "bob");
    const uint64_t m1 = Send(alice, d, "private");
    const uint64_t m2 = Send(alice, d, "mistake");
    ASSERT_TRUE(bob.WaitText(d, "mistake"));

    pb::ClientFrame del;
    del.mutable_delete_for_me()->set_conversation_id(d);
    del.mutable_delete_for_me()->add_seqs(m1);
    auto r = bob.Request(del);
    ASSERT_TRUE(r && r->has_delete_for_me()) << r->DebugString();
    auto notice = bob2.WaitNotice([](const pb::Notice& n) { return n.has_deleted_for_me(); });
    ASSERT_TRUE(notice);
    ASSERT_EQ(notice->deleted_for_me().seqs_size(), 1);
    EXPECT_EQ(notice->deleted_for_me().seqs(0), m1);
    auto bobs = History(bob2, d);
    EXPECT_TRUE(bobs[0].deleted_for_me());
    EXPECT_EQ(bobs[0].text(), "");
    auto alices = History(alice, d);
    EXPECT_FALSE(alices[0].deleted_for_me());
    EXPECT_EQ(alices[0].text(), "private");

    ExpectError(Op(bob, d, m2, [](pb::MessageOpRequest* o) { o->mutable_delete_for_everyone(); }), "not_sender");
    auto gone = Op(alice, d, m2, [](pb::MessageOpRequest* o) { o->mutable_delete_for_everyone(); });
    ASSERT_TRUE(gone && gone->has_message_op()) << gone->DebugString();
    ASSERT_TRUE(bob.WaitEvent(d, pb::EVENT_TYPE_DELETED_FOR_EVERYONE));
    bobs = History(bob2, d);
    EXPECT_TRUE(bobs[1].deleted());
    EXPECT_EQ(bobs[1].text(), "");
    pb::ClientFrame empty;
    empty.mutable_delete_for_me()->set_conversation_id(d);
    ExpectError(bob.Request(empty), "bad_seqs");
}

// Mentions (@user, @all by admins) and per-user pin and mute show in the conversation list; pin and
// mute reach the user's other devices.
TEST_F(ConversationOps, MentionsPinAndMuteInTheConversationList) {
    Device alice = Login("alice", "phone");
    Device bob = Login("bob", "laptop", true);
    Device bob2 = Login("bob", "phone");
    Device carol = Login("carol", "phone", true);
    const std::string g = CreateGroup(alice, {"bob", "carol"});
    Send(alice, g, "@bob see this", {"bob"});
    Send(alice, g, "@all meeting", {}, /*all=*/true);
    pb::ClientFrame all_by_member;
    all_by_member.mutable_send()->set_conversation_id(g);
    all_by_member.mutable_send()->set_client_msg_id("all-1");
    all_by_member.mutable_send()->set_text("@all hi");
    all_by_member.mutable_send()->set_mention_all(true);
    ExpectError(carol.Request(all_by_member), "mention_all_not_allowed");
    auto pushed = bob.WaitText(g, "@bob see this");
    ASSERT_TRUE(pushed);
    ASSERT_EQ(pushed->mentions_size(), 1);
    EXPECT_EQ(pushed->mentions(0), "bob");

    auto list = List(bob);
    EXPECT_EQ(list[g].unread_count(), 2u);
    EXPECT_EQ(list[g].unread_mentions(), 2u);
    EXPECT_EQ(List(carol)[g].unread_mentions(), 1u);  // only @all

    pb::ClientFrame pin;
    pin.mutable_update_settings()->set_conversation_id(g);
    pin.mutable_update_settings()->set_pinned(true);
    pin.mutable_update_settings()->set_muted(true);
    auto r = bob.Request(pin);
    ASSERT_TRUE(r && r->has_update_settings()) << r->DebugString();
    EXPECT_TRUE(r->update_settings().pinned());
    auto other = bob2.WaitNotice([](const pb::Notice& n) { return n.has_settings(); });
    ASSERT_TRUE(other);
    EXPECT_TRUE(other->settings().pinned());
    EXPECT_TRUE(other->settings().muted());
    const std::string d = DirectConversationId("bob", "dave");
    Device dave = Login("dave", "phone");
    Send(dave, d, "newer than the group");
    pb::ClientFrame page;
    page.mutable_list_conversations()->set_limit(1);
    auto first = bob2.Request(page);
    ASSERT_TRUE(first && first->has_list_conversations()) << first->DebugString();
    ASSERT_EQ(first->list_conversations().conversations_size(), 1);
    EXPECT_EQ(first->list_conversations().conversations(0).conversation_id(), g) << "pinned first";
    EXPECT_TRUE(first->list_conversations().conversations(0).muted());
    ASSERT_FALSE(first->list_conversations().next_page_token().empty());
    page.mutable_list_conversations()->set_page_token(first->list_conversations().next_page_token());
    auto second = bob2.Request(page);
    ASSERT_TRUE(second && second->has_list_conversations());
    ASSERT_EQ(second->list_conversations().conversations_size(), 1);
    EXPECT_EQ(second->list_conversations().conversations(0).conversation_id(), d);
    EXPECT_TRUE(second->list_conversations().next_page_token().empty());

    ASSERT_TRUE(Read(bob, g, 100)->has_read());
    EXPECT_EQ(List(bob2)[g].unread_mentions(), 0u);
}

// In a group, who has read a message is answered on request.
TEST_F(ConversationOps, GroupReadCountsOnRequest) {
    Device alice = Login("alice", "phone");
    Device bob = Login("bob", "laptop", true);
    Device carol = Login("carol", "phone", true);
    const std::string g = CreateGroup(alice, {"bob", "carol"});
    const uint64_t m = Send(alice, g, "please read");
    ASSERT_TRUE(Read(bob, g, m)->has_read());
    auto notice = bob.WaitNotice([](const pb::Notice&) { return true; }, std::chrono::milliseconds(300));
    EXPECT_FALSE(notice) << "a device gets no notice of its own read";
    pb::ClientFrame get;
    get.mutable_get_message()->set_conversation_id(g);
    get.mutable_get_message()->set_seq(m);
    auto r = alice.Request(get);
    ASSERT_TRUE(r && r->has_get_message()) << r->DebugString();
    ASSERT_EQ(r->get_message().read_by_size(), 1);
    EXPECT_EQ(r->get_message().read_by(0), "bob");
    EXPECT_EQ(r->get_message().member_count(), 3u);
    ASSERT_TRUE(Read(carol, g, m)->has_read());
    r = alice.Request(get);
    EXPECT_EQ(r->get_message().read_by_size(), 2);
    get.mutable_get_message()->set_seq(999);
    ExpectError(alice.Request(get), "unknown_message");
}

// Above the large-group size members get "new messages up to seq N" notices, not the messages, and
// pull them; the notices never go past what is stored.
TEST_F(ConversationOps, LargeGroupsGetNoticesAndPull) {
    Device alice = Login("alice", "phone");
    Device bob = Login("bob", "laptop", true);
    const std::string g = CreateGroup(alice, {"bob", "carol", "dave", "erin"});  // 5 > 3
    for (int i = 1; i <= 5; ++i) {
        Send(alice, g, "big " + std::to_string(i));
    }
    auto last = bob.WaitNotice([&](const pb::Notice& n) {
        return n.conversation_id() == g && n.has_new_messages() && n.new_messages().up_to_seq() == 6;
    });
    ASSERT_TRUE(last) << "the newest seq is announced";
    uint64_t prev = 0;
    for (const auto& n : bob.notices) {
        if (n.has_new_messages()) {
            EXPECT_GE(n.new_messages().up_to_seq(), prev) << "notices never go back";
            prev = n.new_messages().up_to_seq();
        }
    }
    EXPECT_TRUE(bob.Seqs(g).empty()) << "no message pushes in a large group";
    auto history = History(bob, g);
    ASSERT_EQ(history.size(), 6u);
    EXPECT_EQ(history.back().text(), "big 5");
}

// Bad input gets a clear error and changes nothing.
TEST_F(ConversationOps, BadInputGetsClearErrors) {
    Device alice = Login("alice", "phone");
    ExpectError(alice.Request(Group("", [](pb::GroupRequest* g) { g->mutable_create()->set_name(""); })),
                "bad_group_name");
    ExpectError(alice.Request(Group("", [](pb::GroupRequest* g) {
                    g->mutable_create()->set_name("x");
                    g->mutable_create()->add_member_ids("not a user!");
                })),
                "bad_user_id");
    ExpectError(alice.Request(Group("group:nope", [](pb::GroupRequest* g) { g->mutable_rename()->set_name("y"); })),
                "unknown_conversation");
    ExpectError(alice.Request(Group("group:nope", [](pb::GroupRequest*) {})), "missing_operation");
    pb::ClientFrame squat;  // the key a later recall of seq 1 would get
    squat.mutable_send()->set_conversation_id(DirectConversationId("alice", "bob"));
    squat.mutable_send()->set_client_msg_id("recall:1");
    squat.mutable_send()->set_text("hi");
    ExpectError(alice.Request(squat), "reserved_client_msg_id");
    ExpectError(alice.Request(Group("", [](pb::GroupRequest* g) { g->mutable_create()->set_name("grp\u009b31m"); })),
                "bad_group_name");  // a C1 control (CSI) in the name
    ExpectError(alice.Request(Group("", [](pb::GroupRequest* g) {
                    g->mutable_create()->set_name("squatter");
                    g->mutable_create()->set_group_id("c0123456789abcdef0123456789abcdef");
                })),
                "bad_group_id");  // the server's derived ids are not for the taking
    const std::string d = DirectConversationId("alice", "bob");
    ExpectError(alice.Request(Group(d, [](pb::GroupRequest* g) { g->mutable_rename()->set_name("y"); })),
                "not_a_group");
    ExpectError(Op(alice, d, 1, [](pb::MessageOpRequest*) {}), "missing_operation");
    ExpectError(Recall(alice, d, 0), "bad_seq");
    ExpectError(Recall(alice, d, 1), "unknown_message");
    const uint64_t m = Send(alice, d, "x");
    ExpectError(React(alice, d, m, std::string(40, 'a')), "bad_emoji");
    ExpectError(Read(alice, "room:never-joined", 1), "unknown_conversation");
    pb::ClientFrame settings;
    settings.mutable_update_settings()->set_conversation_id(d);
    ExpectError(alice.Request(settings), "nothing_to_change");
    pb::ClientFrame list;
    list.mutable_list_conversations()->set_page_token("bogus");
    ExpectError(alice.Request(list), "bad_page_token");
    list.mutable_list_conversations()->set_page_token("");
    list.mutable_list_conversations()->set_limit(1000);
    ExpectError(alice.Request(list), "limit_too_large");
    // The inbox of business pushes takes no operations from clients.
    ExpectError(React(alice, "system:alice", 1, "x"), "read_only_conversation");
    // A group id already taken.
    auto first = alice.Request(Group("", [](pb::GroupRequest* g) {
        g->mutable_create()->set_name("Mine");
        g->mutable_create()->set_group_id("fixed-id");
    }));
    ASSERT_TRUE(first && first->has_group()) << first->DebugString();
    Device bob = Login("bob", "phone");
    ExpectError(bob.Request(Group("", [](pb::GroupRequest* g) {
                    g->mutable_create()->set_name("Theirs");
                    g->mutable_create()->set_group_id("fixed-id");
                })),
                "conversation_exists");
    // Still works afterwards.
    EXPECT_EQ(Send(alice, d, "still fine"), m + 1);
}

}  // namespace
}  // namespace flare::testing
