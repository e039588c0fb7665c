-- flare_append: the whole append in one round trip. It locks the conversation row (so appends to one
-- conversation from any number of orchestrators are serialized), answers a retry with the original
-- message, and otherwise stores the message at last_seq + 1 and moves last_seq, in the caller's
-- transaction: a rollback allocates nothing, so seqs stay dense.
-- status: 0 stored, 1 unknown conversation, 2 duplicate (the original row is returned).
CREATE OR REPLACE FUNCTION flare_append(
    p_tenant TEXT, p_conv TEXT, p_conv_type SMALLINT, p_server_msg_id TEXT, p_client_msg_id TEXT,
    p_sender TEXT, p_sender_device TEXT, p_time_ms BIGINT, p_kind SMALLINT, p_text TEXT,
    p_create_members TEXT[])
RETURNS TABLE (status INT, seq BIGINT, server_msg_id TEXT, sender_device_id TEXT, server_time_ms BIGINT,
               kind SMALLINT, text TEXT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_last BIGINT;
BEGIN
    SELECT c.last_seq INTO v_last FROM conversations c
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
        SELECT c.last_seq INTO v_last FROM conversations c
         WHERE c.tenant_id = p_tenant AND c.conversation_id = p_conv FOR UPDATE;
    END IF;

    RETURN QUERY SELECT 2, m.seq, m.server_msg_id, m.sender_device_id, m.server_time_ms, m.kind, m.text
                   FROM messages m
                  WHERE m.tenant_id = p_tenant AND m.conversation_id = p_conv AND m.sender_id = p_sender
                    AND m.client_msg_id = p_client_msg_id;
    IF FOUND THEN
        RETURN;
    END IF;

    INSERT INTO messages (tenant_id, conversation_id, seq, server_msg_id, client_msg_id, sender_id,
                          sender_device_id, server_time_ms, conversation_type, kind, text)
         VALUES (p_tenant, p_conv, v_last + 1, p_server_msg_id, p_client_msg_id, p_sender, p_sender_device,
                 p_time_ms, p_conv_type, p_kind, p_text);
    UPDATE conversations c SET last_seq = v_last + 1, last_msg_time_ms = p_time_ms
     WHERE c.tenant_id = p_tenant AND c.conversation_id = p_conv;
    RETURN QUERY SELECT 0, v_last + 1, p_server_msg_id, p_sender_device, p_time_ms, p_kind, p_text;
END
$$;
