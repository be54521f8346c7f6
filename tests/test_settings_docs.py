"""Every setting is documented where operators look: `.env.example` and the README's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from order_api.config import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("document", [".env.example", "README.md"])
def test_every_setting_is_documented(document: str) -> None:
    text = (ROOT / document).read_text(encoding="utf-8")
    missing = [name.upper() for name in Settings.model_fields if name.upper() not in text]
    assert missing == []


def test_env_example_loads_as_valid_settings(clean_env: Path) -> None:
    settings = Settings(_env_file=ROOT / ".env.example")
    assert settings.environment == "development"
    assert settings.max_body_size == 1024 * 1024
    assert settings.allowed_origins == []
