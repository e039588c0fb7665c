// docs/PROTOCOL.md's JSON examples are real frames: each one parses as a ClientFrame or a
// ServerFrame with protobuf's JSON parser, unknown fields refused (as the gateway parses them).
// Examples with "..." placeholders are abbreviations and are skipped.
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "flare/client/v1/client.pb.h"

namespace {

namespace pb = ::flare::client::v1;

bool ParsesAsFrame(const std::string& json, std::string* why) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    pb::ClientFrame c;
    auto cs = google::protobuf::util::JsonStringToMessage(json, &c, options);
    if (cs.ok() && c.body_case() != pb::ClientFrame::BODY_NOT_SET) {
        return true;
    }
    pb::ServerFrame s;
    auto ss = google::protobuf::util::JsonStringToMessage(json, &s, options);
    if (ss.ok() && s.body_case() != pb::ServerFrame::BODY_NOT_SET) {
        return true;
    }
    *why = std::string(cs.message()) + " / " + std::string(ss.message());
    return false;
}

TEST(ProtocolDoc, EveryJsonExampleIsAFrame) {
    std::ifstream in(std::string(FLARE_SOURCE_DIR) + "/docs/PROTOCOL.md");
    ASSERT_TRUE(in) << "docs/PROTOCOL.md not found";
    std::vector<std::string> blocks;
    std::string line, block;
    bool inside = false;
    while (std::getline(in, line)) {
        if (!inside && line == "```json") {
            inside = true;
            block.clear();
        } else if (inside && line == "```") {
            inside = false;
            blocks.push_back(block);
        } else if (inside) {
            block += line + "\n";
        }
    }
    ASSERT_GE(blocks.size(), 20u);
    size_t checked = 0;
    for (const auto& b : blocks) {
        if (b.find("...") != std::string::npos) {
            continue;
        }
        std::string why;
        if (ParsesAsFrame(b, &why)) {
            ++checked;
            continue;
        }
        // A block of one frame per line.
        std::istringstream lines(b);
        while (std::getline(lines, line)) {
            if (line.empty()) {
                continue;
            }
            EXPECT_TRUE(ParsesAsFrame(line, &why)) << line << "\n" << why;
            ++checked;
        }
    }
    EXPECT_GE(checked, 30u);
}

}  // namespace
