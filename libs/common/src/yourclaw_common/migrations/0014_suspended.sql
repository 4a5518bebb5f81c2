-- Idle assistants sleep (issue #19): their host-agent freezes or stops the
-- container after a quiet while and wakes it for a message or a due reminder.
-- The provisioner records it from heartbeats: SUSPENDED while the host reports
-- the container sleeping, READY once awake. SUSPENDED is healthy: nothing
-- re-creates, heals or alerts on it.
ALTER TABLE assistants DROP CONSTRAINT assistants_status_check;
ALTER TABLE assistants ADD CONSTRAINT assistants_status_check
    CHECK (status IN ('NONE', 'PROVISIONING', 'READY', 'SUSPENDED', 'ERROR'));
