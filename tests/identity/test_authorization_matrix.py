"""API-12 and API-13: every operation in the schema, sent as every role, answers as the matrix says.

The matrix itself is tests/authz_matrix.py; an operation it does not list fails (deny by default).
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from order_api.users.models import Role
from tests.accounts import Shop, bearer
from tests.authz_matrix import MATRIX, Caller, Operation, Outcome, RequestContext, Rule
from tests.openapi_walk import fetch_schema, operations
from tests.test_errors import assert_problem

USERS = "/api/v1/users"

DENIALS: dict[Outcome, tuple[int, str]] = {
    Outcome.UNAUTHENTICATED: (401, "not_authenticated"),
    Outcome.FORBIDDEN: (403, "forbidden"),
    Outcome.HIDDEN: (404, "not_found"),
}


async def fetch_operations(shop: Shop) -> dict[Operation, dict[str, Any]]:
    """Every (METHOD, path template) of the served schema, with its OpenAPI operation object."""
    document = await fetch_schema(shop.client)
    return {
        (where.split(" ", 1)[0], where.split(" ", 1)[1]): operation
        for where, operation in operations(document)
    }


def success_status(operation: dict[str, Any]) -> int:
    statuses = [int(status) for status in operation["responses"] if status.startswith("2")]
    assert len(statuses) == 1, f"expected one documented 2xx, found {statuses}"
    return statuses[0]


def assert_outcome(response: httpx2.Response, expected: Outcome, success: int) -> None:
    if expected is Outcome.ALLOWED:
        assert response.status_code == success
        return
    status, code = DENIALS[expected]
    assert_problem(response, status, code)
    if expected is Outcome.UNAUTHENTICATED:
        assert response.headers["www-authenticate"].startswith("Bearer")


def requires_token(operation: dict[str, Any]) -> bool:
    """OpenAPI 3: an empty requirement `{}` among the alternatives makes the token optional."""
    security = operation.get("security") or []
    return bool(security) and {} not in security


async def send_as(shop: Shop, caller: Caller, operation: Operation, rule: Rule) -> httpx2.Response:
    """The row's request from a caller of its own: logout-all must not spill into other cells."""
    account = None if caller.role is None else await shop.account(caller.role)
    request = await rule.build(RequestContext(shop, account))
    method, path = operation
    headers = account.headers if account else {}
    url = path.format(**request.path_params)
    return await shop.client.request(method, url, headers=headers, **request.kwargs())


async def test_matrix_and_schema_list_the_same_operations(shop: Shop) -> None:
    served = set(await fetch_operations(shop))
    without_row = sorted(served - set(MATRIX))
    without_operation = sorted(set(MATRIX) - served)
    # Both directions in one assertion, so a renamed path reports its old and its new name.
    assert (without_row, without_operation) == ([], []), (
        f"operations with no row in tests/authz_matrix.py: {without_row}; "
        f"rows for operations the schema does not serve: {without_operation}"
    )


async def test_every_caller_gets_the_matrix_outcome(shop: Shop) -> None:
    wrong = []
    for key, operation in sorted((await fetch_operations(shop)).items()):
        rule = MATRIX.get(key)
        if rule is None:
            continue  # reported by test_matrix_and_schema_list_the_same_operations
        success = success_status(operation)
        for caller in Caller:
            expected = rule.access.of(caller)
            response = await send_as(shop, caller, key, rule)
            try:
                assert_outcome(response, expected, success)
            except AssertionError:
                challenge = response.headers.get("www-authenticate")
                got = (
                    f"{response.status_code} (WWW-Authenticate: {challenge}) {response.text[:200]}"
                )
                wrong.append(f"{key} as {caller}: expected {expected.name}, got {got}")
    assert not wrong, "\n".join(wrong)


async def test_schema_documents_the_matrix_refusals(shop: Shop) -> None:
    """Swagger shows the lock exactly where anonymous callers are refused, and every refusal."""
    operations = await fetch_operations(shop)
    undocumented = []
    for key, rule in MATRIX.items():
        operation = operations.get(key)
        if operation is None:
            continue  # reported by test_matrix_and_schema_list_the_same_operations
        needs_token = rule.access.anonymous is not Outcome.ALLOWED
        if needs_token != requires_token(operation):
            undocumented.append(f"{key}: security {operation.get('security')}")
        for caller in Caller:
            denial = DENIALS.get(rule.access.of(caller))
            if denial and str(denial[0]) not in operation["responses"]:
                undocumented.append(f"{key}: no {denial[0]} response, yet {caller} gets it")
    assert not undocumented, "\n".join(undocumented)


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", USERS), ("DELETE", USERS), ("TRACE", USERS), ("PUT", f"{USERS}/me")],
)
async def test_customer_tampering_with_the_verb_gets_405_with_allow(
    shop: Shop, method: str, path: str
) -> None:
    customer = await shop.account(Role.CUSTOMER)
    documented = {verb for verb, template in await fetch_operations(shop) if template == path}
    response = await shop.client.request(method, path, headers=customer.headers)
    assert_problem(response, 405, "method_not_allowed")
    allowed = {verb.strip() for verb in response.headers["allow"].split(",")}
    # RFC 9110 §15.5.6: Allow lists every method the resource supports, not just one route's.
    assert documented <= allowed, f"Allow: {response.headers['allow']}, documented: {documented}"
    assert method not in allowed


async def test_demoted_staff_loses_staff_rights_at_once(shop: Shop) -> None:
    admin = await shop.account(Role.ADMIN)
    staff = await shop.account(Role.STAFF)
    assert (await shop.client.get(USERS, headers=staff.headers)).status_code == 200

    demoted = await shop.client.patch(
        f"{USERS}/{staff.id}", json={"role": "customer"}, headers=admin.headers
    )
    assert demoted.status_code == 200, demoted.text
    assert demoted.json()["role"] == "customer"

    # The old access token has not expired, but was issued before tokens_valid_after.
    stale = await shop.client.get(USERS, headers=staff.headers)
    assert_problem(stale, 401, "invalid_token")
    assert stale.headers["www-authenticate"].startswith("Bearer")

    login = await shop.log_in(staff.email)
    assert login.status_code == 200, login.text
    as_customer = await shop.client.get(USERS, headers=bearer(login.json()["access_token"]))
    assert_problem(as_customer, 403, "forbidden")
