-- Voice replies (docs/channels.md, "Voice replies"): when a user turns them
-- on, the answer to a voice note is spoken back as well as written.

-- gateway-api (the dashboard's switch) and messaging (`/voice on|off` in chat,
-- which may update this one column besides preferred_channel).
ALTER TABLE users ADD COLUMN voice_replies boolean NOT NULL DEFAULT false;
GRANT UPDATE (voice_replies, updated_at) ON users TO yourclaw_messaging;

-- messaging: a spoken reply for WhatsApp, kept until Twilio has fetched it.
-- Twilio sends media only from a public URL: gateway-api serves a row at a
-- URL messaging signed (GET /api/v1/media/<id>.ogg?exp=…&sig=…) until
-- `expires_at`; messaging deletes expired rows as it adds new ones.
CREATE TABLE voice_reply_media (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    content bytea NOT NULL,
    content_type text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX voice_reply_media_expires_idx ON voice_reply_media (expires_at);

GRANT SELECT, INSERT, DELETE ON voice_reply_media TO yourclaw_messaging;
GRANT SELECT ON voice_reply_media TO yourclaw_gateway_api;
