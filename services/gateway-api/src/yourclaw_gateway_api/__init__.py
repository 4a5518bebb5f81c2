"""YourClaw gateway_api service."""
