-- provisioner: job leases (a replica that dies mid-job loses its lease and another
-- picks the job up), one active job per user, and what the assistant runs.

ALTER TABLE provisioning_jobs
    -- Why the job exists: created, recreated, model_changed, api_keys_changed,
    -- subscription_activated, subscription_canceled, reconcile, host_lost, deleted.
    ADD COLUMN reason text,
    -- The replica holding the job and until when; renewed while it works.
    ADD COLUMN locked_by text,
    ADD COLUMN locked_until timestamptz,
    -- A new request arrived while the job ran: run again when this one ends.
    ADD COLUMN requeue boolean NOT NULL DEFAULT false,
    ADD COLUMN finished_at timestamptz;

-- At most one job per user waits or runs; new requests fold into it.
CREATE UNIQUE INDEX provisioning_jobs_active_user_key ON provisioning_jobs (user_id)
    WHERE status IN ('PENDING', 'RUNNING');

ALTER TABLE assistants
    -- spec_hash of the container the host was last asked to run.
    ADD COLUMN spec_hash text;
