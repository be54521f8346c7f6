"""Every error leaves the service as RFC 9457 `application/problem+json` with a stable `code`."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from order_api.platform.db import DatabaseUnreachable
from order_api.platform.telemetry.logs import current_request_id

# How a JSON body with a key given twice is refused (platform/http/bodies.py): a 400.
DUPLICATE_KEY = "duplicate key"

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:order-api:problem:"

logger = structlog.get_logger(__name__)


class Problem(BaseModel):
    """An RFC 9457 problem detail with this service's `code` and `request_id` members."""

    type: str = Field(examples=[f"{PROBLEM_TYPE_PREFIX}not_found"])
    title: str = Field(examples=["Not found"])
    status: int = Field(ge=400, le=599, examples=[404])
    detail: str = Field(examples=["No order with this id."])
    code: str = Field(examples=["not_found"])
    request_id: str = Field(examples=["0f8fad5b-d9cb-469f-a165-70867728950e"])


class FieldError(BaseModel):
    loc: list[str | int] = Field(examples=[["body", "items", 0, "quantity"]])
    msg: str = Field(examples=["Input should be less than or equal to 100"])
    type: str = Field(examples=["less_than_equal"])


class ValidationProblem(Problem):
    errors: list[FieldError]


class AppError(Exception):
    """Base of every error a service raises on purpose; subclasses fix status, code and title."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal server error"
    default_detail: ClassVar[str] = "The server could not complete the request."

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.detail = detail or self.default_detail
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        super().__init__(self.detail)

    def to_response(self) -> JSONResponse:
        return problem_response(
            self.status,
            self.code,
            self.detail,
            title=self.title,
            headers=self.headers,
            extra=self.extra,
        )


class BadRequest(AppError):
    status, code, title = 400, "bad_request", "Bad request"
    default_detail = "The request could not be understood."


class MalformedJSON(AppError):
    status, code, title = 400, "malformed_json", "Malformed JSON"
    default_detail = "The body could not be parsed as JSON."


class Unauthorized(AppError):
    status, code, title = 401, "not_authenticated", "Not authenticated"
    default_detail = "Valid credentials are required."

    def __init__(
        self,
        detail: str | None = None,
        *,
        error: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        challenge = f'Bearer error="{error}"' if error else "Bearer"
        super().__init__(detail, headers=headers or {"WWW-Authenticate": challenge})


class Forbidden(AppError):
    status, code, title = 403, "forbidden", "Forbidden"
    default_detail = "You may not perform this action."


class CorsRefused(AppError):
    status, code, title = 403, "cors_refused", "Cross-origin request refused"
    default_detail = "This cross-origin request is not allowed."


class NotFound(AppError):
    status, code, title = 404, "not_found", "Not found"
    default_detail = "No resource exists at this URL."


class MethodNotAllowed(AppError):
    status, code, title = 405, "method_not_allowed", "Method not allowed"
    default_detail = "This URL does not accept that HTTP method."


class NotAcceptable(AppError):
    status, code, title = 406, "not_acceptable", "Not acceptable"
    default_detail = "The requested representation is not available."


class Conflict(AppError):
    status, code, title = 409, "conflict", "Conflict"
    default_detail = "The request conflicts with the current state of the resource."


class PayloadTooLarge(AppError):
    status, code, title = 413, "payload_too_large", "Payload too large"
    default_detail = "The request body is larger than the limit."


class UnsupportedMediaType(AppError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"
    default_detail = "The body must be sent as application/json."


class ValidationFailed(AppError):
    status, code, title = 422, "validation_error", "Validation failed"
    default_detail = "The request has invalid fields; see `errors`."


class TooManyRequests(AppError):
    status, code, title = 429, "rate_limited", "Too many requests"
    default_detail = "Too many requests; retry later."


class ServiceUnavailable(AppError):
    status, code, title = 503, "service_unavailable", "Service unavailable"
    default_detail = "The service is temporarily unable to answer; retry later."


# Errors the framework raises as HTTPException, mapped to ours so code, title and detail agree.
_FRAMEWORK_ERRORS: dict[int, type[AppError]] = {
    error.status: error
    for error in (
        MalformedJSON,  # FastAPI's only 400 is a body it could not parse
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        NotAcceptable,
        PayloadTooLarge,
        UnsupportedMediaType,
        TooManyRequests,
    )
}


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    title: str | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + code,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": current_request_id(),
        **(extra or {}),
    }
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the error statuses it answers, documented as problems."""
    return {
        status: {"model": Problem, "description": HTTPStatus(status).phrase} for status in statuses
    }


def too_large_detail(limit: int) -> str:
    return f"The request body is larger than the limit of {limit} bytes."


async def app_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return exc.to_response()


async def http_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    error_class = _FRAMEWORK_ERRORS.get(exc.status_code)
    if error_class is None:
        phrase = HTTPStatus(exc.status_code)
        return problem_response(
            exc.status_code, "http_error", phrase.description, headers=exc.headers
        )
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    # Keep a detail written for the caller (our 413's limit); drop bare phrases and parser text.
    own_detail = exc.status_code != 400 and exc.detail != HTTPStatus(exc.status_code).phrase
    return error_class(exc.detail if own_detail else None, headers=headers).to_response()


_METHODS = ("DELETE", "GET", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> str:
    """Every method the URL answers (RFC 9110 §15.5.6): Starlette names only its first route's.

    Each method is probed through the routes' own matching, the one public door into routers.
    """
    base = {"type": "http", "path": request.scope["path"], "root_path": request.scope["root_path"]}
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**base, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


def _sends_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return not content_type or content_type == "application/json" or content_type.endswith("+json")


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(error["type"] == "json_invalid" for error in errors):
        reason = str(errors[0].get("ctx", {}).get("error", "invalid JSON"))
        if reason.startswith(DUPLICATE_KEY):
            # Well-formed JSON, but two values for one field: the content is what is invalid.
            duplicate = {"loc": ["body"], "msg": reason, "type": "duplicate_key"}
            return ValidationFailed(extra={"errors": [duplicate]}).to_response()
        return MalformedJSON(f"The body is not valid JSON: {reason}.").to_response()
    whole_body_rejected = any(tuple(error["loc"]) == ("body",) for error in errors)
    if whole_body_rejected and not _sends_json(request):
        return UnsupportedMediaType().to_response()
    field_errors = [
        {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]} for error in errors
    ]
    return ValidationFailed(extra={"errors": field_errors}).to_response()


# PostgreSQL states worth a retry: query cancelled (statement timeout), lock not available,
# serialization failure, deadlock, too many connections, server shutting down or starting.
TRANSIENT_SQLSTATES = frozenset({"57014", "55P03", "40001", "40P01", "53300", "57P01", "57P03"})


TOO_MANY_CONNECTIONS = "53300"


def sqlstate(exc: DBAPIError) -> str:
    """The PostgreSQL error code behind a driver error, or "" (SQLite, a lost socket)."""
    orig = exc.orig
    for error in (orig, getattr(orig, "__cause__", None)):
        state = str(getattr(error, "sqlstate", None) or getattr(error, "pgcode", None) or "")
        if state:
            return state
    return ""


def is_transient(exc: DBAPIError) -> bool:
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return True
    state = sqlstate(exc)
    return state in TRANSIENT_SQLSTATES or state.startswith("08")


async def database_unavailable_handler(request: Request, exc: Exception) -> JSONResponse:
    """A statement timeout, a lock wait, a lost connection or an exhausted pool: retry soon."""
    if isinstance(exc, DBAPIError) and not is_transient(exc):
        raise exc  # a real fault: the 500 catcher logs it once
    if isinstance(exc, DBAPIError) and sqlstate(exc) == TOO_MANY_CONNECTIONS:
        # Named apart: the fix is the server's max_connections or the pools' sizes, not patience.
        logger.warning("database_too_many_connections", path=request.url.path)
        detail = "The database refused a connection: it has too many clients; retry shortly."
        return ServiceUnavailable(detail, headers={"Retry-After": "1"}).to_response()
    logger.warning("database_unavailable", error=type(exc).__name__, path=request.url.path)
    detail = "The database did not answer in time; retry shortly."
    return ServiceUnavailable(detail, headers={"Retry-After": "1"}).to_response()


async def database_unreachable_handler(request: Request, exc: Exception) -> JSONResponse:
    """No connection to the database could be opened (refused, unknown host): retry later."""
    logger.warning("database_unreachable", error=type(exc).__name__, path=request.url.path)
    detail = "The database cannot be reached; retry shortly."
    return ServiceUnavailable(detail, headers={"Retry-After": "5"}).to_response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, app_error_handler)
    app.add_exception_handler(DBAPIError, database_unavailable_handler)
    app.add_exception_handler(PoolTimeoutError, database_unavailable_handler)
    app.add_exception_handler(DatabaseUnreachable, database_unreachable_handler)
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)


def _is_error_body(response: dict[str, Any]) -> bool:
    """True unless the route declared its own body for this status (readiness's 503 does)."""
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return not schema or schema.get("$ref", "").endswith(_ERROR_SCHEMAS)


_ERROR_SCHEMAS = ("/Problem", "/ValidationProblem", "/HTTPValidationError")


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Declare every error in the OpenAPI schema as problem+json, so schema checkers accept it.

    FastAPI documents `model=` responses and its own 422 as application/json; ours are problems.
    """
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (Problem, FieldError, ValidationProblem):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        model_schema.pop("$defs", None)
        components[model.__name__] = model_schema
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    validation = {
        PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/ValidationProblem"}}
    }
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                if status.isdigit() and int(status) >= 400 and _is_error_body(response):
                    response["content"] = validation if status == "422" else problem
            if operation.get("parameters") or operation.get("requestBody"):
                responses.setdefault(
                    "422", {"description": "Validation failed", "content": validation}
                )
            responses.setdefault(
                "default", {"description": "Any other error, as a problem", "content": problem}
            )
    return schema
