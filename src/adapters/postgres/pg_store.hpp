// PostgreSQL adapter of the distributed mode: MessageStore and ConversationStore over libpq.
// Work for one conversation always goes to the same writer shard (a thread with its own connection),
// which commits what is queued in groups; seqs are assigned inside the transaction by the
// flare_append() function (migrations/postgres/), under the conversation's row lock, so any number of
// processes can append to one conversation and its seqs stay dense. Reads run on a reader pool.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "domain/hooks.hpp"
#include "domain/ports.hpp"

namespace flare {

struct PgOptions {
    std::string url;          // postgres://user:password@host:port/database
    size_t writer_shards = 2;  // writer threads (connections); conversations are hashed onto them
    size_t reader_threads = 2;
    size_t max_batch = 256;  // most jobs in one transaction
    // true: a commit (and so a send's ACK) waits until PostgreSQL flushed it to disk; false
    // (synchronous_commit = off): until it is in PostgreSQL's WAL buffers - a PostgreSQL crash can lose
    // the last few hundred milliseconds of acknowledged writes, a crash of this process cannot.
    bool synchronous_commit = true;
    // A statement running longer fails (its jobs get kUnavailable) instead of holding a shard forever.
    uint32_t statement_timeout_ms = 10'000;
};

class PgStore final : public MessageStore, public ConversationStore, public HookStore {
public:
    // Checks that the database is reachable and its schema is what this binary expects. Throws
    // std::runtime_error with what to do ("run `flare migrate`") otherwise.
    explicit PgStore(PgOptions options);
    ~PgStore() override;

    void Start();
    // Commits what is queued, then stops every thread. Later calls fail with kUnavailable.
    void Stop();

    // Errors besides the port's: kUnavailable "storage_unavailable" while PostgreSQL cannot be reached
    // (the adapter reconnects by itself); an append whose commit outcome is unknown (connection lost
    // during COMMIT) also reports kUnavailable, and its retry with the same client_msg_id is answered
    // idempotently.
    void Append(AppendRequest request, Callback<AppendResult> done) override;
    void ReadAfter(std::string tenant_id, std::string conversation_id, uint64_t after_seq, uint32_t limit,
                   std::string reader_id, Callback<MessagePage> done) override;
    void FindAppended(std::string tenant_id, std::string conversation_id, std::string sender_id,
                      std::string client_msg_id, Callback<std::optional<MessageRecord>> done) override;

    void JoinRoom(std::string tenant_id, std::string conversation_id, std::string user_id,
                  Callback<ConversationSummary> done) override;
    void LeaveRoom(std::string tenant_id, std::string conversation_id, std::string user_id,
                   StatusCallback done) override;
    void LoadConversation(std::string tenant_id, std::string conversation_id,
                          Callback<std::optional<ConversationInfo>> done) override;
    void ListUserConversations(std::string tenant_id, std::string user_id, std::string device_id,
                               Callback<std::vector<UserConversation>> done) override;
    void SaveDeviceCursor(std::string tenant_id, std::string user_id, std::string device_id,
                          std::string conversation_id, uint64_t seq, Callback<uint64_t> done) override;
    void SaveReadCursor(std::string tenant_id, std::string user_id, std::string conversation_id, uint64_t seq,
                        Callback<uint64_t> done) override;
    void SaveSettings(std::string tenant_id, std::string user_id, std::string conversation_id,
                      std::optional<bool> pinned, std::optional<bool> muted, Callback<UserSettings> done) override;
    void HideMessages(std::string tenant_id, std::string user_id, std::string conversation_id,
                      std::vector<uint64_t> seqs, StatusCallback done) override;
    void ListConversationPage(std::string tenant_id, std::string user_id, std::string page_token, uint32_t limit,
                              Callback<ConversationListPage> done) override;
    void LoadMessage(std::string tenant_id, std::string conversation_id, uint64_t seq, std::string reader_id,
                     Callback<std::optional<MessageDetail>> done) override;

    void LoadHooks(Callback<std::vector<StoredHook>> done) override;
    void SaveHook(StoredHook hook, StatusCallback done) override;
    void DeleteHook(std::string tenant_id, std::string name, StatusCallback done) override;

    class Job;  // pg_store.cpp

private:
    struct Shard {
        std::deque<std::unique_ptr<Job>> queue;
        std::condition_variable cv;
        std::thread thread;
    };
    void Submit(const std::string& tenant, const std::string& conversation, std::unique_ptr<Job> job);
    void SubmitRead(std::unique_ptr<Job> job);
    void WriterLoop(Shard& shard);
    void ReaderLoop();

    PgOptions options_;
    std::mutex mu_;
    std::vector<std::unique_ptr<Shard>> shards_;
    std::deque<std::unique_ptr<Job>> read_queue_;
    std::condition_variable read_cv_;
    std::vector<std::thread> readers_;
    bool accepting_ = false;
    bool stopping_ = false;
};

}  // namespace flare
