"""Owner notifications: per-owner digests of findings on their own systems, over mail and webhooks."""
