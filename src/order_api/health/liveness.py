"""`GET /health/live` answered at the edge, before routing.

Probes call it every few seconds on every process, and it must never wait on anything: it gets
the request id, the access line, the metrics and the security and CORS headers, and skips the
rest (routing, dependencies, the rate limiter, which exempts probes anyway). Routed through
FastAPI it cost 2.5x a plain FastAPI JSON route (docs/benchmarks.md). The route in the health
router declares the same answer in the OpenAPI schema; HEAD gets its headers without the body.
"""

from __future__ import annotations

from order_api.health.schemas import Liveness
from order_api.platform.http import FixedAnswer

LIVENESS_PATH = "/health/live"
LIVENESS_BODY = Liveness().model_dump_json().encode()
LIVENESS_ANSWER = FixedAnswer.json(LIVENESS_PATH, LIVENESS_BODY)
