-- provisioner writes, llm-proxy reads: each assistant's credential for the LLM
-- proxy, as the sha256 (hex) of a random token. The token itself is only in the
-- assistant's rendered config and, Fernet-encrypted, in
-- assistants.proxy_token_encrypted (so a re-create renders the same one).
-- `previous_token_sha256` keeps the replaced token valid while a re-provision
-- swaps the container; a deprovision sets `revoked_at`.
CREATE TABLE proxy_credentials (
    assistant_id uuid PRIMARY KEY REFERENCES assistants (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_sha256 text NOT NULL UNIQUE CHECK (token_sha256 ~ '^[0-9a-f]{64}$'),
    previous_token_sha256 text UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now(),
    rotated_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);

ALTER TABLE assistants ADD COLUMN proxy_token_encrypted text;

-- llm-proxy. One row per provider call, with the provider's own usage and its
-- price (micro-dollars) under the price table version that priced it.
CREATE TABLE llm_calls (
    id bigserial PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    assistant_id uuid NOT NULL,
    provider text NOT NULL,
    model text NOT NULL,
    endpoint text NOT NULL,
    -- PLATFORM: our key, counts against the allowance. BYOK: the user's own key.
    key_source text NOT NULL CHECK (key_source IN ('PLATFORM', 'BYOK')),
    status integer NOT NULL,
    stream boolean NOT NULL DEFAULT false,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cache_read_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    cost_microusd bigint NOT NULL DEFAULT 0,
    price_version text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX llm_calls_user_created_idx ON llm_calls (user_id, created_at);

-- llm-proxy. Running totals per user and UTC calendar month: the allowance check
-- reads one row. `cap_notified_at`: usage.cap_reached was emitted this month;
-- `warned_at`: usage.allowance_warning (80 %) was. gateway-api clears both when
-- the user raises their own cap above what they spent.
CREATE TABLE llm_usage_monthly (
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    month date NOT NULL CHECK (extract(day FROM month) = 1),
    calls integer NOT NULL DEFAULT 0,
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cache_read_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens bigint NOT NULL DEFAULT 0,
    cost_microusd bigint NOT NULL DEFAULT 0,
    -- The part paid with platform keys: what the allowance caps.
    platform_cost_microusd bigint NOT NULL DEFAULT 0,
    cap_notified_at timestamptz,
    warned_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, month)
);

-- gateway-api writes, llm-proxy reads: a monthly cap the user sets below the
-- plan's allowance (USD). It caps every call, the ones paid with the user's own
-- keys included; NULL: the plan's allowance alone.
ALTER TABLE users ADD COLUMN llm_monthly_cap_usd numeric(10, 2)
    CHECK (llm_monthly_cap_usd >= 0);

-- Google shut Gemini 2.0 Flash down (OpenClaw refuses it); 2.5 replaces it in
-- the catalog, and for whoever had picked it.
UPDATE assistants SET model = replace(model, 'google/gemini-2.0-flash', 'google/gemini-2.5-flash')
    WHERE model LIKE 'google/gemini-2.0-flash%';
UPDATE conversations SET model_override = replace(model_override, 'google/gemini-2.0-flash', 'google/gemini-2.5-flash')
    WHERE model_override LIKE 'google/gemini-2.0-flash%';
