-- Flare IM Core, PostgreSQL schema version 3: groups (names, roles, mutes, dissolution), read cursors,
-- pin/mute, message state (recall, deletion, edits with history, reactions, mentions, events) and
-- delete-for-me. Only adds.
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS name TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN IF NOT EXISTS dissolved BOOLEAN NOT NULL DEFAULT false;

ALTER TABLE members ADD COLUMN IF NOT EXISTS role SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN IF NOT EXISTS muted_until_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN IF NOT EXISTS read_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE members ADD COLUMN IF NOT EXISTS pinned BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE members ADD COLUMN IF NOT EXISTS muted BOOLEAN NOT NULL DEFAULT false;

ALTER TABLE messages ADD COLUMN IF NOT EXISTS flags SMALLINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS edit_version INT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS edited_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS mentions TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN IF NOT EXISTS mention_all BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE messages ADD COLUMN IF NOT EXISTS event TEXT NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN IF NOT EXISTS target_seq BIGINT NOT NULL DEFAULT 0;
-- What members had before the upgrade counts as read.
UPDATE members m SET read_seq = c.last_seq FROM conversations c
 WHERE c.tenant_id = m.tenant_id AND c.conversation_id = m.conversation_id AND m.read_seq = 0;

CREATE TABLE IF NOT EXISTS message_reactions (
    tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, seq BIGINT NOT NULL, emoji TEXT NOT NULL,
    user_id TEXT NOT NULL, created_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, seq, emoji, user_id)
);
CREATE TABLE IF NOT EXISTS message_edits (
    tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, seq BIGINT NOT NULL, version INT NOT NULL,
    text TEXT NOT NULL, time_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, seq, version)
);
CREATE TABLE IF NOT EXISTS hidden_messages (
    tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, conversation_id TEXT NOT NULL, seq BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, conversation_id, seq)
);
CREATE TABLE IF NOT EXISTS message_mentions (
    tenant_id TEXT NOT NULL, conversation_id TEXT NOT NULL, user_id TEXT NOT NULL, seq BIGINT NOT NULL,
    sender_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, conversation_id, user_id, seq)
);

-- flare_append2: flare_append with mentions and the event column, and refusing appends to a
-- dissolved group. status: 0 stored, 1 unknown conversation, 2 duplicate (the original row is
-- returned), 3 dissolved.
CREATE OR REPLACE FUNCTION flare_append2(
    p_tenant TEXT, p_conv TEXT, p_conv_type SMALLINT, p_server_msg_id TEXT, p_client_msg_id TEXT,
    p_sender TEXT, p_sender_device TEXT, p_time_ms BIGINT, p_kind SMALLINT, p_text TEXT,
    p_create_members TEXT[], p_mentions TEXT, p_mention_all BOOLEAN, p_event TEXT, p_target_seq BIGINT)
RETURNS TABLE (status INT, seq BIGINT, server_msg_id TEXT, sender_device_id TEXT, server_time_ms BIGINT,
               kind SMALLINT, text TEXT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_last BIGINT;
    v_dissolved BOOLEAN;
BEGIN
    SELECT c.last_seq, c.dissolved INTO v_last, v_dissolved FROM conversations c
     WHERE c.tenant_id = p_tenant AND c.conversation_id = p_conv FOR UPDATE;
    IF NOT FOUND THEN
        IF p_create_members IS NULL OR cardinality(p_create_members) = 0 THEN
            RETURN QUERY SELECT 1, 0::BIGINT, ''::TEXT, ''::TEXT, 0::BIGINT, 0::SMALLINT, ''::TEXT;
            RETURN;
        END IF;
        INSERT INTO conversations (tenant_id, conversation_id, type, created_ms, last_seq)
             VALUES (p_tenant, p_conv, p_conv_type, p_time_ms, 0) ON CONFLICT DO NOTHING;
        INSERT INTO members (tenant_id, conversation_id, user_id, joined_ms, joined_seq)
             SELECT p_tenant, p_conv, u, p_time_ms, 0 FROM unnest(p_create_members) AS u ON CONFLICT DO NOTHING;
        SELECT c.last_seq, c.dissolved INTO v_last, v_dissolved FROM conversations c
         WHERE c.tenant_id = p_tenant AND c.conversation_id = p_conv FOR UPDATE;
    END IF;

    RETURN QUERY SELECT 2, m.seq, m.server_msg_id, m.sender_device_id, m.server_time_ms, m.kind, m.text
                   FROM messages m
                  WHERE m.tenant_id = p_tenant AND m.conversation_id = p_conv AND m.sender_id = p_sender
                    AND m.client_msg_id = p_client_msg_id;
    IF FOUND THEN
        RETURN;
    END IF;
    IF v_dissolved THEN
        RETURN QUERY SELECT 3, 0::BIGINT, ''::TEXT, ''::TEXT, 0::BIGINT, 0::SMALLINT, ''::TEXT;
        RETURN;
    END IF;

    INSERT INTO messages (tenant_id, conversation_id, seq, server_msg_id, client_msg_id, sender_id,
                          sender_device_id, server_time_ms, conversation_type, kind, text, mentions,
                          mention_all, event, target_seq)
         VALUES (p_tenant, p_conv, v_last + 1, p_server_msg_id, p_client_msg_id, p_sender, p_sender_device,
                 p_time_ms, p_conv_type, p_kind, p_text, p_mentions, p_mention_all, p_event, p_target_seq);
    UPDATE conversations c SET last_seq = v_last + 1, last_msg_time_ms = p_time_ms
     WHERE c.tenant_id = p_tenant AND c.conversation_id = p_conv;
    RETURN QUERY SELECT 0, v_last + 1, p_server_msg_id, p_sender_device, p_time_ms, p_kind, p_text;
END
$$;
