-- billing: one Stripe customer per user (it exists before any subscription does),
-- and what order-independent event handling and the grace period need.

-- billing. Created at the first checkout, reused by every later one.
CREATE TABLE billing_customers (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    stripe_customer_id text NOT NULL UNIQUE,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE subscriptions
    -- When we first saw the subscription past_due/unpaid; the grace period
    -- (BILLING_GRACE_PERIOD_DAYS) runs from here. NULL otherwise.
    ADD COLUMN past_due_since timestamptz,
    -- Stripe's `created` of the subscription: when a user has had several, the
    -- row follows the live one, else the newest.
    ADD COLUMN stripe_subscription_created_at timestamptz;

-- The grace-period sweep looks only at these.
CREATE INDEX subscriptions_past_due_idx ON subscriptions (past_due_since)
    WHERE status = 'PAST_DUE';
