#include <gtest/gtest.h>

#include "domain/types.hpp"

namespace flare {
namespace {

TEST(ConversationId, DirectIdIsSortedAndDeterministic) {
    EXPECT_EQ(DirectConversationId("user2", "user1"), "direct:user1:user2");
    EXPECT_EQ(DirectConversationId("user1", "user2"), "direct:user1:user2");
}

TEST(ConversationId, ParsesDirectAndRoom) {
    auto d = ParseConversationId("direct:alice:bob");
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->type, ConversationType::kDirect);
    EXPECT_EQ(d->a, "alice");
    EXPECT_EQ(d->b, "bob");
    auto r = ParseConversationId("room:lobby");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->type, ConversationType::kRoom);
    EXPECT_EQ(r->name, "lobby");
}

TEST(ConversationId, RejectsMalformedIds) {
    for (const char* bad : {"", "lobby", "room:", "direct:bob:alice", "direct:alice:alice", "direct:alice",
                            "room:has space", "group:x", "direct:a:b:c"}) {
        auto r = ParseConversationId(bad);
        ASSERT_FALSE(r.ok()) << bad;
        EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << bad;
        EXPECT_EQ(r.error().reason, "bad_conversation_id") << bad;
    }
}

TEST(Names, ValidatesLengthAndCharacters) {
    EXPECT_TRUE(IsValidName("user-1.a@b_c"));
    EXPECT_FALSE(IsValidName(""));
    EXPECT_FALSE(IsValidName(std::string(65, 'a')));
    EXPECT_TRUE(IsValidName(std::string(64, 'a')));
    EXPECT_FALSE(IsValidName("a:b"));
    EXPECT_FALSE(IsValidName("é"));
}

}  // namespace
}  // namespace flare
