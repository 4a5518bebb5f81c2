"""YourClaw host-agent service (built in a later issue; see DESIGN.md)."""
