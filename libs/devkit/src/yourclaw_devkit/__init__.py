"""Local development tools."""
