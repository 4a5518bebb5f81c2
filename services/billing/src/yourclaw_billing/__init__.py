"""YourClaw billing: Stripe Checkout and Portal on request, Stripe events applied
idempotently and order-independently, subscription.* domain events out."""
