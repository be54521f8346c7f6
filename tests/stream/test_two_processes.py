"""The issue's acceptance check, as real processes on PostgreSQL and Redis: two `order-api serve`
and one `order-api worker`. A customer and a staff member hold sockets on one process while staff
moves the order on the other; both see each transition once, in order, and nobody else does.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx2
from websockets.asyncio.client import ClientConnection

from tests.accounts import PASSWORD, bearer, new_email
from tests.jobs.test_worker import Workers
from tests.processes import ADMIN, empty_database, migrate_and_create_admin, production_env
from tests.streams import HEARTBEAT, next_event, next_frame, open_stream, refusal_code
from tests.test_cli import RunningServer, command_env, running_server

LIFECYCLE = [(None, "PENDING"), ("PENDING", "PAID"), ("PAID", "SHIPPED"), ("SHIPPED", "DELIVERED")]
EVENT_FIELDS = {"order_id", "status", "previous_status", "at"}  # never the customer's id


@dataclass(frozen=True)
class Person:
    id: str
    token: str


@asynccontextmanager
async def client_of(server: RunningServer) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=server.url, timeout=60) as client:
        yield client


def stream_url(server: RunningServer, token: str, customer_id: str | None = None) -> str:
    path = "/api/v1/orders/ws" + (f"/{customer_id}" if customer_id is not None else "")
    return server.url.replace("http://", "ws://", 1) + f"{path}?token={token}"


async def log_in(client: httpx2.AsyncClient, email: str, password: str = PASSWORD) -> str:
    response = await client.post(
        "/api/v1/auth/token", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def register(client: httpx2.AsyncClient, admin: str, role: str = "customer") -> Person:
    """A registered account; staff are registered, then promoted by the admin."""
    email = new_email(role)
    body = {"email": email, "password": PASSWORD, "full_name": "Test Person"}
    created = await client.post("/api/v1/users", json=body)
    assert created.status_code == 201, created.text
    user_id: str = created.json()["id"]
    if role != "customer":
        promoted = await client.patch(
            f"/api/v1/users/{user_id}", json={"role": role}, headers=bearer(admin)
        )
        assert promoted.status_code == 200, promoted.text
    return Person(user_id, await log_in(client, email))


async def place_order(client: httpx2.AsyncClient, buyer: Person, product_id: str) -> str:
    body = {"items": [{"product_id": product_id, "quantity": 1}], "payment_method_id": "pm_1"}
    placed = await client.post("/api/v1/orders", json=body, headers=bearer(buyer.token))
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["id"]
    return order_id


def transition(event: dict[str, Any]) -> tuple[str, str | None, str]:
    return event["order_id"], event["previous_status"], event["status"]


def assert_lifecycle_seen_once_in_order(events: list[dict[str, Any]], order_id: str) -> None:
    assert [transition(event) for event in events] == [(order_id, *step) for step in LIFECYCLE]
    assert all(set(event) == EVENT_FIELDS for event in events)
    instants = [datetime.fromisoformat(event["at"]) for event in events]
    assert instants == sorted(instants)
    assert all(event["at"].endswith("Z") for event in events)


def access_lines(logs: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    return [
        line
        for line in lines
        if line.get("logger") == "order_api.access" and line["event"] == event
    ]


@dataclass(frozen=True)
class Cast:
    admin: str
    staff: Person
    customer: Person
    stranger: Person
    product_id: str

    @property
    def tokens(self) -> list[str]:
        return [self.admin, self.staff.token, self.customer.token, self.stranger.token]


async def staff_with_a_kettle(client: httpx2.AsyncClient) -> tuple[str, Person, str]:
    """The admin's token, a staff member the admin promoted, and the id of a product they added."""
    admin = await log_in(client, *ADMIN)
    staff = await register(client, admin, role="staff")
    product = await client.post(
        "/api/v1/products",
        json={"name": "Kettle", "price_cents": 2500, "stock": 5},
        headers=bearer(staff.token),
    )
    assert product.status_code == 201, product.text
    return admin, staff, product.json()["id"]


async def cast_through(client: httpx2.AsyncClient) -> Cast:
    admin, staff, product_id = await staff_with_a_kettle(client)
    customer, stranger = await register(client, admin), await register(client, admin)
    return Cast(admin, staff, customer, stranger, product_id)


async def run_through_lifecycle(
    client: httpx2.AsyncClient, cast: Cast, sockets: list[ClientConnection]
) -> tuple[str, list[list[dict[str, Any]]]]:
    """Place and move one order; each event is in on every socket before the next move."""
    order_id = await place_order(client, cast.customer, cast.product_id)
    seen: list[list[dict[str, Any]]] = [[] for _ in sockets]
    for previous, status in LIFECYCLE:
        if previous is not None:
            moved = await client.post(
                f"/api/v1/orders/{order_id}/status",
                json={"status": status},
                headers=bearer(cast.staff.token),
            )
            assert moved.status_code == 200, moved.text
        for websocket, events in zip(sockets, seen, strict=True):
            events.append(await next_event(websocket))
    return order_id, seen


async def test_sockets_on_one_process_see_every_move_made_on_the_other_once_in_order(
    tmp_path: Path, postgres_database: str, redis_url: str, redis_prefix: str
) -> None:
    env = production_env(postgres_database, redis_url, redis_prefix, WS_HEARTBEAT_SECONDS="1")
    migrate_and_create_admin(tmp_path, env)
    workers = Workers(command_env(tmp_path, **env), tmp_path)
    try:
        with (
            running_server(tmp_path, "--workers", "1", **env) as api_a,
            running_server(tmp_path, "--workers", "1", **env) as api_b,
        ):
            workers.start()
            async with client_of(api_a) as via_a, client_of(api_b) as via_b:
                cast = await cast_through(via_a)
                customer, stranger = cast.customer, cast.stranger
                async with (
                    open_stream(stream_url(api_a, customer.token, customer.id)) as customer_socket,
                    open_stream(stream_url(api_a, cast.staff.token)) as staff_socket,
                    open_stream(stream_url(api_b, stranger.token, stranger.id)) as stranger_socket,
                ):
                    sockets = [customer_socket, staff_socket]
                    # A heartbeat shows each socket is registered with its process's hub.
                    for websocket in (*sockets, stranger_socket):
                        assert await next_frame(websocket) == HEARTBEAT

                    order_id, seen = await run_through_lifecycle(via_b, cast, sockets)

                    for websocket, events in zip(sockets, seen, strict=True):
                        assert_lifecycle_seen_once_in_order(events, order_id)
                        # No late duplicate: the next frames are two heartbeats of silence.
                        assert [await next_frame(websocket) for _ in range(2)] == [HEARTBEAT] * 2
                    # Process B's hub relays in publication order: the stranger's own order comes
                    # after everything above, so any leak of the customer's order would come first.
                    stranger_order = await place_order(via_b, stranger, cast.product_id)
                    leak_check = await next_event(stranger_socket)
                    assert transition(leak_check) == (stranger_order, None, "PENDING")

                    assert (
                        await refusal_code(stream_url(api_b, stranger.token, customer.id)) == 4403
                    )
                    assert await refusal_code(stream_url(api_b, stranger.token)) == 4403
            workers.stop_all()
            logs = api_a.stop() + api_b.stop()
    finally:
        workers.stop_all()
        await empty_database(postgres_database, tmp_path)

    assert [token for token in cast.tokens if token in logs] == []
    sockets_logged = access_lines(logs, "websocket")
    assert len(sockets_logged) == 5, sockets_logged
    assert {line["query"] for line in sockets_logged} == {"token=[redacted]"}
    assert [line["close_code"] for line in sockets_logged].count(4403) == 2
