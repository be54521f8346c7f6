"""The container image and the compose stack, checked without a container engine.

hadolint lints the Dockerfile, Debian's docker-compose validates compose.yaml against the compose
schema, caddy validates the proxy's Caddyfile, PyYAML reads what the issue requires of the stack,
and the runtime virtualenv is built the Dockerfile's way from what .dockerignore lets through.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from ipaddress import ip_address, ip_network
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from order_api.config import Settings
from tests.smtp_server import free_port
from tests.support import IN_CI

REPO = Path(__file__).resolve().parent.parent
COMPOSE_FILE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
CADDYFILE = REPO / "deploy" / "Caddyfile"
DOCKERIGNORE = REPO / ".dockerignore"
DOCKER_COMPOSE = Path("/usr/bin/docker-compose")
CADDY = Path("/usr/bin/caddy")
HADOLINT = Path(sys.executable).parent / "hadolint"
LOCAL_IMAGE = "order-api:local"
VENV_PATH = "/opt/venv"
HEALTHY_CONDITIONS = {"service_healthy", "service_completed_successfully"}
APP_SERVICES = ("api", "worker")
DEV_DISTRIBUTIONS = ("pytest", "mypy", "ruff", "aiosmtpd", "selenium", "hadolint", "coverage")
TOOL_TIMEOUT_SECONDS = 120
HEAD_DEADLINE_SECONDS = 10  # read_header in deploy/Caddyfile
# The image budget is 200 MB and the slim base ~130 MB; the stripped venv is ~52 MB of files.
VENV_BUDGET_BYTES = 70_000_000


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def env_file_name() -> str:
    """The one env file every app service reads, relative to the repository."""
    names = {str(services()[name]["env_file"]) for name in (*APP_SERVICES, "migrate")}
    assert len(names) == 1, names
    return names.pop()


def postgres_env_file_name() -> str:
    """PostgreSQL's own env file, relative to the repository."""
    return str(services()["postgres"]["env_file"])


def seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, f"write durations in whole seconds ('30s'), not {duration!r}"
    return float(match[1])


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text(encoding="utf-8").splitlines())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2 and not pair[0].startswith("#")}


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuation lines joined), one list per FROM."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: list[list[str]] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(stripped)
    return stages


def require_tool(path: Path, how_to_install: str) -> None:
    if not path.exists():
        reason = f"{path} is missing ({how_to_install})"
        if IN_CI:
            pytest.fail(f"CI=true requires it: {reason}")
        pytest.skip(reason)


def test_dockerfile_has_no_hadolint_findings() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_runtime_stage_is_non_root_with_curl_free_healthcheck_and_only_the_venv() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "multi-stage: a build stage and a runtime stage"
    runtime = stages[-1]
    users = [line.split()[1] for line in runtime if line.upper().startswith("USER ")]
    assert users, "the runtime stage sets a USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    healthchecks = [line for line in runtime if line.upper().startswith("HEALTHCHECK ")]
    assert len(healthchecks) == 1
    assert "order_api.ops.probe" in healthchecks[0]
    assert not re.search(r"\b(curl|wget)\b", healthchecks[0])
    copies = [line for line in runtime if line.upper().startswith(("COPY ", "ADD "))]
    assert copies == [f"COPY --from=build {VENV_PATH} {VENV_PATH}"]
    assert any(line.startswith("ENV PATH=/opt/venv/bin:") for line in runtime)


def test_every_service_has_a_healthcheck_or_is_a_one_shot_others_wait_for() -> None:
    one_shots = {
        dependency
        for service in services().values()
        for dependency, spec in service.get("depends_on", {}).items()
        if spec["condition"] == "service_completed_successfully"
    }
    assert one_shots == {"migrate"}
    for name, service in services().items():
        healthcheck = service.get("healthcheck")
        assert healthcheck, f"{name} has no healthcheck"
        if name in one_shots:
            assert healthcheck == {"disable": True}, name
            assert service["restart"] == "no"
        else:
            assert healthcheck["test"][0] == "CMD", name
            assert service["restart"] == "unless-stopped", name


def test_dependencies_wait_for_health_or_completion() -> None:
    for name, service in services().items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services(), f"{name} depends on unknown {dependency}"
            assert spec["condition"] in HEALTHY_CONDITIONS, (name, dependency)
    for name in APP_SERVICES:
        depends_on = services()[name]["depends_on"]
        assert depends_on["migrate"]["condition"] == "service_completed_successfully"
        assert depends_on["postgres"]["condition"] == "service_healthy"
        assert depends_on["redis"]["condition"] == "service_healthy"


def test_exactly_two_api_replicas_serve_behind_the_proxy() -> None:
    serving = [
        name for name, service in services().items() if "serve" in service.get("command", [])
    ]
    assert serving == ["api"]
    assert services()["api"]["deploy"]["replicas"] == 2
    assert services()["proxy"]["depends_on"]["api"]["condition"] == "service_healthy"
    caddyfile = CADDYFILE.read_text(encoding="utf-8")
    assert re.search(r"dynamic a api 8000\b", caddyfile), "the proxy must follow every replica"
    assert re.search(r"@metrics path /metrics\b.*\n\s*respond @metrics 404", caddyfile)


def test_only_the_proxy_and_the_loopback_mail_ui_publish_ports() -> None:
    published = {
        name: service["ports"] for name, service in services().items() if "ports" in service
    }
    assert set(published) == {"proxy", "mailpit"}
    assert all(port.startswith("127.0.0.1:") for port in published["mailpit"])


def test_the_api_trusts_exactly_the_proxys_fixed_address() -> None:
    [ipam] = compose()["networks"]["backend"]["ipam"]["config"]
    subnet, automatic = ip_network(ipam["subnet"]), ip_network(ipam["ip_range"])
    assert automatic.subnet_of(subnet)  # type: ignore[arg-type]
    proxy_address = ip_address(services()["proxy"]["networks"]["backend"]["ipv4_address"])
    assert proxy_address in subnet
    assert proxy_address not in automatic, "an automatic address could take the proxy's"
    for name in (*APP_SERVICES, "migrate"):
        environment = services()[name]["environment"]
        assert environment["TRUSTED_PROXIES"] == f"{proxy_address}/32", name
        assert str(subnet) in environment["METRICS_ALLOWED_NETWORKS"].split(","), name


def test_each_local_image_is_built_by_exactly_one_service() -> None:
    # Compose v2 builds every `build:` at once, and exports to one tag collide.
    builders: dict[str, list[str]] = {}
    for name, service in services().items():
        if "build" in service:
            assert "image" in service, f"{name} builds an image it does not name"
            builders.setdefault(service["image"], []).append(name)
    assert {image: len(names) for image, names in builders.items()} == {LOCAL_IMAGE: 1}
    assert builders[LOCAL_IMAGE] == ["migrate"]
    for name in APP_SERVICES:
        assert services()[name]["image"] == LOCAL_IMAGE, name


def test_api_and_worker_get_longer_to_stop_than_the_app_takes() -> None:
    for name in APP_SERVICES:
        service = services()[name]
        shutdown = float(service["environment"]["SHUTDOWN_TIMEOUT_SECONDS"])
        assert seconds(service["stop_grace_period"]) > shutdown, name


def test_worker_health_is_its_heartbeat_file() -> None:
    worker = services()["worker"]
    heartbeat = worker["environment"]["WORKER_HEARTBEAT_FILE"]
    test = worker["healthcheck"]["test"]
    assert test[test.index("--heartbeat") + 1] == heartbeat


def test_the_secrets_files_are_ignored_by_git_and_not_committed() -> None:
    names = [env_file_name(), postgres_env_file_name()]
    assert len(set(names)) == 2, "PostgreSQL must not read the app's secrets"
    for name in names:
        ignored = subprocess.run(
            ["git", "check-ignore", "--quiet", "--no-index", name], cwd=REPO, check=False
        )
        assert ignored.returncode == 0, f"{name} must be in .gitignore"
        tracked = subprocess.run(
            ["git", "ls-files", "--", name], cwd=REPO, capture_output=True, text=True, check=True
        )
        assert tracked.stdout == "", f"{name} is committed"
        assert (REPO / f"{name}.example").is_file()


def test_postgres_gets_only_its_password() -> None:
    postgres_example = read_env_file(REPO / f"{postgres_env_file_name()}.example")
    assert postgres_example == {"POSTGRES_PASSWORD": ""}, "PostgreSQL refuses to start unedited"
    assert "POSTGRES_PASSWORD" not in read_env_file(REPO / f"{env_file_name()}.example")


def test_the_examples_secret_key_is_refused_in_production() -> None:
    example = read_env_file(REPO / f"{env_file_name()}.example")
    assert set(example) >= {"SECRET_KEY", "DATABASE_URL"}
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(
            _env_file=None, environment="production", secret_key=SecretStr(example["SECRET_KEY"])
        )


def write_env_file(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()), encoding="utf-8")


def generated_env_files(directory: Path) -> None:
    password = secrets.token_hex(16)
    write_env_file(
        directory / env_file_name(),
        {
            "SECRET_KEY": secrets.token_urlsafe(48),
            "DATABASE_URL": f"postgresql://order_api:{password}@postgres:5432/order_api",
        },
    )
    write_env_file(directory / postgres_env_file_name(), {"POSTGRES_PASSWORD": password})


def compose_config(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DOCKER_COMPOSE), "--file", "compose.yaml", "config"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
        env={**os.environ, "COMPOSE_PROJECT_NAME": "order-api-check"},
    )


def test_docker_compose_validates_the_stack_and_rejects_a_broken_copy(tmp_path: Path) -> None:
    require_tool(DOCKER_COMPOSE, "scripts/install-test-tools.sh installs it")
    shutil.copy(COMPOSE_FILE, tmp_path / "compose.yaml")
    shutil.copytree(REPO / "deploy", tmp_path / "deploy")
    generated_env_files(tmp_path)

    result = compose_config(tmp_path)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert resolved["api"]["environment"]["ENVIRONMENT"] == "production"
    assert len(resolved["worker"]["environment"]["SECRET_KEY"]) >= 32
    assert set(resolved["postgres"]["environment"]) == {
        "POSTGRES_PASSWORD",
        "POSTGRES_USER",
        "POSTGRES_DB",
    }
    assert [name for name, service in resolved.items() if "build" in service] == ["migrate"]

    broken = COMPOSE_FILE.read_text(encoding="utf-8").replace(
        "service_completed_successfully", "service_completed", 1
    )
    (tmp_path / "compose.yaml").write_text(broken, encoding="utf-8")
    rejected = compose_config(tmp_path)
    assert rejected.returncode != 0
    assert "service_completed" in rejected.stderr


def test_caddy_validates_the_proxy_config_and_rejects_a_broken_copy(tmp_path: Path) -> None:
    require_tool(CADDY, "scripts/install-test-tools.sh installs it")
    broken = tmp_path / "Caddyfile"
    broken.write_text(
        CADDYFILE.read_text(encoding="utf-8").replace("round_robin", "no_such_policy", 1),
        encoding="utf-8",
    )
    # Caddy keeps its state under the home directory: a throw-away one here.
    home = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}

    def validate(caddyfile: Path, site_address: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CADDY), "validate", "--config", str(caddyfile), "--adapter", "caddyfile"],
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT_SECONDS,
            check=False,
            env={**os.environ, **home, "SITE_ADDRESS": site_address},
        )

    for site_address in (":80", "shop.example.com"):
        result = validate(CADDYFILE, site_address)
        assert result.returncode == 0, result.stderr
    rejected = validate(broken, ":80")
    assert rejected.returncode != 0
    assert "no_such_policy" in rejected.stderr


def test_the_proxy_cuts_off_a_client_that_trickles_a_request_head(tmp_path: Path) -> None:
    """The API's server has no deadline on a request's head; the proxy in front of it has one."""
    with running_proxy(tmp_path) as port, connect_when_listening(port) as client:
        client.sendall(b"GET /api/v1/products HTTP/1.1\r\nHost: shop\r\n")  # never ends
        client.settimeout(HEAD_DEADLINE_SECONDS * 3)
        # Cut off: the connection ends (b"") or is reset, long before the client's own limit.
        with contextlib.suppress(ConnectionResetError):
            assert client.recv(1024) == b""


def test_the_proxy_refuses_a_header_block_over_its_limit(tmp_path: Path) -> None:
    """The API's server bounds the request line only; the proxy bounds the headers."""
    with running_proxy(tmp_path) as port, connect_when_listening(port) as client:
        huge = b"x" * (100 * 1024)
        client.sendall(
            b"GET /api/v1/products HTTP/1.1\r\nHost: shop\r\nX-Big: " + huge + b"\r\n\r\n"
        )
        client.settimeout(TOOL_TIMEOUT_SECONDS)
        assert client.recv(1024).startswith(b"HTTP/1.1 431")


@contextlib.contextmanager
def running_proxy(tmp_path: Path) -> Iterator[int]:
    """Caddy with deploy/Caddyfile on a free port; the replicas it would proxy to do not exist."""
    require_tool(CADDY, "scripts/install-test-tools.sh installs it")
    port = free_port()
    home = {"HOME": str(tmp_path), "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    environment = {**os.environ, **home, "SITE_ADDRESS": f"http://127.0.0.1:{port}"}
    proxy = subprocess.Popen(
        [str(CADDY), "run", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        proxy.terminate()
        proxy.wait(timeout=TOOL_TIMEOUT_SECONDS)


def connect_when_listening(port: int) -> socket.socket:
    for _ in range(100):
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=1)
        except ConnectionRefusedError:
            time.sleep(0.1)
    raise AssertionError(f"the proxy never listened on {port}")


def test_the_build_stage_uses_the_base_images_python_whatever_its_version() -> None:
    build = dockerfile_stages()[0]
    assert any(re.search(r"\bUV_PYTHON=/usr/local/bin/python3(\s|$)", line) for line in build)


def dockerignore_rules() -> tuple[list[str], list[str]]:
    """The entries .dockerignore lets through (`!x`) and the names it drops inside them (`**/x`)."""
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert lines[0] == "*", (
        ".dockerignore is an allow-list: everything out, then what the build reads"
    )
    admitted = [line[1:].rstrip("/") for line in lines[1:] if line.startswith("!")]
    dropped = [line for line in lines[1:] if not line.startswith("!")]
    assert all(line.startswith("**/") for line in dropped), (
        f"only `**/name` is read here: {dropped}"
    )
    return admitted, [line.removeprefix("**/") for line in dropped]


def dockerfile_build_sources() -> set[str]:
    """What the build stage reads from the build context: bind-mount sources and COPY sources."""
    sources: set[str] = set()
    for line in dockerfile_stages()[0]:
        sources |= set(re.findall(r"--mount=type=bind\S*?source=([^,\s]+)", line))
        words = line.split()
        if words[0].upper() == "COPY" and not any(w.startswith("--from=") for w in words):
            sources |= {word.rstrip("/") for word in words[1:-1] if not word.startswith("--")}
    return sources


def build_context(directory: Path) -> Path:
    """A copy of the repository holding only what .dockerignore sends to `docker build`."""
    admitted, dropped = dockerignore_rules()
    directory.mkdir()
    for entry in admitted:
        source = REPO / entry
        if source.is_dir():
            shutil.copytree(source, directory / entry, ignore=shutil.ignore_patterns(*dropped))
        else:
            shutil.copy2(source, directory / entry)
    return directory


def uv_binary() -> Path:
    on_path = shutil.which("uv")
    return Path(on_path) if on_path else REPO / ".tools" / "bin" / "uv"


def strip_binary() -> Path:
    on_path = shutil.which("strip")
    return Path(on_path) if on_path else Path("/usr/bin/strip")


@pytest.fixture(scope="module")
def runtime_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The runtime virtualenv as the Dockerfile makes it: same flags, same context, stripped."""
    uv, strip = uv_binary(), strip_binary()
    require_tool(uv, "`make sync` installs it")
    require_tool(strip, "binutils has it")
    root = tmp_path_factory.mktemp("image")
    context = build_context(root / "context")
    venv = root / "venv"
    environment = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        # copy: strip below rewrites files in place, which would reach uv's cache through links.
        "UV_LINK_MODE": "copy",
        "UV_PYTHON_DOWNLOADS": "never",
    }
    subprocess.run(
        [str(uv), "sync", "--locked", "--no-dev", "--no-editable", "--quiet"],
        cwd=context,
        env=environment,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=True,
    )
    shared_objects = [str(path) for path in venv.rglob("*.so") if path.is_file()]
    subprocess.run(
        [str(strip), "--strip-debug", *shared_objects], timeout=TOOL_TIMEOUT_SECONDS, check=True
    )
    return venv


def test_the_build_reads_only_what_dockerignore_lets_through() -> None:
    admitted, _ = dockerignore_rules()
    assert dockerfile_build_sources() <= set(admitted)
    assert "README.md" in dockerfile_build_sources(), "the parser reads COPY lines"


def test_runtime_venv_has_no_dev_tools_and_runs(runtime_venv: Path, tmp_path: Path) -> None:
    site_packages = next((runtime_venv / "lib").glob("python3.*/site-packages"))
    installed = {path.name.split("-")[0].lower() for path in site_packages.glob("*.dist-info")}
    assert "order_api" in installed
    assert not installed & set(DEV_DISTRIBUTIONS)
    package = site_packages / "order_api"
    assert (package / "__init__.py").is_file(), "installed as a wheel, not as an editable link"
    assert list((package / "migrations" / "versions").glob("0001_*.py"))
    assert list((package / "notifications" / "templates").glob("*.html"))
    assert (package / "board" / "static" / "board.js").is_file()

    helped = subprocess.run(
        [str(runtime_venv / "bin" / "order-api"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_SECONDS,
        check=False,
        # As in the image: bytecode goes elsewhere, never into the venv.
        env={**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path / "pycache")},
    )
    assert helped.returncode == 0, helped.stderr
    assert "migrate" in helped.stdout


def test_runtime_venv_fits_the_image_budget(runtime_venv: Path) -> None:
    files = [path for path in runtime_venv.rglob("*") if path.is_file() and not path.is_symlink()]
    assert not [path for path in files if path.suffix == ".pyc"], "the image ships no bytecode"
    size = sum(path.stat().st_size for path in files)
    assert size < VENV_BUDGET_BYTES, f"{size / 1e6:.1f} MB"
