"""Debian tools the tests need (promtool, docker-compose, chromium): installed with apt-get
when missing and the tests run as root (as CI does); otherwise the test fails saying what to
install. Never skipped."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def debian_tool(command: str, package: str, purpose: str, *, recommends: bool = False) -> str:
    """The path of `command` (a name on PATH or an absolute path), installing `package`
    with apt-get first when it is missing (with its recommended packages if `recommends`)."""
    found = _find(command)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", package]
        if not recommends:
            install.insert(3, "--no-install-recommends")
        run = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if run.returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
            run = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        found = _find(command)
        if found is None:
            pytest.fail(
                f"{command} is missing (needed to {purpose}) and `apt-get install -y {package}` "
                f"failed (exit {run.returncode}): {run.stderr[-2000:]}",
                pytrace=False,
            )
    if found is None:
        pytest.fail(
            f"{command} is not installed (needed to {purpose}): apt-get install -y {package}",
            pytrace=False,
        )
    return found


def _find(command: str) -> str | None:
    if os.path.isabs(command):
        return command if os.path.exists(command) else None
    return shutil.which(command)
