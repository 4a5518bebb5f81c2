"""YourClaw provisioner: places, creates and heals per-user OpenClaw gateways."""
