-- One database role per service, with only the grants its SQL needs
-- (docs/security.md, "Database roles"). The roles cannot log in: an operator
-- gives each service a login role that is a member of its group, e.g.
--   CREATE ROLE billing_1 LOGIN PASSWORD '…' IN ROLE yourclaw_billing;
-- so no password is ever in a migration. Migrations themselves run as the
-- owner of the schema (the migrate Job in Kubernetes); a migration that adds a
-- table or view grants it here too (libs/common/tests/test_db_roles.py fails
-- on a table no role may use).
--
-- Roles belong to the whole cluster, grants to this database: creating a role
-- that exists (another database, a concurrent migration) is not an error.
DO $$
DECLARE
    name text;
BEGIN
    FOREACH name IN ARRAY ARRAY[
        'yourclaw_gateway_api', 'yourclaw_messaging', 'yourclaw_billing',
        'yourclaw_provisioner', 'yourclaw_llm_proxy'
    ] LOOP
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', name);
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL;
        END;
    END LOOP;
END
$$;

GRANT USAGE ON SCHEMA public TO yourclaw_gateway_api, yourclaw_messaging,
    yourclaw_billing, yourclaw_provisioner, yourclaw_llm_proxy;

-- Every service relays its own events (the outbox); the consumers record what
-- they handled (the inbox).
GRANT SELECT, INSERT, UPDATE ON outbox TO yourclaw_gateway_api,
    yourclaw_messaging, yourclaw_billing, yourclaw_provisioner, yourclaw_llm_proxy;
GRANT USAGE ON SEQUENCE outbox_id_seq TO yourclaw_gateway_api,
    yourclaw_messaging, yourclaw_billing, yourclaw_provisioner, yourclaw_llm_proxy;
GRANT SELECT, INSERT ON processed_events TO yourclaw_messaging,
    yourclaw_billing, yourclaw_provisioner;

-- gateway-api: the accounts, phones and BYOK keys it owns; read-only views of
-- the rest for the dashboard. Of an assistant it may read the notify secret
-- (it checks the notify route) but never the gateway or proxy token.
GRANT SELECT, INSERT, UPDATE ON users, user_phones TO yourclaw_gateway_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys TO yourclaw_gateway_api;
GRANT SELECT (id, user_id, status, model, last_error, notify_secret_encrypted,
              created_at, updated_at)
    ON assistants TO yourclaw_gateway_api;
GRANT SELECT ON subscriptions, messages, usage_daily, llm_calls
    TO yourclaw_gateway_api;
GRANT SELECT, UPDATE ON llm_usage_monthly TO yourclaw_gateway_api;

-- messaging: conversations and what was said; the recipient (phone →
-- assistant, token, subscription) only through the recipients view.
GRANT SELECT, INSERT, UPDATE ON messages, conversations, rate_windows,
    send_tokens, twilio_statuses, usage_daily TO yourclaw_messaging;
GRANT SELECT ON users, api_keys, llm_usage_monthly, recipients TO yourclaw_messaging;

-- billing: Stripe's side only. No assistant, no key, no message.
GRANT SELECT, INSERT, UPDATE ON subscriptions TO yourclaw_billing;
GRANT SELECT, INSERT ON billing_customers, stripe_events TO yourclaw_billing;
GRANT SELECT ON users TO yourclaw_billing;

-- provisioner: assistants, hosts, jobs and the proxy credentials it mints.
GRANT SELECT, INSERT, UPDATE ON assistants, hosts, provisioning_jobs,
    proxy_credentials TO yourclaw_provisioner;

-- llm-proxy: credentials to check, keys to call with, calls to meter.
GRANT SELECT ON users, api_keys, proxy_credentials TO yourclaw_llm_proxy;
GRANT INSERT ON llm_calls TO yourclaw_llm_proxy;
GRANT USAGE ON SEQUENCE llm_calls_id_seq TO yourclaw_llm_proxy;
GRANT SELECT, INSERT, UPDATE ON llm_usage_monthly TO yourclaw_llm_proxy;
