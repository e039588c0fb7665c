// The store contract (tests/contract/store_contract.hpp) for the SQLite adapter of embedded mode.
#include <filesystem>

#include "adapters/sqlite/sqlite_store.hpp"
#include "common/clock.hpp"
#include "contract/store_contract.hpp"

namespace flare::contract {
namespace {

struct SqliteFactory {
    using Store = SqliteStore;
    std::string dir;
    SqliteFactory() {
        dir = (std::filesystem::temp_directory_path() / ("flare-store-" + RandomHexId(6))).string();
    }
    ~SqliteFactory() { std::filesystem::remove_all(dir); }
    std::unique_ptr<SqliteStore> Open() {
        auto s = std::make_unique<SqliteStore>(SqliteOptions{dir + "/flare.db", "full", 64});
        s->Start();
        return s;
    }
};

INSTANTIATE_TYPED_TEST_SUITE_P(Sqlite, StoreContract, SqliteFactory);

}  // namespace
}  // namespace flare::contract
