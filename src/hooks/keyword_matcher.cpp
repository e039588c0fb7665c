#include "hooks/keyword_matcher.hpp"

#include <algorithm>
#include <deque>

namespace flare::hooks {

namespace {

unsigned char Fold(unsigned char c) { return c >= 'A' && c <= 'Z' ? static_cast<unsigned char>(c - 'A' + 'a') : c; }

}  // namespace

KeywordMatcher::KeywordMatcher(const std::vector<std::string>& keywords) : nodes_(1) {
    for (const auto& k : keywords) {
        if (k.empty()) {
            continue;
        }
        int32_t at = 0;
        for (unsigned char raw : k) {
            const unsigned char c = Fold(raw);
            int32_t next = Child(at, c);
            if (next == 0) {
                next = static_cast<int32_t>(nodes_.size());
                nodes_.emplace_back();
                auto& edges = nodes_[at].next;
                edges.insert(std::upper_bound(edges.begin(), edges.end(), std::make_pair(c, INT32_MIN),
                                              [](const auto& a, const auto& b) { return a.first < b.first; }),
                             {c, next});
                if (at == 0) {
                    root_[c] = next;
                }
            }
            at = next;
        }
        nodes_[at].longest = std::max<uint32_t>(nodes_[at].longest, static_cast<uint32_t>(k.size()));
    }
    // Failure links, breadth first: a node's is the longest proper suffix of its path that is in the trie.
    std::deque<int32_t> queue;
    for (const auto& [c, child] : nodes_[0].next) {
        nodes_[child].fail = 0;
        queue.push_back(child);
    }
    while (!queue.empty()) {
        const int32_t u = queue.front();
        queue.pop_front();
        for (const auto& [c, v] : nodes_[u].next) {
            nodes_[v].fail = Step(nodes_[u].fail, c);
            nodes_[v].longest = std::max(nodes_[v].longest, nodes_[nodes_[v].fail].longest);
            queue.push_back(v);
        }
    }
}

int32_t KeywordMatcher::Child(int32_t node, unsigned char c) const {
    if (node == 0) {
        return root_[c];
    }
    const auto& edges = nodes_[node].next;
    auto it = std::lower_bound(edges.begin(), edges.end(), c, [](const auto& e, unsigned char x) { return e.first < x; });
    return it != edges.end() && it->first == c ? it->second : 0;
}

int32_t KeywordMatcher::Step(int32_t node, unsigned char c) const {
    for (;;) {
        if (const int32_t next = Child(node, c); next != 0) {
            return next;
        }
        if (node == 0) {
            return 0;
        }
        node = nodes_[node].fail;
    }
}

template <typename Hit>
void KeywordMatcher::Scan(std::string_view text, Hit&& hit) const {
    int32_t state = 0;
    for (size_t i = 0; i < text.size(); ++i) {
        state = Step(state, Fold(static_cast<unsigned char>(text[i])));
        if (const uint32_t len = nodes_[state].longest; len != 0 && !hit(i + 1 - len, len)) {
            return;
        }
    }
}

bool KeywordMatcher::Any(std::string_view text) const {
    bool found = false;
    Scan(text, [&](size_t, size_t) {
        found = true;
        return false;
    });
    return found;
}

std::vector<std::pair<size_t, size_t>> KeywordMatcher::Spans(std::string_view text) const {
    std::vector<std::pair<size_t, size_t>> out;
    Scan(text, [&](size_t begin, size_t len) {
        out.emplace_back(begin, len);
        return true;
    });
    return out;
}

}  // namespace flare::hooks
