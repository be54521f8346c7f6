"""The import contracts of pyproject.toml ([tool.importlinter]) hold, and each can fail: a copy of
the package with one forbidden import breaks exactly the contract that forbids it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "src" / "order_api"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(source_root: Path) -> str:
    """lint-imports' report for the package found under `source_root`, first on the path."""
    environment = {**os.environ, "PYTHONPATH": str(source_root)}
    completed = subprocess.run(
        [str(LINT_IMPORTS), str(REPO / "pyproject.toml"), "--no-cache"],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    return completed.stdout + completed.stderr


def broken_contracts(report: str) -> list[str]:
    """The names of the broken contracts, from the report's list of verdicts."""
    verdicts = report.split("Contracts: ")[0].split("dependencies.")[-1]
    # A long contract name wraps over lines in the report: rejoin them before reading the verdict.
    flat = " ".join(re.sub("-{3,}", " ", verdicts).split())
    names: list[str] = []
    for verdict in flat.split(" KEPT"):
        names.extend(name.strip() for name in verdict.split(" BROKEN")[:-1])
    return names


def test_the_package_keeps_every_contract() -> None:
    report = lint_imports(REPO / "src")
    assert "BROKEN" not in report, report
    assert "0 broken" in report, report


@pytest.mark.parametrize(
    ("importer", "import_line", "contract"),
    [
        (
            "platform/errors.py",
            "import order_api.orders.service",
            "The platform imports no domain",
        ),
        (
            "config.py",
            "import order_api.platform.errors",
            "Entry points above domains above the platform above config",
        ),
        (
            "orders/models.py",
            "import order_api.orders.service",
            "A domain reads router -> service -> repository -> models",
        ),
        (
            "users/service.py",
            "import order_api.orders.router",
            "Only orders itself (and the app, which mounts routers) imports orders's router"
            " and repository",
        ),
        (
            "products/service.py",
            "import order_api.orders.repository",
            "Only orders itself (and the app, which mounts routers) imports orders's router"
            " and repository",
        ),
        (
            "orders/service.py",
            "import order_api.platform.db.sessions",
            "Outside the platform, its packages are entered through their doors",
        ),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, importer: str, import_line: str, contract: str
) -> None:
    copy = tmp_path / "order_api"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    module = copy / importer
    module.write_text(module.read_text() + f"\n{import_line}  # the forbidden import\n")

    broken = broken_contracts(lint_imports(tmp_path))

    assert contract in broken, broken
