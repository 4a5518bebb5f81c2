-- The first data model (docs/architecture.md tells who owns what).
-- Each table has exactly one writing service, named in its comment.
-- gen_random_uuid() is built into PostgreSQL 13+.


-- gateway-api. id is the Supabase `sub` (or the dev issuer's).
CREATE TABLE users (
    id uuid PRIMARY KEY,
    email text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- gateway-api. One WhatsApp number per user, one user per number.
CREATE TABLE user_phones (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    phone_e164 text NOT NULL UNIQUE CHECK (phone_e164 ~ '^\+[1-9][0-9]{6,14}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- gateway-api. Bring-your-own LLM keys, Fernet-encrypted and bound to the user.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    provider text NOT NULL CHECK (provider IN ('ANTHROPIC', 'OPENAI', 'GOOGLE')),
    encrypted_key text NOT NULL,
    key_last4 text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, provider)
);

-- provisioner. Container hosts, each served by one host-agent.
CREATE TABLE hosts (
    id text PRIMARY KEY,
    address text NOT NULL,
    runtime text NOT NULL CHECK (runtime IN ('process', 'docker')),
    status text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'DRAINING', 'OFFLINE')),
    capacity integer NOT NULL DEFAULT 20 CHECK (capacity >= 0),
    used integer NOT NULL DEFAULT 0 CHECK (used >= 0),
    last_heartbeat_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- provisioner. One assistant (OpenClaw gateway) per user.
CREATE TABLE assistants (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'NONE'
        CHECK (status IN ('NONE', 'PROVISIONING', 'READY', 'ERROR')),
    model text NOT NULL DEFAULT 'anthropic/claude-sonnet-4-5-20250929',
    host_id text REFERENCES hosts (id),
    container_id text,
    port integer CHECK (port BETWEEN 1 AND 65535),
    -- Where the gateway's OpenAI-compatible API answers, e.g. http://10.0.0.5:19001.
    base_url text,
    gateway_token_encrypted text,
    notify_secret_encrypted text,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
-- No two assistants on one host share a port.
CREATE UNIQUE INDEX assistants_host_port_key ON assistants (host_id, port)
    WHERE host_id IS NOT NULL AND port IS NOT NULL;

-- provisioner. Provision and deprovision work, retried with backoff.
CREATE TABLE provisioning_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL DEFAULT 'PROVISION' CHECK (kind IN ('PROVISION', 'DEPROVISION')),
    status text NOT NULL DEFAULT 'PENDING'
        CHECK (status IN ('PENDING', 'RUNNING', 'COMPLETED', 'FAILED')),
    attempts integer NOT NULL DEFAULT 0,
    last_error text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX provisioning_jobs_due_idx ON provisioning_jobs (next_attempt_at)
    WHERE status IN ('PENDING', 'RUNNING');

-- billing. One subscription per user.
CREATE TABLE subscriptions (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    stripe_customer_id text NOT NULL,
    stripe_subscription_id text UNIQUE,
    status text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'PAST_DUE', 'CANCELED')),
    stripe_status text,
    current_period_end timestamptz,
    -- `created` of the newest Stripe event applied; older events re-fetch the object.
    stripe_updated_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- billing. Each Stripe event id applied once.
CREATE TABLE stripe_events (
    id text PRIMARY KEY,
    type text NOT NULL,
    stripe_created_at timestamptz,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- messaging. Every WhatsApp message in and out.
-- user_id is NULL for senders who have not signed up.
CREATE TABLE messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id uuid REFERENCES users (id) ON DELETE CASCADE,
    phone_e164 text NOT NULL,
    direction text NOT NULL CHECK (direction IN ('INBOUND', 'OUTBOUND')),
    body text NOT NULL DEFAULT '',
    -- Twilio's MessageSid (SM…/MM…); unique, so an inbound message is stored once.
    twilio_sid text UNIQUE,
    -- Outbound only: the inbound MessageSid answered and the part of a split reply.
    in_reply_to text,
    part integer,
    -- Outbound: PENDING (stored, not yet handed to Twilio), SENDING (a send was
    -- attempted, result unknown), SENT, FAILED. Inbound: RECEIVED.
    status text NOT NULL,
    error_code text,
    num_media integer NOT NULL DEFAULT 0,
    send_attempted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX messages_reply_part_key ON messages (in_reply_to, part)
    WHERE in_reply_to IS NOT NULL;
CREATE INDEX messages_user_created_idx ON messages (user_id, created_at DESC);

-- messaging. Per-user daily counters (rate limits, usage page).
CREATE TABLE usage_daily (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    day date NOT NULL,
    inbound_count integer NOT NULL DEFAULT 0,
    outbound_count integer NOT NULL DEFAULT 0,
    tokens_in bigint NOT NULL DEFAULT 0,
    tokens_out bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, day)
);

-- Every service, its own rows (consumer = `<svc>-<purpose>`): the inbox that makes
-- handlers idempotent (docs/architecture.md).
CREATE TABLE processed_events (
    consumer text NOT NULL,
    event_id uuid NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Every service, its own rows (service column): events written in the same
-- transaction as the change they announce, published by that service's relay.
CREATE TABLE outbox (
    id bigserial PRIMARY KEY,
    service text NOT NULL,
    event_id uuid NOT NULL UNIQUE,
    subject text NOT NULL,
    payload jsonb NOT NULL,
    headers jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (service, id) WHERE published_at IS NULL;
