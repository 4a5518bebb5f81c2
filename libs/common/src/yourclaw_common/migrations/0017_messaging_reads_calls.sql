-- messaging asks a gateway once more after a failed turn only when that turn
-- called no model (its own steps are then not repeated): it reads llm-proxy's
-- record of the calls, never writes it.
GRANT SELECT ON llm_calls TO yourclaw_messaging;
