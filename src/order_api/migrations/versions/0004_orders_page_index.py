"""Orders by customer, newest first, in index order to the last tie-breaker.

A customer's page (`ORDER BY created_at DESC, id DESC LIMIT n`) read from an index of
(customer_id, created_at) still sorts each instant's orders by id. Its generic prepared plan
(PostgreSQL's after five executions) then preferred walking `ix_orders_created_at` backwards
and filtering by customer: 12 ms for a customer with 100 orders next to one with 33,000.
With `id` in the index the page is a plain index scan.

Revision ID: 5b1e0c7d9a24
Revises: f02f43b7040d
Create Date: 2026-11-24
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5b1e0c7d9a24"
down_revision: str | None = "f02f43b7040d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_orders_customer_id_created_at_id", "orders", ["customer_id", "created_at", "id"]
    )
    op.drop_index("ix_orders_customer_id_created_at", table_name="orders")


def downgrade() -> None:
    op.create_index("ix_orders_customer_id_created_at", "orders", ["customer_id", "created_at"])
    op.drop_index("ix_orders_customer_id_created_at_id", table_name="orders")
