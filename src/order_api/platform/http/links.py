"""OpenAPI links: which answer's ids feed which operation, for clients and stateful fuzzing.

One table for the whole API, since a link may cross domains (a new product is what an order
names); links name operations by operationId, which is the route's function name.
"""

from __future__ import annotations

from typing import Any

Link = dict[str, Any]


def by_id(operation_id: str, parameter: str) -> Link:
    """The target takes the created object's `id` as its path parameter."""
    return {"operationId": operation_id, "parameters": {parameter: "$response.body#/id"}}


def about_order(operation_id: str) -> Link:
    return by_id(operation_id, "order_id")


ORDER_ONE_OF_IT: Link = {
    "operationId": "place_order",
    "requestBody": {
        "items": [{"product_id": "$response.body#/id", "quantity": 1}],
        "payment_method_id": "pm_card_visa",
    },
}
# What can follow an order's answer: read it, cancel it, move it, read its history.
ORDER_FOLLOW_UPS: dict[str, Link] = {
    "ReadOrder": about_order("read_order"),
    "CancelOrder": about_order("cancel_order"),
    "MoveOrder": about_order("change_status"),
    "OrderEvents": about_order("order_events"),
}
REFRESH_TOKEN = {"refresh_token": "$response.body#/refresh_token"}

# (path, method, status) -> links of that response.
LINKS: dict[tuple[str, str, str], dict[str, Link]] = {
    ("/api/v1/auth/token", "post", "200"): {
        "Refresh": {"operationId": "refresh", "requestBody": REFRESH_TOKEN},
        "LogOut": {"operationId": "log_out", "requestBody": REFRESH_TOKEN},
    },
    ("/api/v1/users", "post", "201"): {
        "ReadUser": by_id("read_user", "user_id"),
        "UpdateUser": by_id("update_user", "user_id"),
        "DeleteUser": by_id("delete_user", "user_id"),
    },
    ("/api/v1/products", "post", "201"): {
        "ReadProduct": by_id("read_product", "product_id"),
        "UpdateProduct": by_id("update_product", "product_id"),
        "DeactivateProduct": by_id("deactivate_product", "product_id"),
        "OrderOneOfIt": ORDER_ONE_OF_IT,
    },
    ("/api/v1/orders", "post", "201"): ORDER_FOLLOW_UPS,
    ("/api/v1/orders/{order_id}/status", "post", "200"): ORDER_FOLLOW_UPS,
    ("/api/v1/orders/{order_id}/cancel", "post", "200"): {
        "ReadOrder": about_order("read_order"),
        "OrderEvents": about_order("order_events"),
    },
}


def add_links(schema: dict[str, Any]) -> dict[str, Any]:
    """Attach LINKS to their responses; a response that no longer exists fails at once."""
    for (path, method, status), links in LINKS.items():
        schema["paths"][path][method]["responses"][status]["links"] = links
    return schema
