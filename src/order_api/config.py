"""Settings: every knob of SPEC §1, read from the environment and `.env`."""

from __future__ import annotations

import json
import re
import secrets
from ipaddress import IPv6Address, ip_network
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import limits
from fastapi import Depends
from fastapi.requests import HTTPConnection
from pydantic import (
    Field,
    IPvAnyNetwork,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Environment = Literal["development", "production", "test"]

MIN_SECRET_KEY_BYTES = 32
# Values copied from templates and tutorials; a production key equal to one of these is a leak.
PLACEHOLDER_SECRET_KEYS = frozenset(
    {
        "changethis",
        "changeme",
        "change-me",
        "secret",
        "secret_key",
        "secret-key",
        "your-secret-key",
        "please-change-this-secret-key-in-production",
        "replace-me-with-at-least-32-random-bytes",
        "insecure",
        "development",
    }
)
# OWASP Password Storage Cheat Sheet: equally strong Argon2id (memory KiB, iterations) pairs.
OWASP_ARGON2_COSTS = ((47104, 1), (19456, 2), (12288, 3), (9216, 4), (7168, 5))
# Loopback and private ranges: where a scraper inside the deployment connects from.
DEFAULT_METRICS_ALLOWED_NETWORKS = (
    "127.0.0.0/8",
    "::1/128",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "fc00::/7",
)
SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name, not a secret


# A DNS name or an IPv4 address as browsers write them in `Origin`: ASCII, lower-case after folding.
_ORIGIN_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def serialized_origin(value: str) -> str:
    """`*`, or an origin as a browser sends it (RFC 6454): `scheme://host[:port]`, lower-case,
    without its scheme's default port; anything else is refused, naming the value."""
    if value == "*":
        return value
    refusal = (
        f"{value[:80]!r} is not an origin: write scheme://host[:port], e.g. https://shop.example"
    )
    try:
        parts = urlsplit(value.lower())
        port, host = parts.port, parts.hostname or ""
        if parts.netloc.startswith("["):
            host = f"[{IPv6Address(host)}]"
    except ValueError:
        raise ValueError(refusal) from None
    if (
        parts.scheme not in _DEFAULT_PORTS
        or "@" in parts.netloc
        or "%" in parts.netloc  # an IPv6 zone (`%25eth0`), which no browser sends
        or port == 0
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or not (host.startswith("[") or _ORIGIN_HOST.fullmatch(host))
    ):
        raise ValueError(refusal)
    shown_port = "" if port in (None, _DEFAULT_PORTS[parts.scheme]) else f":{port}"
    return f"{parts.scheme}://{host}{shown_port}"


class ConfigError(Exception):
    """A setting that makes the service unsafe or unable to start; the message is one line."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    environment: Environment = "development"
    debug: bool = False
    data_dir: Path = Path("./data")
    database_url: str | None = None
    redis_url: str | None = None
    secret_key: SecretStr | None = None
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    access_token_expire_minutes: int = Field(default=15, ge=1, le=1440)
    refresh_token_expire_days: int = Field(default=14, ge=1, le=365)
    # Argon2id cost; the defaults are OWASP's 19 MiB, 2 iterations line. Tests lower them.
    password_hash_memory_kib: int = Field(default=19456, ge=64, le=1024 * 1024)
    password_hash_iterations: int = Field(default=2, ge=1, le=20)

    smtp_host: str | None = None
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_tls: Literal["none", "starttls", "tls"] = "starttls"
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    mail_from: str = "order-api <no-reply@localhost>"

    redis_prefix: str = Field(default="order-api", pattern=r"^[A-Za-z0-9:_.-]{1,64}$")
    redis_timeout_seconds: float = Field(default=2.0, gt=0, le=30)

    job_max_attempts: int = Field(default=8, ge=1, le=100)
    job_retry_base_seconds: float = Field(default=2.0, gt=0, le=3600)
    job_retry_max_seconds: float = Field(default=900.0, gt=0, le=86400)
    job_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    outbox_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # `order-api worker` touches this file every 5 s: a container health check reads its age.
    worker_heartbeat_file: Path | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["json", "console"] | None = None
    rate_limit_enabled: bool = True
    # Rates in the `limits` notation ("20/minute", "10 per 15 minutes"); see docs/operations.md.
    rate_limit_default: str = "600/minute"
    rate_limit_login_per_ip: str = "20/minute"
    rate_limit_login_per_account: str = "10/15minutes"
    rate_limit_registration_per_ip: str = "10/hour"
    rate_limit_orders_per_user: str = "20/minute"
    # Peers whose X-Forwarded-For is believed (a load balancer); for everyone else, the socket.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = Field(default_factory=list)
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")

    db_pool_size: int = Field(default=10, ge=1, le=100)
    db_max_overflow: int = Field(default=0, ge=0, le=100)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    db_statement_timeout_ms: int = Field(default=5000, ge=100, le=600_000)
    max_body_size: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    health_check_timeout_seconds: float = Field(default=1.0, gt=0, le=10)
    # On SIGTERM, in-flight requests and running jobs get this long; then they are cancelled.
    shutdown_timeout_seconds: float = Field(default=20.0, gt=0, le=3600)
    # Socket peers that may read GET /metrics; everyone else gets a 404. Empty: nobody.
    metrics_allowed_networks: Annotated[list[IPvAnyNetwork], NoDecode] = Field(
        default_factory=lambda: [ip_network(net) for net in DEFAULT_METRICS_ALLOWED_NETWORKS]
    )

    # Live order stream: heartbeat (and revocation check) period, per-socket backlog, lifetime.
    ws_heartbeat_seconds: float = Field(default=25.0, gt=0, le=300)
    ws_send_queue_size: int = Field(default=100, ge=1, le=10_000)
    ws_max_lifetime_seconds: float = Field(default=3600.0, gt=0, le=86400)
    # Open sockets per API process (descriptors, memory and send queues are per process); a
    # staff every-order socket counts against its user's cap too. Beyond either: closed 4429.
    ws_max_sockets_per_user: int = Field(default=10, ge=1, le=100_000)
    ws_max_sockets_per_address: int = Field(default=50, ge=1, le=100_000)
    # Stream handshakes per client address, shared through Redis like the other rate limits.
    rate_limit_websocket_per_ip: str = "60/minute"

    @field_validator(
        "allowed_origins", "metrics_allowed_networks", "trusted_proxies", mode="before"
    )
    @classmethod
    def split_commas(cls, value: object) -> object:
        """Lists come from the environment as comma-separated text, or as a JSON list (the form
        pydantic-settings documents): `["https://a.example", "https://b.example"]`."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            try:
                items = json.loads(value)
            except ValueError:
                raise ValueError("starts with '[' but is not a JSON list of strings") from None
            if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
                raise ValueError("starts with '[' but is not a JSON list of strings")
            return [item.strip() for item in items if item.strip()]
        return [item.strip() for item in value.split(",") if item.strip()]

    @field_validator("allowed_origins")
    @classmethod
    def origins(cls, value: list[str]) -> list[str]:
        return [serialized_origin(item) for item in value]

    @field_validator(
        "secret_key",
        "database_url",
        "redis_url",
        "smtp_host",
        "smtp_username",
        "smtp_password",
        "log_format",
        "worker_heartbeat_file",
        mode="before",
    )
    @classmethod
    def empty_is_unset(cls, value: object) -> object:
        """`SECRET_KEY=` in a `.env` means "not set", never an empty key."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator(
        "rate_limit_default",
        "rate_limit_login_per_ip",
        "rate_limit_login_per_account",
        "rate_limit_registration_per_ip",
        "rate_limit_websocket_per_ip",
        "rate_limit_orders_per_user",
    )
    @classmethod
    def one_rate(cls, value: str) -> str:
        """One rate, in the notation of the `limits` library: "<count>/<period>"."""
        try:
            rates = limits.parse_many(value)
        except ValueError:
            rates = []
        if len(rates) != 1:
            raise ValueError('must be one rate such as "20/minute" or "10 per 15 minutes"')
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def async_driver(cls, value: str | None) -> str | None:
        """Accept the URLs operators write (`postgresql://`, `sqlite:///`): use async drivers."""
        if value is None:
            return None
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if value.startswith(plain):
                return driver + value[len(plain) :]
        if value.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            return value
        raise ValueError("must be a postgresql:// or sqlite:/// URL")

    @model_validator(mode="after")
    def production_is_safe(self) -> Settings:
        if self.environment != "production":
            return self
        key = self.secret_key.get_secret_value() if self.secret_key else ""
        if not key:
            raise ValueError("SECRET_KEY is required in production")
        if key.strip().lower() in PLACEHOLDER_SECRET_KEYS:
            raise ValueError("SECRET_KEY is a known placeholder; generate a random one")
        if len(key.encode()) < MIN_SECRET_KEY_BYTES:
            raise ValueError(f"SECRET_KEY must be at least {MIN_SECRET_KEY_BYTES} bytes")
        if self.debug:
            raise ValueError("DEBUG=true is not allowed in production")
        if "*" in self.allowed_origins:
            raise ValueError("ALLOWED_ORIGINS may not contain '*' in production")
        cost = (self.password_hash_memory_kib, self.password_hash_iterations)
        if not any(cost[0] >= memory and cost[1] >= time for memory, time in OWASP_ARGON2_COSTS):
            raise ValueError(
                "PASSWORD_HASH_MEMORY_KIB and PASSWORD_HASH_ITERATIONS are below every OWASP "
                "Argon2id line (for example 19456 KiB with 2 iterations)"
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'order_api.sqlite3'}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")

    @property
    def is_embedded(self) -> bool:
        """One process, nothing else to run: SQLite and the in-process adapters."""
        return self.is_sqlite and self.redis_url is None

    @property
    def resolved_log_format(self) -> Literal["json", "console"]:
        if self.log_format:
            return self.log_format
        return "json" if self.environment == "production" else "console"

    @property
    def secret(self) -> str:
        if self.secret_key is None:
            raise ConfigError("SECRET_KEY is not set")
        return self.secret_key.get_secret_value()


def embedded_secret_key(data_dir: Path) -> str:
    """The secret kept under DATA_DIR: created once with 0600 permissions, then reused."""
    path = data_dir / SECRET_KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48), encoding="utf-8")
    key = path.read_text(encoding="utf-8").strip()
    if len(key.encode()) < MIN_SECRET_KEY_BYTES:
        raise ConfigError(f"{path} holds under {MIN_SECRET_KEY_BYTES} bytes; delete it to renew")
    return key


def describe_validation_error(error: ValidationError) -> str:
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]).upper()
    message = first["msg"].removeprefix("Value error, ")
    return f"{field}: {message}" if field else message


def load_settings() -> Settings:
    """Read the settings once for a process; raise ConfigError with one line on a bad value."""
    try:
        settings = Settings()
    except ValidationError as error:
        raise ConfigError(f"invalid setting: {describe_validation_error(error)}") from None
    if settings.secret_key is not None:
        return settings
    if not settings.is_embedded:
        # Several processes on PostgreSQL or Redis must sign with one key, not one file each.
        raise ConfigError("SECRET_KEY is required outside embedded mode (PostgreSQL or Redis set)")
    try:
        key = embedded_secret_key(settings.data_dir)
    except OSError as error:
        raise ConfigError(f"DATA_DIR {settings.data_dir} is not usable: {error.strerror}") from None
    return settings.model_copy(update={"secret_key": SecretStr(key)})


async def app_settings(connection: HTTPConnection) -> Settings:
    """The settings the app was built with: the one place routes reach them from."""
    settings: Settings = connection.app.state.settings
    return settings


async def shop_currency(connection: HTTPConnection) -> str:
    # Calls the settings' provider rather than depending on it: each dependency costs ~8 µs.
    return (await app_settings(connection)).currency


SettingsDep = Annotated[Settings, Depends(app_settings)]
CurrencyDep = Annotated[str, Depends(shop_currency)]
