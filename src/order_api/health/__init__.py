"""Liveness and readiness. The door: `router`, and `liveness` for the answer the edge gives."""
