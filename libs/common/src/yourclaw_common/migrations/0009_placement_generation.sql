-- provisioner: fencing. Every placement of an assistant (a host and port) gets
-- the next generation; host commands carry it, and a host-agent refuses a
-- command older than the generation it runs, so nothing delayed or buffered
-- (a NATS outage) can remove or replace a newer placement.
ALTER TABLE assistants
    ADD COLUMN generation bigint NOT NULL DEFAULT 0;
