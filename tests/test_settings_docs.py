"""Every setting is documented where operators look: `.env.example` and the README's table."""

from __future__ import annotations

import re
from pathlib import Path

from order_api.config import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_has_a_line_in_env_example() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    assigned = set(re.findall(r"^#? ?([A-Z_]+)=", text, flags=re.MULTILINE))
    assert {name.upper() for name in Settings.model_fields} - assigned == set()


def test_every_setting_has_a_row_in_the_readme_table() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {
        name
        for row in re.findall(r"^\| (`[A-Z_]+`(?: / `[A-Z_]+`)*) \|", text, flags=re.MULTILINE)
        for name in re.findall(r"`([A-Z_]+)`", row)
    }
    assert {name.upper() for name in Settings.model_fields} - rows == set()


def test_env_example_loads_as_valid_settings(clean_env: Path) -> None:
    settings = Settings(_env_file=ROOT / ".env.example")
    assert settings.environment == "development"
    assert settings.max_body_size == 1024 * 1024
    assert settings.allowed_origins == []
