"""Embedded mode: no SMTP_HOST, no other process; e-mails become .eml files under DATA_DIR/mail."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from order_api.jobs.models import OutboxStatus
from tests.jobs.conftest import FAST_JOBS, outbox_row, queue_and_commit
from tests.support import AppBuilder
from tests.waiting import wait_until


async def test_embedded_mode_writes_one_eml_file(make_app: AppBuilder, tmp_path: Path) -> None:
    app = await make_app(**FAST_JOBS)
    assert app.state.settings.smtp_host is None
    message_id = await queue_and_commit(app)
    path = tmp_path / "mail" / f"{message_id}.eml"
    await wait_until(path.exists, f"{path} to be written")

    async def done() -> bool:
        row = await outbox_row(app, message_id)
        return row is not None and row.status == OutboxStatus.DONE

    await wait_until(done, "the outbox row to be done")
    await app.state.background.relay.relay_due()
    assert [file.name for file in (tmp_path / "mail").iterdir()] == [path.name]
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == f"<{message_id}@localhost>"
    assert parsed["Subject"] == "Welcome to order-api"
    assert parsed["To"] == "ada@example.com"
