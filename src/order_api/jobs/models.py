from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Enum, Index, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from order_api.platform.db import Base, UTCDateTime


class OutboxStatus(enum.StrEnum):
    PENDING = "pending"  # written with the change, or due for a retry
    DISPATCHED = "dispatched"  # handed to the job queue
    PROCESSING = "processing"  # a job holds it until `available_at`
    DONE = "done"  # its effect happened (the e-mail was accepted by SMTP)
    FAILED = "failed"  # gave up: permanent error or attempts exhausted


class OutboxMessage(Base):
    """Work promised by a committed change; written in the same transaction as that change."""

    __tablename__ = "outbox_messages"
    __table_args__ = (Index("ix_outbox_messages_status_available_at", "status", "available_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[OutboxStatus] = mapped_column(
        Enum(
            OutboxStatus,
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=OutboxStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(default=0)
    # When the relay should (re)hand this row to the queue if it is not done by then.
    available_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Who holds the row right now (a relay between claim and dispatch, or a running job).
    lease_token: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
