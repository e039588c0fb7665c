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

TEST(ConversationId, ParsesGroups) {
    auto r = ParseConversationId("group:team-1");
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->type, ConversationType::kGroup);
    EXPECT_EQ(r->name, "team-1");
    EXPECT_EQ(GroupConversationId("team-1"), "group:team-1");
}

TEST(ConversationId, RejectsMalformedIds) {
    for (const char* bad : {"", "lobby", "room:", "direct:bob:alice", "direct:alice:alice", "direct:alice",
                            "room:has space", "group:", "group:a b", "channel:x", "direct:a:b:c"}) {
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

TEST(Utf8Prefix, NeverCutsACharacter) {
    EXPECT_EQ(Utf8Prefix("abc", 10), "abc");
    EXPECT_EQ(Utf8Prefix("abcdef", 3), "abc");
    EXPECT_EQ(Utf8Prefix("aé", 2), "a");        // é is two bytes
    EXPECT_EQ(Utf8Prefix("aé", 3), "aé");
    EXPECT_EQ(Utf8Prefix("€€", 4), "€");        // € is three bytes
    auto r = ParseConversationId("room:" + std::string(150, 'x') + std::string(100, '\xc3') );
    ASSERT_FALSE(r.ok());
}

TEST(ConversationId, SystemConversations) {
    auto s = ParseConversationId("system:user1");
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s->type, ConversationType::kSystem);
    EXPECT_EQ(s->name, "user1");
    EXPECT_EQ(SystemConversationId("user1"), "system:user1");
    EXPECT_FALSE(ParseConversationId("system:").ok());
}

}  // namespace
}  // namespace flare
