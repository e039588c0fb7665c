// The embedded IM core end to end: real server in-process on port 0, real WebSocket clients.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <set>
#include <thread>

#include "gateway/frame_codec.hpp"
#include "test_support.hpp"

namespace flare::testing {
namespace {

const std::string kDirect12 = "direct:user1:user2";

void ExpectDense(const std::vector<pb::Message>& msgs, uint64_t first, uint64_t last) {
    ASSERT_EQ(msgs.size(), last - first + 1);
    for (size_t i = 0; i < msgs.size(); ++i) {
        EXPECT_EQ(msgs[i].seq(), first + i) << "at index " << i;
    }
}

TEST(Embedded, DirectMessageReachesEveryDeviceOfBothUsersButNotTheSendingDevice) {
    TestServer server;
    auto a_phone = TestClient::Login(server.port(), "user1", "phone");
    auto a_laptop = TestClient::Login(server.port(), "user1", "laptop");
    auto b_phone = TestClient::Login(server.port(), "user2", "phone");
    auto b_web = TestClient::Login(server.port(), "user2", "web");
    auto outsider = TestClient::Login(server.port(), "user3", "phone");

    auto r = a_phone->Send(kDirect12, "m1", "hello user2");
    ASSERT_TRUE(r && r->has_send()) << (r ? r->DebugString() : "no answer");
    EXPECT_EQ(r->send().seq(), 1u);
    EXPECT_EQ(r->send().conversation_id(), kDirect12);
    EXPECT_FALSE(r->send().server_msg_id().empty());
    EXPECT_GT(r->send().server_time_ms(), 0);
    EXPECT_FALSE(r->send().duplicate());

    for (auto* c : {a_laptop.get(), b_phone.get(), b_web.get()}) {
        auto msgs = c->Messages(1);
        ASSERT_EQ(msgs.size(), 1u);
        EXPECT_EQ(msgs[0].conversation_id(), kDirect12);
        EXPECT_EQ(msgs[0].conversation_type(), pb::CONVERSATION_TYPE_DIRECT);
        EXPECT_EQ(msgs[0].seq(), 1u);
        EXPECT_EQ(msgs[0].sender_id(), "user1");
        EXPECT_EQ(msgs[0].sender_device_id(), "phone");
        EXPECT_EQ(msgs[0].text(), "hello user2");
        EXPECT_EQ(msgs[0].server_msg_id(), r->send().server_msg_id());
        EXPECT_EQ(msgs[0].client_msg_id(), "m1");
    }
    EXPECT_TRUE(a_phone->Silent());
    EXPECT_TRUE(outsider->Silent());

    // And back the other way.
    auto back = b_web->Send(kDirect12, "m2", "hi user1");
    ASSERT_TRUE(back && back->has_send());
    EXPECT_EQ(back->send().seq(), 2u);
    for (auto* c : {a_phone.get(), a_laptop.get(), b_phone.get()}) {
        auto msgs = c->Messages(1);
        ASSERT_EQ(msgs.size(), 1u);
        EXPECT_EQ(msgs[0].seq(), 2u);
        EXPECT_EQ(msgs[0].text(), "hi user1");
    }
}

TEST(Embedded, ChatroomDeliversToEveryOnlineMemberAndOnlyMembers) {
    TestServer server;
    std::vector<std::unique_ptr<TestClient>> members;
    for (int i = 1; i <= 4; ++i) {
        members.push_back(TestClient::Login(server.port(), "user" + std::to_string(i), "d"));
        auto j = members.back()->Join("lobby");
        ASSERT_TRUE(j && j->has_join_room()) << (j ? j->DebugString() : "no answer");
        EXPECT_EQ(j->join_room().conversation_id(), "room:lobby");
    }
    auto second_device = TestClient::Login(server.port(), "user4", "tablet");  // a member's other device
    auto stranger = TestClient::Login(server.port(), "user9", "d");

    for (int k = 1; k <= 3; ++k) {
        auto r = members[0]->Send("room:lobby", "c" + std::to_string(k), "text " + std::to_string(k));
        ASSERT_TRUE(r && r->has_send());
        EXPECT_EQ(r->send().seq(), static_cast<uint64_t>(k));
    }
    for (size_t i = 1; i < members.size(); ++i) {
        auto msgs = members[i]->Messages(3);
        ExpectDense(msgs, 1, 3);
        EXPECT_EQ(msgs[2].text(), "text 3");
        EXPECT_EQ(msgs[0].conversation_type(), pb::CONVERSATION_TYPE_ROOM);
    }
    ExpectDense(second_device->Messages(3), 1, 3);
    EXPECT_TRUE(members[0]->Silent());
    EXPECT_TRUE(stranger->Silent());

    // A member who leaves stops receiving; sending to the room then fails with not_member.
    pb::ClientFrame leave;
    leave.mutable_leave_room()->set_room("lobby");
    auto l = members[3]->Request(leave);
    ASSERT_TRUE(l && l->has_leave_room());
    ASSERT_TRUE(members[0]->Send("room:lobby", "c4", "after leave"));
    EXPECT_EQ(members[1]->Messages(1).size(), 1u);
    EXPECT_TRUE(members[3]->Silent());
    auto refused = members[3]->Send("room:lobby", "c5", "I left");
    ASSERT_TRUE(refused && refused->has_error());
    EXPECT_EQ(refused->error().reason(), "not_member");
}

TEST(Embedded, PipelinedSendsGetDenseSeqsInOrder) {
    TestServer server;
    auto a = TestClient::Login(server.port(), "user1", "d");
    auto b = TestClient::Login(server.port(), "user2", "d");
    constexpr int kN = 200;
    for (int i = 1; i <= kN; ++i) {
        pb::ClientFrame f;
        f.set_request_id("s" + std::to_string(i));
        f.mutable_send()->set_conversation_id(kDirect12);
        f.mutable_send()->set_client_msg_id("c" + std::to_string(i));
        f.mutable_send()->set_text("m" + std::to_string(i));
        a->SendFrame(f);
    }
    std::map<std::string, uint64_t> seq_by_rid;
    while (seq_by_rid.size() < kN) {
        auto f = a->NextPush(5s);
        ASSERT_TRUE(f) << "missing send answers after " << seq_by_rid.size();
        ASSERT_TRUE(f->has_send()) << f->DebugString();
        seq_by_rid[f->request_id()] = f->send().seq();
    }
    for (int i = 1; i <= kN; ++i) {
        EXPECT_EQ(seq_by_rid["s" + std::to_string(i)], static_cast<uint64_t>(i));
    }
    auto msgs = b->Messages(kN);
    ExpectDense(msgs, 1, kN);
    for (int i = 0; i < kN; ++i) {
        EXPECT_EQ(msgs[i].text(), "m" + std::to_string(i + 1));
    }
}

TEST(Embedded, RetriedSendReturnsTheOriginalAnswerAndDeliversOnce) {
    TestServer server;
    auto a = TestClient::Login(server.port(), "user1", "d");
    auto b = TestClient::Login(server.port(), "user2", "d");
    auto first = a->Send(kDirect12, "same-id", "once");
    ASSERT_TRUE(first && first->has_send());
    auto retry = a->Send(kDirect12, "same-id", "once");
    ASSERT_TRUE(retry && retry->has_send());
    EXPECT_TRUE(retry->send().duplicate());
    EXPECT_EQ(retry->send().seq(), first->send().seq());
    EXPECT_EQ(retry->send().server_msg_id(), first->send().server_msg_id());
    EXPECT_EQ(retry->send().server_time_ms(), first->send().server_time_ms());
    // Retried from another connection of the same device after a reconnect: still one message.
    a.reset();
    auto a2 = TestClient::Login(server.port(), "user1", "d");
    auto third = a2->Send(kDirect12, "same-id", "once");
    ASSERT_TRUE(third && third->has_send());
    EXPECT_TRUE(third->send().duplicate());
    EXPECT_EQ(third->send().seq(), 1u);

    EXPECT_EQ(b->Messages(1).size(), 1u);
    EXPECT_TRUE(b->Silent());
    auto history = b->SyncAll(kDirect12, 0);
    ASSERT_EQ(history.size(), 1u);
    EXPECT_EQ(history[0].text(), "once");
    auto next = a2->Send(kDirect12, "other-id", "two");
    ASSERT_TRUE(next && next->has_send());
    EXPECT_EQ(next->send().seq(), 2u);
}

TEST(Embedded, OfflineDeviceCatchesUpExactlyOn100Messages) {
    TestServer server;
    {
        auto b = TestClient::Login(server.port(), "user2", "phone");
        ASSERT_TRUE(b->Join("lobby"));
    }
    auto a = TestClient::Login(server.port(), "user1", "d");
    ASSERT_TRUE(a->Join("lobby"));
    for (int i = 1; i <= 100; ++i) {
        ASSERT_TRUE(a->Send(kDirect12, "d" + std::to_string(i), "direct " + std::to_string(i)));
        ASSERT_TRUE(a->Send("room:lobby", "r" + std::to_string(i), "room " + std::to_string(i)));
    }
    auto b = TestClient::Login(server.port(), "user2", "phone");
    auto convs = b->SyncConversations();
    ASSERT_TRUE(convs && convs->has_sync_conversations()) << (convs ? convs->DebugString() : "");
    std::map<std::string, pb::ConversationState> by_id;
    for (const auto& c : convs->sync_conversations().conversations()) {
        by_id[c.conversation_id()] = c;
    }
    ASSERT_EQ(by_id.size(), 2u);
    EXPECT_EQ(by_id[kDirect12].last_seq(), 100u);
    EXPECT_EQ(by_id[kDirect12].known_seq(), 0u);
    EXPECT_EQ(by_id["room:lobby"].last_seq(), 100u);

    for (const std::string& conv : {kDirect12, std::string("room:lobby")}) {
        auto msgs = b->SyncAll(conv, 0, 30);  // 4 pages
        ExpectDense(msgs, 1, 100);
        std::set<std::string> ids;
        for (const auto& m : msgs) {
            ids.insert(m.server_msg_id());
        }
        EXPECT_EQ(ids.size(), 100u);
        EXPECT_EQ(msgs.back().text(), (conv == kDirect12 ? "direct 100" : "room 100"));
        auto ack = b->Ack(conv, 100);
        ASSERT_TRUE(ack && ack->has_ack());
        EXPECT_EQ(ack->ack().acked_seq(), 100u);
    }
    auto after = b->SyncConversations();
    ASSERT_TRUE(after && after->has_sync_conversations());
    EXPECT_EQ(after->sync_conversations().conversations_size(), 0) << after->DebugString();

    // A half-way ack is what the next reconnect starts from.
    ASSERT_TRUE(a->Send(kDirect12, "d101", "direct 101"));
    auto reconnect = TestClient::Login(server.port(), "user2", "phone");
    auto again = reconnect->SyncConversations();
    ASSERT_TRUE(again);
    ASSERT_EQ(again->sync_conversations().conversations_size(), 1);
    EXPECT_EQ(again->sync_conversations().conversations(0).known_seq(), 100u);
    ExpectDense(reconnect->SyncAll(kDirect12, 100), 101, 101);
}

TEST(Embedded, AckCursorNeverMovesBackAndIsClampedToTheNewestSeq) {
    TestServer server;
    auto a = TestClient::Login(server.port(), "user1", "d");
    for (int i = 1; i <= 5; ++i) {
        ASSERT_TRUE(a->Send(kDirect12, std::to_string(i), "x"));
    }
    auto b = TestClient::Login(server.port(), "user2", "d");
    EXPECT_EQ(b->Ack(kDirect12, 3)->ack().acked_seq(), 3u);
    EXPECT_EQ(b->Ack(kDirect12, 1)->ack().acked_seq(), 3u);
    EXPECT_EQ(b->Ack(kDirect12, 999)->ack().acked_seq(), 5u);
    auto outsider = TestClient::Login(server.port(), "user3", "d");
    auto refused = outsider->Ack(kDirect12, 1);
    ASSERT_TRUE(refused && refused->has_error());
    EXPECT_EQ(refused->error().reason(), "not_member");
}

TEST(Embedded, ServerRestartLosesNoAcknowledgedMessage) {
    TestServer server([](app::Config& c) { c.storage_synchronous = "full"; });
    std::vector<std::string> server_ids;
    {
        auto a = TestClient::Login(server.port(), "user1", "d");
        ASSERT_TRUE(a->Join("keep"));
        for (int i = 1; i <= 150; ++i) {
            auto r = a->Send(i % 2 ? kDirect12 : "room:keep", "c" + std::to_string(i), "v" + std::to_string(i));
            ASSERT_TRUE(r && r->has_send());
            server_ids.push_back(r->send().server_msg_id());
        }
    }
    server.Restart();
    auto b = TestClient::Login(server.port(), "user2", "d");
    ExpectDense(b->SyncAll(kDirect12, 0), 1, 75);
    auto a = TestClient::Login(server.port(), "user1", "d2");
    auto room = a->SyncAll("room:keep", 0);
    ExpectDense(room, 1, 75);
    EXPECT_EQ(room.back().text(), "v150");
    EXPECT_EQ(room.back().server_msg_id(), server_ids.back());
    auto next = a->Send(kDirect12, "after-restart", "x");
    ASSERT_TRUE(next && next->has_send());
    EXPECT_EQ(next->send().seq(), 76u);
    auto dup = a->Send(kDirect12, "c1", "v1");  // a retry from before the restart
    ASSERT_TRUE(dup && dup->has_send());
    EXPECT_TRUE(dup->send().duplicate());
    EXPECT_EQ(dup->send().seq(), 1u);
}

struct BadToken {
    std::string name;
    std::string token;
    std::string reason;
};

TEST(Embedded, BadTokensGetAnErrorFrameNamingTheReasonThenClose) {
    TestServer server;
    const std::vector<BadToken> cases = {
        {"missing", "", "token_missing"},
        {"garbage", "abc", "token_malformed"},
        {"wrong secret", TokenFor("user1", "default", 3600, "other-secret"), "token_bad_signature"},
        {"expired", TokenFor("user1", "default", -10), "token_expired"},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.name);
        auto client = TestClient::Open(server.port());
        pb::ClientFrame f;
        f.mutable_auth()->set_token(c.token);
        auto r = client->Request(f);
        ASSERT_TRUE(r && r->has_error()) << (r ? r->DebugString() : "no answer");
        EXPECT_EQ(r->error().code(), pb::UNAUTHENTICATED);
        EXPECT_EQ(r->error().reason(), c.reason);
        auto bye = client->NextPush();
        ASSERT_TRUE(bye && bye->has_goodbye());
        EXPECT_EQ(bye->goodbye().reason(), "unauthenticated");
        auto code = client->WaitClosed();
        ASSERT_TRUE(code);
        EXPECT_EQ(*code, 1008);
    }
    // A token in the upgrade URL is checked the same way.
    auto via_url = TestClient::Open(server.port(), "/?token=" + TokenFor("user1", "default", -10));
    auto e = via_url->NextPush();
    ASSERT_TRUE(e && e->has_error());
    EXPECT_EQ(e->error().reason(), "token_expired");
    EXPECT_TRUE(via_url->WaitClosed());
    // Requests before authentication are refused too.
    auto early = TestClient::Open(server.port());
    pb::ClientFrame join;
    join.mutable_join_room()->set_room("lobby");
    auto refused = early->Request(join);
    ASSERT_TRUE(refused && refused->has_error());
    EXPECT_EQ(refused->error().reason(), "auth_required");
    EXPECT_TRUE(early->WaitClosed());
}

TEST(Embedded, TokenInTheUpgradeUrlAuthenticatesAtOnce) {
    TestServer server;
    auto c = TestClient::Open(server.port(), "/?token=" + TokenFor("user1") + "&format=json");
    auto auth = c->NextPush();
    ASSERT_TRUE(auth && auth->has_auth()) << (auth ? auth->DebugString() : "");
    EXPECT_EQ(auth->auth().user_id(), "user1");
    EXPECT_EQ(auth->auth().tenant_id(), "default");
    EXPECT_EQ(auth->auth().gateway_id(), "gw-test");
    EXPECT_GT(auth->auth().heartbeat_interval_ms(), 0u);
}

TEST(Embedded, MalformedFramesGetErrorsAndNobodyElseIsAffected) {
    TestServer server([](app::Config& c) {
        c.gateway.max_frame_bytes = 4096;
        c.gateway.hard_max_frame_bytes = 65536;
    });
    auto bystander = TestClient::Login(server.port(), "user2", "d");
    auto a = TestClient::Login(server.port(), "user1", "d");

    a->SendRaw(std::string("\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12), false);
    auto e1 = a->NextPush();
    ASSERT_TRUE(e1 && e1->has_error()) << (e1 ? e1->DebugString() : "");
    EXPECT_EQ(e1->error().code(), pb::INVALID_ARGUMENT);
    EXPECT_EQ(e1->error().reason(), "malformed_frame");

    a->SendRaw("{\"requestId\": 5, \"send\": ", true);
    auto e2 = a->NextPush();
    ASSERT_TRUE(e2 && e2->has_error());
    EXPECT_EQ(e2->error().reason(), "malformed_json");

    a->SendRaw(R"({"requestId":"x","bogus":{}})", true);
    auto e3 = a->NextPush();
    ASSERT_TRUE(e3 && e3->has_error());
    EXPECT_EQ(e3->error().reason(), "malformed_json");
    EXPECT_NE(e3->error().message().find("bogus"), std::string::npos) << e3->error().message();

    a->SendRaw(std::string(10000, 'x'), false);
    auto e4 = a->NextPush();
    ASSERT_TRUE(e4 && e4->has_error());
    EXPECT_EQ(e4->error().reason(), "frame_too_large");
    EXPECT_EQ(e4->error().code(), pb::INVALID_ARGUMENT);

    // The connection still works after each of these, in both encodings.
    auto ok = a->Send(kDirect12, "c1", "still here");
    ASSERT_TRUE(ok && ok->has_send()) << (ok ? ok->DebugString() : "");
    EXPECT_EQ(bystander->Messages(1).size(), 1u);

    // Beyond the hard limit the frame is not read: the connection closes with 1009.
    a->SendRaw(std::string(100000, 'y'), false);
    auto code = a->WaitClosed();
    ASSERT_TRUE(code);
    EXPECT_EQ(*code, 1009);

    // Everybody else is served as before.
    auto other = TestClient::Login(server.port(), "user3", "d");
    auto r = other->Send("direct:user2:user3", "x", "hi");
    ASSERT_TRUE(r && r->has_send());
    EXPECT_EQ(bystander->Messages(1).size(), 1u);
}

TEST(Embedded, LimitsAndUnknownConversationsHaveClearErrors) {
    TestServer server([](app::Config& c) { c.limits.max_text_bytes = 100; });
    auto a = TestClient::Login(server.port(), "user1", "d");
    auto expect_error = [&](const std::string& conv, const std::string& cid, const std::string& text,
                            pb::ErrorCode code, const std::string& reason) {
        auto r = a->Send(conv, cid, text);
        ASSERT_TRUE(r && r->has_error()) << conv << " " << (r ? r->DebugString() : "no answer");
        EXPECT_EQ(r->error().code(), code) << conv;
        EXPECT_EQ(r->error().reason(), reason) << conv;
        EXPECT_FALSE(r->error().message().empty());
    };
    expect_error(kDirect12, "c1", std::string(101, 'x'), pb::INVALID_ARGUMENT, "text_too_long");
    expect_error(kDirect12, "c1", "", pb::INVALID_ARGUMENT, "empty_text");
    expect_error(kDirect12, "", "x", pb::INVALID_ARGUMENT, "missing_client_msg_id");
    expect_error("room:nowhere", "c1", "x", pb::NOT_FOUND, "unknown_conversation");
    expect_error("direct:user2:user3", "c1", "x", pb::PERMISSION_DENIED, "not_member");
    expect_error("direct:user2:user1", "c1", "x", pb::INVALID_ARGUMENT, "bad_conversation_id");
    expect_error("chan:x", "c1", "x", pb::INVALID_ARGUMENT, "bad_conversation_id");
    auto b = TestClient::Login(server.port(), "user2", "d");
    ASSERT_TRUE(b->Join("private"));
    expect_error("room:private", "c1", "x", pb::PERMISSION_DENIED, "not_member");

    pb::ClientFrame sync;
    sync.mutable_sync_messages()->set_conversation_id("room:private");
    auto s = a->Request(sync);
    ASSERT_TRUE(s && s->has_error());
    EXPECT_EQ(s->error().reason(), "not_member");
    sync.mutable_sync_messages()->set_conversation_id(kDirect12);
    sync.mutable_sync_messages()->set_limit(100000);
    s = a->Request(sync);
    ASSERT_TRUE(s && s->has_error());
    EXPECT_EQ(s->error().reason(), "limit_too_large");
    pb::ClientFrame join;
    join.mutable_join_room()->set_room("bad name");
    auto j = a->Request(join);
    ASSERT_TRUE(j && j->has_error());
    EXPECT_EQ(j->error().reason(), "bad_room_name");
}

TEST(Embedded, PingPongAndIdleTimeout) {
    TestServer server([](app::Config& c) { c.gateway.idle_timeout_ms = 400; });
    auto a = TestClient::Login(server.port(), "user1", "d");
    for (int i = 0; i < 4; ++i) {  // pings keep it open well past the idle timeout
        pb::ClientFrame ping;
        ping.mutable_ping()->set_client_time_ms(1000 + i);
        auto pong = a->Request(ping);
        ASSERT_TRUE(pong && pong->has_pong());
        EXPECT_EQ(pong->pong().client_time_ms(), 1000 + i);
        EXPECT_GT(pong->pong().server_time_ms(), 0);
        std::this_thread::sleep_for(200ms);  // the client's think time, not a wait for the server
    }
    EXPECT_FALSE(a->closed());
    auto bye = a->NextPush(3s);
    ASSERT_TRUE(bye && bye->has_goodbye());
    EXPECT_EQ(bye->goodbye().reason(), "idle_timeout");
    EXPECT_TRUE(a->WaitClosed());
}

TEST(Embedded, UnauthenticatedConnectionIsClosedAfterTheAuthTimeout) {
    TestServer server([](app::Config& c) { c.gateway.auth_timeout_ms = 300; });
    auto a = TestClient::Open(server.port());
    auto bye = a->NextPush(3s);
    ASSERT_TRUE(bye && bye->has_goodbye());
    EXPECT_EQ(bye->goodbye().reason(), "auth_timeout");
    EXPECT_TRUE(a->WaitClosed());
}

TEST(Embedded, SameDeviceLoggingInAgainReplacesTheOldConnection) {
    TestServer server;
    auto first = TestClient::Login(server.port(), "user1", "phone");
    auto second = TestClient::Login(server.port(), "user1", "phone");
    auto bye = first->NextPush();
    ASSERT_TRUE(bye && bye->has_goodbye());
    EXPECT_EQ(bye->goodbye().reason(), "replaced");
    EXPECT_TRUE(first->WaitClosed());
    // The new connection gets the device's messages.
    auto b = TestClient::Login(server.port(), "user2", "d");
    ASSERT_TRUE(b->Send(kDirect12, "c", "to the new one"));
    auto msgs = second->Messages(1);
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_EQ(msgs[0].text(), "to the new one");
}

TEST(Embedded, JsonTextFramesWorkEndToEnd) {
    TestServer server;
    auto a = TestClient::Login(server.port(), "user1", "d", /*json=*/true);
    auto b = TestClient::Open(server.port());
    b->SendRaw(R"({"requestId":"auth-1","auth":{"token":")" + TokenFor("user2") + R"(","deviceId":"web"}})", true);
    auto auth = b->NextPush();
    ASSERT_TRUE(auth && auth->has_auth()) << (auth ? auth->DebugString() : "");
    EXPECT_EQ(auth->request_id(), "auth-1");
    EXPECT_EQ(auth->auth().device_id(), "web");
    auto r = a->Send(kDirect12, "j1", "json text ✓");
    ASSERT_TRUE(r && r->has_send());
    auto msgs = b->Messages(1);
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_EQ(msgs[0].text(), "json text ✓");
}

std::string HttpGet(uint16_t port, const std::string& target) {
    return RawHttp(port, "GET " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n");
}

// A WebSocket client that completes the handshake and then stops reading (a stuck phone).
int OpenStuckWebSocket(uint16_t port, const std::string& target) {
    int fd = ConnectLoopback(port, /*rcvbuf=*/4096);
    if (fd < 0) {
        return -1;
    }
    std::string req = "GET " + target +
                      " HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    (void)::write(fd, req.data(), req.size());
    std::string head;
    char c;
    while (head.find("\r\n\r\n") == std::string::npos && ::read(fd, &c, 1) == 1) {
        head.push_back(c);
    }
    return head.starts_with("HTTP/1.1 101") ? fd : -1;
}

// Reads unmasked server frames until a close frame or the end of the connection; returns the payloads
// of the data frames.
std::vector<std::string> DrainFrames(int fd, int timeout_s = 10) {
    timeval tv{timeout_s, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string data;
    std::vector<std::string> frames;
    size_t pos = 0;
    char buf[65536];
    for (;;) {
        // Parse what is complete.
        for (;;) {
            if (pos + 2 > data.size()) {
                break;
            }
            const auto opcode = static_cast<unsigned char>(data[pos]) & 0x0F;
            uint64_t len = static_cast<unsigned char>(data[pos + 1]) & 0x7F;
            size_t hdr = 2;
            if (len == 126) {
                if (pos + 4 > data.size()) {
                    break;
                }
                len = (uint64_t(uint8_t(data[pos + 2])) << 8) | uint8_t(data[pos + 3]);
                hdr = 4;
            } else if (len == 127) {
                if (pos + 10 > data.size()) {
                    break;
                }
                len = 0;
                for (int i = 0; i < 8; ++i) {
                    len = (len << 8) | uint8_t(data[pos + 2 + i]);
                }
                hdr = 10;
            }
            if (pos + hdr + len > data.size()) {
                break;
            }
            if (opcode == 0x8) {
                return frames;
            }
            if (opcode == 0x1 || opcode == 0x2) {
                frames.push_back(data.substr(pos + hdr, len));
            }
            pos += hdr + len;
        }
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n <= 0) {
            return frames;
        }
        data.append(buf, static_cast<size_t>(n));
    }
}

TEST(Embedded, SlowConsumerIsClosedWithAReasonAndOthersKeepReceiving) {
    TestServer server([](app::Config& c) {
        // Bursts are at most one group commit (64 messages): a reading client stays far below the limits.
        c.sqlite_max_batch = 64;
        c.gateway.max_queued_frames = 512;
        c.gateway.max_queued_bytes = 1024 * 1024;
    });
    auto sender = TestClient::Login(server.port(), "user1", "d");
    ASSERT_TRUE(sender->Join("busy"));
    auto healthy = TestClient::Login(server.port(), "user2", "d");
    ASSERT_TRUE(healthy->Join("busy"));
    {
        auto join_stuck = TestClient::Login(server.port(), "user3", "d");
        ASSERT_TRUE(join_stuck->Join("busy"));
    }
    int stuck = OpenStuckWebSocket(server.port(), "/?token=" + TokenFor("user3"));
    ASSERT_GE(stuck, 0);
    const std::string text(4000, 'z');
    constexpr int kN = 2500;  // 10 MB: more than the kernel buffers and the 1 MiB queue hold
    for (int i = 1; i <= kN; ++i) {
        pb::ClientFrame f;
        f.set_request_id("s" + std::to_string(i));
        f.mutable_send()->set_conversation_id("room:busy");
        f.mutable_send()->set_client_msg_id("c" + std::to_string(i));
        f.mutable_send()->set_text(text);
        sender->SendFrame(f);
        if (i % 100 == 0) {  // keep the sender under its in-flight limit: wait for these 100 answers
            for (int k = 0; k < 100; ++k) {
                auto r = sender->NextPush(10s);
                ASSERT_TRUE(r && r->has_send()) << (r ? r->DebugString() : "no answer");
            }
        }
    }
    auto msgs = healthy->Messages(kN, 30s);
    ExpectDense(msgs, 1, kN);
    auto frames = DrainFrames(stuck);
    ::close(stuck);
    ASSERT_FALSE(frames.empty());
    auto last = gateway::DecodeServerFrame(frames.back(), false);
    ASSERT_TRUE(last.ok());
    ASSERT_TRUE(last->has_goodbye()) << last->DebugString();
    EXPECT_EQ(last->goodbye().reason(), "slow_consumer");
    EXPECT_LT(frames.size(), static_cast<size_t>(kN));  // it was cut off, not fed forever
    // The stuck device reconnects and catches up exactly.
    auto back = TestClient::Login(server.port(), "user3", "d2");
    ExpectDense(back->SyncAll("room:busy", 0, 500), 1, kN);
}

TEST(Embedded, PipelinedRequestsSeeTheEffectOfAnEarlierJoinOrLeave) {
    TestServer server;
    auto a = TestClient::Login(server.port(), "user1", "d");
    auto frame = [](const std::string& rid, auto fill) {
        pb::ClientFrame f;
        f.set_request_id(rid);
        fill(f);
        return f;
    };
    // join + send in one burst: the send sees the membership.
    a->SendFrame(frame("j", [](pb::ClientFrame& f) { f.mutable_join_room()->set_room("burst"); }));
    a->SendFrame(frame("s1", [](pb::ClientFrame& f) {
        f.mutable_send()->set_conversation_id("room:burst");
        f.mutable_send()->set_client_msg_id("c1");
        f.mutable_send()->set_text("after join");
    }));
    // leave + send in one burst: the send is refused and nothing is stored.
    a->SendFrame(frame("l", [](pb::ClientFrame& f) { f.mutable_leave_room()->set_room("burst"); }));
    a->SendFrame(frame("s2", [](pb::ClientFrame& f) {
        f.mutable_send()->set_conversation_id("room:burst");
        f.mutable_send()->set_client_msg_id("c2");
        f.mutable_send()->set_text("after leave");
    }));
    std::map<std::string, pb::ServerFrame> answers;
    while (answers.size() < 4) {
        auto f = a->NextPush();
        ASSERT_TRUE(f) << "got only " << answers.size() << " answers";
        answers[f->request_id()] = *f;
    }
    EXPECT_TRUE(answers["j"].has_join_room());
    ASSERT_TRUE(answers["s1"].has_send()) << answers["s1"].DebugString();
    EXPECT_EQ(answers["s1"].send().seq(), 1u);
    EXPECT_TRUE(answers["l"].has_leave_room());
    ASSERT_TRUE(answers["s2"].has_error()) << answers["s2"].DebugString();
    EXPECT_EQ(answers["s2"].error().reason(), "not_member");
    auto b = TestClient::Login(server.port(), "user2", "d");
    ASSERT_TRUE(b->Join("burst"));
    auto history = b->SyncAll("room:burst", 0);
    ASSERT_EQ(history.size(), 1u);
    EXPECT_EQ(history[0].text(), "after join");
}

TEST(Embedded, SyncAfterAHugeSeqReturnsNothing) {
    TestServer server;
    auto a = TestClient::Login(server.port(), "user1", "d");
    ASSERT_TRUE(a->Send(kDirect12, "c1", "x"));
    for (uint64_t after : {uint64_t{9223372036854775807ull}, uint64_t{9223372036854775808ull},
                           uint64_t{18446744073709551615ull}}) {
        pb::ClientFrame f;
        f.mutable_sync_messages()->set_conversation_id(kDirect12);
        f.mutable_sync_messages()->set_after_seq(after);
        auto r = a->Request(f);
        ASSERT_TRUE(r && r->has_sync_messages());
        EXPECT_EQ(r->sync_messages().messages_size(), 0) << after;
        EXPECT_EQ(r->sync_messages().last_seq(), 1u);
    }
}

TEST(Embedded, EveryPlainHttpRequestGetsAnAnswer) {
    TestServer server;
    EXPECT_TRUE(RawHttp(server.port(), "GET /healthz?probe=1 HTTP/1.1\r\nHost: x\r\n\r\n").starts_with("HTTP/1.1 200"));
    EXPECT_TRUE(RawHttp(server.port(), "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
                    .starts_with("HTTP/1.1 426"));
    EXPECT_TRUE(RawHttp(server.port(), "\x16\x03\x01\x02\x00garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    std::string huge = "GET /?" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n";
    EXPECT_TRUE(RawHttp(server.port(), huge).starts_with("HTTP/1.1 431"));
    // And the server still serves WebSocket clients.
    auto a = TestClient::Login(server.port(), "user1", "d");
    EXPECT_TRUE(a->Send(kDirect12, "c", "x"));
}

// Unpacks raw binary frames into server frames (Batch frames into theirs); counts the batches.
std::vector<pb::ServerFrame> Unpack(const std::vector<std::string>& raw, int* batches) {
    std::vector<pb::ServerFrame> out;
    for (const auto& r : raw) {
        auto f = gateway::DecodeServerFrame(r, false);
        EXPECT_TRUE(f.ok());
        if (!f.ok()) {
            continue;
        }
        if (f->has_batch()) {
            ++*batches;
            for (const auto& inner : f->batch().frames()) {
                EXPECT_FALSE(inner.has_batch()) << "batches are never nested";
                out.push_back(inner);
            }
        } else {
            out.push_back(*f);
        }
    }
    return out;
}

TEST(Embedded, ClientsThatAcceptBatchesGetQueuedFramesTogetherInOrder) {
    TestServer server;
    auto sender = TestClient::Login(server.port(), "user1", "d");
    // A reader that asked for batches and one that did not, both reading only after the burst.
    int with = OpenStuckWebSocket(server.port(), "/?token=" + TokenFor("user2") + "&batch=1");
    int without = OpenStuckWebSocket(server.port(), "/?token=" + TokenFor("user2"));
    ASSERT_GE(with, 0);
    ASSERT_GE(without, 0);
    auto ready = TestClient::Login(server.port(), "user3", "d");  // by now both upgrades were handled
    constexpr int kN = 300;
    for (int i = 1; i <= kN; ++i) {
        pb::ClientFrame f;
        f.set_request_id("s" + std::to_string(i));
        f.mutable_send()->set_conversation_id(kDirect12);
        f.mutable_send()->set_client_msg_id("c" + std::to_string(i));
        f.mutable_send()->set_text(std::string(2000, 'b'));  // 600 KB: more than the socket buffers take at once
        sender->SendFrame(f);
        if (i % 100 == 0) {
            for (int k = 0; k < 100; ++k) {
                auto r = sender->NextPush(10s);
                ASSERT_TRUE(r && r->has_send());
            }
        }
    }
    for (int fd : {with, without}) {
        int batches = 0;
        auto frames = Unpack(DrainFrames(fd, 2), &batches);
        ::close(fd);
        std::vector<uint64_t> seqs;
        for (const auto& f : frames) {
            if (f.has_message()) {
                seqs.push_back(f.message().message().seq());
            }
        }
        ASSERT_EQ(seqs.size(), static_cast<size_t>(kN)) << (fd == with ? "batching" : "plain");
        for (int i = 0; i < kN; ++i) {
            EXPECT_EQ(seqs[i], static_cast<uint64_t>(i + 1));
        }
        if (fd == with) {
            EXPECT_GT(batches, 0) << "a backlog of frames was written one by one";
        } else {
            EXPECT_EQ(batches, 0) << "a client that did not ask got a batch";
        }
    }
}

TEST(Embedded, HealthEndpointAnswersPlainHttpOnTheGatewayPort) {
    TestServer server;
    auto health = HttpGet(server.port(), "/healthz");
    EXPECT_TRUE(health.starts_with("HTTP/1.1 200")) << health;
    EXPECT_NE(health.find("\r\n\r\nok"), std::string::npos) << health;
    auto other = HttpGet(server.port(), "/");
    EXPECT_TRUE(other.starts_with("HTTP/1.1 426")) << other;
}

}  // namespace
}  // namespace flare::testing
