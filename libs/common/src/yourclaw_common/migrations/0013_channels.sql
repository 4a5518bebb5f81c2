-- One assistant, several channels (docs/channels.md): a user reaches the same
-- conversation over WhatsApp, SMS (both at their proven phone number) and
-- Telegram (a chat they linked from the dashboard).

-- messaging: the channel each message went over. `phone_e164` holds that
-- channel's address (the phone number for WhatsApp and SMS, the chat id for
-- Telegram) and `twilio_sid` the provider's message id (Twilio's sid;
-- `tg:<chat id>:<message id>` for Telegram); the names predate channels.
ALTER TABLE messages
    ADD COLUMN channel text NOT NULL DEFAULT 'whatsapp'
        CHECK (channel IN ('whatsapp', 'sms', 'telegram'));
CREATE INDEX messages_user_channel_inbound_idx ON messages (user_id, channel, created_at DESC)
    WHERE direction = 'INBOUND';

-- gateway-api: where messages we send first (reminders, automations, notices)
-- go. NULL: the channel the user last wrote on (WhatsApp before they wrote).
-- Set on the dashboard (gateway-api) or by `/channel <name>` in chat
-- (messaging, which may update this one column).
ALTER TABLE users
    ADD COLUMN preferred_channel text
        CHECK (preferred_channel IN ('whatsapp', 'sms', 'telegram'));

-- gateway-api: a Telegram chat linked to an account by `/start <code>`; one
-- chat per user, one user per chat.
CREATE TABLE telegram_links (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    chat_id bigint NOT NULL UNIQUE,
    username text,
    -- The update that carried the code, so Telegram's retry of it is the same link.
    linked_by bigint NOT NULL,
    linked_at timestamptz NOT NULL DEFAULT now()
);
-- The view below addresses a chat by its id as text: messaging looks chats up
-- that way on every message.
CREATE INDEX telegram_links_chat_text ON telegram_links ((chat_id::text));

-- gateway-api: single-use link codes, valid 15 minutes. Only a hash is kept.
CREATE TABLE telegram_link_codes (
    code_sha256 bytea PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX telegram_link_codes_user ON telegram_link_codes (user_id);

-- messaging: numbers that sent STOP to our SMS number (carriers require that
-- we send them nothing more by SMS until they send START).
CREATE TABLE sms_opt_outs (
    phone_e164 text PRIMARY KEY,
    opted_out_at timestamptz NOT NULL DEFAULT now()
);

-- Who messaging talks to, per channel address: every address a user can be
-- reached at, with their assistant and subscription (as `recipients` is per
-- phone). A view, so messaging reads no more of the tables behind it.
CREATE VIEW channel_recipients AS
WITH addresses AS (
    SELECT user_id, 'whatsapp' AS channel, phone_e164 AS address FROM user_phones
    UNION ALL
    SELECT user_id, 'sms', phone_e164 FROM user_phones
    UNION ALL
    SELECT user_id, 'telegram', chat_id::text FROM telegram_links
)
SELECT ad.channel, ad.address, ad.user_id, u.preferred_channel,
       a.id AS assistant_id, a.status AS assistant_status, a.base_url,
       a.gateway_token_encrypted, a.model, s.status AS subscription_status
FROM addresses ad
JOIN users u ON u.id = ad.user_id
LEFT JOIN assistants a ON a.user_id = ad.user_id
LEFT JOIN subscriptions s ON s.user_id = ad.user_id;

GRANT SELECT, INSERT, UPDATE, DELETE ON telegram_links, telegram_link_codes
    TO yourclaw_gateway_api;
GRANT SELECT ON sms_opt_outs TO yourclaw_gateway_api;
GRANT SELECT, INSERT, DELETE ON sms_opt_outs TO yourclaw_messaging;
GRANT SELECT ON channel_recipients, telegram_links TO yourclaw_messaging;
GRANT UPDATE (preferred_channel, updated_at) ON users TO yourclaw_messaging;
