"""Event models, grouped by domain."""
