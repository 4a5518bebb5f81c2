"""YourClaw messaging service."""
