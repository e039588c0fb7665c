#include "adapters/postgres/pg_store.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <functional>
#include <optional>

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
    "conversation_type, kind, text";

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
    return m;
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

void PgStore::Append(AppendRequest request, Callback<AppendResult> done) {
    const std::string tenant = request.message.tenant_id;
    const std::string conv = request.message.conversation_id;
    for (const std::string* field : {&request.message.text, &request.message.client_msg_id,
                                     &request.message.sender_id, &request.message.sender_device_id}) {
        if (field->find('\0') != std::string::npos) {
            return done(MakeError(Errc::kInvalidArgument, "bad_content", "text and ids must not contain NUL characters"));
        }
    }
    auto req = std::make_shared<AppendRequest>(std::move(request));
    auto fn = [req](pg::Conn& c) -> Result<AppendResult> {
        const MessageRecord& m = req->message;
        std::vector<pg::Param> params = {m.tenant_id,
                                         m.conversation_id,
                                         Num(static_cast<int>(m.conversation_type)),
                                         m.server_msg_id,
                                         m.client_msg_id,
                                         m.sender_id,
                                         m.sender_device_id,
                                         Num(m.server_time_ms),
                                         Num(static_cast<int>(m.kind)),
                                         m.text,
                                         pg::TextArray(req->create_with_members)};
        auto r = c.Exec(
            "SELECT status, seq, server_msg_id, sender_device_id, server_time_ms, kind, text FROM "
            "flare_append($1, $2, $3::smallint, $4, $5, $6, $7, $8::bigint, $9::smallint, $10, $11::text[])",
            params);
        const auto status = r.Int(0, 0);
        if (status == 1) {
            return MakeError(Errc::kNotFound, "unknown_conversation",
                             "conversation '" + m.conversation_id + "' does not exist");
        }
        MessageRecord out = m;
        out.seq = static_cast<uint64_t>(r.Int(0, 1));
        if (status == 2) {
            out.server_msg_id = r.Text(0, 2);
            out.sender_device_id = r.Text(0, 3);
            out.server_time_ms = r.Int(0, 4);
            out.kind = static_cast<MessageKind>(r.Int(0, 5));
            out.text = r.Text(0, 6);
        }
        return AppendResult{std::move(out), status == 2};
    };
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
                        Callback<MessagePage> done) {
    auto fn = [tenant = std::move(tenant_id), conv = std::move(conversation_id), after_seq,
               limit](pg::Conn& c) -> Result<MessagePage> {
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
        if (!page.messages.empty() && page.messages.back().seq > page.last_seq) {
            page.last_seq = page.messages.back().seq;
        }
        return page;
    };
    SubmitRead(MakeJob<MessagePage>(std::move(fn), std::move(done)));
}

void PgStore::LoadConversation(std::string tenant_id, std::string conversation_id,
                               Callback<std::optional<ConversationInfo>> done) {
    auto fn = [tenant = std::move(tenant_id),
               conv = std::move(conversation_id)](pg::Conn& c) -> Result<std::optional<ConversationInfo>> {
        auto r = c.Exec("SELECT type, last_seq FROM conversations WHERE tenant_id = $1 AND conversation_id = $2",
                        {tenant, conv});
        std::optional<ConversationInfo> info;
        if (r.size() == 0) {
            return info;
        }
        info.emplace();
        info->summary.conversation_id = conv;
        info->summary.type = static_cast<ConversationType>(r.Int(0, 0));
        info->summary.last_seq = static_cast<uint64_t>(r.Int(0, 1));
        auto m = c.Exec("SELECT user_id, joined_seq FROM members WHERE tenant_id = $1 AND conversation_id = $2",
                        {tenant, conv});
        for (int i = 0; i < m.size(); ++i) {
            info->members.push_back(MemberInfo{m.Text(i, 0), static_cast<uint64_t>(m.Int(i, 1))});
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

}  // namespace flare
