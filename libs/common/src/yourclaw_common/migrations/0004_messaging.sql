-- messaging: conversation state, shared rate-limit windows, templates and
-- delivery status of outbound messages.

-- One row per user: which OpenClaw session the conversation is in, the model the
-- user picked with /model, and when they last wrote (WhatsApp's 24-hour window).
CREATE TABLE conversations (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    -- Bumped by /reset; part of the OpenClaw session key.
    session_epoch integer NOT NULL DEFAULT 0,
    model_override text,
    last_inbound_at timestamptz,
    -- Where the session's gateway answered last, and when the session began: a
    -- gateway at another address (the assistant moved hosts) starts without the
    -- session, which is then seeded with the conversation since it began.
    session_base_url text,
    session_started_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Fixed windows counted atomically in Postgres, so every messaging replica sees
-- the same counts. `notified` makes the "you are limited" notice go out once.
CREATE TABLE rate_windows (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- minute | day | tokens | notify_minute | notify_day
    scope text NOT NULL,
    window_start timestamptz NOT NULL,
    count integer NOT NULL DEFAULT 0,
    notified boolean NOT NULL DEFAULT false,
    PRIMARY KEY (user_id, scope, window_start)
);

ALTER TABLE messages
    -- Outbound: reply | template | proactive | notice.
    ADD COLUMN kind text,
    -- Outbound templates: Twilio Content API sid and variables.
    ADD COLUMN content_sid text,
    ADD COLUMN content_variables jsonb,
    -- The Twilio status last applied (queued … read, failed, undelivered); never
    -- moves backwards (see status_rank in the messaging repository).
    ADD COLUMN delivery_status text;

-- Status callbacks that arrived before the send was recorded (Twilio can call
-- back before its API answer reaches us); applied when the sid is stored.
CREATE TABLE twilio_statuses (
    twilio_sid text PRIMARY KEY,
    status text NOT NULL,
    error_code text,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Order of Twilio message statuses; a callback that ranks lower than what is
-- stored arrived late and is ignored.
CREATE FUNCTION twilio_status_rank(status text) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE status
        WHEN 'accepted' THEN 1 WHEN 'scheduled' THEN 1 WHEN 'queued' THEN 2
        WHEN 'sending' THEN 3 WHEN 'sent' THEN 4
        WHEN 'failed' THEN 5 WHEN 'undelivered' THEN 5 WHEN 'canceled' THEN 5
        WHEN 'delivered' THEN 6 WHEN 'read' THEN 7
        ELSE 0 END
$$;
