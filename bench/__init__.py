"""`make bench`: order-api's throughput next to bare FastAPI baselines, measured in one run."""
