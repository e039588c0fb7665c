// The keyword filter's search: every keyword at once over a message (Aho-Corasick), so its cost is
// one pass over the text however many keywords a hook lists. ASCII letters match either case.
// Written here because no Debian-packaged C++ library offers a multi-pattern byte search; the
// automaton is small (a trie with failure links).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace flare::hooks {

class KeywordMatcher {
public:
    // Empty keywords are ignored.
    explicit KeywordMatcher(const std::vector<std::string>& keywords);

    // Whether any keyword occurs in `text`.
    bool Any(std::string_view text) const;
    // The bytes covered by keyword occurrences, as (begin, length) spans in text order: at each end
    // position, the longest keyword ending there (the shorter ones lie inside it).
    std::vector<std::pair<size_t, size_t>> Spans(std::string_view text) const;

private:
    struct Node {
        std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
        int32_t fail = 0;
        uint32_t longest = 0;  // the longest keyword ending here, on this node or by its failure links
    };
    int32_t Child(int32_t node, unsigned char c) const;
    int32_t Step(int32_t node, unsigned char c) const;
    template <typename Hit>
    void Scan(std::string_view text, Hit&& hit) const;

    std::vector<Node> nodes_;
    std::array<int32_t, 256> root_{};  // the root's transitions, dense (0: stay at the root)
};

}  // namespace flare::hooks
