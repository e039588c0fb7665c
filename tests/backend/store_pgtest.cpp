// The store contract (tests/contract/store_contract.hpp) for the PostgreSQL adapter, plus what only
// PostgreSQL has: migrations, several writer processes on one conversation, an unreachable server.
// Each test gets a database of its own, created from the fixture's server and dropped afterwards.
#include <future>
#include <set>

#include "adapters/postgres/pg_conn.hpp"
#include "adapters/postgres/pg_migrations.hpp"
#include "adapters/postgres/pg_store.hpp"
#include "backend/backend_env.hpp"
#include "contract/store_contract.hpp"

namespace flare::contract {
namespace {

// A fresh database on the fixture's server: postgres://.../<unique name>.
class TempDatabase {
public:
    TempDatabase() {
        admin_url_ = test::BackendUrl("FLARE_TEST_DATABASE_URL");
        if (admin_url_.empty()) {
            return;
        }
        name_ = test::UniqueName("flare_t");
        pg::Conn admin(admin_url_);
        admin.Exec("CREATE DATABASE " + name_);
        url_ = admin_url_.substr(0, admin_url_.rfind('/') + 1) + name_;
    }
    ~TempDatabase() {
        if (name_.empty()) {
            return;
        }
        try {
            pg::Conn admin(admin_url_);
            admin.Exec("DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)");
        } catch (const std::exception& e) {
            ADD_FAILURE() << "cannot drop test database " << name_ << ": " << e.what();
        }
    }
    const std::string& url() const { return url_; }

private:
    std::string admin_url_, name_, url_;
};

struct PgFactory {
    using Store = PgStore;
    TempDatabase db;
    bool migrated = false;
    std::unique_ptr<PgStore> Open() {
        if (db.url().empty()) {
            throw std::runtime_error("no PostgreSQL for the test (FLARE_TEST_DATABASE_URL)");
        }
        if (!migrated) {
            auto m = PgMigrate(db.url());
            if (!m.ok()) {
                throw std::runtime_error(m.error().message);
            }
            migrated = true;
        }
        auto s = std::make_unique<PgStore>(PgOptions{db.url()});
        s->Start();
        return s;
    }
};

INSTANTIATE_TYPED_TEST_SUITE_P(Postgres, StoreContract, PgFactory);

TEST(PgMigrations, ApplyOnceInOrderAndNeverAgain) {
    TempDatabase db;
    ASSERT_FALSE(db.url().empty());
    auto first = PgMigrate(db.url());
    ASSERT_TRUE(first.ok()) << first.error().message;
    ASSERT_EQ(first->size(), PgMigrations().size());
    EXPECT_EQ(first->front(), "0001_init.sql");
    EXPECT_TRUE(std::is_sorted(first->begin(), first->end()));
    auto second = PgMigrate(db.url());
    ASSERT_TRUE(second.ok()) << second.error().message;
    EXPECT_TRUE(second->empty());
    auto state = PgCheckSchema(db.url());
    ASSERT_TRUE(state.ok());
    EXPECT_TRUE(state->missing.empty());
    EXPECT_TRUE(state->unknown.empty());
}

TEST(PgMigrations, RerunKeepsData) {
    TempDatabase db;
    ASSERT_FALSE(db.url().empty());
    ASSERT_TRUE(PgMigrate(db.url()).ok());
    {
        PgStore store(PgOptions{db.url()});
        store.Start();
        auto r = Await<ConversationSummary>([&](auto cb) { store.JoinRoom("t1", "room:keep", "alice", cb); });
        ASSERT_TRUE(r.ok());
    }
    ASSERT_TRUE(PgMigrate(db.url()).ok());
    pg::Conn c(db.url());
    EXPECT_EQ(c.Exec("SELECT count(*) FROM members").Int(0, 0), 1);
}

TEST(PgMigrations, ConcurrentRunsApplyEachMigrationOnce) {
    TempDatabase db;
    ASSERT_FALSE(db.url().empty());
    auto a = std::async(std::launch::async, [&] { return PgMigrate(db.url()); });
    auto b = std::async(std::launch::async, [&] { return PgMigrate(db.url()); });
    auto ra = a.get();
    auto rb = b.get();
    ASSERT_TRUE(ra.ok()) << ra.error().message;
    ASSERT_TRUE(rb.ok()) << rb.error().message;
    EXPECT_EQ(ra->size() + rb->size(), PgMigrations().size());
}

TEST(PgStoreStartup, UnmigratedDatabaseIsRefusedWithWhatToDo) {
    TempDatabase db;
    ASSERT_FALSE(db.url().empty());
    try {
        PgStore store(PgOptions{db.url()});
        FAIL() << "an unmigrated database was accepted";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("flare migrate"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("0001_init.sql"), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).find("flare123"), std::string::npos) << "password leaked: " << e.what();
    }
}

TEST(PgStoreStartup, UnreachableServerIsAnErrorNamingIt) {
    const std::string url = "postgres://flare:flare123@127.0.0.1:1/flare";
    try {
        PgStore store(PgOptions{url});
        FAIL() << "no server, yet the store started";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("127.0.0.1:1"), std::string::npos) << e.what();
        EXPECT_EQ(std::string(e.what()).find("flare123"), std::string::npos) << "password leaked: " << e.what();
    }
    auto m = PgMigrate(url);
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.error().code, Errc::kUnavailable);
}

// Several orchestrator processes append to one conversation at once: each holds its own PgStore
// (own connections); the seqs of the conversation must still be 1..N with no gap and no repeat, and
// retries across stores must be answered as duplicates.
TEST(PgStoreConcurrency, SeveralStoresOnOneConversationKeepSeqsDense) {
    TempDatabase db;
    ASSERT_FALSE(db.url().empty());
    ASSERT_TRUE(PgMigrate(db.url()).ok());
    constexpr int kStores = 3, kPerStore = 200;
    std::vector<std::unique_ptr<PgStore>> stores;
    for (int i = 0; i < kStores; ++i) {
        stores.push_back(std::make_unique<PgStore>(PgOptions{db.url(), 2, 1, 32}));
        stores.back()->Start();
    }
    ASSERT_TRUE(Await<ConversationSummary>([&](auto cb) { stores[0]->JoinRoom("t1", "room:busy", "alice", cb); }).ok());
    std::vector<std::shared_ptr<std::promise<Result<AppendResult>>>> results;
    for (int n = 0; n < kPerStore; ++n) {
        for (int s = 0; s < kStores; ++s) {
            AppendRequest req;
            req.message.tenant_id = "t1";
            req.message.conversation_id = "room:busy";
            req.message.conversation_type = ConversationType::kRoom;
            // Every message is sent twice, through two different stores: one of the two is a duplicate.
            const int id = (n * kStores + s) / 2;
            req.message.client_msg_id = "c" + std::to_string(id);
            req.message.server_msg_id = "s" + std::to_string(n) + "-" + std::to_string(s);
            req.message.sender_id = "alice";
            req.message.text = "m" + std::to_string(id);
            auto p = std::make_shared<std::promise<Result<AppendResult>>>();
            results.push_back(p);
            stores[static_cast<size_t>(s)]->Append(std::move(req), [p](Result<AppendResult> r) { p->set_value(std::move(r)); });
        }
    }
    std::set<uint64_t> seqs;
    std::map<std::string, uint64_t> seq_of_client_id;
    int duplicates = 0;
    for (auto& p : results) {
        auto r = p->get_future().get();
        ASSERT_TRUE(r.ok()) << r.error().message;
        auto [it, fresh] = seq_of_client_id.emplace(r->message.client_msg_id, r->message.seq);
        EXPECT_EQ(it->second, r->message.seq) << "one client id, two seqs";
        if (r->duplicate) {
            ++duplicates;
        } else {
            EXPECT_TRUE(seqs.insert(r->message.seq).second) << "seq " << r->message.seq << " given twice";
        }
    }
    constexpr int kDistinct = kStores * kPerStore / 2;
    EXPECT_EQ(duplicates, kStores * kPerStore - kDistinct);
    ASSERT_EQ(seqs.size(), static_cast<size_t>(kDistinct));
    EXPECT_EQ(*seqs.begin(), 1u);
    EXPECT_EQ(*seqs.rbegin(), static_cast<uint64_t>(kDistinct));
    auto page = Await<MessagePage>([&](auto cb) { stores[1]->ReadAfter("t1", "room:busy", 0, 1000, "", cb); });
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(page->last_seq, static_cast<uint64_t>(kDistinct));
    ASSERT_EQ(page->messages.size(), static_cast<size_t>(kDistinct));
}

TEST(PgStoreContent, TextPostgresCannotHoldIsRefusedAloneAndOthersCommit) {
    TempDatabase db;
    ASSERT_FALSE(db.url().empty());
    ASSERT_TRUE(PgMigrate(db.url()).ok());
    PgStore store(PgOptions{db.url(), 1, 1, 64});
    store.Start();
    ASSERT_TRUE(Await<ConversationSummary>([&](auto cb) { store.JoinRoom("t1", "room:z", "alice", cb); }).ok());
    std::vector<std::shared_ptr<std::promise<Result<AppendResult>>>> results;
    for (int i = 0; i < 5; ++i) {
        AppendRequest req;
        req.message.tenant_id = "t1";
        req.message.conversation_id = "room:z";
        req.message.conversation_type = ConversationType::kRoom;
        req.message.client_msg_id = "c" + std::to_string(i);
        req.message.server_msg_id = "s" + std::to_string(i);
        req.message.sender_id = "alice";
        // Invalid UTF-8 (upstream validation would stop it; the store must still not lose the others).
        req.message.text = i == 2 ? std::string("bad \xff\xfe utf8") : "fine";
        auto p = std::make_shared<std::promise<Result<AppendResult>>>();
        results.push_back(p);
        store.Append(std::move(req), [p](Result<AppendResult> r) { p->set_value(std::move(r)); });
    }
    std::vector<uint64_t> seqs;
    for (int i = 0; i < 5; ++i) {
        auto r = results[static_cast<size_t>(i)]->get_future().get();
        if (i == 2) {
            ASSERT_FALSE(r.ok());
            EXPECT_EQ(r.error().code, Errc::kInvalidArgument) << r.error().message;
        } else {
            ASSERT_TRUE(r.ok()) << r.error().message;
            seqs.push_back(r->message.seq);
        }
    }
    EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2, 3, 4}));
    auto page = Await<MessagePage>([&](auto cb) { store.ReadAfter("t1", "room:z", 0, 10, "", cb); });
    ASSERT_TRUE(page.ok());
    EXPECT_EQ(page->messages.size(), 4u);
}

TEST(PgStoreContent, NulBytesAreRefusedNotTruncated) {
    TempDatabase db;
    ASSERT_FALSE(db.url().empty());
    ASSERT_TRUE(PgMigrate(db.url()).ok());
    PgStore store(PgOptions{db.url()});
    store.Start();
    ASSERT_TRUE(Await<ConversationSummary>([&](auto cb) { store.JoinRoom("t1", "room:n", "alice", cb); }).ok());
    AppendRequest req;
    req.message.tenant_id = "t1";
    req.message.conversation_id = "room:n";
    req.message.client_msg_id = "c1";
    req.message.server_msg_id = "s1";
    req.message.sender_id = "alice";
    req.message.text = std::string("nul\0byte", 8);
    auto r = Await<AppendResult>([&](auto cb) { store.Append(std::move(req), cb); });
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kInvalidArgument);
    auto page = Await<MessagePage>([&](auto cb) { store.ReadAfter("t1", "room:n", 0, 10, "", cb); });
    ASSERT_TRUE(page.ok());
    EXPECT_TRUE(page->messages.empty());
}

// A conversation row locked by someone else (a stuck transaction) makes the append time out with
// kUnavailable instead of holding the writer forever; once the lock is gone, appends work again.
TEST(PgStoreTimeouts, AStatementBlockedOnALockTimesOut) {
    TempDatabase db;
    ASSERT_FALSE(db.url().empty());
    ASSERT_TRUE(PgMigrate(db.url()).ok());
    PgOptions o{db.url(), 1, 1, 16};
    o.statement_timeout_ms = 500;
    PgStore store(o);
    store.Start();
    ASSERT_TRUE(Await<ConversationSummary>([&](auto cb) { store.JoinRoom("t1", "room:l", "alice", cb); }).ok());
    auto append = [&](const std::string& id) {
        AppendRequest req;
        req.message.tenant_id = "t1";
        req.message.conversation_id = "room:l";
        req.message.client_msg_id = id;
        req.message.server_msg_id = "s" + id;
        req.message.sender_id = "alice";
        req.message.text = "x";
        return Await<AppendResult>([&](auto cb) { store.Append(std::move(req), cb); });
    };
    auto blocker = std::make_unique<pg::Conn>(db.url());
    blocker->Exec("BEGIN");
    blocker->Exec("SELECT 1 FROM conversations WHERE conversation_id = 'room:l' FOR UPDATE");
    const auto t0 = std::chrono::steady_clock::now();
    auto r = append("c1");
    const auto waited = std::chrono::steady_clock::now() - t0;
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, Errc::kUnavailable) << r.error().message;
    EXPECT_LT(waited, std::chrono::seconds(5));
    blocker->Exec("ROLLBACK");
    blocker.reset();
    auto again = append("c1");
    ASSERT_TRUE(again.ok()) << again.error().message;
    EXPECT_EQ(again->message.seq, 1u);  // the timed-out attempt allocated nothing
}

// The "normal" durability level: commits do not wait for the WAL flush, and the data is the same.
TEST(PgStoreDurability, RelaxedSynchronousCommitStoresTheSame) {
    TempDatabase db;
    ASSERT_FALSE(db.url().empty());
    ASSERT_TRUE(PgMigrate(db.url()).ok());
    PgOptions o{db.url()};
    o.synchronous_commit = false;
    {
        PgStore store(o);
        store.Start();
        ASSERT_TRUE(Await<ConversationSummary>([&](auto cb) { store.JoinRoom("t1", "room:r", "alice", cb); }).ok());
        for (int i = 1; i <= 10; ++i) {
            AppendRequest req;
            req.message.tenant_id = "t1";
            req.message.conversation_id = "room:r";
            req.message.client_msg_id = "c" + std::to_string(i);
            req.message.server_msg_id = "s" + std::to_string(i);
            req.message.sender_id = "alice";
            req.message.text = "x";
            auto r = Await<AppendResult>([&](auto cb) { store.Append(std::move(req), cb); });
            ASSERT_TRUE(r.ok()) << r.error().message;
            EXPECT_EQ(r->message.seq, static_cast<uint64_t>(i));
        }
    }
    pg::Conn c(db.url());
    EXPECT_EQ(c.Exec("SELECT count(*) FROM messages").Int(0, 0), 10);
}

}  // namespace
}  // namespace flare::contract
