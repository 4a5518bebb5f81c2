"""Shared building blocks of the YourClaw services."""

__all__: list[str] = []
