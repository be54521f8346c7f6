from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ComponentState = Literal["ok", "down"]
ReadinessState = Literal["ok", "degraded", "down"]


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class ComponentHealth(BaseModel):
    status: ComponentState
    latency_ms: float = Field(description="Time the check took, bounded by the check timeout.")
    detail: str | None = Field(default=None, examples=["timed out after 1.0 s"])


class Readiness(BaseModel):
    """`down` (503) when the database is; `degraded` (200) when only Redis is."""

    status: ReadinessState
    checks: dict[str, ComponentHealth]
