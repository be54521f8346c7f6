"""The eight servers of one bench run, all up for the whole bench, each on its own port."""

from __future__ import annotations

import sys

from bench.environments import ORDER_API, for_baseline
from bench.scenarios import ServerName
from bench.servers import ServerSpec

BASELINE_MODULES = {
    ServerName.PLAIN_JSON: "bench.baselines.plain_json",
    ServerName.BARE_PRODUCT: "bench.baselines.bare_product",
    ServerName.BARE_ORDER: "bench.baselines.bare_order",
}


def serve(workers: int) -> list[str]:
    """The real command; the bench appends `--port P`."""
    return [ORDER_API, "serve", "--host", "127.0.0.1", "--workers", str(workers)]


def server_specs(
    service: dict[str, str], embedded: dict[str, str], database_url: str, pin: bool
) -> list[ServerSpec]:
    baselines = [
        ServerSpec(
            name,
            [sys.executable, "-m", "bench.serve_baseline", module],
            for_baseline(service, database_url),
            pin,
        )
        for name, module in BASELINE_MODULES.items()
    ]
    return [
        *baselines,
        ServerSpec(ServerName.SERVICE, serve(1), service, pin),
        ServerSpec(ServerName.PAIRED, serve(1), service, pin),
        # Two workers on two cores: pinning them to one core would measure nothing.
        ServerSpec(ServerName.SERVICE_TWO_PROCESSES, serve(2), service, False, workers=2),
        ServerSpec(
            ServerName.BARE_STACK, [sys.executable, "-m", "bench.serve_bare_stack"], service, pin
        ),
        ServerSpec(ServerName.EMBEDDED, serve(1), embedded, pin),
    ]
