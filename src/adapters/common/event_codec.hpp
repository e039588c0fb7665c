// How the stores keep a message's event and mentions in a text column (shared by SQLite and
// PostgreSQL): the event as a small JSON object, the mentions as space-separated user ids (user
// ids contain no spaces).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "domain/types.hpp"

namespace flare::store {

std::string EncodeEvent(const MessageEvent& e);  // "" for no event
MessageEvent DecodeEvent(std::string_view s);    // a malformed value decodes as no event

std::string JoinIds(const std::vector<std::string>& ids);
std::vector<std::string> SplitIds(std::string_view s);

// The conversation list's page token: where the previous page ended in its order.
struct ListCursor {
    bool pinned = false;
    int64_t activity_ms = 0;
    std::string conversation_id;
};
std::string EncodeListCursor(const ListCursor& c);
// false when the token is malformed.
bool DecodeListCursor(std::string_view token, ListCursor& out);

}  // namespace flare::store
