"""The SQL that order-api's `POST /api/v1/orders` with an `Idempotency-Key` sends, in order.

These statements mirror the service: they are what order-api sends to PostgreSQL for a one-line
order, verbatim, as tests/orders/test_order_statements.py captures them (and fails when they
drift: copy the new ones from its message). The bare order baseline
(bench/baselines/bare_order.py) replays them, in the same two transactions.
"""

from __future__ import annotations

# Transaction 1, the idempotency claim, committed before the order is placed.
# Authentication's read of the caller, inside the claim's transaction as in the service.
# (The service reads these columns only: this one is the statement
# SQLAlchemy compiles for asyncpg, `auth.repository.CALLER_ROW`, as it reaches PostgreSQL.)
SELECT_USER = (
    "SELECT users.id, users.email, users.full_name, users.role, users.is_active, "
    "users.tokens_valid_after \nFROM users \nWHERE users.id = $1::UUID"
)
# Claims a free or expired key; RETURNING nothing means another request holds it. (The service
# also purges expired records, at most once a minute per process: left out here.)
CLAIM_IDEMPOTENCY_KEY = (
    "INSERT INTO idempotency_records (id, user_id, key, request_hash, response_status, "
    "response_body, created_at, expires_at) VALUES ($1::UUID, $2::UUID, $3::VARCHAR, "
    "$4::VARCHAR, $5::INTEGER, $6::JSON, $7::TIMESTAMP WITH TIME ZONE, "
    "$8::TIMESTAMP WITH TIME ZONE) ON CONFLICT (user_id, key) DO UPDATE SET "
    "request_hash = excluded.request_hash, response_status = $9::INTEGER, response_body = NULL, "
    "created_at = excluded.created_at, expires_at = excluded.expires_at "
    "WHERE idempotency_records.expires_at <= $10::TIMESTAMP WITH TIME ZONE "
    "RETURNING idempotency_records.id"
)

# Transaction 2, the order: one stock update per line, then the rows, then the outbox.
# (Each entry below is one call to PostgreSQL, as tests/orders/test_order_statements.py checks.)
RESERVE_STOCK = (
    "UPDATE products SET stock=(products.stock - $1::INTEGER), "
    "units_sold=(products.units_sold + $1::INTEGER) WHERE products.id = $2::UUID "
    "AND products.is_active IS true AND products.stock >= $1::INTEGER "
    "RETURNING products.name, products.price_cents"
)
INSERT_ORDER = (
    "INSERT INTO orders (id, customer_id, status, total_cents, currency, payment_method_id, "
    "created_at, updated_at) VALUES ($1::UUID, $2::UUID, $3, $4::BIGINT, $5::VARCHAR, "
    "$6::VARCHAR, $7::TIMESTAMP WITH TIME ZONE, $8::TIMESTAMP WITH TIME ZONE)"
)
# One multi-row INSERT for all lines; each line adds a group of seven parameters. (The service
# sends one row per line in one executemany call: for one line, the same statement.)
INSERT_ORDER_LINES_HEAD = (
    "INSERT INTO order_lines (id, order_id, position, product_id, product_name, "
    "unit_price_cents, quantity) VALUES "
)
ORDER_LINE_VALUES = (
    "(${}::UUID, ${}::UUID, ${}::INTEGER, ${}, ${}::VARCHAR, ${}::INTEGER, ${}::INTEGER)"
)
STORE_IDEMPOTENT_RESPONSE = (
    "UPDATE idempotency_records SET response_status=$1::INTEGER, response_body=$2::JSON "
    "WHERE idempotency_records.user_id = $3::UUID AND idempotency_records.key = $4::VARCHAR "
    "AND idempotency_records.response_status IS NULL "
    "AND idempotency_records.created_at = $5::TIMESTAMP WITH TIME ZONE "
    "RETURNING idempotency_records.id"
)
# One call for two rows (asyncpg's executemany, one round trip): the order event for the live
# stream, and the confirmation e-mail.
INSERT_OUTBOX_MESSAGE = (
    "INSERT INTO outbox_messages (id, kind, payload, status, attempts, available_at, "
    "lease_token, last_error, created_at, completed_at) VALUES ($1::UUID, $2::VARCHAR, "
    "$3::JSON, $4, $5::INTEGER, $6::TIMESTAMP WITH TIME ZONE, $7::UUID, $8::VARCHAR, "
    "$9::TIMESTAMP WITH TIME ZONE, $10::TIMESTAMP WITH TIME ZONE)"
)
INSERT_ORDER_EVENT = (
    "INSERT INTO order_events (id, order_id, from_status, to_status, actor_id, at) "
    "VALUES ($1::UUID, $2::UUID, $3, $4, $5::UUID, $6::TIMESTAMP WITH TIME ZONE)"
)


def insert_order_lines(line_count: int) -> str:
    """The multi-row INSERT the service sends for an order of `line_count` lines."""
    groups = (
        ORDER_LINE_VALUES.format(*range(7 * line + 1, 7 * line + 8)) for line in range(line_count)
    )
    return INSERT_ORDER_LINES_HEAD + ", ".join(groups)


CLAIM_TRANSACTION = [SELECT_USER, CLAIM_IDEMPOTENCY_KEY]
ORDER_TRANSACTION = [
    RESERVE_STOCK,
    INSERT_ORDER,
    insert_order_lines(1),
    INSERT_ORDER_EVENT,
    INSERT_OUTBOX_MESSAGE,
    STORE_IDEMPOTENT_RESPONSE,
]
ORDER_STATEMENTS = [*CLAIM_TRANSACTION, *ORDER_TRANSACTION]
