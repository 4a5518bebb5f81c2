-- gateway-api: proof that a phone number is the user's. `user_phones` keeps
-- only proven numbers (one user per number, one number per user); a number a
-- user typed waits in `phone_claims` until a message from it carries the code
-- the dashboard showed. Several accounts may claim one number at once (so a
-- stranger's claim cannot block the owner); only the one whose code arrives
-- from that number gets it, and never while another account holds it.
--
-- Numbers linked before this migration stay linked, as proven: they were in
-- use, their owners were talking to their assistants through them, and asking
-- every one of them to prove it again would cut them off mid-conversation.
ALTER TABLE user_phones
    -- The MessageSid of the message that carried the code (NULL: linked before
    -- proof existed), so that Twilio's retry of it is recognised as the same proof.
    ADD COLUMN verified_by text;

CREATE TABLE phone_claims (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    phone_e164 text NOT NULL CHECK (phone_e164 ~ '^\+[1-9][0-9]{6,14}$'),
    -- sha256 of the claim's salt and the code: the code itself is never stored.
    code_sha256 bytea NOT NULL,
    salt bytea NOT NULL,
    -- Messages from the number that carried a wrong code; bounded.
    attempts integer NOT NULL DEFAULT 0,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX phone_claims_phone ON phone_claims (phone_e164);

-- Who may use the claims (0011_service_roles.sql): gateway-api makes, checks
-- and ends them; messaging only reads whether a number is claimed, to tell an
-- unproven sender where the code is.
GRANT SELECT, INSERT, UPDATE, DELETE ON phone_claims TO yourclaw_gateway_api;
GRANT SELECT ON phone_claims TO yourclaw_messaging;
