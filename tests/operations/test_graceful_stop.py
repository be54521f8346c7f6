"""SIGTERM to a real `order-api serve` on PostgreSQL and Redis while customers keep ordering: the
process stops accepting, finishes what it accepted, closes sockets with 1012, flushes its outbox."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx2
from sqlalchemy import select

from order_api.jobs.models import OutboxMessage, OutboxStatus
from order_api.orders.events import ORDER_EVENT_KIND
from order_api.orders.models import IdempotencyRecord, Order
from order_api.platform.db import create_engine, create_sessions
from tests.accounts import bearer
from tests.processes import ADMIN, empty_database, migrate_and_create_admin, production_env
from tests.stream.test_two_processes import Person, client_of, log_in, register, stream_url
from tests.streams import HEARTBEAT, frames_until_closed, next_frame, open_stream
from tests.support import make_settings
from tests.test_cli import RunningServer, running_server
from tests.waiting import wait_until

CLIENTS = 16
ANSWERED_BEFORE_SIGTERM = 48
# What uvicorn closes every open socket with when it stops: "service restart", reconnect.
SERVICE_RESTART = 1012


@dataclass(frozen=True)
class Attempt:
    key: str
    status: int | None  # None: a transport error, no response at all
    order_id: str | None
    at: float  # time.monotonic() when the outcome arrived


@dataclass
class Burst:
    server: RunningServer
    buyer: Person
    product_id: str
    attempts: list[Attempt]
    sigterm_at: float | None = None

    async def place(self) -> Attempt:
        key = f"stop-{uuid.uuid4()}"
        body = {
            "items": [{"product_id": self.product_id, "quantity": 1}],
            "payment_method_id": "pm_1",
        }
        headers = {**bearer(self.buyer.token), "Idempotency-Key": key}
        # A client of its own per request, so no keep-alive: a request is "accepted" exactly
        # when its connection was, and a refused or reset one never reached the app.
        try:
            async with httpx2.AsyncClient(base_url=self.server.url, timeout=60) as client:
                response = await client.post("/api/v1/orders", json=body, headers=headers)
        except httpx2.TransportError:
            return Attempt(key, None, None, time.monotonic())
        order_id = response.json().get("id") if response.status_code == 201 else None
        return Attempt(key, response.status_code, order_id, time.monotonic())

    async def keep_ordering(self) -> None:
        """Until the stopping server turns this client away."""
        while True:
            attempt = await self.place()
            self.attempts.append(attempt)
            if attempt.status is None and self.sigterm_at is not None:
                return


async def setup_buyer(server: RunningServer) -> tuple[Person, str]:
    async with client_of(server) as http:
        admin = await log_in(http, *ADMIN)
        product = await http.post(
            "/api/v1/products",
            json={"name": "Plenty", "price_cents": 100, "stock": 100_000},
            headers=bearer(admin),
        )
        assert product.status_code == 201, product.text
        return await register(http, admin), product.json()["id"]


async def test_sigterm_during_a_burst_loses_no_accepted_order(
    tmp_path: Path, postgres_database: str, redis_url: str, redis_prefix: str
) -> None:
    env = production_env(
        postgres_database,
        redis_url,
        redis_prefix,
        RATE_LIMIT_ENABLED="false",
        WS_HEARTBEAT_SECONDS="5",  # a heartbeat soon proves the socket is a live stream
    )
    migrate_and_create_admin(tmp_path, env)
    try:
        with running_server(tmp_path, **env) as server:
            buyer, product_id = await setup_buyer(server)
            burst = Burst(server, buyer, product_id, [])
            async with open_stream(stream_url(server, buyer.token, buyer.id)) as websocket:
                assert await next_frame(websocket) == HEARTBEAT
                clients = [asyncio.create_task(burst.keep_ordering()) for _ in range(CLIENTS)]
                await wait_until(
                    lambda: len(burst.attempts) >= ANSWERED_BEFORE_SIGTERM, "orders to flow"
                )
                burst.sigterm_at = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                await asyncio.gather(*clients)
                _, close_code = await frames_until_closed(websocket)
            await asyncio.to_thread(server.wait)
        # uvicorn stops gracefully, then re-raises the signal so the exit status says why it ended.
        assert server.process.returncode in {0, -signal.SIGTERM}
        assert close_code == SERVICE_RESTART
        await assert_nothing_accepted_was_lost(burst, postgres_database, tmp_path)
    finally:
        await empty_database(postgres_database, tmp_path)


async def assert_nothing_accepted_was_lost(
    burst: Burst, postgres_database: str, tmp_path: Path
) -> None:
    assert burst.sigterm_at is not None
    answered = [a for a in burst.attempts if a.status is not None]
    turned_away = [a for a in burst.attempts if a.status is None]
    assert {a.status for a in answered} == {201}
    assert all(a.at > burst.sigterm_at for a in turned_away)
    assert turned_away, "every client stops at its first refusal after SIGTERM"
    # In-flight requests were finished, not dropped: some answers came after the signal.
    assert any(a.at > burst.sigterm_at for a in answered)

    settings = make_settings(postgres_database, tmp_path)
    engine = create_engine(settings)
    try:
        async with create_sessions(engine, settings)() as session:
            orders = {str(i) for i in (await session.scalars(select(Order.id))).all()}
            stored_keys = {
                record.key: record.response_status
                for record in (await session.scalars(select(IdempotencyRecord))).all()
            }
            events = (
                await session.scalars(
                    select(OutboxMessage).where(OutboxMessage.kind == ORDER_EVENT_KIND)
                )
            ).all()
    finally:
        await engine.dispose()
    assert orders == {a.order_id for a in answered}
    assert len(orders) == len(answered)
    # A refused or reset request created nothing: no order, no settled key.
    assert all(stored_keys.get(a.key) != 201 for a in turned_away)
    assert {e.payload["order_id"] for e in events} == orders
    # The relay's last pass handed every event to the queue before the process exited.
    assert [e for e in events if e.status is OutboxStatus.PENDING] == []
