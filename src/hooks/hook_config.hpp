// Hook definitions: the TOML hooks file and hooks.d/ folder, validated with the file, line and key
// of every mistake; the same validation for hooks managed through the business API; and the JSON
// form those are stored in.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "domain/hooks.hpp"

namespace flare::hooks {

// The whole pre_send chain answers within this; one pre_send hook's timeout_ms is at most this.
constexpr uint32_t kPreSendBudgetMs = 8000;

// Reads `file` (may be empty: none) and every *.toml in `dir` (may be empty or missing: none), in
// name order. Errors (kInvalidArgument) name the file, the line and the key, e.g.
// "hooks.d/20-spam.toml:7: hook 'spam': 'timeout_ms' must be in 1..60000".
Result<std::vector<HookSpec>> LoadHookFiles(const std::string& file, const std::string& dir);

// Checks one hook (names, points, transport and its fields, ranges). Errors name the field.
Status ValidateHook(const HookSpec& spec);

std::string HookToJson(const HookSpec& spec);
Result<HookSpec> HookFromJson(const std::string& json);

}  // namespace flare::hooks
