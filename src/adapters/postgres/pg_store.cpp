#include "adapters/postgres/pg_store.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <functional>
#include <optional>

#include "adapters/common/event_codec.hpp"
#include "adapters/postgres/pg_conn.hpp"
#include "adapters/postgres/pg_migrations.hpp"

namespace flare {
namespace {

Error Unavailable(const std::string& why) {
    return MakeError(Errc::kUnavailable, "storage_unavailable", "storage is unavailable: " + why);
}
Error Stopped() { return MakeError(Errc::kUnavailable, "storage_unavailable", "storage is shutting down"); }

std::string Num(uint64_t v) { return std::to_string(std::min<uint64_t>(v, INT64_MAX)); }
std::string Num(int64_t v) { return std::to_string(v); }
std::string Num(int v) { return std::to_string(v); }

int64_t NowMs() {
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

constexpr const char* kMessageColumns =
    "tenant_id, conversation_id, seq, server_msg_id, client_msg_id, sender_id, sender_device_id, server_time_ms, "
    "conversation_type, kind, text, flags, edit_version, edited_ms, mentions, mention_all, event, target_seq";

bool Bool(const pg::Rows& r, int i, int col) { return r.Text(i, col) == "t"; }
std::string Flag(bool b) { return b ? "true" : "false"; }

Error Precondition(std::string reason, std::string message) {
    return MakeError(Errc::kFailedPrecondition, std::move(reason), std::move(message));
}

MessageRecord ReadMessage(const pg::Rows& r, int i) {
    MessageRecord m;
    m.tenant_id = r.Text(i, 0);
    m.conversation_id = r.Text(i, 1);
    m.seq = static_cast<uint64_t>(r.Int(i, 2));
    m.server_msg_id = r.Text(i, 3);
    m.client_msg_id = r.Text(i, 4);
    m.sender_id = r.Text(i, 5);
    m.sender_device_id = r.Text(i, 6);
    m.server_time_ms = r.Int(i, 7);
    m.conversation_type = static_cast<ConversationType>(r.Int(i, 8));
    m.kind = static_cast<MessageKind>(r.Int(i, 9));
    m.text = r.Text(i, 10);
    const int64_t flags = r.Int(i, 11);
    m.recalled = (flags & store::kFlagRecalled) != 0;
    m.deleted = (flags & store::kFlagDeleted) != 0;
    m.edit_version = static_cast<uint32_t>(r.Int(i, 12));
    m.edited_ms = r.Int(i, 13);
    m.mentions = store::SplitIds(r.Text(i, 14));
    m.mention_all = Bool(r, i, 15);
    m.event = store::DecodeEvent(r.Text(i, 16));
    if (m.kind == MessageKind::kEvent && m.event.type == EventType::kEdited) {
        m.event.text = std::move(m.text);  // an edit's new text is kept in the text column (recall clears it)
        m.text.clear();
    }
    return m;
}

// The page's reactions and, for `reader`, what it deleted for itself.
void FillState(pg::Conn& c, const std::string& tenant, const std::string& conv, const std::string& reader,
               std::vector<MessageRecord>& page) {
    if (page.empty()) {
        return;
    }
    const std::string lo = Num(page.front().seq), hi = Num(page.back().seq);
    auto find = [&](uint64_t seq) -> MessageRecord* {
        auto it = std::lower_bound(page.begin(), page.end(), seq,
                                   [](const MessageRecord& m, uint64_t s) { return m.seq < s; });
        return it != page.end() && it->seq == seq ? &*it : nullptr;
    };
    auto r = c.Exec(
        "SELECT seq, emoji, user_id FROM message_reactions WHERE tenant_id = $1 AND conversation_id = $2 AND "
        "seq BETWEEN $3::bigint AND $4::bigint ORDER BY seq, emoji, user_id",
        {tenant, conv, lo, hi});
    for (int i = 0; i < r.size(); ++i) {
        if (MessageRecord* m = find(static_cast<uint64_t>(r.Int(i, 0)))) {
            std::string emoji = r.Text(i, 1);
            if (m->reactions.empty() || m->reactions.back().emoji != emoji) {
                m->reactions.push_back(Reaction{std::move(emoji), {}});
            }
            m->reactions.back().user_ids.push_back(r.Text(i, 2));
        }
    }
    if (reader.empty()) {
        return;
    }
    auto h = c.Exec(
        "SELECT seq FROM hidden_messages WHERE tenant_id = $1 AND user_id = $2 AND conversation_id = $3 AND "
        "seq BETWEEN $4::bigint AND $5::bigint",
        {tenant, reader, conv, lo, hi});
    for (int i = 0; i < h.size(); ++i) {
        if (MessageRecord* m = find(static_cast<uint64_t>(h.Int(i, 0)))) {
            m->deleted_for_me = true;
            m->text.clear();
            m->reactions.clear();
            m->mentions.clear();
            m->mention_all = false;
        }
    }
}

// Client text PostgreSQL cannot hold (NUL bytes): refused as bad input, not a storage failure.
bool IsDataError(const pg::PgError& e) { return e.sqlstate.starts_with("22"); }
bool IsRetryable(const pg::PgError& e) { return e.sqlstate == "40P01" || e.sqlstate == "40001"; }

}  // namespace

// One unit of work: runs inside a transaction (writers) or on its own (readers), then completes once.
class PgStore::Job {
public:
    virtual ~Job() = default;
    // Throws pg::PgError on a database failure.
    virtual void Run(pg::Conn& c) = 0;
    // After the transaction committed (`status` ok) or failed; runs exactly once.
    virtual void Complete(const Status& status) = 0;
    std::string key;  // tenant + conversation: the writer shard's ordering key
};

namespace {

template <typename T>
class FnJob final : public PgStore::Job {
public:
    FnJob(std::function<Result<T>(pg::Conn&)> fn, Callback<T> done) : fn_(std::move(fn)), done_(std::move(done)) {}
    void Run(pg::Conn& c) override { result_.emplace(fn_(c)); }
    void Complete(const Status& status) override {
        if (!done_) {
            return;
        }
        auto done = std::move(done_);
        done_ = nullptr;
        if (!status.ok()) {
            done(status.error());
        } else if (result_) {
            done(std::move(*result_));
        } else {
            done(Stopped());
        }
    }
    void Reset() { result_.reset(); }

private:
    std::function<Result<T>(pg::Conn&)> fn_;
    Callback<T> done_;
    std::optional<Result<T>> result_;
};

template <typename T>
std::unique_ptr<PgStore::Job> MakeJob(std::function<Result<T>(pg::Conn&)> fn, Callback<T> done) {
    return std::make_unique<FnJob<T>>(std::move(fn), std::move(done));
}

std::string ShardKey(const std::string& tenant, const std::string& conv) { return tenant + '\x1f' + conv; }

}  // namespace

PgStore::PgStore(PgOptions options) : options_(std::move(options)) {
    options_.writer_shards = std::max<size_t>(options_.writer_shards, 1);
    options_.reader_threads = std::max<size_t>(options_.reader_threads, 1);
    options_.max_batch = std::max<size_t>(options_.max_batch, 1);
    auto schema = PgCheckSchema(options_.url);
    if (!schema.ok()) {
        throw std::runtime_error(schema.error().message);
    }
    if (!schema->missing.empty()) {
        throw std::runtime_error("the database at " + pg::RedactUrl(options_.url) + " lacks migration " +
                                 schema->missing.front() + ": run `flare migrate --database-url URL` (or " +
                                 "scripts/migrate_db.sh) first");
    }
    if (!schema->unknown.empty()) {
        spdlog::warn("postgres: the database has migration {} that this binary does not know (it is newer)",
                     schema->unknown.front());
    }
    for (size_t i = 0; i < options_.writer_shards; ++i) {
        shards_.push_back(std::make_unique<Shard>());
    }
}

PgStore::~PgStore() { Stop(); }

void PgStore::Start() {
    std::lock_guard lock(mu_);
    if (accepting_ || stopping_) {
        return;
    }
    accepting_ = true;
    for (auto& s : shards_) {
        s->thread = std::thread([this, shard = s.get()] { WriterLoop(*shard); });
    }
    for (size_t i = 0; i < options_.reader_threads; ++i) {
        readers_.emplace_back([this] { ReaderLoop(); });
    }
}

void PgStore::Stop() {
    {
        std::lock_guard lock(mu_);
        if (stopping_) {
            return;
        }
        accepting_ = false;
        stopping_ = true;
    }
    for (auto& s : shards_) {
        s->cv.notify_all();
    }
    read_cv_.notify_all();
    for (auto& s : shards_) {
        if (s->thread.joinable()) {
            s->thread.join();
        }
    }
    for (auto& t : readers_) {
        if (t.joinable()) {
            t.join();
        }
    }
}

void PgStore::Submit(const std::string& tenant, const std::string& conversation, std::unique_ptr<Job> job) {
    job->key = ShardKey(tenant, conversation);
    Shard& shard = *shards_[std::hash<std::string>{}(job->key) % shards_.size()];
    {
        std::lock_guard lock(mu_);
        if (accepting_) {
            shard.queue.push_back(std::move(job));
            shard.cv.notify_one();
            return;
        }
    }
    job->Complete(Stopped());
}

void PgStore::SubmitRead(std::unique_ptr<Job> job) {
    {
        std::lock_guard lock(mu_);
        if (accepting_) {
            read_queue_.push_back(std::move(job));
            read_cv_.notify_one();
            return;
        }
    }
    job->Complete(Stopped());
}

void PgStore::WriterLoop(Shard& shard) {
    std::optional<pg::Conn> conn;
    std::vector<std::unique_ptr<Job>> batch;
    auto backoff = std::chrono::milliseconds(50);
    for (;;) {
        batch.clear();
        {
            std::unique_lock lock(mu_);
            shard.cv.wait(lock, [&] { return stopping_ || !shard.queue.empty(); });
            if (shard.queue.empty()) {
                return;  // stopping and drained
            }
            while (!shard.queue.empty() && batch.size() < options_.max_batch) {
                batch.push_back(std::move(shard.queue.front()));
                shard.queue.pop_front();
            }
        }
        if (!conn || !conn->ok()) {
            conn.reset();
            try {
                conn.emplace(options_.url);
                conn->Exec("SET statement_timeout = " + std::to_string(options_.statement_timeout_ms));
                if (!options_.synchronous_commit) {
                    conn->Exec("SET synchronous_commit TO off");
                }
                backoff = std::chrono::milliseconds(50);
            } catch (const pg::PgError& e) {
                spdlog::warn("postgres: {}", e.what());
                for (auto& job : batch) {
                    job->Complete(Unavailable(e.what()));
                }
                std::unique_lock lock(mu_);
                shard.cv.wait_for(lock, backoff, [&] { return stopping_; });
                backoff = std::min(backoff * 2, std::chrono::milliseconds(2000));
                continue;
            }
        }
        // Rows are locked in one order by every process (conversation key; stable, so a conversation's
        // jobs keep their order): two groups cannot deadlock on each other.
        std::stable_sort(batch.begin(), batch.end(), [](const auto& a, const auto& b) { return a->key < b->key; });
        auto run_group = [&](std::span<std::unique_ptr<Job>> jobs) {
            conn->Exec("BEGIN");
            for (auto& job : jobs) {
                job->Run(*conn);
            }
            conn->Exec("COMMIT");
        };
        auto rollback = [&] {
            if (conn && conn->ok()) {
                try {
                    conn->Exec("ROLLBACK");
                } catch (const pg::PgError&) {
                }
            }
        };
        try {
            try {
                run_group(batch);
            } catch (const pg::PgError& e) {
                if (!IsRetryable(e)) {
                    throw;
                }
                rollback();
                run_group(batch);  // a deadlock or serialization failure with another process: once more
            }
            for (auto& job : batch) {
                job->Complete(Status{});
            }
            continue;
        } catch (const pg::PgError& e) {
            rollback();
            if (e.connection_lost || batch.size() == 1) {
                spdlog::warn("postgres: group of {} failed: {}", batch.size(), e.what());
                const Error err = IsDataError(e) ? MakeError(Errc::kInvalidArgument, "bad_content",
                                                             "the message cannot be stored: " + std::string(e.what()))
                                                 : Unavailable(e.what());
                for (auto& job : batch) {
                    job->Complete(err);
                }
                if (e.connection_lost) {
                    conn.reset();
                }
                continue;
            }
        }
        // One job broke the group (e.g. text PostgreSQL refuses): run each alone so the others commit.
        for (auto& job : batch) {
            try {
                run_group(std::span<std::unique_ptr<Job>>(&job, 1));
                job->Complete(Status{});
            } catch (const pg::PgError& e) {
                rollback();
                job->Complete(IsDataError(e) ? MakeError(Errc::kInvalidArgument, "bad_content",
                                                         "the message cannot be stored: " + std::string(e.what()))
                                             : Unavailable(e.what()));
                if (e.connection_lost) {
                    conn.reset();
                    break;
                }
            }
        }
        for (auto& job : batch) {
            job->Complete(Unavailable("connection lost"));  // no-op for jobs already completed
        }
    }
}

void PgStore::ReaderLoop() {
    std::optional<pg::Conn> conn;
    for (;;) {
        std::unique_ptr<Job> job;
        {
            std::unique_lock lock(mu_);
            read_cv_.wait(lock, [&] { return stopping_ || !read_queue_.empty(); });
            if (read_queue_.empty()) {
                return;
            }
            job = std::move(read_queue_.front());
            read_queue_.pop_front();
        }
        try {
            if (!conn || !conn->ok()) {
                conn.reset();
                conn.emplace(options_.url);
                conn->Exec("SET statement_timeout = " + std::to_string(options_.statement_timeout_ms));
            }
            job->Run(*conn);
            job->Complete(Status{});
        } catch (const pg::PgError& e) {
            spdlog::warn("postgres: read failed: {}", e.what());
            if (e.connection_lost) {
                conn.reset();
            }
            job->Complete(Unavailable(e.what()));
        }
    }
}

// -------------------------------------------------------------------------------------------- writes

namespace {

std::optional<MessageRecord> FindByClientId(pg::Conn& c, const MessageRecord& m) {
    auto r = c.Exec(std::string("SELECT ") + kMessageColumns +
                        " FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND sender_id = $3 AND "
                        "client_msg_id = $4",
                    {m.tenant_id, m.conversation_id, m.sender_id, m.client_msg_id});
    if (r.size() == 0) {
        return std::nullopt;
    }
    return ReadMessage(r, 0);
}

// The preconditions of a message operation, checked before anything is written.
Status CheckTarget(pg::Conn& c, const MessageRecord& m) {
    const MessageEvent& ev = m.event;
    auto r = c.Exec("SELECT kind, flags, edit_version FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND "
                    "seq = $3::bigint FOR UPDATE",
                    {m.tenant_id, m.conversation_id, Num(ev.target_seq)});
    std::optional<store::TargetRow> row;
    if (r.size() > 0) {
        row = store::TargetRow{static_cast<MessageKind>(r.Int(0, 0)), r.Int(0, 1), r.Int(0, 2)};
    }
    return store::CheckTarget(m, row, [&] {
        auto n = c.Exec("SELECT COUNT(DISTINCT emoji), COUNT(*) FILTER (WHERE emoji = $4), "
                        "COUNT(*) FILTER (WHERE user_id = $5), COUNT(*) FILTER (WHERE emoji = $4 AND user_id = $5) "
                        "FROM message_reactions WHERE tenant_id = $1 AND conversation_id = $2 AND seq = $3::bigint",
                        {m.tenant_id, m.conversation_id, Num(ev.target_seq), ev.text, m.sender_id});
        return store::ReactionCounts{static_cast<uint64_t>(n.Int(0, 0)), static_cast<uint64_t>(n.Int(0, 1)),
                                     static_cast<uint64_t>(n.Int(0, 2)), n.Int(0, 3) > 0};
    });
}

// Applies an event's effect, in the transaction that stores it (seq known).
void ApplyEvent(pg::Conn& c, const MessageRecord& m) {
    const MessageEvent& ev = m.event;
    const std::string& t = m.tenant_id;
    const std::string& cv = m.conversation_id;
    const std::string target = Num(ev.target_seq);
    const std::string users = pg::TextArray(ev.user_ids);
    switch (ev.type) {
        case EventType::kGroupCreated:
            c.Exec("UPDATE conversations SET name = $3 WHERE tenant_id = $1 AND conversation_id = $2", {t, cv, ev.text});
            c.Exec("UPDATE members SET role = 2 WHERE tenant_id = $1 AND conversation_id = $2 AND user_id = $3",
                   {t, cv, m.sender_id});
            break;
        case EventType::kGroupRenamed:
            c.Exec("UPDATE conversations SET name = $3 WHERE tenant_id = $1 AND conversation_id = $2", {t, cv, ev.text});
            break;
        case EventType::kMembersAdded:
            // They see the conversation from this event on.
            c.Exec("INSERT INTO members (tenant_id, conversation_id, user_id, joined_ms, joined_seq, read_seq) "
                   "SELECT $1, $2, u, $4::bigint, $5::bigint, $5::bigint FROM unnest($3::text[]) AS u "
                   "ON CONFLICT DO NOTHING",
                   {t, cv, users, Num(m.server_time_ms), Num(m.seq - 1)});
            break;
        case EventType::kMembersRemoved:
        case EventType::kMemberLeft:
            c.Exec("DELETE FROM members WHERE tenant_id = $1 AND conversation_id = $2 AND user_id = ANY($3::text[])",
                   {t, cv, users});
            break;
        case EventType::kRoleChanged:
            if (ev.role == MemberRole::kOwner) {
                c.Exec("UPDATE members SET role = 1 WHERE tenant_id = $1 AND conversation_id = $2 AND role = 2", {t, cv});
            }
            c.Exec("UPDATE members SET role = $4::smallint WHERE tenant_id = $1 AND conversation_id = $2 AND "
                   "user_id = ANY($3::text[])",
                   {t, cv, users, Num(static_cast<int>(ev.role))});
            break;
        case EventType::kMemberMuted:
            c.Exec("UPDATE members SET muted_until_ms = $4::bigint WHERE tenant_id = $1 AND conversation_id = $2 AND "
                   "user_id = ANY($3::text[])",
                   {t, cv, users, Num(ev.until_ms)});
            break;
        case EventType::kGroupDissolved:
            c.Exec("UPDATE conversations SET dissolved = true WHERE tenant_id = $1 AND conversation_id = $2", {t, cv});
            break;
        case EventType::kRecalled:
        case EventType::kDeletedForEveryone: {
            const int flag = ev.type == EventType::kRecalled ? store::kFlagRecalled : store::kFlagDeleted;
            c.Exec("UPDATE messages SET flags = flags | $4::smallint, text = '', mentions = '', mention_all = false, "
                   "edit_version = 0, edited_ms = 0 "
                   "WHERE tenant_id = $1 AND conversation_id = $2 AND seq = $3::bigint",
                   {t, cv, target, Num(flag)});
            // The edits' new texts go with the message.
            c.Exec("UPDATE messages SET text = '' WHERE tenant_id = $1 AND conversation_id = $2 AND kind = 3 AND "
                   "target_seq = $3::bigint",
                   {t, cv, target});
            for (const char* table : {"message_reactions", "message_edits", "message_mentions"}) {
                c.Exec(std::string("DELETE FROM ") + table +
                           " WHERE tenant_id = $1 AND conversation_id = $2 AND seq = $3::bigint",
                       {t, cv, target});
            }
            break;
        }
        case EventType::kEdited:
            c.Exec("INSERT INTO message_edits (tenant_id, conversation_id, seq, version, text, time_ms) "
                   "SELECT tenant_id, conversation_id, seq, edit_version, text, "
                   "CASE WHEN edit_version = 0 THEN server_time_ms ELSE edited_ms END FROM messages "
                   "WHERE tenant_id = $1 AND conversation_id = $2 AND seq = $3::bigint",
                   {t, cv, target});
            c.Exec("UPDATE messages SET text = $4, edit_version = edit_version + 1, edited_ms = $5::bigint "
                   "WHERE tenant_id = $1 AND conversation_id = $2 AND seq = $3::bigint",
                   {t, cv, target, ev.text, Num(m.server_time_ms)});
            break;
        case EventType::kReactionAdded:
            c.Exec("INSERT INTO message_reactions (tenant_id, conversation_id, seq, emoji, user_id, created_ms) "
                   "VALUES ($1, $2, $3::bigint, $4, $5, $6::bigint)",
                   {t, cv, target, ev.text, m.sender_id, Num(m.server_time_ms)});
            break;
        case EventType::kReactionRemoved:
            c.Exec("DELETE FROM message_reactions WHERE tenant_id = $1 AND conversation_id = $2 AND seq = $3::bigint "
                   "AND emoji = $4 AND user_id = $5",
                   {t, cv, target, ev.text, m.sender_id});
            break;
        default: break;
    }
}

// The original of a repeated client_msg_id, if it is the same kind of request.
Result<std::optional<AppendResult>> Duplicate(pg::Conn& c, const MessageRecord& m) {
    auto original = FindByClientId(c, m);
    if (!original) {
        return std::optional<AppendResult>();
    }
    if (auto same = store::CheckSameKind(*original, m); !same) {
        return same.error();
    }
    return std::optional<AppendResult>(AppendResult{std::move(*original), true});
}

// The sender's and the targets' membership, as it is now (the caller checked a cached view).
Status CheckMembers(pg::Conn& c, const AppendRequest& req) {
    const MessageRecord& m = req.message;
    return store::CheckMembers(req, [&](const std::string& user) -> std::optional<std::pair<MemberRole, int64_t>> {
        auto r = c.Exec("SELECT role, muted_until_ms FROM members WHERE tenant_id = $1 AND conversation_id = $2 AND "
                        "user_id = $3",
                        {m.tenant_id, m.conversation_id, user});
        if (r.size() == 0) {
            return std::nullopt;
        }
        return std::make_pair(static_cast<MemberRole>(r.Int(0, 0)), r.Int(0, 1));
    }, [&] {
        auto r = c.Exec("SELECT COUNT(*) FROM members WHERE tenant_id = $1 AND conversation_id = $2",
                        {m.tenant_id, m.conversation_id});
        return static_cast<uint64_t>(r.Int(0, 0));
    });
}

Result<AppendResult> AppendInTransaction(pg::Conn& c, const AppendRequest& req) {
    const MessageRecord& m = req.message;
    const bool event = m.kind == MessageKind::kEvent;
    if (event || req.check_sender) {
        // The conversation's row lock first (every writer takes it first), then the target's.
        auto conv = c.Exec("SELECT dissolved FROM conversations WHERE tenant_id = $1 AND conversation_id = $2 FOR UPDATE",
                           {m.tenant_id, m.conversation_id});
        const bool dissolved = conv.size() > 0 && Bool(conv, 0, 0);
        auto dup = Duplicate(c, m);
        if (!dup) {
            return dup.error();
        }
        if (conv.size() > 0 && m.event.type == EventType::kGroupCreated && event) {
            if (*dup && !dissolved) {
                return std::move(**dup);
            }
            return MakeError(Errc::kAlreadyExists, "conversation_exists",
                             "conversation '" + m.conversation_id + "' already exists");
        }
        if (*dup) {
            return std::move(**dup);
        }
        if (dissolved) {
            return Precondition("conversation_dissolved", "group '" + m.conversation_id + "' was dissolved");
        }
        if (conv.size() > 0) {
            if (auto s = CheckMembers(c, req); !s) {
                return s.error();
            }
        }
        if (event && IsMessageOperation(m.event.type)) {
            if (auto s = CheckTarget(c, m); !s) {
                return s.error();
            }
        }
    }
    const bool edit = event && m.event.type == EventType::kEdited;
    MessageEvent stored_event = m.event;
    if (edit) {
        stored_event.text.clear();
    }
    std::vector<pg::Param> params = {m.tenant_id,
                                     m.conversation_id,
                                     Num(static_cast<int>(m.conversation_type)),
                                     m.server_msg_id,
                                     m.client_msg_id,
                                     m.sender_id,
                                     m.sender_device_id,
                                     Num(m.server_time_ms),
                                     Num(static_cast<int>(m.kind)),
                                     edit ? m.event.text : m.text,
                                     pg::TextArray(req.create_with_members),
                                     store::JoinIds(m.mentions),
                                     Flag(m.mention_all),
                                     store::EncodeEvent(stored_event),
                                     Num(m.event.target_seq)};
    auto r = c.Exec(
        "SELECT status, seq, server_msg_id, sender_device_id, server_time_ms, kind, text FROM "
        "flare_append2($1, $2, $3::smallint, $4, $5, $6, $7, $8::bigint, $9::smallint, $10, $11::text[], $12, "
        "$13::boolean, $14, $15::bigint)",
        params);
    const auto status = r.Int(0, 0);
    if (status == 1) {
        return MakeError(Errc::kNotFound, "unknown_conversation",
                         "conversation '" + m.conversation_id + "' does not exist");
    }
    if (status == 3) {
        return Precondition("conversation_dissolved", "group '" + m.conversation_id + "' was dissolved");
    }
    if (status == 2) {
        auto dup = Duplicate(c, m);
        if (!dup) {
            return dup.error();
        }
        if (*dup) {
            return std::move(**dup);
        }
    }
    MessageRecord out = m;
    out.seq = static_cast<uint64_t>(r.Int(0, 1));
    if (event) {
        ApplyEvent(c, out);
    } else if (!m.mentions.empty() || m.mention_all) {
        std::vector<std::string> who = m.mentions;
        if (m.mention_all) {
            who.push_back("*");
        }
        c.Exec("INSERT INTO message_mentions (tenant_id, conversation_id, user_id, seq, sender_id) "
               "SELECT $1, $2, u, $4::bigint, $5 FROM unnest($3::text[]) AS u ON CONFLICT DO NOTHING",
               {m.tenant_id, m.conversation_id, pg::TextArray(who), Num(out.seq), m.sender_id});
    }
    return AppendResult{std::move(out), false};
}

}  // namespace

void PgStore::Append(AppendRequest request, Callback<AppendResult> done) {
    const std::string tenant = request.message.tenant_id;
    const std::string conv = request.message.conversation_id;
    for (const std::string* field : {&request.message.text, &request.message.client_msg_id,
                                     &request.message.sender_id, &request.message.sender_device_id,
                                     &request.message.event.text}) {
        if (field->find('\0') != std::string::npos) {
            return done(MakeError(Errc::kInvalidArgument, "bad_content", "text and ids must not contain NUL characters"));
        }
    }
    auto req = std::make_shared<AppendRequest>(std::move(request));
    auto fn = [req](pg::Conn& c) -> Result<AppendResult> { return AppendInTransaction(c, *req); };
    Submit(tenant, conv, MakeJob<AppendResult>(std::move(fn), std::move(done)));
}

void PgStore::JoinRoom(std::string tenant_id, std::string conversation_id, std::string user_id,
                       Callback<ConversationSummary> done) {
    const std::string tenant = tenant_id, conv = conversation_id;
    auto fn = [tenant = std::move(tenant_id), conv = std::move(conversation_id),
               user = std::move(user_id)](pg::Conn& c) -> Result<ConversationSummary> {
        const std::string now = Num(NowMs());
        c.Exec("INSERT INTO conversations (tenant_id, conversation_id, type, created_ms, last_seq) "
               "VALUES ($1, $2, $3::smallint, $4::bigint, 0) ON CONFLICT DO NOTHING",
               {tenant, conv, Num(static_cast<int>(ConversationType::kRoom)), now});
        auto r = c.Exec(
            "WITH c AS (SELECT type, last_seq FROM conversations WHERE tenant_id = $1 AND conversation_id = $2), "
            "ins AS (INSERT INTO members (tenant_id, conversation_id, user_id, joined_ms, joined_seq) "
            "        SELECT $1, $2, $3, $4::bigint, c.last_seq FROM c ON CONFLICT DO NOTHING) "
            "SELECT type, last_seq FROM c",
            {tenant, conv, user, now});
        return ConversationSummary{conv, static_cast<ConversationType>(r.Int(0, 0)),
                                   static_cast<uint64_t>(r.Int(0, 1))};
    };
    Submit(tenant, conv, MakeJob<ConversationSummary>(std::move(fn), std::move(done)));
}

void PgStore::LeaveRoom(std::string tenant_id, std::string conversation_id, std::string user_id,
                        StatusCallback done) {
    const std::string tenant = tenant_id, conv = conversation_id;
    auto fn = [tenant = std::move(tenant_id), conv = std::move(conversation_id),
               user = std::move(user_id)](pg::Conn& c) -> Result<bool> {
        auto r = c.Exec(
            "DELETE FROM members WHERE tenant_id = $1 AND conversation_id = $2 AND user_id = $3 RETURNING 1",
            {tenant, conv, user});
        if (r.size() == 0) {
            return MakeError(Errc::kFailedPrecondition, "not_member", "you are not a member of '" + conv + "'");
        }
        return true;
    };
    Submit(tenant, conv, MakeJob<bool>(std::move(fn), [done = std::move(done)](Result<bool> r) {
               done(r ? Status{} : Status{r.error()});
           }));
}

void PgStore::SaveDeviceCursor(std::string tenant_id, std::string user_id, std::string device_id,
                               std::string conversation_id, uint64_t seq, Callback<uint64_t> done) {
    const std::string tenant = tenant_id, conv = conversation_id;
    auto fn = [tenant = std::move(tenant_id), user = std::move(user_id), device = std::move(device_id),
               conv = std::move(conversation_id), seq](pg::Conn& c) -> Result<uint64_t> {
        auto r = c.Exec(
            "WITH c AS (SELECT last_seq FROM conversations WHERE tenant_id = $1 AND conversation_id = $4) "
            "INSERT INTO device_cursors (tenant_id, user_id, device_id, conversation_id, acked_seq) "
            "SELECT $1, $2, $3, $4, LEAST($5::bigint, c.last_seq) FROM c "
            "ON CONFLICT (tenant_id, user_id, device_id, conversation_id) "
            "DO UPDATE SET acked_seq = GREATEST(device_cursors.acked_seq, excluded.acked_seq) RETURNING acked_seq",
            {tenant, user, device, conv, Num(seq)});
        if (r.size() == 0) {
            return MakeError(Errc::kNotFound, "unknown_conversation", "conversation '" + conv + "' does not exist");
        }
        return static_cast<uint64_t>(r.Int(0, 0));
    };
    Submit(tenant, conv, MakeJob<uint64_t>(std::move(fn), std::move(done)));
}

// --------------------------------------------------------------------------------------------- reads

void PgStore::ReadAfter(std::string tenant_id, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                        std::string reader_id, Callback<MessagePage> done) {
    auto fn = [tenant = std::move(tenant_id), conv = std::move(conversation_id), after_seq, limit,
               reader = std::move(reader_id)](pg::Conn& c) -> Result<MessagePage> {
        MessagePage page;
        auto last = c.Exec("SELECT last_seq FROM conversations WHERE tenant_id = $1 AND conversation_id = $2",
                           {tenant, conv});
        if (last.size() > 0) {
            page.last_seq = static_cast<uint64_t>(last.Int(0, 0));
        }
        auto r = c.Exec(std::string("SELECT ") + kMessageColumns +
                            " FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND seq > $3::bigint "
                            "ORDER BY seq LIMIT $4::bigint",
                        {tenant, conv, Num(after_seq), Num(static_cast<int64_t>(limit) + 1)});
        for (int i = 0; i < r.size(); ++i) {
            if (page.messages.size() == limit) {
                page.has_more = true;
                break;
            }
            page.messages.push_back(ReadMessage(r, i));
        }
        FillState(c, tenant, conv, reader, page.messages);
        if (!page.messages.empty() && page.messages.back().seq > page.last_seq) {
            page.last_seq = page.messages.back().seq;
        }
        return page;
    };
    SubmitRead(MakeJob<MessagePage>(std::move(fn), std::move(done)));
}

void PgStore::FindAppended(std::string tenant_id, std::string conversation_id, std::string sender_id,
                           std::string client_msg_id, Callback<std::optional<MessageRecord>> done) {
    MessageRecord key;
    key.tenant_id = std::move(tenant_id);
    key.conversation_id = std::move(conversation_id);
    key.sender_id = std::move(sender_id);
    key.client_msg_id = std::move(client_msg_id);
    auto fn = [key = std::move(key)](pg::Conn& c) -> Result<std::optional<MessageRecord>> {
        return FindByClientId(c, key);
    };
    SubmitRead(MakeJob<std::optional<MessageRecord>>(std::move(fn), std::move(done)));
}

void PgStore::LoadConversation(std::string tenant_id, std::string conversation_id,
                               Callback<std::optional<ConversationInfo>> done) {
    auto fn = [tenant = std::move(tenant_id),
               conv = std::move(conversation_id)](pg::Conn& c) -> Result<std::optional<ConversationInfo>> {
        auto r = c.Exec(
            "SELECT type, last_seq, name, dissolved FROM conversations WHERE tenant_id = $1 AND conversation_id = $2",
            {tenant, conv});
        std::optional<ConversationInfo> info;
        if (r.size() == 0) {
            return info;
        }
        info.emplace();
        info->summary.conversation_id = conv;
        info->summary.type = static_cast<ConversationType>(r.Int(0, 0));
        info->summary.last_seq = static_cast<uint64_t>(r.Int(0, 1));
        info->name = r.Text(0, 2);
        info->dissolved = Bool(r, 0, 3);
        auto m = c.Exec(
            "SELECT user_id, joined_seq, role, muted_until_ms FROM members WHERE tenant_id = $1 AND conversation_id = $2",
            {tenant, conv});
        for (int i = 0; i < m.size(); ++i) {
            info->members.push_back(MemberInfo{m.Text(i, 0), static_cast<uint64_t>(m.Int(i, 1)),
                                               static_cast<MemberRole>(m.Int(i, 2)), m.Int(i, 3)});
        }
        return info;
    };
    SubmitRead(MakeJob<std::optional<ConversationInfo>>(std::move(fn), std::move(done)));
}

void PgStore::ListUserConversations(std::string tenant_id, std::string user_id, std::string device_id,
                                    Callback<std::vector<UserConversation>> done) {
    auto fn = [tenant = std::move(tenant_id), user = std::move(user_id),
               device = std::move(device_id)](pg::Conn& c) -> Result<std::vector<UserConversation>> {
        auto r = c.Exec(
            "SELECT c.conversation_id, c.type, c.last_seq, m.joined_seq, d.acked_seq "
            "FROM members m JOIN conversations c "
            "  ON c.tenant_id = m.tenant_id AND c.conversation_id = m.conversation_id "
            "LEFT JOIN device_cursors d ON d.tenant_id = m.tenant_id AND d.user_id = m.user_id "
            "  AND d.device_id = $3 AND d.conversation_id = m.conversation_id "
            "WHERE m.tenant_id = $1 AND m.user_id = $2 ORDER BY c.conversation_id",
            {tenant, user, device});
        std::vector<UserConversation> out;
        out.reserve(static_cast<size_t>(r.size()));
        for (int i = 0; i < r.size(); ++i) {
            UserConversation uc;
            uc.summary.conversation_id = r.Text(i, 0);
            uc.summary.type = static_cast<ConversationType>(r.Int(i, 1));
            uc.summary.last_seq = static_cast<uint64_t>(r.Int(i, 2));
            uc.joined_seq = static_cast<uint64_t>(r.Int(i, 3));
            if (!r.IsNull(i, 4)) {
                uc.device_acked_seq = static_cast<uint64_t>(r.Int(i, 4));
            }
            out.push_back(std::move(uc));
        }
        return out;
    };
    SubmitRead(MakeJob<std::vector<UserConversation>>(std::move(fn), std::move(done)));
}

// ------------------------------------------------------------------------------- per-user state

void PgStore::SaveReadCursor(std::string tenant_id, std::string user_id, std::string conversation_id, uint64_t seq,
                             Callback<uint64_t> done) {
    const std::string tenant = tenant_id, conv = conversation_id;
    auto fn = [tenant = std::move(tenant_id), user = std::move(user_id), conv = std::move(conversation_id),
               seq](pg::Conn& c) -> Result<uint64_t> {
        auto r = c.Exec(
            "UPDATE members m SET read_seq = GREATEST(m.read_seq, m.joined_seq, LEAST($4::bigint, c.last_seq)) "
            "FROM conversations c WHERE c.tenant_id = m.tenant_id AND c.conversation_id = m.conversation_id "
            "AND m.tenant_id = $1 AND m.conversation_id = $2 AND m.user_id = $3 RETURNING m.read_seq",
            {tenant, conv, user, Num(seq)});
        if (r.size() == 0) {
            return Precondition("not_member", "you are not a member of '" + conv + "'");
        }
        return static_cast<uint64_t>(r.Int(0, 0));
    };
    Submit(tenant, conv, MakeJob<uint64_t>(std::move(fn), std::move(done)));
}

void PgStore::SaveSettings(std::string tenant_id, std::string user_id, std::string conversation_id,
                           std::optional<bool> pinned, std::optional<bool> muted, Callback<UserSettings> done) {
    const std::string tenant = tenant_id, conv = conversation_id;
    auto fn = [tenant = std::move(tenant_id), user = std::move(user_id), conv = std::move(conversation_id), pinned,
               muted](pg::Conn& c) -> Result<UserSettings> {
        auto r = c.Exec(
            "UPDATE members SET pinned = COALESCE($4::boolean, pinned), muted = COALESCE($5::boolean, muted) "
            "WHERE tenant_id = $1 AND conversation_id = $2 AND user_id = $3 RETURNING pinned, muted",
            {tenant, conv, user, pinned ? pg::Param(Flag(*pinned)) : std::nullopt,
             muted ? pg::Param(Flag(*muted)) : std::nullopt});
        if (r.size() == 0) {
            return Precondition("not_member", "you are not a member of '" + conv + "'");
        }
        return UserSettings{Bool(r, 0, 0), Bool(r, 0, 1)};
    };
    Submit(tenant, conv, MakeJob<UserSettings>(std::move(fn), std::move(done)));
}

void PgStore::HideMessages(std::string tenant_id, std::string user_id, std::string conversation_id,
                           std::vector<uint64_t> seqs, StatusCallback done) {
    const std::string tenant = tenant_id, conv = conversation_id;
    std::string array = "{";
    for (size_t i = 0; i < seqs.size(); ++i) {
        array += (i ? "," : "") + Num(seqs[i]);
    }
    array += "}";
    auto fn = [tenant = std::move(tenant_id), user = std::move(user_id), conv = std::move(conversation_id),
               array](pg::Conn& c) -> Result<bool> {
        c.Exec("INSERT INTO hidden_messages (tenant_id, user_id, conversation_id, seq) "
               "SELECT $1, $2, $3, s FROM unnest($4::bigint[]) AS s, conversations c "
               "WHERE c.tenant_id = $1 AND c.conversation_id = $3 AND s BETWEEN 1 AND c.last_seq "
               "ON CONFLICT DO NOTHING",
               {tenant, user, conv, array});
        return true;
    };
    Submit(tenant, conv, MakeJob<bool>(std::move(fn), [done = std::move(done)](Result<bool> r) {
               done(r ? Status{} : Status{r.error()});
           }));
}

void PgStore::ListConversationPage(std::string tenant_id, std::string user_id, std::string page_token, uint32_t limit,
                                   Callback<ConversationListPage> done) {
    store::ListCursor cursor;
    const bool has_cursor = !page_token.empty();
    if (has_cursor && !store::DecodeListCursor(page_token, cursor)) {
        return done(MakeError(Errc::kInvalidArgument, "bad_page_token",
                              "page_token is not one a conversation list returned"));
    }
    auto fn = [tenant = std::move(tenant_id), user = std::move(user_id), cursor, has_cursor,
               limit](pg::Conn& c) -> Result<ConversationListPage> {
        ConversationListPage page;
        // One statement: the page of memberships, each with its counts and newest message.
        auto r = c.Exec(
            std::string(
                "WITH p AS (SELECT c.conversation_id, c.type, c.last_seq, c.name, c.dissolved, c.last_msg_time_ms, "
                "m.role, m.pinned, m.muted, GREATEST(m.read_seq, m.joined_seq) AS rs FROM members m JOIN conversations c "
                "ON c.tenant_id = m.tenant_id AND c.conversation_id = m.conversation_id "
                "WHERE m.tenant_id = $1 AND m.user_id = $2 AND (NOT $3::boolean OR (m.pinned::int < $4::int) OR "
                "(m.pinned::int = $4::int AND (c.last_msg_time_ms < $5::bigint OR (c.last_msg_time_ms = $5::bigint "
                "AND c.conversation_id > $6)))) "
                "ORDER BY m.pinned DESC, c.last_msg_time_ms DESC, c.conversation_id LIMIT $7::bigint) "
                "SELECT p.*, "
                "(SELECT count(*) FROM messages x WHERE x.tenant_id = $1 AND x.conversation_id = p.conversation_id "
                " AND x.seq > p.rs AND x.sender_id <> $2 AND x.kind IN (1, 2) AND x.flags = 0 AND NOT EXISTS "
                " (SELECT 1 FROM hidden_messages h WHERE h.tenant_id = $1 AND h.user_id = $2 AND "
                "  h.conversation_id = p.conversation_id AND h.seq = x.seq)) AS unread, "
                "(SELECT count(DISTINCT seq) FROM message_mentions x WHERE x.tenant_id = $1 AND "
                " x.conversation_id = p.conversation_id AND x.user_id IN ($2, '*') AND x.seq > p.rs AND "
                " x.sender_id <> $2 AND NOT EXISTS (SELECT 1 FROM hidden_messages h WHERE h.tenant_id = $1 AND "
                " h.user_id = $2 AND h.conversation_id = p.conversation_id AND h.seq = x.seq)) AS mentions, "
                "(SELECT GREATEST(o.read_seq, o.joined_seq) FROM members o WHERE o.tenant_id = $1 AND "
                " o.conversation_id = p.conversation_id AND o.user_id <> $2 LIMIT 1) AS peer, "
                "(SELECT count(*) FROM members o WHERE o.tenant_id = $1 AND o.conversation_id = p.conversation_id) "
                " AS member_count, "
                "(SELECT max(seq) FROM messages x WHERE x.tenant_id = $1 AND x.conversation_id = p.conversation_id "
                " AND x.kind IN (1, 2)) AS last_msg "
                "FROM p ORDER BY p.pinned DESC, p.last_msg_time_ms DESC, p.conversation_id"),
            {tenant, user, Flag(has_cursor), cursor.pinned ? "1" : "0", Num(cursor.activity_ms),
             cursor.conversation_id, Num(static_cast<int64_t>(limit) + 1)});
        for (int i = 0; i < r.size(); ++i) {
            if (page.entries.size() == limit) {
                const auto& e = page.entries.back();
                page.next_page_token =
                    store::EncodeListCursor({e.settings.pinned, e.last_activity_ms, e.summary.conversation_id});
                break;
            }
            ConversationListEntry e;
            e.summary.conversation_id = r.Text(i, 0);
            e.summary.type = static_cast<ConversationType>(r.Int(i, 1));
            e.summary.last_seq = static_cast<uint64_t>(r.Int(i, 2));
            e.name = r.Text(i, 3);
            e.dissolved = Bool(r, i, 4);
            e.last_activity_ms = r.Int(i, 5);
            e.role = static_cast<MemberRole>(r.Int(i, 6));
            e.settings = UserSettings{Bool(r, i, 7), Bool(r, i, 8)};
            e.read_seq = static_cast<uint64_t>(r.Int(i, 9));
            e.unread = static_cast<uint64_t>(r.Int(i, 10));
            e.unread_mentions = static_cast<uint64_t>(r.Int(i, 11));
            e.peer_read_seq = r.IsNull(i, 12) ? 0 : static_cast<uint64_t>(r.Int(i, 12));
            e.member_count = static_cast<uint32_t>(r.Int(i, 13));
            if (!r.IsNull(i, 14)) {
                auto last = c.Exec(std::string("SELECT ") + kMessageColumns +
                                       " FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND seq = $3::bigint",
                                   {tenant, e.summary.conversation_id, r.Text(i, 14)});
                if (last.size() > 0) {
                    std::vector<MessageRecord> one{ReadMessage(last, 0)};
                    FillState(c, tenant, e.summary.conversation_id, user, one);
                    e.last_message = std::move(one[0]);
                }
            }
            if (e.summary.type != ConversationType::kDirect) {
                e.peer_read_seq = 0;
            }
            page.entries.push_back(std::move(e));
        }
        return page;
    };
    SubmitRead(MakeJob<ConversationListPage>(std::move(fn), std::move(done)));
}

void PgStore::LoadMessage(std::string tenant_id, std::string conversation_id, uint64_t seq, std::string reader_id,
                          Callback<std::optional<MessageDetail>> done) {
    auto fn = [tenant = std::move(tenant_id), conv = std::move(conversation_id), seq,
               reader = std::move(reader_id)](pg::Conn& c) -> Result<std::optional<MessageDetail>> {
        std::optional<MessageDetail> out;
        auto r = c.Exec(std::string("SELECT ") + kMessageColumns +
                            " FROM messages WHERE tenant_id = $1 AND conversation_id = $2 AND seq = $3::bigint",
                        {tenant, conv, Num(seq)});
        if (r.size() == 0) {
            return out;
        }
        out.emplace();
        std::vector<MessageRecord> one{ReadMessage(r, 0)};
        FillState(c, tenant, conv, reader, one);
        out->message = std::move(one[0]);
        auto e = c.Exec(
            "SELECT version, text, time_ms FROM message_edits WHERE tenant_id = $1 AND conversation_id = $2 AND "
            "seq = $3::bigint ORDER BY version",
            {tenant, conv, Num(seq)});
        for (int i = 0; i < e.size(); ++i) {
            out->edits.push_back(MessageEdit{static_cast<uint32_t>(e.Int(i, 0)), e.Text(i, 1), e.Int(i, 2)});
        }
        auto rb = c.Exec(
            "SELECT user_id FROM members WHERE tenant_id = $1 AND conversation_id = $2 AND read_seq >= $3::bigint "
            "AND joined_seq < $3::bigint AND user_id <> $4 ORDER BY user_id",
            {tenant, conv, Num(seq), out->message.sender_id});
        for (int i = 0; i < rb.size(); ++i) {
            out->read_by.push_back(rb.Text(i, 0));
        }
        auto n = c.Exec("SELECT count(*) FROM members WHERE tenant_id = $1 AND conversation_id = $2", {tenant, conv});
        out->member_count = static_cast<uint32_t>(n.Int(0, 0));
        return out;
    };
    SubmitRead(MakeJob<std::optional<MessageDetail>>(std::move(fn), std::move(done)));
}

// ------------------------------------------------------------------------------------------ hooks

void PgStore::LoadHooks(Callback<std::vector<StoredHook>> done) {
    auto fn = [](pg::Conn& c) -> Result<std::vector<StoredHook>> {
        auto r = c.Exec("SELECT tenant_id, name, spec_json FROM hooks ORDER BY tenant_id, name");
        std::vector<StoredHook> out;
        for (int i = 0; i < r.size(); ++i) {
            out.push_back(StoredHook{r.Text(i, 0), r.Text(i, 1), r.Text(i, 2)});
        }
        return out;
    };
    SubmitRead(MakeJob<std::vector<StoredHook>>(std::move(fn), std::move(done)));
}

void PgStore::SaveHook(StoredHook hook, StatusCallback done) {
    const std::string tenant = hook.tenant_id, key = "hook:" + hook.name;
    auto fn = [hook = std::move(hook)](pg::Conn& c) -> Result<bool> {
        c.Exec("INSERT INTO hooks (tenant_id, name, spec_json, updated_ms) VALUES ($1, $2, $3, $4::bigint) "
               "ON CONFLICT (tenant_id, name) DO UPDATE SET spec_json = excluded.spec_json, "
               "updated_ms = excluded.updated_ms",
               {hook.tenant_id, hook.name, hook.spec_json, Num(NowMs())});
        return true;
    };
    Submit(tenant, key, MakeJob<bool>(std::move(fn), [done = std::move(done)](Result<bool> r) {
               done(r ? Status{} : Status{r.error()});
           }));
}

void PgStore::DeleteHook(std::string tenant_id, std::string name, StatusCallback done) {
    const std::string tenant = tenant_id, key = "hook:" + name;
    auto fn = [tenant = std::move(tenant_id), name = std::move(name)](pg::Conn& c) -> Result<bool> {
        auto r = c.Exec("DELETE FROM hooks WHERE tenant_id = $1 AND name = $2 RETURNING 1", {tenant, name});
        if (r.size() == 0) {
            return MakeError(Errc::kNotFound, "unknown_hook", "name: no hook '" + name + "'");
        }
        return true;
    };
    Submit(tenant, key, MakeJob<bool>(std::move(fn), [done = std::move(done)](Result<bool> r) {
               done(r ? Status{} : Status{r.error()});
           }));
}

}  // namespace flare
