// The core gateway's business API end to end: real server in-process, real gRPC and HTTP clients,
// real WebSocket clients on the receiving side.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "flare/business/v1/business.grpc.pb.h"
#include <set>
#include <thread>

#include "test_support.hpp"

namespace flare::testing {
namespace {

namespace bpb = ::flare::business::v1;

class Business : public ::testing::Test {
protected:
    void SetUp() override {
        channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_.grpc_port()),
                                       grpc::InsecureChannelCredentials());
        stub_ = bpb::BusinessService::NewStub(channel_);
    }

    template <typename Req, typename Resp, typename Method>
    grpc::Status Call(Method method, const Req& req, Resp* resp, const std::string& token = BusinessToken()) {
        grpc::ClientContext ctx;
        if (!token.empty()) {
            ctx.AddMetadata("authorization", "Bearer " + token);
        }
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        return (stub_.get()->*method)(&ctx, req, resp);
    }

    grpc::Status Push(const std::vector<std::string>& users, const std::string& text, bpb::PushMessageResponse* resp,
                      const std::string& token = BusinessToken(), const std::string& key = "") {
        bpb::PushMessageRequest req;
        for (const auto& u : users) {
            req.add_user_ids(u);
        }
        req.set_text(text);
        req.set_idempotency_key(key);
        return Call(&bpb::BusinessService::Stub::PushMessage, req, resp, token);
    }

    std::string Post(const std::string& method, const std::string& json, const std::string& token) {
        std::string req = "POST /api/v1/" + method + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
        if (!token.empty()) {
            req += "Authorization: Bearer " + token + "\r\n";
        }
        req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(json.size()) + "\r\n\r\n" + json;
        return RawHttp(server_.http_port(), req);
    }

    TestServer server_;
    std::shared_ptr<grpc::Channel> channel_;
    std::unique_ptr<bpb::BusinessService::Stub> stub_;
};

TEST_F(Business, PushToNamedUsersReachesTheirDevicesAsSystemMessages) {
    auto u1a = TestClient::Login(server_.port(), "user1", "phone");
    auto u1b = TestClient::Login(server_.port(), "user1", "laptop");
    auto u2 = TestClient::Login(server_.port(), "user2", "phone");
    auto u3 = TestClient::Login(server_.port(), "user3", "phone");
    bpb::PushMessageResponse resp;
    auto st = Push({"user1", "user2", "user1"}, "order 42 shipped", &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    EXPECT_FALSE(resp.broadcast());
    EXPECT_EQ(resp.target_users(), 2u);  // duplicates in the list count once
    EXPECT_EQ(resp.online_users(), 2u);
    EXPECT_EQ(resp.delivered_devices(), 3u);
    EXPECT_EQ(resp.offline_users(), 0u);
    ASSERT_EQ(resp.results_size(), 2);
    EXPECT_EQ(resp.results(0).conversation_id(), "system:user1");
    EXPECT_EQ(resp.results(0).seq(), 1u);
    EXPECT_EQ(resp.results(0).devices(), 2u);
    for (auto* c : {u1a.get(), u1b.get(), u2.get()}) {
        auto msgs = c->Messages(1);
        ASSERT_EQ(msgs.size(), 1u);
        EXPECT_EQ(msgs[0].kind(), pb::MESSAGE_KIND_SYSTEM);
        EXPECT_EQ(msgs[0].sender_id(), "crm");
        EXPECT_EQ(msgs[0].text(), "order 42 shipped");
        EXPECT_EQ(msgs[0].conversation_type(), pb::CONVERSATION_TYPE_SYSTEM);
        EXPECT_EQ(msgs[0].seq(), 1u);
    }
    EXPECT_TRUE(u3->Silent());
    // A retry with the same key delivers nothing again.
    bpb::PushMessageResponse first, retry;
    ASSERT_TRUE(Push({"user2"}, "once", &first, BusinessToken(), "k-1").ok());
    ASSERT_TRUE(Push({"user2"}, "once", &retry, BusinessToken(), "k-1").ok());
    EXPECT_TRUE(retry.results(0).duplicate());
    EXPECT_EQ(retry.results(0).seq(), first.results(0).seq());
    EXPECT_EQ(u2->Messages(1).size(), 1u);
    EXPECT_TRUE(u2->Silent());
    // Users cannot write into their system conversation.
    auto refused = u1a->Send("system:user1", "c", "spoof");
    ASSERT_TRUE(refused && refused->has_error());
    EXPECT_EQ(refused->error().reason(), "read_only_conversation");
    auto other = u3->Send("system:user1", "c", "spoof");
    ASSERT_TRUE(other && other->has_error());
    EXPECT_EQ(other->error().reason(), "not_member");
}

TEST_F(Business, AnOfflineUserGetsTheNamedPushOnConnect) {
    bpb::PushMessageResponse resp;
    ASSERT_TRUE(Push({"user7"}, "while you were away", &resp).ok());
    EXPECT_EQ(resp.online_users(), 0u);
    EXPECT_EQ(resp.offline_users(), 1u);
    EXPECT_EQ(resp.delivered_devices(), 0u);
    ASSERT_TRUE(Push({"user7"}, "and again", &resp).ok());
    auto u7 = TestClient::Login(server_.port(), "user7", "phone");
    auto convs = u7->SyncConversations();
    ASSERT_TRUE(convs && convs->has_sync_conversations());
    ASSERT_EQ(convs->sync_conversations().conversations_size(), 1);
    const auto& c = convs->sync_conversations().conversations(0);
    EXPECT_EQ(c.conversation_id(), "system:user7");
    EXPECT_EQ(c.type(), pb::CONVERSATION_TYPE_SYSTEM);
    EXPECT_EQ(c.last_seq(), 2u);
    auto msgs = u7->SyncAll("system:user7", 0);
    ASSERT_EQ(msgs.size(), 2u);
    EXPECT_EQ(msgs[0].text(), "while you were away");
    EXPECT_EQ(msgs[1].text(), "and again");
    EXPECT_EQ(msgs[1].seq(), 2u);
}

TEST_F(Business, BroadcastIsLiveOnlyAndCountsDevices) {
    auto u1a = TestClient::Login(server_.port(), "user1", "phone");
    auto u1b = TestClient::Login(server_.port(), "user1", "laptop");
    auto u2 = TestClient::Login(server_.port(), "user2", "phone");
    auto other_tenant = TestClient::LoginTenant(server_.port(), "user9", "phone", "acme");
    bpb::PushMessageResponse resp;
    ASSERT_TRUE(Push({}, "maintenance at noon", &resp).ok());
    EXPECT_TRUE(resp.broadcast());
    EXPECT_EQ(resp.online_users(), 2u);
    EXPECT_EQ(resp.target_users(), 2u);
    EXPECT_EQ(resp.delivered_devices(), 3u);
    for (auto* c : {u1a.get(), u1b.get(), u2.get()}) {
        auto msgs = c->Messages(1);
        ASSERT_EQ(msgs.size(), 1u);
        EXPECT_EQ(msgs[0].conversation_id(), "broadcast");
        EXPECT_EQ(msgs[0].seq(), 0u);
        EXPECT_EQ(msgs[0].kind(), pb::MESSAGE_KIND_SYSTEM);
        EXPECT_EQ(msgs[0].text(), "maintenance at noon");
    }
    EXPECT_TRUE(other_tenant->Silent());
    // Nothing was stored: a user who connects later finds nothing.
    auto late = TestClient::Login(server_.port(), "user5", "phone");
    auto convs = late->SyncConversations({}, true);
    ASSERT_TRUE(convs);
    EXPECT_EQ(convs->sync_conversations().conversations_size(), 0);
}

TEST_F(Business, StatusListsEveryDevice) {
    auto a = TestClient::Login(server_.port(), "user1", "phone");
    auto b = TestClient::Login(server_.port(), "user1", "laptop");
    bpb::QueryUserStatusRequest req;
    req.add_user_ids("user1");
    req.add_user_ids("user2");
    bpb::QueryUserStatusResponse resp;
    auto st = Call(&bpb::BusinessService::Stub::QueryUserStatus, req, &resp);
    ASSERT_TRUE(st.ok()) << st.error_message();
    ASSERT_EQ(resp.users_size(), 2);
    EXPECT_EQ(resp.users(0).user_id(), "user1");
    EXPECT_TRUE(resp.users(0).online());
    ASSERT_EQ(resp.users(0).devices_size(), 2);
    std::set<std::string> devices;
    for (const auto& d : resp.users(0).devices()) {
        devices.insert(d.device_id());
        EXPECT_EQ(d.gateway_id(), "gw-test");
        EXPECT_EQ(d.region(), "test-region");
        EXPECT_GT(d.since_ms(), 0);
    }
    EXPECT_EQ(devices, (std::set<std::string>{"laptop", "phone"}));
    EXPECT_EQ(resp.users(1).user_id(), "user2");
    EXPECT_FALSE(resp.users(1).online());
    EXPECT_EQ(resp.users(1).devices_size(), 0);
    b.reset();  // a device that goes away is gone from the status
    bpb::QueryUserStatusResponse after;
    for (int i = 0; i < 100; ++i) {
        ASSERT_TRUE(Call(&bpb::BusinessService::Stub::QueryUserStatus, req, &after).ok());
        if (after.users(0).devices_size() == 1) {
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));  // the close reaches the server asynchronously
    }
    ASSERT_EQ(after.users(0).devices_size(), 1);
    EXPECT_EQ(after.users(0).devices(0).device_id(), "phone");
}

TEST_F(Business, KickClosesTheSocketWithAReasonFirst) {
    auto phone = TestClient::Login(server_.port(), "user1", "phone");
    auto laptop = TestClient::Login(server_.port(), "user1", "laptop");
    bpb::KickUserRequest req;
    req.set_user_id("user1");
    req.set_device_id("phone");
    req.set_reason("account review");
    bpb::KickUserResponse resp;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::KickUser, req, &resp).ok());
    EXPECT_EQ(resp.kicked_devices(), 1u);
    auto bye = phone->NextPush();
    ASSERT_TRUE(bye && bye->has_goodbye());
    EXPECT_EQ(bye->goodbye().reason(), "kicked");
    EXPECT_EQ(bye->goodbye().message(), "account review");
    ASSERT_TRUE(phone->WaitClosed());
    EXPECT_TRUE(laptop->Silent());
    req.clear_device_id();
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::KickUser, req, &resp).ok());
    EXPECT_EQ(resp.kicked_devices(), 1u);
    EXPECT_TRUE(laptop->WaitClosed());
}

TEST_F(Business, SendMessageAsUserOrSystemIsStoredWithSeqAndIdempotent) {
    auto u2 = TestClient::Login(server_.port(), "user2", "phone");
    bpb::SendMessageRequest req;
    req.set_conversation_id("direct:user1:user2");
    req.set_sender_id("user1");
    req.set_text("sent for user1 by the support desk");
    req.set_idempotency_key("ticket-1");
    bpb::SendMessageResponse resp, again;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::SendMessage, req, &resp).ok());
    EXPECT_EQ(resp.seq(), 1u);
    EXPECT_FALSE(resp.duplicate());
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::SendMessage, req, &again).ok());
    EXPECT_TRUE(again.duplicate());
    EXPECT_EQ(again.seq(), 1u);
    EXPECT_EQ(again.server_msg_id(), resp.server_msg_id());
    auto msgs = u2->Messages(1);
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_EQ(msgs[0].sender_id(), "user1");
    EXPECT_EQ(msgs[0].kind(), pb::MESSAGE_KIND_TEXT);
    EXPECT_TRUE(u2->Silent());

    req.clear_sender_id();  // as the system
    req.set_idempotency_key("ticket-2");
    req.set_text("system notice");
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::SendMessage, req, &resp).ok());
    EXPECT_EQ(resp.seq(), 2u);
    auto sys = u2->Messages(1);
    ASSERT_EQ(sys.size(), 1u);
    EXPECT_EQ(sys[0].kind(), pb::MESSAGE_KIND_SYSTEM);
    EXPECT_EQ(sys[0].sender_id(), "crm");

    // As a user who is not a member: refused.
    req.set_conversation_id("direct:user2:user3");
    req.set_sender_id("user1");
    req.set_idempotency_key("ticket-3");
    auto st = Call(&bpb::BusinessService::Stub::SendMessage, req, &resp);
    EXPECT_EQ(st.error_code(), grpc::StatusCode::PERMISSION_DENIED);

    // History pages by seq.
    bpb::GetHistoryRequest h;
    h.set_conversation_id("direct:user1:user2");
    h.set_limit(1);
    bpb::GetHistoryResponse page;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::GetHistory, h, &page).ok());
    ASSERT_EQ(page.messages_size(), 1);
    EXPECT_EQ(page.messages(0).seq(), 1u);
    EXPECT_TRUE(page.has_more());
    EXPECT_EQ(page.last_seq(), 2u);
    h.set_after_seq(1);
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::GetHistory, h, &page).ok());
    ASSERT_EQ(page.messages_size(), 1);
    EXPECT_EQ(page.messages(0).seq(), 2u);
    EXPECT_TRUE(page.messages(0).system());
    EXPECT_FALSE(page.has_more());

    // A user whose id is the business caller's name ("crm") is not the sender of its system messages:
    // they cannot edit or recall them, and its idempotency key is not their message.
    req.set_conversation_id("direct:crm:user2");
    req.clear_sender_id();
    req.set_idempotency_key("ticket-9");
    req.set_text("Official: your order shipped");
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::SendMessage, req, &resp).ok());
    auto crm = TestClient::Login(server_.port(), "crm", "phone");
    for (int op = 0; op < 2; ++op) {
        pb::ClientFrame f;
        f.mutable_message_op()->set_conversation_id("direct:crm:user2");
        f.mutable_message_op()->set_seq(resp.seq());
        if (op == 0) {
            f.mutable_message_op()->mutable_edit()->set_text("Official: send your password");
        } else {
            f.mutable_message_op()->mutable_recall();
        }
        auto refused = crm->Request(f);
        ASSERT_TRUE(refused && refused->has_error()) << refused->DebugString();
        EXPECT_EQ(refused->error().reason(), "not_sender");
    }
    auto own = crm->Send("direct:crm:user2", "ticket-9", "mine");
    ASSERT_TRUE(own && own->has_error()) << own->DebugString();
    EXPECT_EQ(own->error().reason(), "client_msg_id_reused");
}

TEST_F(Business, CallersAreAuthenticatedAndMustBeBusiness) {
    bpb::PushMessageResponse resp;
    EXPECT_EQ(Push({"user1"}, "x", &resp, "").error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(Push({"user1"}, "x", &resp, "garbage").error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(Push({"user1"}, "x", &resp, BusinessToken("default", -5)).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(Push({"user1"}, "x", &resp, BusinessToken("default", 60, "wrong-secret")).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    auto client_token = Push({"user1"}, "x", &resp, TokenFor("user1"));
    EXPECT_EQ(client_token.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_NE(client_token.error_message().find("business"), std::string::npos) << client_token.error_message();
    // Nothing was stored by the refused calls.
    bpb::GetHistoryRequest h;
    h.set_conversation_id("system:user1");
    bpb::GetHistoryResponse page;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::GetHistory, h, &page).ok());
    EXPECT_EQ(page.messages_size(), 0);
}

TEST_F(Business, EveryCallIsScopedToTheCallersTenant) {
    auto acme_user = TestClient::LoginTenant(server_.port(), "user1", "phone", "acme");
    ASSERT_TRUE(acme_user->Send("direct:user1:user2", "c1", "acme secret"));
    const std::string globex = BusinessToken("globex");
    bpb::PushMessageResponse resp;
    ASSERT_TRUE(Push({"user1"}, "from globex", &resp, globex).ok());
    EXPECT_EQ(resp.online_users(), 0u);  // globex's user1 is not acme's user1
    EXPECT_TRUE(acme_user->Silent());

    bpb::GetHistoryRequest h;
    h.set_conversation_id("direct:user1:user2");
    bpb::GetHistoryResponse page;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::GetHistory, h, &page, globex).ok());
    EXPECT_EQ(page.messages_size(), 0);
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::GetHistory, h, &page, BusinessToken("acme")).ok());
    ASSERT_EQ(page.messages_size(), 1);
    EXPECT_EQ(page.messages(0).text(), "acme secret");

    bpb::KickUserRequest k;
    k.set_user_id("user1");
    bpb::KickUserResponse kicked;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::KickUser, k, &kicked, globex).ok());
    EXPECT_EQ(kicked.kicked_devices(), 0u);
    bpb::QueryUserStatusRequest q;
    q.add_user_ids("user1");
    bpb::QueryUserStatusResponse status;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::QueryUserStatus, q, &status, globex).ok());
    EXPECT_FALSE(status.users(0).online());
    EXPECT_FALSE(acme_user->closed());
}

TEST_F(Business, MalformedRequestsNameTheField) {
    auto expect_invalid = [&](grpc::Status st, const std::string& field) {
        EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << field << ": " << st.error_message();
        EXPECT_EQ(st.error_message().rfind(field, 0), 0u) << "message should start with '" << field
                                                          << "': " << st.error_message();
    };
    bpb::PushMessageResponse pr;
    expect_invalid(Push({"user1"}, "", &pr), "text");
    expect_invalid(Push({"user1", "bad user"}, "x", &pr), "user_ids[1]");
    expect_invalid(Push({"user1"}, std::string(5000, 'x'), &pr), "text");
    bpb::SendMessageRequest s;
    bpb::SendMessageResponse sr;
    s.set_text("x");
    s.set_idempotency_key("k");
    expect_invalid(Call(&bpb::BusinessService::Stub::SendMessage, s, &sr), "conversation_id");
    s.set_conversation_id("nonsense");
    expect_invalid(Call(&bpb::BusinessService::Stub::SendMessage, s, &sr), "conversation_id");
    s.set_conversation_id("room:x");
    s.clear_idempotency_key();
    expect_invalid(Call(&bpb::BusinessService::Stub::SendMessage, s, &sr), "idempotency_key");
    s.set_idempotency_key("recall:6");  // a key reserved for recalls
    expect_invalid(Call(&bpb::BusinessService::Stub::SendMessage, s, &sr), "idempotency_key");
    s.set_idempotency_key(std::string(101, 'k'));
    expect_invalid(Call(&bpb::BusinessService::Stub::SendMessage, s, &sr), "idempotency_key");
    bpb::CreateGroupRequest cg;
    cg.set_name("x");
    cg.set_owner_id("user1");
    cg.set_idempotency_key(std::string(101, 'k'));
    bpb::GroupChangeResponse gr;
    expect_invalid(Call(&bpb::BusinessService::Stub::CreateGroup, cg, &gr), "idempotency_key");
    bpb::GroupMembersRequest gm;
    gm.set_conversation_id("group:x");
    gm.add_user_ids("user2");
    gm.set_idempotency_key(std::string(101, 'k'));
    expect_invalid(Call(&bpb::BusinessService::Stub::AddGroupMembers, gm, &gr), "idempotency_key");
    bpb::QueryUserStatusRequest q;
    bpb::QueryUserStatusResponse qr;
    expect_invalid(Call(&bpb::BusinessService::Stub::QueryUserStatus, q, &qr), "user_ids");
    bpb::KickUserRequest k;
    bpb::KickUserResponse kr;
    expect_invalid(Call(&bpb::BusinessService::Stub::KickUser, k, &kr), "user_id");
    bpb::GetHistoryRequest h;
    bpb::GetHistoryResponse hr;
    h.set_conversation_id("room:x");
    h.set_limit(100000);
    expect_invalid(Call(&bpb::BusinessService::Stub::GetHistory, h, &hr), "limit");
    // Unknown conversations are NOT_FOUND.
    h.set_limit(10);
    h.set_conversation_id("room:nobody-here");
    EXPECT_EQ(Call(&bpb::BusinessService::Stub::GetHistory, h, &hr).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(Business, HttpJsonMirrorServesTheSameApi) {
    auto u1 = TestClient::Login(server_.port(), "user1", "phone");
    auto ok = Post("PushMessage", R"({"user_ids":["user1"],"text":"via curl"})", BusinessToken());
    ASSERT_TRUE(ok.starts_with("HTTP/1.1 200")) << ok;
    EXPECT_NE(ok.find("\"online_users\":1"), std::string::npos) << ok;
    EXPECT_NE(ok.find("\"delivered_devices\":1"), std::string::npos) << ok;
    auto msgs = u1->Messages(1);
    ASSERT_EQ(msgs.size(), 1u);
    EXPECT_EQ(msgs[0].text(), "via curl");

    auto camel = Post("QueryUserStatus", R"({"userIds":["user1"]})", BusinessToken());
    ASSERT_TRUE(camel.starts_with("HTTP/1.1 200")) << camel;
    EXPECT_NE(camel.find("\"device_id\":\"phone\""), std::string::npos) << camel;

    auto unauth = Post("PushMessage", R"({"text":"x"})", "");
    EXPECT_TRUE(unauth.starts_with("HTTP/1.1 401")) << unauth;
    EXPECT_NE(unauth.find("\"code\":\"UNAUTHENTICATED\""), std::string::npos) << unauth;
    auto forbidden = Post("PushMessage", R"({"text":"x"})", TokenFor("user1"));
    EXPECT_TRUE(forbidden.starts_with("HTTP/1.1 403")) << forbidden;
    auto bad_json = Post("PushMessage", R"({"text":)", BusinessToken());
    EXPECT_TRUE(bad_json.starts_with("HTTP/1.1 400")) << bad_json;
    EXPECT_NE(bad_json.find("malformed_json"), std::string::npos) << bad_json;
    auto bad_field = Post("PushMessage", R"({"user_ids":["a b"],"text":"x"})", BusinessToken());
    EXPECT_TRUE(bad_field.starts_with("HTTP/1.1 400")) << bad_field;
    EXPECT_NE(bad_field.find("user_ids[0]"), std::string::npos) << bad_field;
    auto unknown = Post("Nope", "{}", BusinessToken());
    EXPECT_TRUE(unknown.starts_with("HTTP/1.1 404")) << unknown;
    auto health = RawHttp(server_.http_port(), "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_TRUE(health.starts_with("HTTP/1.1 200")) << health;
    auto get = RawHttp(server_.http_port(), "GET /api/v1/PushMessage HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_TRUE(get.starts_with("HTTP/1.1 405")) << get;
    auto garbage = RawHttp(server_.http_port(), "HELLO\r\n\r\n");
    EXPECT_TRUE(garbage.starts_with("HTTP/1.1 400")) << garbage;
    EXPECT_NE(garbage.find("malformed_http"), std::string::npos) << garbage;
    auto huge = Post("PushMessage", std::string(2 * 1024 * 1024, ' '), BusinessToken());
    EXPECT_TRUE(huge.starts_with("HTTP/1.1 413")) << huge.substr(0, 200);
    // The JSON error names what is wrong on one line.
    auto msg = Post("PushMessage", R"({"text":42})", BusinessToken());
    EXPECT_TRUE(msg.starts_with("HTTP/1.1 400")) << msg;
    EXPECT_EQ(msg.find("^"), std::string::npos) << msg;
}

// Raw gRPC calls for the standard services, so the test needs no copy of their protos.
TEST_F(Business, HealthAndReflectionServicesAreServed) {
    grpc::GenericStub generic(channel_);
    grpc::CompletionQueue cq;
    void* tag;
    bool ok;
    {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        grpc::ByteBuffer request;  // HealthCheckRequest{service: ""} encodes to no bytes
        grpc::Slice empty;
        request = grpc::ByteBuffer(&empty, 1);
        auto call = generic.PrepareUnaryCall(&ctx, "/grpc.health.v1.Health/Check", request, &cq);
        call->StartCall();
        grpc::ByteBuffer response;
        grpc::Status status;
        call->Finish(&response, &status, reinterpret_cast<void*>(1));
        ASSERT_TRUE(cq.Next(&tag, &ok));
        ASSERT_TRUE(status.ok()) << status.error_message();
        std::vector<grpc::Slice> slices;
        ASSERT_TRUE(response.Dump(&slices).ok());
        std::string bytes;
        for (auto& s : slices) {
            bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
        EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING
    }
    {
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        auto call = generic.PrepareCall(&ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
        call->StartCall(reinterpret_cast<void*>(1));
        ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
        // ServerReflectionRequest{list_services: "*"}: field 7, length 1, "*"
        grpc::Slice req_slice(std::string("\x3a\x01\x2a", 3));
        grpc::ByteBuffer req(&req_slice, 1);
        call->Write(req, reinterpret_cast<void*>(2));
        ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
        grpc::ByteBuffer resp;
        call->Read(&resp, reinterpret_cast<void*>(3));
        ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
        std::vector<grpc::Slice> slices;
        ASSERT_TRUE(resp.Dump(&slices).ok());
        std::string bytes;
        for (auto& s : slices) {
            bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
        EXPECT_NE(bytes.find("flare.business.v1.BusinessService"), std::string::npos);
        EXPECT_NE(bytes.find("grpc.health.v1.Health"), std::string::npos);
        call->WritesDone(reinterpret_cast<void*>(4));
        ASSERT_TRUE(cq.Next(&tag, &ok));
        grpc::Status status;
        call->Finish(&status, reinterpret_cast<void*>(5));
        ASSERT_TRUE(cq.Next(&tag, &ok));
    }
    cq.Shutdown();
    while (cq.Next(&tag, &ok)) {
    }
}

}  // namespace
}  // namespace flare::testing

namespace flare::testing {
namespace {

// A business system creates a group with members, changes them and reads a member's conversation
// list; the members' devices see every change live, as events of the group.
TEST_F(Business, GroupsAreManagedThroughTheBusinessApi) {
    auto bob = TestClient::Login(server_.port(), "bob", "phone");
    bpb::CreateGroupRequest create;
    create.set_name("Support");
    create.set_owner_id("alice");
    create.add_member_ids("bob");
    create.set_group_id("support-1");
    create.set_idempotency_key("create-support-1");
    bpb::GroupChangeResponse created;
    auto s = Call(&bpb::BusinessService::Stub::CreateGroup, create, &created);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(created.conversation_id(), "group:support-1");
    EXPECT_EQ(created.seq(), 1u);
    auto ev = bob->NextPush();
    ASSERT_TRUE(ev && ev->has_message()) << (ev ? ev->DebugString() : "nothing");
    EXPECT_EQ(ev->message().message().event().type(), pb::EVENT_TYPE_GROUP_CREATED);
    EXPECT_EQ(ev->message().message().sender_id(), "alice");  // the owner
    bpb::GroupChangeResponse again;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::CreateGroup, create, &again).ok());
    EXPECT_TRUE(again.duplicate());

    bpb::GroupMembersRequest add;
    add.set_conversation_id("group:support-1");
    add.add_user_ids("carol");
    bpb::GroupChangeResponse added;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::AddGroupMembers, add, &added).ok());
    EXPECT_EQ(added.seq(), 2u);
    ev = bob->NextPush();
    ASSERT_TRUE(ev && ev->has_message());
    EXPECT_EQ(ev->message().message().event().type(), pb::EVENT_TYPE_MEMBERS_ADDED);
    EXPECT_EQ(ev->message().message().sender_id(), "system");

    bpb::GroupMembersRequest remove;
    remove.set_conversation_id("group:support-1");
    remove.add_user_ids("nobody");
    bpb::GroupChangeResponse removed;
    auto bad = Call(&bpb::BusinessService::Stub::RemoveGroupMembers, remove, &removed);
    EXPECT_EQ(bad.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << bad.error_message();
    remove.set_user_ids(0, "alice");  // the owner
    auto owner = Call(&bpb::BusinessService::Stub::RemoveGroupMembers, remove, &removed);
    EXPECT_EQ(owner.error_code(), grpc::StatusCode::PERMISSION_DENIED) << owner.error_message();
    remove.set_user_ids(0, "carol");
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::RemoveGroupMembers, remove, &removed).ok());
    EXPECT_EQ(removed.seq(), 3u);

    ASSERT_TRUE(bob->Send("group:support-1", "b-1", "hello support").has_value());
    bpb::ListConversationsRequest list;
    list.set_user_id("alice");
    bpb::ListConversationsResponse convs;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::ListConversations, list, &convs).ok());
    ASSERT_EQ(convs.conversations_size(), 1);
    const auto& c = convs.conversations(0);
    EXPECT_EQ(c.conversation_id(), "group:support-1");
    EXPECT_EQ(c.type(), "group");
    EXPECT_EQ(c.name(), "Support");
    EXPECT_EQ(c.role(), "owner");
    EXPECT_EQ(c.unread_count(), 1u);
    EXPECT_EQ(c.member_count(), 2u);
    EXPECT_EQ(c.last_message().text(), "hello support");

    // The same over HTTP/JSON, and the errors name the field.
    auto http = Post("ListConversations", R"({"user_id":"bob"})", BusinessToken());
    EXPECT_NE(http.find("200 OK"), std::string::npos) << http;
    EXPECT_NE(http.find("group:support-1"), std::string::npos) << http;
    auto missing = Post("CreateGroup", R"({"name":"x"})", BusinessToken());
    EXPECT_NE(missing.find("owner_id"), std::string::npos) << missing;
    auto no_user = Post("ListConversations", R"({})", BusinessToken());
    EXPECT_NE(no_user.find("user_id"), std::string::npos) << no_user;

    bpb::GetHistoryRequest h;
    h.set_conversation_id("group:support-1");
    bpb::GetHistoryResponse page;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::GetHistory, h, &page).ok());
    ASSERT_EQ(page.messages_size(), 4);
    EXPECT_EQ(page.messages(0).event_type(), "group_created");
    EXPECT_EQ(page.messages(2).event_type(), "members_removed");
    EXPECT_EQ(page.messages(3).event_type(), "");

    // Without a group_id, the idempotency key names the group on a retry; a user's own clientMsgId
    // that happens to be the same key is another group (the keys are not shared).
    pb::ClientFrame by_bob;
    by_bob.mutable_group()->set_client_msg_id("shared-key");
    by_bob.mutable_group()->mutable_create()->set_name("Bob's own");
    auto bobs = bob->Request(by_bob);
    ASSERT_TRUE(bobs && bobs->has_group()) << bobs->DebugString();
    bpb::CreateGroupRequest keyed;
    keyed.set_name("Keyed");
    keyed.set_owner_id("bob");
    keyed.add_member_ids("carol");
    keyed.set_idempotency_key("shared-key");
    bpb::GroupChangeResponse k1, k2;
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::CreateGroup, keyed, &k1).ok());
    EXPECT_FALSE(k1.duplicate());
    EXPECT_NE(k1.conversation_id(), bobs->group().event().conversation_id());
    ASSERT_TRUE(Call(&bpb::BusinessService::Stub::CreateGroup, keyed, &k2).ok());
    EXPECT_TRUE(k2.duplicate());
    EXPECT_EQ(k2.conversation_id(), k1.conversation_id());
}

}  // namespace
}  // namespace flare::testing
