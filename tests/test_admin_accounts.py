"""Admin accounts from the command line: `create-admin`, and the embedded first start's admin."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
import pytest

from tests.test_cli import invoke, run, running_server

ADMIN_PASSWORD = "an admin passphrase 42"


def log_in(url: str, email: str, password: str) -> httpx2.Response:
    return httpx2.post(f"{url}/api/v1/auth/token", data={"username": email, "password": password})


def test_the_first_embedded_start_prints_a_working_admin_password_once(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        stderr = server.stop()
    found = re.search(r"e-mail:\s+(\S+)\s+password:\s+(\S+)", server.stdout)
    assert found, server.stdout
    email, password = found.groups()
    assert len(password) >= 20
    # Shown once on stdout: not in the logs, not in any file the service keeps.
    assert password not in stderr
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path

    with running_server(tmp_path) as again:
        admin = log_in(again.url, email, password)
        assert admin.status_code == 200
        token = admin.json()["access_token"]
        me = httpx2.get(
            f"{again.url}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert me.json()["role"] == "admin"
        again.stop()
    assert "password:" not in again.stdout  # the second start creates nobody


def test_create_admin_without_prompts(tmp_path: Path) -> None:
    result = run(
        ["create-admin", "--email", "Boss@Example.com", "--password", ADMIN_PASSWORD], tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "admin boss@example.com created" in result.stdout
    assert ADMIN_PASSWORD not in result.stdout + result.stderr

    with running_server(tmp_path) as server:
        assert log_in(server.url, "boss@example.com", ADMIN_PASSWORD).status_code == 200
        server.stop()
    assert "password:" not in server.stdout  # an admin exists, so none is generated


def test_create_admin_prompts_for_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = f"ops@example.com\n{ADMIN_PASSWORD}\n{ADMIN_PASSWORD}\n"
    result = invoke(["create-admin"], tmp_path, monkeypatch, answers=answers)
    assert result.exit_code == 0, result.stderr
    assert "admin ops@example.com created" in result.stdout
    assert ADMIN_PASSWORD not in result.stdout


def test_create_admin_refuses_a_weak_password_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["create-admin", "--email", "a@example.com", "--password"]
    result = invoke([*args, "short"], tmp_path, monkeypatch)
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1
    assert "PASSWORD" in result.stderr
    common = invoke([*args, "123qweasdzxc"], tmp_path, monkeypatch)
    assert common.exit_code == 2
    assert "common" in common.stderr


def test_create_admin_refuses_an_existing_email(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["create-admin", "--email", "dup@example.com", "--password", ADMIN_PASSWORD]
    assert invoke(args, tmp_path, monkeypatch).exit_code == 0
    again = invoke(args, tmp_path, monkeypatch)
    assert again.exit_code == 1
    refusal = again.stderr.strip().splitlines()[-1]  # after the migration check's log lines
    assert refusal == "order-api: an account with the e-mail dup@example.com already exists"


def test_create_admin_against_an_unreachable_database_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke(
        ["create-admin", "--email", "a@example.com", "--password", ADMIN_PASSWORD],
        tmp_path,
        monkeypatch,
        DATABASE_URL="postgresql://nobody@127.0.0.1:1/none",
        SECRET_KEY="k" * 48,
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("order-api: cannot create the admin:")
    assert result.stderr.count("\n") == 1
