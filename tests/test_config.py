"""Settings from the environment and `.env`, and the production guard rails."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from order_api.config import ConfigError, Settings, load_settings

STRONG_KEY = "k" * 48


def production_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.internal/shop")
    for name, value in values.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SECRET_KEY is required in production"),
        ({"SECRET_KEY": "changethis"}, "SECRET_KEY is a known placeholder"),
        ({"SECRET_KEY": "  ChangeMe "}, "SECRET_KEY is a known placeholder"),
        ({"SECRET_KEY": "0123456789abcdef"}, "SECRET_KEY must be at least 32 bytes"),
        ({"SECRET_KEY": STRONG_KEY, "DEBUG": "true"}, "DEBUG=true is not allowed in production"),
        (
            {"SECRET_KEY": STRONG_KEY, "ALLOWED_ORIGINS": "https://shop.example,*"},
            "ALLOWED_ORIGINS may not contain '*' in production",
        ),
        (
            {"SECRET_KEY": STRONG_KEY, "PASSWORD_HASH_MEMORY_KIB": "19455"},
            "below every OWASP Argon2id line",
        ),
        (
            {"SECRET_KEY": STRONG_KEY, "PASSWORD_HASH_ITERATIONS": "1"},
            "below every OWASP Argon2id line",
        ),
    ],
)
def test_production_refuses_unsafe_settings(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    production_env(monkeypatch, **env)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_production_accepts_a_safe_configuration(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    production_env(monkeypatch, SECRET_KEY=STRONG_KEY, ALLOWED_ORIGINS="https://shop.example")
    settings = load_settings()
    assert settings.secret == STRONG_KEY
    assert settings.allowed_origins == ["https://shop.example"]
    assert settings.resolved_database_url == "postgresql+asyncpg://app@db.internal/shop"
    assert settings.resolved_log_format == "json"
    assert not (clean_env / "data").exists()


@pytest.mark.parametrize(
    ("origins", "message"),
    [
        ('["*"]', "ALLOWED_ORIGINS may not contain '*' in production"),
        ('[ "https://shop.example", "*" ]', "ALLOWED_ORIGINS may not contain '*' in production"),
        ("not a url, ftp://x", "'not a url' is not an origin: write scheme://host[:port]"),
        ("https://shop.example,ftp://x", "'ftp://x' is not an origin"),
        ("https://shop.example/checkout", "'https://shop.example/checkout' is not an origin"),
        ("https://user@shop.example", "is not an origin"),
        ("https://*.shop.example", "is not an origin"),
        ("https://shop.example:99999", "is not an origin"),
        ("http://[not-v6]:8080", "is not an origin"),
        ("https://shop.example:0", "is not an origin"),
        ("http://[fe80::1%25eth0]:8080", "is not an origin"),
        ('["https://shop.example"', "ALLOWED_ORIGINS: starts with '[' but is not a JSON list"),
        ("[1, 2]", "ALLOWED_ORIGINS: starts with '[' but is not a JSON list"),
    ],
)
def test_production_refuses_what_is_not_an_origin(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, origins: str, message: str
) -> None:
    production_env(monkeypatch, SECRET_KEY=STRONG_KEY, ALLOWED_ORIGINS=origins)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("origins", "expected"),
    [
        (
            '["https://a.example", "http://localhost:3000"]',
            ["https://a.example", "http://localhost:3000"],
        ),
        ("https://A.Example/, https://b.example:443", ["https://a.example", "https://b.example"]),
        ("http://[::1]:8000,http://127.0.0.1:80", ["http://[::1]:8000", "http://127.0.0.1"]),
        ("[]", []),
    ],
)
def test_origins_are_read_as_browsers_send_them(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, origins: str, expected: list[str]
) -> None:
    """A JSON list is a list; case, a root path and a default port are spelled as in `Origin`."""
    production_env(monkeypatch, SECRET_KEY=STRONG_KEY, ALLOWED_ORIGINS=origins)
    assert load_settings().allowed_origins == expected


@pytest.mark.parametrize(("memory_kib", "iterations"), [(47104, 1), (19456, 2), (7168, 5)])
def test_production_accepts_every_owasp_argon2_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, memory_kib: int, iterations: int
) -> None:
    production_env(
        monkeypatch,
        SECRET_KEY=STRONG_KEY,
        PASSWORD_HASH_MEMORY_KIB=str(memory_kib),
        PASSWORD_HASH_ITERATIONS=str(iterations),
    )
    settings = load_settings()
    assert (settings.password_hash_memory_kib, settings.password_hash_iterations) == (
        memory_kib,
        iterations,
    )


def test_embedded_mode_creates_a_private_secret_once_and_reuses_it(clean_env: Path) -> None:
    first = load_settings()
    key_file = clean_env / "data" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first.secret.encode()) >= 32
    assert load_settings().secret == first.secret
    assert first.resolved_database_url == "sqlite+aiosqlite:///data/order_api.sqlite3"
    assert first.is_sqlite
    assert first.resolved_log_format == "console"


def test_settings_come_from_a_dotenv_file(clean_env: Path) -> None:
    (clean_env / ".env").write_text(
        "ENVIRONMENT=test\nSECRET_KEY=from-dotenv-file\nLOG_LEVEL=warning\nDB_POOL_SIZE=7\n"
    )
    settings = load_settings()
    assert settings.environment == "test"
    assert settings.secret == "from-dotenv-file"
    assert settings.log_level == "WARNING"
    assert settings.db_pool_size == 7


@pytest.mark.parametrize(
    ("name", "value", "field"),
    [
        ("DB_POOL_SIZE", "many", "DB_POOL_SIZE"),
        ("CURRENCY", "euro", "CURRENCY"),
        ("ENVIRONMENT", "staging", "ENVIRONMENT"),
        ("DATABASE_URL", "mysql://x@y/z", "DATABASE_URL"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT"),
    ],
)
def test_invalid_setting_names_itself_in_one_line(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, name: str, value: str, field: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    text = str(caught.value)
    assert text.startswith(f"invalid setting: {field}:")
    assert "\n" not in text


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///x.sqlite3", "sqlite+aiosqlite:///x.sqlite3"),
    ],
)
def test_database_url_gets_the_async_driver(clean_env: Path, given: str, expected: str) -> None:
    assert Settings(database_url=given).resolved_database_url == expected


def test_secret_is_required_where_it_is_used(clean_env: Path) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY is not set"):
        _ = Settings().secret


def test_empty_values_count_as_unset(clean_env: Path) -> None:
    (clean_env / ".env").write_text("SECRET_KEY=\nDATABASE_URL=\nREDIS_URL=\nSMTP_HOST=\n")
    settings = load_settings()
    assert len(settings.secret) >= 32
    assert settings.is_sqlite
    assert settings.redis_url is None
    assert settings.smtp_host is None


@pytest.mark.parametrize(
    "env",
    [{"DATABASE_URL": "postgresql://app@db.internal/shop"}, {"REDIS_URL": "redis://127.0.0.1/0"}],
)
def test_secret_is_required_outside_embedded_mode(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="SECRET_KEY is required outside embedded mode"):
        load_settings()
    assert not (clean_env / "data").exists()


def test_a_short_stored_secret_is_refused(clean_env: Path) -> None:
    (clean_env / "data").mkdir()
    (clean_env / "data" / "secret_key").write_text("\n")
    with pytest.raises(ConfigError, match="delete it to renew"):
        load_settings()


def test_unusable_data_dir_is_one_line(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / "occupied").write_text("a file, not a directory")
    monkeypatch.setenv("DATA_DIR", str(clean_env / "occupied"))
    with pytest.raises(ConfigError, match=r"DATA_DIR .*occupied is not usable") as caught:
        load_settings()
    assert "\n" not in str(caught.value)


def test_empty_log_format_means_the_default(clean_env: Path) -> None:
    (clean_env / ".env").write_text("LOG_FORMAT=\nSMTP_USERNAME=\nSMTP_PASSWORD=\n")
    settings = load_settings()
    assert settings.resolved_log_format == "console"
    assert settings.smtp_username is None
    assert settings.smtp_password is None
