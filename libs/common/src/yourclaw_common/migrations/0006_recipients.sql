-- messaging: a user as the WhatsApp side sees them, by phone or by user id:
-- their assistant (where it answers, with which token and model) and whether
-- their subscription lets them use it.
CREATE VIEW recipients AS
SELECT p.user_id, p.phone_e164 AS phone, a.id AS assistant_id,
       a.status AS assistant_status, a.base_url, a.gateway_token_encrypted,
       a.model, s.status AS subscription_status
FROM user_phones p
LEFT JOIN assistants a ON a.user_id = p.user_id
LEFT JOIN subscriptions s ON s.user_id = p.user_id;
