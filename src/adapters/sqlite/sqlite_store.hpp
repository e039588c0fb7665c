// SQLite adapter for the embedded mode: MessageStore and ConversationStore over one database file in
// WAL mode. One writer thread owns the write connection and commits queued work in groups (one
// transaction and one fsync per group); one reader thread serves reads on its own connection.
// Seqs are assigned by the writer inside the commit, so they are dense and never skip on failure.
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "domain/hooks.hpp"
#include "domain/ports.hpp"

namespace flare {

struct SqliteOptions {
    std::string path;                 // file path; parent directories are created
    std::string synchronous = "full";  // "full" (durable across power loss) or "normal" (across crashes)
    size_t max_batch = 1024;          // most jobs in one transaction
};

class SqliteStore final : public MessageStore, public ConversationStore, public HookStore {
public:
    // Opens (and creates or migrates) the database. Throws std::runtime_error naming the file on failure.
    explicit SqliteStore(SqliteOptions options);
    ~SqliteStore() override;

    void Start();
    // Commits everything queued, then stops both threads. Later calls fail with kUnavailable.
    void Stop();

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

    struct Writer;  // the writer thread's connection and state (sqlite_store.cpp)
    struct Reader;
    class WriteJob;

private:
    void Submit(std::unique_ptr<WriteJob> job);
    void SubmitRead(std::function<void(Reader&)> fn, std::function<void()> on_stopped);
    void WriterLoop();
    void ReaderLoop();

    SqliteOptions options_;
    std::unique_ptr<Writer> writer_;
    std::unique_ptr<Reader> reader_;

    std::mutex mu_;
    std::condition_variable write_cv_, read_cv_;
    std::deque<std::unique_ptr<WriteJob>> write_queue_;
    std::deque<std::function<void(Reader&)>> read_queue_;
    bool accepting_ = false;
    bool stopping_ = false;
    std::thread writer_thread_, reader_thread_;
};

// "sqlite://relative/path.db" or "sqlite:///absolute/path.db" -> file path.
Result<std::string> SqlitePathFromUrl(const std::string& url);

}  // namespace flare
