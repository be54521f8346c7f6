from __future__ import annotations

from fastapi import APIRouter, Response

from order_api.config import SettingsDep
from order_api.health import service
from order_api.health.schemas import Liveness, Readiness
from order_api.platform.adapters import RedisDep
from order_api.platform.db import EngineDep

router = APIRouter(prefix="/health", tags=["operations"])

READINESS_RESPONSES: dict[int | str, dict[str, object]] = {
    503: {
        "model": Readiness,
        "description": "The database is down: take this process out of rotation.",
    }
}


@router.get("/live", summary="The process is up (never touches a back-end)")
async def live() -> Liveness:
    """Answered at the edge (`EdgeMiddleware`) before routing (the same body); declared here for the
    schema, and served from here only where that middleware is left out."""
    return Liveness()


# Named apart: a route's name is its operationId, which must be unique in the schema.
@router.get("", summary="Readiness, per component", responses=READINESS_RESPONSES, name="health")
@router.get("/ready", summary="Readiness, per component", responses=READINESS_RESPONSES)
async def ready(
    engine: EngineDep, redis: RedisDep, settings: SettingsDep, response: Response
) -> Readiness:
    timeout_seconds = settings.health_check_timeout_seconds
    report = await service.check_readiness(engine, redis, timeout_seconds)
    if report.status == "down":
        response.status_code = 503
    return report
