#include <gtest/gtest.h>

#include "gateway/frame_codec.hpp"

namespace flare::gateway {
namespace {

TEST(FrameCodec, BinaryRoundTrip) {
    pb::ClientFrame f;
    f.set_request_id("r1");
    f.mutable_send()->set_conversation_id("room:lobby");
    f.mutable_send()->set_client_msg_id("c1");
    f.mutable_send()->set_text("héllo");
    auto decoded = DecodeClientFrame(EncodeClientFrame(f, false), false);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(decoded->request_id(), "r1");
    EXPECT_EQ(decoded->send().text(), "héllo");
}

TEST(FrameCodec, JsonMappingAcceptsCamelAndSnakeCase) {
    auto a = DecodeClientFrame(R"({"requestId":"1","send":{"conversationId":"room:x","clientMsgId":"c","text":"t"}})",
                               true);
    ASSERT_TRUE(a.ok()) << a.error().message;
    EXPECT_EQ(a->send().conversation_id(), "room:x");
    auto b = DecodeClientFrame(R"({"request_id":"1","ack":{"conversation_id":"room:x","seq":"5"}})", true);
    ASSERT_TRUE(b.ok()) << b.error().message;
    EXPECT_EQ(b->ack().seq(), 5u);
}

TEST(FrameCodec, ServerFrameJsonUsesProtobufMapping) {
    pb::ServerFrame f;
    f.set_request_id("7");
    f.mutable_send()->set_seq(42);
    f.mutable_send()->set_conversation_id("room:x");
    EXPECT_EQ(EncodeServerFrame(f, true), R"({"requestId":"7","send":{"conversationId":"room:x","seq":"42"}})");
}

TEST(FrameCodec, RejectsGarbageWithNamedReason) {
    auto bin = DecodeClientFrame(std::string("\xff\xff\xff\xff\x01", 5), false);
    ASSERT_FALSE(bin.ok());
    EXPECT_EQ(bin.error().reason, "malformed_frame");
    auto json = DecodeClientFrame("{not json", true);
    ASSERT_FALSE(json.ok());
    EXPECT_EQ(json.error().reason, "malformed_json");
    auto unknown = DecodeClientFrame(R"({"requestId":"1","sned":{}})", true);
    ASSERT_FALSE(unknown.ok());
    EXPECT_EQ(unknown.error().reason, "malformed_json");
    EXPECT_NE(unknown.error().message.find("sned"), std::string::npos) << unknown.error().message;
}

TEST(FrameCodec, ErrorFrameCarriesCodeReasonAndRequestId) {
    auto f = ErrorFrame("r9", MakeError(Errc::kPermissionDenied, "not_member", "no"));
    EXPECT_EQ(f.request_id(), "r9");
    EXPECT_EQ(f.error().code(), pb::PERMISSION_DENIED);
    EXPECT_EQ(f.error().reason(), "not_member");
}

}  // namespace
}  // namespace flare::gateway
