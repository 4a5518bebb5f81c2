"""Provider webhooks: verify, publish, answer."""
