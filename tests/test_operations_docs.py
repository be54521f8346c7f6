"""The operator's guide keeps up with the code: every setting and every command is in it."""

from __future__ import annotations

import re
from pathlib import Path

import typer.core
import typer.main

from order_api.cli import cli
from order_api.config import Settings

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "operations.md"
# Read by prometheus-client, not by Settings, and still an operator's setting.
SETTINGS_OUTSIDE_THE_MODEL = {"PROMETHEUS_MULTIPROC_DIR"}


def settings_section(guide: str) -> str:
    """The guide's `## Settings` part, up to the next part: where an operator looks a setting up."""
    found = re.search(r"^## Settings\n(.*?)(?=^## )", guide, flags=re.MULTILINE | re.DOTALL)
    assert found, "docs/operations.md has no `## Settings` part"
    return found.group(1)


def names_missing(names: set[str], text: str) -> set[str]:
    """The names that never appear as a whole word (`SMTP_PORT` is not found in `SMTP_PORTS`)."""
    return {name for name in names if not re.search(rf"(?<![A-Z0-9_]){name}(?![A-Z0-9_])", text)}


def command_lines(group: typer.core.TyperGroup, prefix: str = "order-api") -> set[str]:
    """`order-api serve` … `order-api jobs retry-failed`: each command as an operator types it."""
    lines: set[str] = set()
    for name, command in group.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            lines |= command_lines(command, f"{prefix} {name}")
        else:
            lines.add(f"{prefix} {name}")
    return lines


def test_every_setting_is_in_the_guides_settings_part() -> None:
    settings = {name.upper() for name in Settings.model_fields} | SETTINGS_OUTSIDE_THE_MODEL
    section = settings_section(GUIDE.read_text(encoding="utf-8"))
    assert names_missing(settings, section) == set()


def test_every_command_is_in_the_guide() -> None:
    root = typer.main.get_command(cli)
    assert isinstance(root, typer.core.TyperGroup)
    commands = command_lines(root)
    assert "order-api jobs retry-failed" in commands  # the walk reaches into groups
    guide = GUIDE.read_text(encoding="utf-8")
    assert {line for line in commands if line not in guide} == set()


def test_a_missing_name_is_noticed() -> None:
    text = "`SMTP_PORTS` and `order-api serve`"
    assert names_missing({"SMTP_PORT", "ORDER"}, text) == {"SMTP_PORT", "ORDER"}
    assert names_missing({"SMTP_PORTS"}, text) == set()
