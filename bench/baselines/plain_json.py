"""Baseline (a): plain FastAPI answering the same body as order-api's `GET /health/live`."""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}
