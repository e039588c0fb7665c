#include "hooks/keyword_matcher.hpp"

#include <gtest/gtest.h>

#include <random>

namespace flare::hooks {
namespace {

using Spans = std::vector<std::pair<size_t, size_t>>;

// The spans a plain search finds: at each end position, the longest keyword ending there.
Spans Naive(const std::vector<std::string>& keywords, const std::string& text) {
    auto lower = [](std::string s) {
        for (char& c : s) {
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        }
        return s;
    };
    const std::string t = lower(text);
    Spans out;
    for (size_t end = 1; end <= t.size(); ++end) {
        size_t best = 0;
        for (const auto& k : keywords) {
            const std::string lk = lower(k);
            if (!lk.empty() && lk.size() <= end && t.compare(end - lk.size(), lk.size(), lk) == 0) {
                best = std::max(best, lk.size());
            }
        }
        if (best != 0) out.emplace_back(end - best, best);
    }
    return out;
}

TEST(KeywordMatcher, FindsEveryKeywordIgnoringAsciiCase) {
    KeywordMatcher m({"he", "she", "his", "hers", "Casino", "free money", ""});
    EXPECT_TRUE(m.Any("USHERS"));
    EXPECT_EQ(m.Spans("ushers"), (Spans{{1, 3}, {2, 4}}));  // "she" (and "he" inside it), then "hers"
    EXPECT_TRUE(m.Any("visit our CASINO"));
    EXPECT_TRUE(m.Any("get Free Money now"));
    EXPECT_FALSE(m.Any("free-money, freemoney, cas ino"));
    EXPECT_FALSE(m.Any(""));
    KeywordMatcher none({});
    EXPECT_FALSE(none.Any("anything"));
    KeywordMatcher utf8({"Élan", "darn"});
    EXPECT_TRUE(utf8.Any("with Élan"));
    EXPECT_TRUE(utf8.Any("DaRn it"));
}

// Random keywords over a small alphabet (many overlaps and shared prefixes) against random texts:
// the same spans as the plain search.
TEST(KeywordMatcher, AgreesWithAPlainSearch) {
    std::mt19937 rng(7);
    auto word = [&](size_t max) {
        std::string s(1 + rng() % max, 'a');
        for (char& c : s) c = "abAB"[rng() % 4];
        return s;
    };
    for (int round = 0; round < 200; ++round) {
        std::vector<std::string> keywords;
        for (int i = 0, n = 1 + static_cast<int>(rng() % 12); i < n; ++i) keywords.push_back(word(6));
        const std::string text = word(80);
        KeywordMatcher m(keywords);
        EXPECT_EQ(m.Spans(text), Naive(keywords, text)) << "round " << round;
        EXPECT_EQ(m.Any(text), !Naive(keywords, text).empty());
    }
}

// The worst case of a plain search (keywords that almost match everywhere) is one pass here.
TEST(KeywordMatcher, ManyLongKeywordsOverALongTextAreOnePass) {
    std::vector<std::string> keywords;
    for (int i = 0; i < 1000; ++i) keywords.push_back(std::string(95, 'a') + std::to_string(10000 + i));
    KeywordMatcher m(keywords);
    const std::string text(4096, 'a');
    EXPECT_FALSE(m.Any(text));
    EXPECT_TRUE(m.Any(text + "10500"));
}

}  // namespace
}  // namespace flare::hooks
