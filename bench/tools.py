"""The load generator and CPU pinning: wrk installed when missing, taskset when 2+ CPUs."""

from __future__ import annotations

import os
import shutil
import subprocess

SERVER_CORE = 0
CLIENT_CORE = 1


class SetupError(Exception):
    """The bench cannot run here; the message is one line for the operator."""


def ensure_wrk() -> str:
    """wrk's path, installing it with apt-get (through `sudo -n` unless root) when missing."""
    found = shutil.which("wrk")
    if found:
        return found
    apt_get = shutil.which("apt-get")
    sudo = shutil.which("sudo")
    if apt_get is None or (os.geteuid() != 0 and sudo is None):
        raise SetupError("wrk is missing and cannot be installed here (no apt-get or sudo)")
    command = [apt_get, "install", "-y", "wrk"]
    if os.geteuid() != 0 and sudo is not None:
        command = [sudo, "-n", *command]
    installed = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603 - fixed arguments
    found = shutil.which("wrk")
    if installed.returncode != 0 or found is None:
        reason = (installed.stderr.strip().splitlines() or ["no output"])[-1]
        raise SetupError(f"wrk is missing and `{' '.join(command)}` failed: {reason}")
    return found


def wrk_version(wrk: str) -> str:
    # `wrk -v` prints "wrk 4.1.0 [epoll] Copyright ..." and exits non-zero.
    shown = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)  # noqa: S603 - our wrk
    words = (shown.stdout + shown.stderr).split()
    return words[1] if len(words) > 1 else "unknown"


def can_pin() -> bool:
    return len(os.sched_getaffinity(0)) >= 2 and shutil.which("taskset") is not None


def pinned(command: list[str], core: int, pin: bool) -> list[str]:
    """`command` under `taskset -c core` when pinning is on; children inherit the mask."""
    taskset = shutil.which("taskset")
    if not pin or taskset is None:
        return command
    return [taskset, "-c", str(core), *command]
