"""Orders: placing them against stock, idempotent retries, the lifecycle and its history."""
