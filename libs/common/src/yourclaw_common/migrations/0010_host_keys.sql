-- provisioner: each host-agent's X25519 public key, from its heartbeat. The
-- secrets of a spec sent to a host are sealed to it; a host without one (an
-- agent older than sealing) takes no new placements.
ALTER TABLE hosts
    ADD COLUMN public_key text;
