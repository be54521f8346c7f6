"""Bare FastAPI apps measured beside order-api in the same run: the ceilings the goals use."""
