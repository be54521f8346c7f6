"""The main story, end to end, through `order-api stack` on the real PostgreSQL and Redis.

Two API processes and a worker run as an operator starts them. The mail catcher is the test's own
SMTP server (`--no-mail-catcher`), which can hold a conversation open: so the worker is killed in
the middle of delivering an e-mail, not before or after it. The test speaks only HTTP and
WebSocket to the API processes and reads what the SMTP server accepted.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import httpx2
from websockets.asyncio.client import ClientConnection

from tests.accounts import PASSWORD, bearer, new_email
from tests.operations.stack_run import RunningStack, running_stack
from tests.processes import ADMIN, empty_database, production_env
from tests.smtp_server import SmtpServer
from tests.stream.test_two_processes import log_in, staff_with_a_kettle, transition
from tests.streams import next_event, open_stream
from tests.test_cli import run
from tests.waiting import wait_until

# A killed worker's job is taken back after one lease: seconds here, a minute by default.
FAST_RECOVERY = {
    "JOB_LEASE_SECONDS": "3",
    "JOB_RETRY_BASE_SECONDS": "0.2",
    "JOB_RETRY_MAX_SECONDS": "1",
    "OUTBOX_POLL_SECONDS": "0.2",
}
RECOVERY_WAIT_SECONDS = 60.0  # a bound on waiting, not a speed claim
Transition = tuple[str, str | None, str]


def mail_to(smtp: SmtpServer, address: str) -> list[EmailMessage]:
    with smtp.inbox.lock:
        return [message for message in smtp.inbox.messages if message["To"] == address]


async def arrived(smtp: SmtpServer, address: str, subject_part: str) -> None:
    """Wait until a message to `address` whose subject holds `subject_part` was accepted."""

    def caught() -> bool:
        return any(subject_part in message["Subject"] for message in mail_to(smtp, address))

    await wait_until(caught, f"an e-mail to {address} about {subject_part!r}")


async def test_the_main_story_through_two_api_processes_and_a_worker_that_dies(
    tmp_path: Path, postgres_database: str, redis_url: str, redis_prefix: str, smtp: SmtpServer
) -> None:
    heartbeat = tmp_path / "worker.heartbeat"
    env = production_env(
        postgres_database,
        redis_url,
        redis_prefix,
        WORKER_HEARTBEAT_FILE=str(heartbeat),
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=str(smtp.port),
        SMTP_TLS="none",
        **FAST_RECOVERY,
    )
    try:
        with running_stack(tmp_path, "--no-mail-catcher", **env) as stack:
            created = run(
                ["create-admin", "--email", ADMIN[0], "--password", ADMIN[1]], tmp_path, **env
            )
            assert created.returncode == 0, created.stderr
            first, second = stack.urls
            async with (
                httpx2.AsyncClient(base_url=first, timeout=60) as one,
                httpx2.AsyncClient(base_url=second, timeout=60) as two,
            ):
                await walk_the_story(stack, smtp, one, two)
            # What the worker container's health check runs.
            probe = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "order_api.ops.probe", "--heartbeat", str(heartbeat)
            )
            assert await probe.wait() == 0
            assert stack.interrupt() == 0
            assert not heartbeat.exists()
            assert stack.supervisor_events("stack_stopped")
            assert "Application shutdown complete." in stack.child_output("api-2")
            assert "worker_stopped" in stack.child_output("worker-1")
    finally:
        await empty_database(postgres_database, tmp_path)


async def walk_the_story(
    stack: RunningStack, smtp: SmtpServer, one: httpx2.AsyncClient, two: httpx2.AsyncClient
) -> None:
    _, staff, kettle = await staff_with_a_kettle(one)

    # Register on one process; the welcome e-mail comes through the worker and real SMTP.
    email = new_email("customer")
    body = {"email": email, "password": PASSWORD, "full_name": "Ada Lovelace"}
    registered = await one.post("/api/v1/users", json=body)
    assert registered.status_code == 201, registered.text
    customer_id = registered.json()["id"]
    await arrived(smtp, email, "Welcome to order-api")
    customer = await log_in(two, email)

    # Browse on the other process, then order with a key and retry it there.
    listed = await two.get("/api/v1/products", params={"q": "Kettle"})
    assert [p["id"] for p in listed.json()["items"]] == [kettle]
    order_body = {
        "items": [{"product_id": kettle, "quantity": 2}],
        "payment_method_id": "pm_1",
    }
    key = {"Idempotency-Key": "story-order-1", **bearer(customer)}
    placed = await one.post("/api/v1/orders", json=order_body, headers=key)
    assert placed.status_code == 201, placed.text
    retried = await two.post("/api/v1/orders", json=order_body, headers=key)
    assert (retried.status_code, retried.json()) == (201, placed.json())
    assert retried.headers["idempotent-replayed"] == "true"
    order_id = placed.json()["id"]
    mine = await two.get("/api/v1/orders", headers=bearer(customer))
    assert [o["id"] for o in mine.json()["items"]] == [order_id]
    await arrived(smtp, email, "is confirmed")

    # The customer watches on the second process while staff moves the order on the first.
    watch = second_ws(stack) + f"/api/v1/orders/ws/{customer_id}?token={customer}"
    async with open_stream(watch) as websocket:
        for status in ("PAID", "SHIPPED"):
            await move(one, staff.token, order_id, status)
            assert transition(await next_event(websocket))[2] == status
            await arrived(smtp, email, f"is now {status}")

        # The worker dies in the middle of the DELIVERED e-mail: the server holds it at RCPT.
        smtp.inbox.conversations_started.clear()
        smtp.inbox.recipient_delay_seconds = RECOVERY_WAIT_SECONDS
        await move(one, staff.token, order_id, "DELIVERED")
        started = smtp.inbox.conversations_started.is_set
        await wait_until(started, "the worker to begin the DELIVERED e-mail")
        (worker,) = stack.pids("worker-1")
        os.kill(worker, signal.SIGKILL)
        smtp.inbox.recipient_delay_seconds = 0
        # More work queues while no worker runs.
        second_key = {"Idempotency-Key": "story-order-2", **bearer(customer)}
        later = await two.post("/api/v1/orders", json=order_body, headers=second_key)
        assert later.status_code == 201, later.text
        await wait_until(
            lambda: len(stack.pids("worker-1")) == 2, "the stack to restart the worker"
        )

        # After the restart, nothing is lost: the live events, and every e-mail.
        # Live events are delivered at least once: a kill after publishing repeats one.
        wanted = {(order_id, "SHIPPED", "DELIVERED"), (later.json()["id"], None, "PENDING")}
        assert wanted <= set(await events_until(websocket, wanted))
        await wait_until(lambda: len(mail_to(smtp, email)) >= 6, "every e-mail")

    history = await two.get(f"/api/v1/orders/{order_id}/events", headers=bearer(customer))
    assert [(e["from_status"], e["to_status"]) for e in history.json()] == [
        (None, "PENDING"),
        ("PENDING", "PAID"),
        ("PAID", "SHIPPED"),
        ("SHIPPED", "DELIVERED"),
    ]
    # The interrupted e-mail was never accepted, so the restarted worker's is the only one.
    caught = mail_to(smtp, email)
    kinds = Counter(kind_of(message) for message in caught)
    assert kinds == {"welcome": 1, "confirmed": 2, "PAID": 1, "SHIPPED": 1, "DELIVERED": 1}
    assert len({message["Message-ID"] for message in caught}) == len(caught)


async def events_until(websocket: ClientConnection, wanted: set[Transition]) -> list[Transition]:
    """Events until every one `wanted` came; bounded as a whole (a restart and a lease first)."""
    events: list[Transition] = []
    async with asyncio.timeout(RECOVERY_WAIT_SECONDS):
        while not wanted <= set(events):
            events.append(transition(await next_event(websocket)))
    return events


def second_ws(stack: RunningStack) -> str:
    return stack.urls[1].replace("http://", "ws://", 1)


async def move(client: httpx2.AsyncClient, token: str, order_id: str, status: str) -> None:
    moved = await client.post(
        f"/api/v1/orders/{order_id}/status", json={"status": status}, headers=bearer(token)
    )
    assert moved.status_code == 200, moved.text


def kind_of(message: EmailMessage) -> str:
    subject = str(message["Subject"])
    if subject.startswith("Welcome"):
        return "welcome"
    if subject.endswith("is confirmed"):
        return "confirmed"
    return subject.rsplit(" ", 1)[-1]
