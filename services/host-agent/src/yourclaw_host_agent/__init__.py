"""YourClaw host-agent: runs users' OpenClaw gateways on one host, commanded over NATS."""
