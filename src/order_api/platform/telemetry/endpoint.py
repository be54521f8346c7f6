"""`GET /metrics` for the allowed networks: this process's samples, or every process's in
multiprocess mode, with the requests ended in this loop tick counted first."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess
from prometheus_client.exposition import choose_encoder
from pydantic import IPvAnyNetwork
from starlette.exceptions import HTTPException as StarletteHTTPException

from order_api.config import SettingsDep
from order_api.platform.networks import address_in
from order_api.platform.telemetry.logs import write_ended_requests
from order_api.platform.telemetry.metrics import MULTIPROC_DIR_VARIABLE

router = APIRouter(include_in_schema=False)


def is_allowed_peer(client: Any, networks: Iterable[IPvAnyNetwork]) -> bool:
    """Whether the socket peer (`scope["client"]`) is in one of the networks; no peer is not."""
    return bool(client) and address_in(client[0], networks)


def exposition(accept: str) -> tuple[bytes, str]:
    """What a scrape gets, in the format its Accept asks for (Prometheus text 0.0.4 by default):
    every process's files in multiprocess mode, else this process's registry."""
    encode, content_type = choose_encoder(accept)
    if os.environ.get(MULTIPROC_DIR_VARIABLE):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return encode(registry), content_type
    return encode(REGISTRY), content_type


@router.get("/metrics")
async def metrics(request: Request, settings: SettingsDep) -> Response:
    networks = settings.metrics_allowed_networks
    if not is_allowed_peer(request.scope.get("client"), networks):
        # The same answer as an unknown path: outsiders learn nothing about the endpoint.
        raise StarletteHTTPException(404)
    write_ended_requests()  # a request answered just before the scrape is in it
    body, content_type = exposition(request.headers.get("accept", ""))
    return Response(body, headers={"content-type": content_type})
