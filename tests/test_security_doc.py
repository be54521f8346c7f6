"""docs/security.md names tests as `tests/<path>.py::<function>`; each must exist, so the OWASP
map cannot silently point at a test that was renamed or removed. Every Top-10 entry must appear.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECURITY_DOC = ROOT / "docs" / "security.md"
REFERENCE = re.compile(r"\b(tests/[\w/]+\.py)::(\w+)")


def references(text: str) -> list[tuple[str, str]]:
    """Every (file, function) the text names, in order, repeats included."""
    return [(match[1], match[2]) for match in REFERENCE.finditer(text)]


def defined_functions(source: Path) -> set[str]:
    """Names of every `def` and `async def` in the file, at any depth (a class, a helper)."""
    tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def broken_references(text: str, root: Path) -> list[str]:
    broken = []
    for path, name in references(text):
        source = root / path
        if not source.is_file():
            broken.append(f"{path}::{name}: no such file")
        elif name not in defined_functions(source):
            broken.append(f"{path}::{name}: no function of that name")
    return broken


def test_every_test_named_in_the_security_doc_exists() -> None:
    text = SECURITY_DOC.read_text(encoding="utf-8")
    # The map names dozens of tests; a parser that found none would pass vacuously.
    assert len(set(references(text))) >= 60
    assert broken_references(text, ROOT) == []


def test_every_owasp_api_top_10_entry_is_in_the_security_doc() -> None:
    text = SECURITY_DOC.read_text(encoding="utf-8")
    # `\b` on both sides: "API1" must not be satisfied by "API10".
    missing = [f"API{n}" for n in range(1, 11) if not re.search(rf"\bAPI{n}\b", text)]
    assert missing == []


def test_a_planted_bad_reference_is_reported() -> None:
    text = (
        "Held by `tests/test_security_doc.py::test_a_planted_bad_reference_is_reported`,\n"
        "`tests/test_security_doc.py::test_that_was_renamed` and\n"
        "`tests/no_such_dir/test_gone.py::test_anything`."
    )
    assert references(text) == [
        ("tests/test_security_doc.py", "test_a_planted_bad_reference_is_reported"),
        ("tests/test_security_doc.py", "test_that_was_renamed"),
        ("tests/no_such_dir/test_gone.py", "test_anything"),
    ]
    assert broken_references(text, ROOT) == [
        "tests/test_security_doc.py::test_that_was_renamed: no function of that name",
        "tests/no_such_dir/test_gone.py::test_anything: no such file",
    ]
