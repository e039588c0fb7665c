#include "adapters/sqlite/sqlite_store.hpp"

#include <sqlite3.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <filesystem>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include "adapters/common/event_codec.hpp"

namespace flare {

namespace {

struct SqliteError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

Error StorageUnavailable() {
    return MakeError(Errc::kUnavailable, "storage_unavailable",
                     "the message store could not commit; nothing was stored, retry with the same client_msg_id");
}
Error StoreStopped() { return MakeError(Errc::kUnavailable, "shutting_down", "the server is shutting down"); }

std::string Key(const std::string& tenant, const std::string& conv) { return tenant + '\x1f' + conv; }

constexpr size_t kMaxCachedSeqs = 1'000'000;

// A prepared statement, reset after each use.
class Stmt {
public:
    Stmt() = default;
    Stmt(sqlite3* db, const char* sql) : db_(db) {
        if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr) != SQLITE_OK) {
            throw SqliteError(std::string("prepare failed: ") + sqlite3_errmsg(db) + " in: " + sql);
        }
    }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;
    Stmt(Stmt&& o) noexcept : db_(o.db_), stmt_(o.stmt_) { o.stmt_ = nullptr; }
    Stmt& operator=(Stmt&& o) noexcept {
        std::swap(db_, o.db_);
        std::swap(stmt_, o.stmt_);
        return *this;
    }
    ~Stmt() { sqlite3_finalize(stmt_); }

    template <typename... Args>
    Stmt& Bind(const Args&... args) {
        sqlite3_reset(stmt_);
        sqlite3_clear_bindings(stmt_);
        int i = 1;
        (BindOne(i++, args), ...);
        return *this;
    }
    // true while a row is available.
    bool Step() {
        const int rc = sqlite3_step(stmt_);
        if (rc == SQLITE_ROW) {
            return true;
        }
        if (rc == SQLITE_DONE) {
            return false;
        }
        throw SqliteError(std::string("step failed: ") + sqlite3_errmsg(db_));
    }
    void Run() {
        while (Step()) {
        }
        sqlite3_reset(stmt_);
    }
    int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
    bool IsNull(int col) { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
    std::string Text(int col) {
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
        return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
    }
    void Reset() { sqlite3_reset(stmt_); }

private:
    void BindOne(int i, const std::string& s) { sqlite3_bind_text(stmt_, i, s.data(), int(s.size()), SQLITE_STATIC); }
    void BindOne(int i, const char* s) { sqlite3_bind_text(stmt_, i, s, -1, SQLITE_STATIC); }
    void BindOne(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
    void BindOne(int i, uint64_t v) { sqlite3_bind_int64(stmt_, i, static_cast<int64_t>(v)); }
    void BindOne(int i, int v) { sqlite3_bind_int64(stmt_, i, v); }
    void BindOne(int i, bool v) { sqlite3_bind_int64(stmt_, i, v ? 1 : 0); }

    sqlite3* db_ = nullptr;
    sqlite3_stmt* stmt_ = nullptr;
};

void Exec(sqlite3* db, const char* sql) {
    char* err = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
        std::string msg = err ? err : "unknown error";
        sqlite3_free(err);
        throw SqliteError(msg);
    }
}

sqlite3* OpenDb(const std::string& path, bool readonly, const std::string& synchronous) {
    sqlite3* db = nullptr;
    const int flags = (readonly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                      SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
        std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
        sqlite3_close(db);
        throw std::runtime_error("cannot open SQLite database '" + path + "': " + msg);
    }
    sqlite3_busy_timeout(db, 5000);
    try {
        if (!readonly) {
            Exec(db, "PRAGMA journal_mode=WAL");
            Exec(db, ("PRAGMA synchronous=" + synchronous).c_str());
        }
        Exec(db, "PRAGMA foreign_keys=OFF");
    } catch (const SqliteError& e) {
        sqlite3_close(db);
        throw std::runtime_error("cannot configure SQLite database '" + path + "': " + e.what());
    }
    return db;
}

// Schema version 1. Migrations only ever add: a newer binary opens an older file.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS conversations (
    tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, type INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, last_seq INTEGER NOT NULL DEFAULT 0, last_msg_time_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, conversation_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members (
    tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, user_id TEXT NOT NULL,
    joined_ms INTEGER NOT NULL, joined_seq INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, user_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members (tenant_id, user_id);
CREATE TABLE IF NOT EXISTS messages (
    tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, seq INTEGER NOT NULL,
    server_msg_id TEXT NOT NULL, client_msg_id TEXT NOT NULL, sender_id TEXT NOT NULL,
    sender_device_id TEXT NOT NULL, server_time_ms INTEGER NOT NULL, conversation_type INTEGER NOT NULL,
    kind INTEGER NOT NULL, text TEXT NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, seq)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
    ON messages (tenant_id, conversation_id, sender_id, client_msg_id);
CREATE TABLE IF NOT EXISTS device_cursors (
    tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, device_id TEXT NOT NULL, conversation_id TEXT NOT NULL,
    acked_seq INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, device_id, conversation_id)) WITHOUT ROWID;
)sql";

// Version 2: groups (names, roles, mutes, dissolution), read cursors, pin/mute, message state
// (recall, deletion, edits with history, reactions, mentions, events) and delete-for-me.
constexpr const char* kSchemaV2 = R"sql(
ALTER TABLE conversations ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN dissolved INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN role INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN muted_until_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN read_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN muted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN flags INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN edit_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN edited_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN mentions TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN mention_all INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN event TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN target_seq INTEGER NOT NULL DEFAULT 0;
-- What members had before the upgrade counts as read.
UPDATE members SET read_seq = (SELECT c.last_seq FROM conversations c
    WHERE c.tenant_id = members.tenant_id AND c.conversation_id = members.conversation_id);
CREATE TABLE IF NOT EXISTS message_reactions (
    tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, emoji TEXT NOT NULL,
    user_id TEXT NOT NULL, created_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, seq, emoji, user_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS message_edits (
    tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, seq INTEGER NOT NULL, version INTEGER NOT NULL,
    text TEXT NOT NULL, time_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, seq, version)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hidden_messages (
    tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, conversation_id TEXT NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, conversation_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS message_mentions (
    tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, user_id TEXT NOT NULL, seq INTEGER NOT NULL,
    sender_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, user_id, seq)) WITHOUT ROWID;
)sql";

// Version 3: hooks managed through the business API.
constexpr const char* kSchemaV3 = R"sql(
CREATE TABLE IF NOT EXISTS hooks (
    tenant_id TEXT NOT NULL, name TEXT NOT NULL, spec_json TEXT NOT NULL, updated_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name)) WITHOUT ROWID;
)sql";

constexpr const char* kMessageColumns =
    "tenant_id, conversation_id, seq, server_msg_id, client_msg_id, sender_id, sender_device_id, server_time_ms, "
    "conversation_type, kind, text, flags, edit_version, edited_ms, mentions, mention_all, event, target_seq";

MessageRecord ReadMessage(Stmt& s) {
    MessageRecord m;
    m.tenant_id = s.Text(0);
    m.conversation_id = s.Text(1);
    m.seq = static_cast<uint64_t>(s.Int(2));
    m.server_msg_id = s.Text(3);
    m.client_msg_id = s.Text(4);
    m.sender_id = s.Text(5);
    m.sender_device_id = s.Text(6);
    m.server_time_ms = s.Int(7);
    m.conversation_type = static_cast<ConversationType>(s.Int(8));
    m.kind = static_cast<MessageKind>(s.Int(9));
    m.text = s.Text(10);
    const int64_t flags = s.Int(11);
    m.recalled = (flags & store::kFlagRecalled) != 0;
    m.deleted = (flags & store::kFlagDeleted) != 0;
    m.edit_version = static_cast<uint32_t>(s.Int(12));
    m.edited_ms = s.Int(13);
    m.mentions = store::SplitIds(s.Text(14));
    m.mention_all = s.Int(15) != 0;
    m.event = store::DecodeEvent(s.Text(16));
    if (m.kind == MessageKind::kEvent && m.event.type == EventType::kEdited) {
        m.event.text = std::move(m.text);  // an edit's new text is kept in the text column (recall clears it)
        m.text.clear();
    }
    return m;
}

Error Precondition(std::string reason, std::string message) {
    return MakeError(Errc::kFailedPrecondition, std::move(reason), std::move(message));
}

int64_t NowMs() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

// ------------------------------------------------------------------------------------------- writer

struct SqliteStore::Writer {
    explicit Writer(sqlite3* db)
        : db(db),
          begin(db, "BEGIN IMMEDIATE"),
          commit(db, "COMMIT"),
          rollback(db, "ROLLBACK"),
          select_last_seq(db, "SELECT last_seq, dissolved FROM conversations WHERE tenant_id=?1 AND conversation_id=?2"),
          insert_conversation(db,
                              "INSERT INTO conversations (tenant_id, conversation_id, type, created_ms, last_seq) "
                              "VALUES (?1, ?2, ?3, ?4, 0) ON CONFLICT DO NOTHING"),
          insert_member(db,
                        "INSERT INTO members (tenant_id, conversation_id, user_id, joined_ms, joined_seq) "
                        "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING"),
          delete_member(db, "DELETE FROM members WHERE tenant_id=?1 AND conversation_id=?2 AND user_id=?3"),
          insert_message(db, (std::string("INSERT INTO messages (") + kMessageColumns +
                              ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, 0, 0, ?12, ?13, ?14, ?15) "
                              "ON CONFLICT DO NOTHING")
                                 .c_str()),
          select_by_client_id(db, (std::string("SELECT ") + kMessageColumns +
                                   " FROM messages WHERE tenant_id=?1 AND conversation_id=?2 AND sender_id=?3 AND "
                                   "client_msg_id=?4")
                                      .c_str()),
          update_last_seq(db,
                          "UPDATE conversations SET last_seq=?3, last_msg_time_ms=?4 WHERE tenant_id=?1 AND "
                          "conversation_id=?2"),
          upsert_cursor(db,
                        "INSERT INTO device_cursors (tenant_id, user_id, device_id, conversation_id, acked_seq) "
                        "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE SET acked_seq = "
                        "max(acked_seq, excluded.acked_seq) RETURNING acked_seq") {}
    ~Writer() {
        // Statements must be finalized before the connection closes.
        begin = Stmt();
        commit = Stmt();
        rollback = Stmt();
        select_last_seq = Stmt();
        insert_conversation = Stmt();
        insert_member = Stmt();
        delete_member = Stmt();
        insert_message = Stmt();
        select_by_client_id = Stmt();
        update_last_seq = Stmt();
        upsert_cursor = Stmt();
        sqlite3_close(db);
    }

    // The conversation's newest seq including this transaction's appends; nullopt when it does not exist.
    std::optional<uint64_t> LastSeq(const std::string& key, const std::string& tenant, const std::string& conv) {
        auto it = last_seq.find(key);
        if (it != last_seq.end()) {
            return it->second;
        }
        select_last_seq.Bind(tenant, conv);
        if (!select_last_seq.Step()) {
            select_last_seq.Reset();
            return std::nullopt;
        }
        const auto v = static_cast<uint64_t>(select_last_seq.Int(0));
        if (select_last_seq.Int(1) != 0) {
            dissolved.insert(key);
        }
        select_last_seq.Reset();
        last_seq.emplace(key, v);
        return v;
    }
    // A one-off statement (for the rarer operations).
    Stmt Prepare(const char* sql) { return Stmt(db, sql); }

    struct Dirty {
        std::string tenant, conv;
        uint64_t seq;
        int64_t time_ms;
    };

    sqlite3* db;
    Stmt begin, commit, rollback, select_last_seq, insert_conversation, insert_member, delete_member, insert_message,
        select_by_client_id, update_last_seq, upsert_cursor;
    std::unordered_map<std::string, uint64_t> last_seq;  // cache: the truth is the conversations table
    std::unordered_set<std::string> dissolved;           // of the conversations in last_seq
    std::unordered_map<std::string, Dirty> dirty;        // conversations whose last_seq this transaction moved
};

class SqliteStore::WriteJob {
public:
    virtual ~WriteJob() = default;
    // Runs inside the group transaction; throws SqliteError on a database failure (the group rolls back).
    virtual void Run(Writer& w) = 0;
    // After the group committed (ok) or rolled back / the store stopped (!ok).
    virtual void Complete(bool ok) = 0;
};

namespace {

// A job whose Run leaves a Result<T> for the caller; one not run (store stopping, database failed) reports why.
template <typename T>
class ResultJob : public SqliteStore::WriteJob {
public:
    explicit ResultJob(Callback<T> done) : done_(std::move(done)) {}
    void Complete(bool ok) final {
        if (ok && result_) {
            done_(std::move(*result_));
        } else {
            done_(ok ? StoreStopped() : StorageUnavailable());
        }
    }

protected:
    std::optional<Result<T>> result_;

private:
    Callback<T> done_;
};

template <typename T>
class FnJob final : public ResultJob<T> {
public:
    FnJob(std::function<Result<T>(SqliteStore::Writer&)> fn, Callback<T> done)
        : ResultJob<T>(std::move(done)), fn_(std::move(fn)) {}
    void Run(SqliteStore::Writer& w) override { this->result_.emplace(fn_(w)); }

private:
    std::function<Result<T>(SqliteStore::Writer&)> fn_;
};

}  // namespace

// ------------------------------------------------------------------------------------------- reader

struct SqliteStore::Reader {
    explicit Reader(sqlite3* db)
        : db(db),
          read_after(db, (std::string("SELECT ") + kMessageColumns +
                          " FROM messages WHERE tenant_id=?1 AND conversation_id=?2 AND seq>?3 ORDER BY seq LIMIT ?4")
                             .c_str()),
          conversation(db,
                       "SELECT type, last_seq, name, dissolved FROM conversations WHERE tenant_id=?1 AND "
                       "conversation_id=?2"),
          members(db,
                  "SELECT user_id, joined_seq, role, muted_until_ms FROM members WHERE tenant_id=?1 AND "
                  "conversation_id=?2"),
          reactions(db,
                    "SELECT seq, emoji, user_id FROM message_reactions WHERE tenant_id=?1 AND conversation_id=?2 AND "
                    "seq BETWEEN ?3 AND ?4 ORDER BY seq, emoji, user_id"),
          hidden(db,
                 "SELECT seq FROM hidden_messages WHERE tenant_id=?1 AND user_id=?2 AND conversation_id=?3 AND "
                 "seq BETWEEN ?4 AND ?5"),
          user_conversations(db,
                             "SELECT c.conversation_id, c.type, c.last_seq, m.joined_seq, d.acked_seq "
                             "FROM members m JOIN conversations c "
                             "  ON c.tenant_id=m.tenant_id AND c.conversation_id=m.conversation_id "
                             "LEFT JOIN device_cursors d ON d.tenant_id=m.tenant_id AND d.user_id=m.user_id "
                             "  AND d.device_id=?3 AND d.conversation_id=m.conversation_id "
                             "WHERE m.tenant_id=?1 AND m.user_id=?2 ORDER BY c.conversation_id") {}
    ~Reader() {
        read_after = Stmt();
        conversation = Stmt();
        members = Stmt();
        reactions = Stmt();
        hidden = Stmt();
        user_conversations = Stmt();
        sqlite3_close(db);
    }
    Stmt Prepare(const char* sql) { return Stmt(db, sql); }

    // The page's reactions and, for `reader`, what it deleted for itself.
    void FillState(const std::string& tenant, const std::string& conv, const std::string& reader,
                   std::vector<MessageRecord>& page) {
        if (page.empty()) {
            return;
        }
        const uint64_t lo = page.front().seq, hi = page.back().seq;
        auto find = [&](uint64_t seq) -> MessageRecord* {
            auto it = std::lower_bound(page.begin(), page.end(), seq,
                                       [](const MessageRecord& m, uint64_t s) { return m.seq < s; });
            return it != page.end() && it->seq == seq ? &*it : nullptr;
        };
        auto& q = reactions.Bind(tenant, conv, lo, hi);
        while (q.Step()) {
            if (MessageRecord* m = find(static_cast<uint64_t>(q.Int(0)))) {
                std::string emoji = q.Text(1);
                if (m->reactions.empty() || m->reactions.back().emoji != emoji) {
                    m->reactions.push_back(Reaction{std::move(emoji), {}});
                }
                m->reactions.back().user_ids.push_back(q.Text(2));
            }
        }
        q.Reset();
        if (reader.empty()) {
            return;
        }
        auto& h = hidden.Bind(tenant, reader, conv, lo, hi);
        while (h.Step()) {
            if (MessageRecord* m = find(static_cast<uint64_t>(h.Int(0)))) {
                m->deleted_for_me = true;
                m->text.clear();
                m->reactions.clear();
                m->mentions.clear();
                m->mention_all = false;
            }
        }
        h.Reset();
    }

    sqlite3* db;
    Stmt read_after, conversation, members, reactions, hidden, user_conversations;
};

// --------------------------------------------------------------------------------------------- store

Result<std::string> SqlitePathFromUrl(const std::string& url) {
    constexpr std::string_view kScheme = "sqlite://";
    if (!url.starts_with(kScheme) || url.size() == kScheme.size()) {
        return MakeError(Errc::kInvalidArgument, "bad_database_url",
                         "database URL '" + url + "' is not 'sqlite://<path>' (e.g. sqlite://data/flare.db)");
    }
    return url.substr(kScheme.size());
}

SqliteStore::SqliteStore(SqliteOptions options) : options_(std::move(options)) {
    if (options_.synchronous != "full" && options_.synchronous != "normal") {
        throw std::runtime_error("storage.synchronous must be \"full\" or \"normal\", not \"" + options_.synchronous +
                                 "\"");
    }
    std::filesystem::path path(options_.path);
    if (path.has_parent_path()) {
        std::error_code ec;
        std::filesystem::create_directories(path.parent_path(), ec);
        if (ec) {
            throw std::runtime_error("cannot create directory for SQLite database '" + options_.path +
                                     "': " + ec.message());
        }
    }
    sqlite3* wdb = OpenDb(options_.path, false, options_.synchronous);
    try {
        Exec(wdb, kSchemaV1);
        int64_t version = 0;
        {
            Stmt v(wdb, "PRAGMA user_version");
            if (v.Step()) {
                version = v.Int(0);
            }
        }
        auto migrate = [&](int64_t to, const char* sql) {
            if (version >= to) {
                return;
            }
            Exec(wdb, "BEGIN IMMEDIATE");
            try {
                Exec(wdb, sql);
                Exec(wdb, ("PRAGMA user_version=" + std::to_string(to)).c_str());
                Exec(wdb, "COMMIT");
            } catch (const SqliteError&) {
                Exec(wdb, "ROLLBACK");
                throw;
            }
        };
        migrate(2, kSchemaV2);
        migrate(3, kSchemaV3);
        writer_ = std::make_unique<Writer>(wdb);
    } catch (const SqliteError& e) {
        sqlite3_close(wdb);
        throw std::runtime_error("cannot prepare SQLite database '" + options_.path + "': " + e.what());
    }
    try {
        reader_ = std::make_unique<Reader>(OpenDb(options_.path, true, options_.synchronous));
    } catch (const SqliteError& e) {
        throw std::runtime_error("cannot prepare SQLite reader for '" + options_.path + "': " + e.what());
    }
}

SqliteStore::~SqliteStore() { Stop(); }

void SqliteStore::Start() {
    std::lock_guard lock(mu_);
    if (accepting_ || stopping_) {
        return;
    }
    accepting_ = true;
    writer_thread_ = std::thread([this] { WriterLoop(); });
    reader_thread_ = std::thread([this] { ReaderLoop(); });
}

void SqliteStore::Stop() {
    {
        std::lock_guard lock(mu_);
        if (stopping_) {
            return;
        }
        accepting_ = false;
        stopping_ = true;
    }
    write_cv_.notify_all();
    read_cv_.notify_all();
    if (writer_thread_.joinable()) {
        writer_thread_.join();
    }
    if (reader_thread_.joinable()) {
        reader_thread_.join();
    }
}

void SqliteStore::Submit(std::unique_ptr<WriteJob> job) {
    {
        std::lock_guard lock(mu_);
        if (accepting_) {
            write_queue_.push_back(std::move(job));
            write_cv_.notify_one();
            return;
        }
    }
    job->Complete(true);  // not run: reports "shutting down"
}

void SqliteStore::SubmitRead(std::function<void(Reader&)> fn, std::function<void()> on_stopped) {
    {
        std::lock_guard lock(mu_);
        if (accepting_) {
            read_queue_.push_back(std::move(fn));
            read_cv_.notify_one();
            return;
        }
    }
    on_stopped();
}

void SqliteStore::WriterLoop() {
    std::vector<std::unique_ptr<WriteJob>> batch;
    for (;;) {
        batch.clear();
        {
            std::unique_lock lock(mu_);
            write_cv_.wait(lock, [&] { return stopping_ || !write_queue_.empty(); });
            if (write_queue_.empty()) {
                return;  // stopping and drained
            }
            while (!write_queue_.empty() && batch.size() < options_.max_batch) {
                batch.push_back(std::move(write_queue_.front()));
                write_queue_.pop_front();
            }
        }
        Writer& w = *writer_;
        if (w.last_seq.size() > kMaxCachedSeqs) {
            w.last_seq.clear();  // a cache of the conversations table, reloaded on use
            w.dissolved.clear();
        }
        bool ok = true;
        try {
            w.begin.Bind().Run();
            for (auto& job : batch) {
                job->Run(w);
            }
            for (auto& [key, d] : w.dirty) {
                w.update_last_seq.Bind(d.tenant, d.conv, d.seq, d.time_ms).Run();
            }
            w.commit.Bind().Run();
        } catch (const SqliteError& e) {
            ok = false;
            spdlog::error("sqlite: group commit of {} jobs failed, rolled back: {}", batch.size(), e.what());
            try {
                w.rollback.Bind().Run();
            } catch (const SqliteError&) {
            }
            w.last_seq.clear();  // reload the truth from disk
            w.dissolved.clear();
        }
        w.dirty.clear();
        for (auto& job : batch) {
            job->Complete(ok);
        }
    }
}

void SqliteStore::ReaderLoop() {
    for (;;) {
        std::function<void(Reader&)> fn;
        {
            std::unique_lock lock(mu_);
            read_cv_.wait(lock, [&] { return stopping_ || !read_queue_.empty(); });
            if (read_queue_.empty()) {
                return;
            }
            fn = std::move(read_queue_.front());
            read_queue_.pop_front();
        }
        fn(*reader_);
    }
}

namespace {

class AppendJob final : public ResultJob<AppendResult> {
public:
    AppendJob(AppendRequest req, Callback<AppendResult> done) : ResultJob(std::move(done)), req_(std::move(req)) {}

    void Run(SqliteStore::Writer& w) override { result_.emplace(Append(w)); }

private:
    std::optional<MessageRecord> FindByClientId(SqliteStore::Writer& w) {
        const MessageRecord& m = req_.message;
        auto& q = w.select_by_client_id.Bind(m.tenant_id, m.conversation_id, m.sender_id, m.client_msg_id);
        std::optional<MessageRecord> out;
        if (q.Step()) {
            out = ReadMessage(q);
        }
        q.Reset();
        return out;
    }

    // The preconditions of a message operation, checked before anything is written.
    Status CheckTarget(SqliteStore::Writer& w) {
        const MessageRecord& m = req_.message;
        const MessageEvent& ev = m.event;
        Stmt q = w.Prepare(
            "SELECT kind, flags, edit_version FROM messages WHERE tenant_id=?1 AND conversation_id=?2 AND seq=?3");
        q.Bind(m.tenant_id, m.conversation_id, ev.target_seq);
        std::optional<store::TargetRow> row;
        if (q.Step()) {
            row = store::TargetRow{static_cast<MessageKind>(q.Int(0)), q.Int(1), q.Int(2)};
        }
        q.Reset();
        return store::CheckTarget(m, row, [&] {
            Stmt r = w.Prepare(
                "SELECT COUNT(DISTINCT emoji), COALESCE(SUM(emoji=?4), 0), COALESCE(SUM(user_id=?5), 0), "
                "COALESCE(SUM(emoji=?4 AND user_id=?5), 0) FROM message_reactions "
                "WHERE tenant_id=?1 AND conversation_id=?2 AND seq=?3");
            r.Bind(m.tenant_id, m.conversation_id, ev.target_seq, ev.text, m.sender_id);
            store::ReactionCounts n;
            if (r.Step()) {
                n = {static_cast<uint64_t>(r.Int(0)), static_cast<uint64_t>(r.Int(1)), static_cast<uint64_t>(r.Int(2)),
                     r.Int(3) > 0};
            }
            r.Reset();
            return n;
        });
    }

    // Applies an event's effect, in the transaction that stores it (seq known).
    void Apply(SqliteStore::Writer& w, const std::string& key) {
        const MessageRecord& m = req_.message;
        const MessageEvent& ev = m.event;
        const std::string& t = m.tenant_id;
        const std::string& c = m.conversation_id;

        switch (ev.type) {
            case EventType::kGroupCreated: {
                w.Prepare("UPDATE conversations SET name=?3 WHERE tenant_id=?1 AND conversation_id=?2")
                    .Bind(t, c, ev.text)
                    .Run();
                w.Prepare("UPDATE members SET role=2 WHERE tenant_id=?1 AND conversation_id=?2 AND user_id=?3")
                    .Bind(t, c, m.sender_id)
                    .Run();
                break;
            }
            case EventType::kGroupRenamed:
                w.Prepare("UPDATE conversations SET name=?3 WHERE tenant_id=?1 AND conversation_id=?2")
                    .Bind(t, c, ev.text)
                    .Run();
                break;
            case EventType::kMembersAdded:
            {
                // They see the conversation from this event on.
                Stmt q = w.Prepare(
                    "INSERT INTO members (tenant_id, conversation_id, user_id, joined_ms, joined_seq, read_seq) "
                    "VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT DO NOTHING");
                for (const auto& u : ev.user_ids) {
                    q.Bind(t, c, u, m.server_time_ms, m.seq - 1).Run();
                }
                break;
            }
            case EventType::kMembersRemoved:
            case EventType::kMemberLeft:
            {
                Stmt q = w.Prepare("DELETE FROM members WHERE tenant_id=?1 AND conversation_id=?2 AND user_id=?3");
                for (const auto& u : ev.user_ids) {
                    q.Bind(t, c, u).Run();
                }
                break;
            }
            case EventType::kRoleChanged:
                if (ev.role == MemberRole::kOwner) {
                    w.Prepare("UPDATE members SET role=1 WHERE tenant_id=?1 AND conversation_id=?2 AND role=2")
                        .Bind(t, c)
                        .Run();
                }
                for (const auto& u : ev.user_ids) {
                    w.Prepare("UPDATE members SET role=?4 WHERE tenant_id=?1 AND conversation_id=?2 AND user_id=?3")
                        .Bind(t, c, u, static_cast<int>(ev.role))
                        .Run();
                }
                break;
            case EventType::kMemberMuted:
                for (const auto& u : ev.user_ids) {
                    w.Prepare("UPDATE members SET muted_until_ms=?4 WHERE tenant_id=?1 AND conversation_id=?2 AND "
                              "user_id=?3")
                        .Bind(t, c, u, ev.until_ms)
                        .Run();
                }
                break;
            case EventType::kGroupDissolved:
                w.Prepare("UPDATE conversations SET dissolved=1 WHERE tenant_id=?1 AND conversation_id=?2")
                    .Bind(t, c)
                    .Run();
                w.dissolved.insert(key);
                break;
            case EventType::kRecalled:
            case EventType::kDeletedForEveryone: {
                const int flag = ev.type == EventType::kRecalled ? store::kFlagRecalled : store::kFlagDeleted;
                w.Prepare("UPDATE messages SET flags=flags|?4, text='', mentions='', mention_all=0, edit_version=0, edited_ms=0 WHERE tenant_id=?1 "
                          "AND conversation_id=?2 AND seq=?3")
                    .Bind(t, c, ev.target_seq, flag)
                    .Run();
                // The edits' new texts go with the message.
                w.Prepare("UPDATE messages SET text='' WHERE tenant_id=?1 AND conversation_id=?2 AND kind=3 AND "
                          "target_seq=?3")
                    .Bind(t, c, ev.target_seq)
                    .Run();
                for (const char* table : {"message_reactions", "message_edits", "message_mentions"}) {
                    w.Prepare((std::string("DELETE FROM ") + table +
                               " WHERE tenant_id=?1 AND conversation_id=?2 AND seq=?3")
                                  .c_str())
                        .Bind(t, c, ev.target_seq)
                        .Run();
                }
                break;
            }
            case EventType::kEdited:
                w.Prepare("INSERT INTO message_edits (tenant_id, conversation_id, seq, version, text, time_ms) "
                          "SELECT tenant_id, conversation_id, seq, edit_version, text, "
                          "CASE WHEN edit_version = 0 THEN server_time_ms ELSE edited_ms END FROM messages "
                          "WHERE tenant_id=?1 AND conversation_id=?2 AND seq=?3")
                    .Bind(t, c, ev.target_seq)
                    .Run();
                w.Prepare("UPDATE messages SET text=?4, edit_version=edit_version+1, edited_ms=?5 WHERE tenant_id=?1 "
                          "AND conversation_id=?2 AND seq=?3")
                    .Bind(t, c, ev.target_seq, ev.text, m.server_time_ms)
                    .Run();
                break;
            case EventType::kReactionAdded:
                w.Prepare("INSERT INTO message_reactions (tenant_id, conversation_id, seq, emoji, user_id, created_ms) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                    .Bind(t, c, ev.target_seq, ev.text, m.sender_id, m.server_time_ms)
                    .Run();
                break;
            case EventType::kReactionRemoved:
                w.Prepare("DELETE FROM message_reactions WHERE tenant_id=?1 AND conversation_id=?2 AND seq=?3 AND "
                          "emoji=?4 AND user_id=?5")
                    .Bind(t, c, ev.target_seq, ev.text, m.sender_id)
                    .Run();
                break;
            default: break;
        }
    }

    // The original of a repeated client_msg_id, if it is the same kind of request.
    Result<std::optional<AppendResult>> Duplicate(SqliteStore::Writer& w) {
        auto original = FindByClientId(w);
        if (!original) {
            return std::optional<AppendResult>();
        }
        if (auto same = store::CheckSameKind(*original, req_.message); !same) {
            return same.error();
        }
        return std::optional<AppendResult>(AppendResult{std::move(*original), true});
    }

    // The sender's and the targets' membership, as it is now (the caller checked a cached view).
    Status CheckMembers(SqliteStore::Writer& w) {
        const MessageRecord& m = req_.message;
        Stmt q = w.Prepare(
            "SELECT role, muted_until_ms FROM members WHERE tenant_id=?1 AND conversation_id=?2 AND user_id=?3");
        return store::CheckMembers(req_, [&](const std::string& user) {
            q.Bind(m.tenant_id, m.conversation_id, user);
            std::optional<std::pair<MemberRole, int64_t>> out;
            if (q.Step()) {
                out.emplace(static_cast<MemberRole>(q.Int(0)), q.Int(1));
            }
            q.Reset();
            return out;
        }, [&] {
            Stmt c = w.Prepare("SELECT COUNT(*) FROM members WHERE tenant_id=?1 AND conversation_id=?2");
            c.Bind(m.tenant_id, m.conversation_id);
            const uint64_t n = c.Step() ? static_cast<uint64_t>(c.Int(0)) : 0;
            c.Reset();
            return n;
        });
    }

    Result<AppendResult> Append(SqliteStore::Writer& w) {
        MessageRecord& m = req_.message;
        const std::string key = Key(m.tenant_id, m.conversation_id);
        const bool event = m.kind == MessageKind::kEvent;
        auto last = w.LastSeq(key, m.tenant_id, m.conversation_id);
        if (!last) {
            if (req_.create_with_members.empty()) {
                return MakeError(Errc::kNotFound, "unknown_conversation",
                                 "conversation '" + m.conversation_id + "' does not exist");
            }
            w.insert_conversation.Bind(m.tenant_id, m.conversation_id, static_cast<int>(m.conversation_type),
                                       m.server_time_ms)
                .Run();
            for (const auto& user : req_.create_with_members) {
                w.insert_member.Bind(m.tenant_id, m.conversation_id, user, m.server_time_ms, int64_t{0}).Run();
            }
            w.last_seq[key] = 0;
            last = 0;
        } else if (event && m.event.type == EventType::kGroupCreated) {
            auto dup = Duplicate(w);
            if (!dup) {
                return dup.error();
            }
            if (*dup && !w.dissolved.contains(key)) {
                return std::move(**dup);
            }
            return MakeError(Errc::kAlreadyExists, "conversation_exists",
                             "conversation '" + m.conversation_id + "' already exists");
        }
        // Events (and anything in a dissolved group) answer a retry before their checks; plain messages
        // find out on insert, so the hot path costs no extra lookup.
        if (event || w.dissolved.contains(key)) {
            auto dup = Duplicate(w);
            if (!dup) {
                return dup.error();
            }
            if (*dup) {
                return std::move(**dup);
            }
        }
        if (w.dissolved.contains(key)) {
            return Precondition("conversation_dissolved", "group '" + m.conversation_id + "' was dissolved");
        }
        if (auto s = CheckMembers(w); !s) {
            return s.error();
        }
        if (event) {
            if (IsMessageOperation(m.event.type)) {
                if (auto s = CheckTarget(w); !s) {
                    return s.error();
                }
            }
        }
        m.seq = *last + 1;
        const bool edit = event && m.event.type == EventType::kEdited;
        MessageEvent stored_event = m.event;
        if (edit) {
            stored_event.text.clear();
        }
        w.insert_message
            .Bind(m.tenant_id, m.conversation_id, m.seq, m.server_msg_id, m.client_msg_id, m.sender_id,
                  m.sender_device_id, m.server_time_ms, static_cast<int>(m.conversation_type),
                  static_cast<int>(m.kind), edit ? m.event.text : m.text, store::JoinIds(m.mentions), m.mention_all,
                  store::EncodeEvent(stored_event), m.event.target_seq)
            .Run();
        if (sqlite3_changes(w.db) == 1) {
            w.last_seq[key] = m.seq;
            auto& d = w.dirty[key];
            d.tenant = m.tenant_id;
            d.conv = m.conversation_id;
            d.seq = m.seq;
            d.time_ms = m.server_time_ms;
            if (event) {
                Apply(w, key);
            } else if (!m.mentions.empty() || m.mention_all) {
                Stmt q = w.Prepare(
                    "INSERT INTO message_mentions (tenant_id, conversation_id, user_id, seq, sender_id) "
                    "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING");
                for (const auto& u : m.mentions) {
                    q.Bind(m.tenant_id, m.conversation_id, u, m.seq, m.sender_id).Run();
                }
                if (m.mention_all) {
                    q.Bind(m.tenant_id, m.conversation_id, "*", m.seq, m.sender_id).Run();
                }
            }
            return AppendResult{std::move(m), false};
        }
        auto dup = Duplicate(w);
        if (!dup) {
            return dup.error();
        }
        if (!*dup) {
            throw SqliteError("insert ignored but no row has the idempotency key");
        }
        return std::move(**dup);
    }

    AppendRequest req_;
};

}  // namespace

void SqliteStore::Append(AppendRequest request, Callback<AppendResult> done) {
    Submit(std::make_unique<AppendJob>(std::move(request), std::move(done)));
}

void SqliteStore::JoinRoom(std::string tenant_id, std::string conversation_id, std::string user_id,
                           Callback<ConversationSummary> done) {
    auto fn = [tenant = std::move(tenant_id), conv = std::move(conversation_id),
               user = std::move(user_id)](Writer& w) -> Result<ConversationSummary> {
        const std::string key = Key(tenant, conv);
        const int64_t now = NowMs();
        auto last = w.LastSeq(key, tenant, conv);
        if (!last) {
            w.insert_conversation.Bind(tenant, conv, static_cast<int>(ConversationType::kRoom), now).Run();
            w.last_seq[key] = 0;
            last = 0;
        }
        w.insert_member.Bind(tenant, conv, user, now, *last).Run();
        return ConversationSummary{conv, ConversationType::kRoom, *last};
    };
    Submit(std::make_unique<FnJob<ConversationSummary>>(std::move(fn), std::move(done)));
}

void SqliteStore::LeaveRoom(std::string tenant_id, std::string conversation_id, std::string user_id,
                            StatusCallback done) {
    auto fn = [tenant = std::move(tenant_id), conv = std::move(conversation_id),
               user = std::move(user_id)](Writer& w) -> Result<bool> {
        w.delete_member.Bind(tenant, conv, user).Run();
        if (sqlite3_changes(w.db) == 0) {
            return MakeError(Errc::kFailedPrecondition, "not_member", "you are not a member of '" + conv + "'");
        }
        return true;
    };
    Submit(std::make_unique<FnJob<bool>>(std::move(fn), [done = std::move(done)](Result<bool> r) {
        done(r ? Status{} : Status{r.error()});
    }));
}

void SqliteStore::SaveDeviceCursor(std::string tenant_id, std::string user_id, std::string device_id,
                                   std::string conversation_id, uint64_t seq, Callback<uint64_t> done) {
    auto fn = [tenant = std::move(tenant_id), user = std::move(user_id), device = std::move(device_id),
               conv = std::move(conversation_id), seq](Writer& w) -> Result<uint64_t> {
        auto last = w.LastSeq(Key(tenant, conv), tenant, conv);
        if (!last) {
            return MakeError(Errc::kNotFound, "unknown_conversation", "conversation '" + conv + "' does not exist");
        }
        auto& q = w.upsert_cursor.Bind(tenant, user, device, conv, std::min(seq, *last));
        uint64_t cursor = q.Step() ? static_cast<uint64_t>(q.Int(0)) : 0;
        q.Run();
        return cursor;
    };
    Submit(std::make_unique<FnJob<uint64_t>>(std::move(fn), std::move(done)));
}

void SqliteStore::ReadAfter(std::string tenant_id, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                            std::string reader_id, Callback<MessagePage> done) {
    auto shared_done = std::make_shared<Callback<MessagePage>>(std::move(done));
    SubmitRead(
        [tenant = std::move(tenant_id), conv = std::move(conversation_id), after_seq, limit,
         reader = std::move(reader_id), shared_done](Reader& r) {
            MessagePage page;
            try {
                r.conversation.Bind(tenant, conv);
                if (r.conversation.Step()) {
                    page.last_seq = static_cast<uint64_t>(r.conversation.Int(1));
                }
                r.conversation.Reset();
                // Seqs are stored as signed 64-bit: anything above holds nothing.
                const uint64_t after = std::min<uint64_t>(after_seq, INT64_MAX);
                auto& q = r.read_after.Bind(tenant, conv, after, static_cast<int64_t>(limit) + 1);
                while (q.Step()) {
                    if (page.messages.size() == limit) {
                        page.has_more = true;
                        break;
                    }
                    page.messages.push_back(ReadMessage(q));
                }
                q.Reset();
                r.FillState(tenant, conv, reader, page.messages);
                if (!page.messages.empty() && page.messages.back().seq > page.last_seq) {
                    page.last_seq = page.messages.back().seq;
                }
            } catch (const SqliteError& e) {
                spdlog::error("sqlite: read failed: {}", e.what());
                return (*shared_done)(StorageUnavailable());
            }
            (*shared_done)(std::move(page));
        },
        [shared_done] { (*shared_done)(StoreStopped()); });
}

void SqliteStore::FindAppended(std::string tenant_id, std::string conversation_id, std::string sender_id,
                               std::string client_msg_id, Callback<std::optional<MessageRecord>> done) {
    auto shared_done = std::make_shared<Callback<std::optional<MessageRecord>>>(std::move(done));
    SubmitRead(
        [tenant = std::move(tenant_id), conv = std::move(conversation_id), sender = std::move(sender_id),
         id = std::move(client_msg_id), shared_done](Reader& r) {
            std::optional<MessageRecord> out;
            try {
                Stmt q = r.Prepare((std::string("SELECT ") + kMessageColumns +
                                    " FROM messages WHERE tenant_id=?1 AND conversation_id=?2 AND sender_id=?3 AND "
                                    "client_msg_id=?4")
                                       .c_str());
                q.Bind(tenant, conv, sender, id);
                if (q.Step()) {
                    out = ReadMessage(q);
                }
            } catch (const SqliteError& e) {
                spdlog::error("sqlite: read failed: {}", e.what());
                return (*shared_done)(StorageUnavailable());
            }
            (*shared_done)(std::move(out));
        },
        [shared_done] { (*shared_done)(StoreStopped()); });
}

void SqliteStore::LoadConversation(std::string tenant_id, std::string conversation_id,
                                   Callback<std::optional<ConversationInfo>> done) {
    auto shared_done = std::make_shared<Callback<std::optional<ConversationInfo>>>(std::move(done));
    SubmitRead(
        [tenant = std::move(tenant_id), conv = std::move(conversation_id), shared_done](Reader& r) {
            std::optional<ConversationInfo> info;
            try {
                r.conversation.Bind(tenant, conv);
                if (r.conversation.Step()) {
                    info.emplace();
                    info->summary.conversation_id = conv;
                    info->summary.type = static_cast<ConversationType>(r.conversation.Int(0));
                    info->summary.last_seq = static_cast<uint64_t>(r.conversation.Int(1));
                    info->name = r.conversation.Text(2);
                    info->dissolved = r.conversation.Int(3) != 0;
                }
                r.conversation.Reset();
                if (info) {
                    auto& q = r.members.Bind(tenant, conv);
                    while (q.Step()) {
                        info->members.push_back(MemberInfo{q.Text(0), static_cast<uint64_t>(q.Int(1)),
                                                           static_cast<MemberRole>(q.Int(2)), q.Int(3)});
                    }
                    q.Reset();
                }
            } catch (const SqliteError& e) {
                spdlog::error("sqlite: read failed: {}", e.what());
                return (*shared_done)(StorageUnavailable());
            }
            (*shared_done)(std::move(info));
        },
        [shared_done] { (*shared_done)(StoreStopped()); });
}

void SqliteStore::ListUserConversations(std::string tenant_id, std::string user_id, std::string device_id,
                                        Callback<std::vector<UserConversation>> done) {
    auto shared_done = std::make_shared<Callback<std::vector<UserConversation>>>(std::move(done));
    SubmitRead(
        [tenant = std::move(tenant_id), user = std::move(user_id), device = std::move(device_id),
         shared_done](Reader& r) {
            std::vector<UserConversation> out;
            try {
                auto& q = r.user_conversations.Bind(tenant, user, device);
                while (q.Step()) {
                    UserConversation c;
                    c.summary.conversation_id = q.Text(0);
                    c.summary.type = static_cast<ConversationType>(q.Int(1));
                    c.summary.last_seq = static_cast<uint64_t>(q.Int(2));
                    c.joined_seq = static_cast<uint64_t>(q.Int(3));
                    if (!q.IsNull(4)) {
                        c.device_acked_seq = static_cast<uint64_t>(q.Int(4));
                    }
                    out.push_back(std::move(c));
                }
                q.Reset();
            } catch (const SqliteError& e) {
                spdlog::error("sqlite: read failed: {}", e.what());
                return (*shared_done)(StorageUnavailable());
            }
            (*shared_done)(std::move(out));
        },
        [shared_done] { (*shared_done)(StoreStopped()); });
}

// ------------------------------------------------------------------------------- per-user state

void SqliteStore::SaveReadCursor(std::string tenant_id, std::string user_id, std::string conversation_id,
                                 uint64_t seq, Callback<uint64_t> done) {
    auto fn = [tenant = std::move(tenant_id), user = std::move(user_id), conv = std::move(conversation_id),
               seq](Writer& w) -> Result<uint64_t> {
        auto last = w.LastSeq(Key(tenant, conv), tenant, conv);
        if (!last) {
            return MakeError(Errc::kNotFound, "unknown_conversation", "conversation '" + conv + "' does not exist");
        }
        Stmt q = w.Prepare(
            "UPDATE members SET read_seq = max(read_seq, joined_seq, ?4) WHERE tenant_id=?1 AND conversation_id=?2 "
            "AND user_id=?3 RETURNING read_seq");
        q.Bind(tenant, conv, user, std::min(seq, *last));
        if (!q.Step()) {
            return Precondition("not_member", "you are not a member of '" + conv + "'");
        }
        const auto cursor = static_cast<uint64_t>(q.Int(0));
        q.Run();
        return cursor;
    };
    Submit(std::make_unique<FnJob<uint64_t>>(std::move(fn), std::move(done)));
}

void SqliteStore::SaveSettings(std::string tenant_id, std::string user_id, std::string conversation_id,
                               std::optional<bool> pinned, std::optional<bool> muted, Callback<UserSettings> done) {
    auto fn = [tenant = std::move(tenant_id), user = std::move(user_id), conv = std::move(conversation_id), pinned,
               muted](Writer& w) -> Result<UserSettings> {
        Stmt q = w.Prepare(
            "UPDATE members SET pinned = CASE WHEN ?4 < 0 THEN pinned ELSE ?4 END, "
            "muted = CASE WHEN ?5 < 0 THEN muted ELSE ?5 END "
            "WHERE tenant_id=?1 AND conversation_id=?2 AND user_id=?3 RETURNING pinned, muted");
        q.Bind(tenant, conv, user, pinned ? int(*pinned) : -1, muted ? int(*muted) : -1);
        if (!q.Step()) {
            return Precondition("not_member", "you are not a member of '" + conv + "'");
        }
        UserSettings out{q.Int(0) != 0, q.Int(1) != 0};
        q.Run();
        return out;
    };
    Submit(std::make_unique<FnJob<UserSettings>>(std::move(fn), std::move(done)));
}

void SqliteStore::HideMessages(std::string tenant_id, std::string user_id, std::string conversation_id,
                               std::vector<uint64_t> seqs, StatusCallback done) {
    auto fn = [tenant = std::move(tenant_id), user = std::move(user_id), conv = std::move(conversation_id),
               seqs = std::move(seqs)](Writer& w) -> Result<bool> {
        auto last = w.LastSeq(Key(tenant, conv), tenant, conv);
        if (!last) {
            return MakeError(Errc::kNotFound, "unknown_conversation", "conversation '" + conv + "' does not exist");
        }
        Stmt q = w.Prepare(
            "INSERT INTO hidden_messages (tenant_id, user_id, conversation_id, seq) VALUES (?1, ?2, ?3, ?4) "
            "ON CONFLICT DO NOTHING");
        for (uint64_t s : seqs) {
            if (s >= 1 && s <= *last) {
                q.Bind(tenant, user, conv, s).Run();
            }
        }
        return true;
    };
    Submit(std::make_unique<FnJob<bool>>(std::move(fn), [done = std::move(done)](Result<bool> r) {
        done(r ? Status{} : Status{r.error()});
    }));
}

void SqliteStore::ListConversationPage(std::string tenant_id, std::string user_id, std::string page_token,
                                       uint32_t limit, Callback<ConversationListPage> done) {
    store::ListCursor cursor;
    const bool has_cursor = !page_token.empty();
    if (has_cursor && !store::DecodeListCursor(page_token, cursor)) {
        return done(MakeError(Errc::kInvalidArgument, "bad_page_token",
                              "page_token is not one a conversation list returned"));
    }
    auto shared_done = std::make_shared<Callback<ConversationListPage>>(std::move(done));
    SubmitRead(
        [tenant = std::move(tenant_id), user = std::move(user_id), cursor, has_cursor, limit,
         shared_done](Reader& r) {
            ConversationListPage page;
            try {
                Stmt q = r.Prepare(
                    "SELECT c.conversation_id, c.type, c.last_seq, c.name, c.dissolved, c.last_msg_time_ms, m.role, "
                    "m.pinned, m.muted, max(m.read_seq, m.joined_seq) FROM members m JOIN conversations c "
                    "ON c.tenant_id=m.tenant_id AND c.conversation_id=m.conversation_id "
                    "WHERE m.tenant_id=?1 AND m.user_id=?2 AND (?3 = 0 OR m.pinned < ?4 OR (m.pinned = ?4 AND "
                    "(c.last_msg_time_ms < ?5 OR (c.last_msg_time_ms = ?5 AND c.conversation_id > ?6)))) "
                    "ORDER BY m.pinned DESC, c.last_msg_time_ms DESC, c.conversation_id LIMIT ?7");
                q.Bind(tenant, user, has_cursor, cursor.pinned, cursor.activity_ms, cursor.conversation_id,
                       static_cast<int64_t>(limit) + 1);
                while (q.Step()) {
                    if (page.entries.size() == limit) {
                        const auto& e = page.entries.back();
                        page.next_page_token = store::EncodeListCursor(
                            {e.settings.pinned, e.last_activity_ms, e.summary.conversation_id});
                        break;
                    }
                    ConversationListEntry e;
                    e.summary.conversation_id = q.Text(0);
                    e.summary.type = static_cast<ConversationType>(q.Int(1));
                    e.summary.last_seq = static_cast<uint64_t>(q.Int(2));
                    e.name = q.Text(3);
                    e.dissolved = q.Int(4) != 0;
                    e.last_activity_ms = q.Int(5);
                    e.role = static_cast<MemberRole>(q.Int(6));
                    e.settings = UserSettings{q.Int(7) != 0, q.Int(8) != 0};
                    e.read_seq = static_cast<uint64_t>(q.Int(9));
                    page.entries.push_back(std::move(e));
                }
                q.Reset();
                Stmt unread = r.Prepare(
                    "SELECT count(*) FROM messages x WHERE x.tenant_id=?1 AND x.conversation_id=?2 AND x.seq > ?3 "
                    "AND x.sender_id <> ?4 AND x.kind IN (1, 2) AND x.flags = 0 AND NOT EXISTS (SELECT 1 FROM "
                    "hidden_messages h WHERE h.tenant_id=?1 AND h.user_id=?4 AND h.conversation_id=?2 AND h.seq=x.seq)");
                Stmt mentions = r.Prepare(
                    "SELECT count(DISTINCT x.seq) FROM message_mentions x WHERE x.tenant_id=?1 AND x.conversation_id=?2 "
                    "AND x.user_id IN (?4, '*') AND x.seq > ?3 AND x.sender_id <> ?4 AND NOT EXISTS (SELECT 1 FROM "
                    "hidden_messages h WHERE h.tenant_id=?1 AND h.user_id=?4 AND h.conversation_id=?2 AND h.seq=x.seq)");
                Stmt last = r.Prepare((std::string("SELECT ") + kMessageColumns +
                                       " FROM messages WHERE tenant_id=?1 AND conversation_id=?2 AND kind IN (1, 2) "
                                       "ORDER BY seq DESC LIMIT 1")
                                          .c_str());
                Stmt peer = r.Prepare(
                    "SELECT max(read_seq, joined_seq) FROM members WHERE tenant_id=?1 AND conversation_id=?2 AND "
                    "user_id <> ?3 LIMIT 1");
                Stmt count = r.Prepare("SELECT count(*) FROM members WHERE tenant_id=?1 AND conversation_id=?2");
                for (auto& e : page.entries) {
                    const std::string& conv = e.summary.conversation_id;
                    auto& u = unread.Bind(tenant, conv, e.read_seq, user);
                    e.unread = u.Step() ? static_cast<uint64_t>(u.Int(0)) : 0;
                    u.Reset();
                    auto& mq = mentions.Bind(tenant, conv, e.read_seq, user);
                    e.unread_mentions = mq.Step() ? static_cast<uint64_t>(mq.Int(0)) : 0;
                    mq.Reset();
                    auto& l = last.Bind(tenant, conv);
                    if (l.Step()) {
                        e.last_message = ReadMessage(l);
                    }
                    l.Reset();
                    if (e.last_message) {
                        std::vector<MessageRecord> one{std::move(*e.last_message)};
                        r.FillState(tenant, conv, user, one);
                        e.last_message = std::move(one[0]);
                    }
                    if (e.summary.type == ConversationType::kDirect) {
                        auto& p = peer.Bind(tenant, conv, user);
                        e.peer_read_seq = p.Step() ? static_cast<uint64_t>(p.Int(0)) : 0;
                        p.Reset();
                    }
                    auto& n = count.Bind(tenant, conv);
                    e.member_count = n.Step() ? static_cast<uint32_t>(n.Int(0)) : 0;
                    n.Reset();
                }
            } catch (const SqliteError& e) {
                spdlog::error("sqlite: read failed: {}", e.what());
                return (*shared_done)(StorageUnavailable());
            }
            (*shared_done)(std::move(page));
        },
        [shared_done] { (*shared_done)(StoreStopped()); });
}

void SqliteStore::LoadMessage(std::string tenant_id, std::string conversation_id, uint64_t seq, std::string reader_id,
                              Callback<std::optional<MessageDetail>> done) {
    auto shared_done = std::make_shared<Callback<std::optional<MessageDetail>>>(std::move(done));
    SubmitRead(
        [tenant = std::move(tenant_id), conv = std::move(conversation_id), seq, reader = std::move(reader_id),
         shared_done](Reader& r) {
            std::optional<MessageDetail> out;
            try {
                Stmt q = r.Prepare((std::string("SELECT ") + kMessageColumns +
                                    " FROM messages WHERE tenant_id=?1 AND conversation_id=?2 AND seq=?3")
                                       .c_str());
                q.Bind(tenant, conv, seq);
                if (q.Step()) {
                    out.emplace();
                    out->message = ReadMessage(q);
                }
                q.Reset();
                if (out) {
                    std::vector<MessageRecord> one{out->message};
                    r.FillState(tenant, conv, reader, one);
                    out->message = std::move(one[0]);
                    Stmt e = r.Prepare(
                        "SELECT version, text, time_ms FROM message_edits WHERE tenant_id=?1 AND conversation_id=?2 "
                        "AND seq=?3 ORDER BY version");
                    e.Bind(tenant, conv, seq);
                    while (e.Step()) {
                        out->edits.push_back(MessageEdit{static_cast<uint32_t>(e.Int(0)), e.Text(1), e.Int(2)});
                    }
                    e.Reset();
                    Stmt rb = r.Prepare(
                        "SELECT user_id FROM members WHERE tenant_id=?1 AND conversation_id=?2 AND read_seq >= ?3 "
                        "AND joined_seq < ?3 AND user_id <> ?4 ORDER BY user_id");
                    rb.Bind(tenant, conv, seq, out->message.sender_id);
                    while (rb.Step()) {
                        out->read_by.push_back(rb.Text(0));
                    }
                    rb.Reset();
                    Stmt n = r.Prepare("SELECT count(*) FROM members WHERE tenant_id=?1 AND conversation_id=?2");
                    n.Bind(tenant, conv);
                    out->member_count = n.Step() ? static_cast<uint32_t>(n.Int(0)) : 0;
                    n.Reset();
                }
            } catch (const SqliteError& e) {
                spdlog::error("sqlite: read failed: {}", e.what());
                return (*shared_done)(StorageUnavailable());
            }
            (*shared_done)(std::move(out));
        },
        [shared_done] { (*shared_done)(StoreStopped()); });
}

// ------------------------------------------------------------------------------------------ hooks

void SqliteStore::LoadHooks(Callback<std::vector<StoredHook>> done) {
    auto shared_done = std::make_shared<Callback<std::vector<StoredHook>>>(std::move(done));
    SubmitRead(
        [shared_done](Reader& r) {
            std::vector<StoredHook> out;
            try {
                Stmt q = r.Prepare("SELECT tenant_id, name, spec_json FROM hooks ORDER BY tenant_id, name");
                while (q.Step()) {
                    out.push_back(StoredHook{q.Text(0), q.Text(1), q.Text(2)});
                }
            } catch (const SqliteError& e) {
                spdlog::error("sqlite: read failed: {}", e.what());
                return (*shared_done)(StorageUnavailable());
            }
            (*shared_done)(std::move(out));
        },
        [shared_done] { (*shared_done)(StoreStopped()); });
}

void SqliteStore::SaveHook(StoredHook hook, StatusCallback done) {
    auto fn = [hook = std::move(hook)](Writer& w) -> Result<bool> {
        w.Prepare("INSERT INTO hooks (tenant_id, name, spec_json, updated_ms) VALUES (?1, ?2, ?3, ?4) "
                  "ON CONFLICT DO UPDATE SET spec_json = excluded.spec_json, updated_ms = excluded.updated_ms")
            .Bind(hook.tenant_id, hook.name, hook.spec_json, NowMs())
            .Run();
        return true;
    };
    Submit(std::make_unique<FnJob<bool>>(std::move(fn), [done = std::move(done)](Result<bool> r) {
        done(r ? Status{} : Status{r.error()});
    }));
}

void SqliteStore::DeleteHook(std::string tenant_id, std::string name, StatusCallback done) {
    auto fn = [tenant = std::move(tenant_id), name = std::move(name)](Writer& w) -> Result<bool> {
        w.Prepare("DELETE FROM hooks WHERE tenant_id=?1 AND name=?2").Bind(tenant, name).Run();
        if (sqlite3_changes(w.db) == 0) {
            return MakeError(Errc::kNotFound, "unknown_hook", "name: no hook '" + name + "'");
        }
        return true;
    };
    Submit(std::make_unique<FnJob<bool>>(std::move(fn), [done = std::move(done)](Result<bool> r) {
        done(r ? Status{} : Status{r.error()});
    }));
}

}  // namespace flare
