-- messaging: one token bucket per WhatsApp sender, shared by every replica
-- (Twilio queues about 80 messages a second per sender). Replicas lease tokens
-- from it in small blocks; `last_grant` is what the last lease got.
CREATE TABLE send_tokens (
    sender text PRIMARY KEY,
    tokens double precision NOT NULL,
    refilled_at timestamptz NOT NULL,
    last_grant integer NOT NULL DEFAULT 0
);

-- Tokens in a bucket last refilled at `refilled_at`, at time `at`, refilling at
-- `rate` a second up to `capacity`.
CREATE FUNCTION send_tokens_at(
    tokens double precision, refilled_at timestamptz, at timestamptz,
    rate double precision, capacity double precision
) RETURNS double precision
LANGUAGE sql IMMUTABLE AS $$
    SELECT LEAST(capacity, tokens + rate * GREATEST(0, EXTRACT(EPOCH FROM at - refilled_at)))
$$;
