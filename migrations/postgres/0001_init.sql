-- Flare IM Core, PostgreSQL schema version 1: conversations, members, messages, device cursors.
-- Migrations only ever add; `flare migrate` applies each file once, in name order, in a transaction.
CREATE TABLE IF NOT EXISTS conversations (
    tenant_id        TEXT     NOT NULL,
    conversation_id  TEXT     NOT NULL,
    type             SMALLINT NOT NULL,
    created_ms       BIGINT   NOT NULL,
    last_seq         BIGINT   NOT NULL DEFAULT 0,
    last_msg_time_ms BIGINT   NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, conversation_id)
);

CREATE TABLE IF NOT EXISTS members (
    tenant_id       TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    user_id         TEXT   NOT NULL,
    joined_ms       BIGINT NOT NULL,
    joined_seq      BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, user_id)
);
CREATE INDEX IF NOT EXISTS members_by_user ON members (tenant_id, user_id);

CREATE TABLE IF NOT EXISTS messages (
    tenant_id         TEXT     NOT NULL,
    conversation_id   TEXT     NOT NULL,
    seq               BIGINT   NOT NULL,
    server_msg_id     TEXT     NOT NULL,
    client_msg_id     TEXT     NOT NULL,
    sender_id         TEXT     NOT NULL,
    sender_device_id  TEXT     NOT NULL,
    server_time_ms    BIGINT   NOT NULL,
    conversation_type SMALLINT NOT NULL,
    kind              SMALLINT NOT NULL,
    text              TEXT     NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS messages_idempotency
    ON messages (tenant_id, conversation_id, sender_id, client_msg_id);

CREATE TABLE IF NOT EXISTS device_cursors (
    tenant_id       TEXT   NOT NULL,
    user_id         TEXT   NOT NULL,
    device_id       TEXT   NOT NULL,
    conversation_id TEXT   NOT NULL,
    acked_seq       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, device_id, conversation_id)
);
