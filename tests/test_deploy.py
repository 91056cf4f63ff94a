"""The container files stay in step with the code, and safe (no Docker engine here to run
them: `docker-compose config` validates the compose file)."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from smsgw_shared.config import Settings, load_settings
from smsgw_shared.safety import check_production_safety
from tests.debian import debian_tool

ROOT = Path(__file__).resolve().parents[1]
SERVICE_TARGETS = {  # compose service -> Dockerfile target, its command and port
    "api": ("api", ["smsgw", "api"], 8000),
    "inbound": ("inbound", ["smsgw", "inbound"], 9101),
    "modem-worker": ("modem-worker", ["smsgw", "modem-worker"], 9102),
    "smpp-worker": ("smpp-worker", ["smsgw", "smpp-worker"], 9103),
}
SECRET_VARS = ("POSTGRES_PASSWORD", "RABBITMQ_PASSWORD", "SMSGW_BOOTSTRAP_API_KEY")


def _sources() -> str:
    return "\n".join(p.read_text() for p in ROOT.glob("services/*/smsgw_*/**/*.py")) + "\n".join(
        p.read_text() for p in ROOT.glob("shared/smsgw_shared/**/*.py")
    )


def _compose_file() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


# --- the Dockerfile --------------------------------------------------------------------


def dockerfile_stages() -> dict[str, dict[str, Any]]:
    """Stage name -> {"from": base, "lines": [instruction lines]} (continuations joined)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    stages: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?$", line, re.IGNORECASE)
        if m:
            name = m.group(2) or f"stage{len(stages)}"
            current = stages[name] = {"from": m.group(1), "lines": []}
            continue
        assert current is not None, f"instruction before FROM: {line}"
        current["lines"].append(line)
    return stages


def _effective(stages: dict[str, dict[str, Any]], name: str, instruction: str) -> str | None:
    """The last `instruction` argument in effect in stage `name` (inherited from its bases)."""
    chain = []
    while name in stages:
        chain.append(stages[name])
        name = stages[name]["from"]
    for stage in chain:
        for line in reversed(stage["lines"]):
            if line.upper().startswith(instruction + " "):
                return str(line.split(None, 1)[1])
    return None


def test_one_dockerfile_with_a_target_per_service() -> None:
    assert not list(ROOT.glob("services/*/Dockerfile")), "the per-service Dockerfiles are gone"
    stages = dockerfile_stages()
    for target, command, port in SERVICE_TARGETS.values():
        assert target in stages, f"Dockerfile has no target {target!r}"
        cmd = _effective(stages, target, "CMD")
        assert cmd is not None and json.loads(cmd) == command, (target, cmd)
        assert _effective(stages, target, "EXPOSE") == str(port), target
        health = _effective(stages, target, "HEALTHCHECK")
        assert health is not None and f"127.0.0.1:{port}/healthz" in health, target
    assert list(stages)[-1] == "api", "a plain `docker build .` builds the API"


def test_every_image_runs_as_a_non_root_user() -> None:
    stages = dockerfile_stages()
    targets = {t for t, _, _ in SERVICE_TARGETS.values()} | {"sims"}
    for target in targets:
        user = _effective(stages, target, "USER")
        assert user is not None and user.split(":")[0] not in ("root", "0"), (target, user)


def test_compose_builds_dockerfile_targets_and_configs() -> None:
    compose = _compose_file()
    stages = dockerfile_stages()
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            assert build["context"] == ".", name
            assert "dockerfile" not in build, f"{name}: the one Dockerfile at the root"
            assert build["target"] in stages, f"{name}: no Dockerfile target {build['target']}"
    for name, (target, _, _) in SERVICE_TARGETS.items():
        assert compose["services"][name]["build"]["target"] == target
    for sim in ("sim-modem", "sim-smsc"):
        assert compose["services"][sim]["build"]["target"] == "sims"
    cfg = load_settings(ROOT / "config/docker.toml")
    prom = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    defaults = Settings()
    assert f"api:{cfg.api.port}" in targets
    assert f"inbound:{defaults.inbound.metrics_port}" in targets
    assert f"modem-worker:{defaults.workers.modem_metrics_port}" in targets
    assert f"smpp-worker:{defaults.workers.smpp_metrics_port}" in targets
    # Prometheus scrapes over the compose network: the containers listen beyond loopback.
    assert cfg.inbound.metrics_host == "0.0.0.0"
    assert cfg.workers.metrics_host == "0.0.0.0"
    hosts = {m.url.split("//")[1].split(":")[0] for m in cfg.modems}
    assert hosts <= set(compose["services"])
    assert {b.host for b in cfg.smpp.binds} <= set(compose["services"])


def test_dashboard_queries_name_metrics_that_exist() -> None:
    dash = json.loads((ROOT / "deploy/grafana/dashboards/smsgw.json").read_text())
    src = _sources()
    names = set()
    for panel in dash["panels"]:
        for t in panel["targets"]:
            names |= set(re.findall(r"smsgw_[a-z_]+", t["expr"]))
    assert names
    for name in names:
        base = re.sub(r"_(total|bucket|count|sum)$", "", name)
        assert f'"{base}"' in src or f'"{name}"' in src, f"{name}: no service exports it"


# --- what goes into the image and into git ---------------------------------------------


def test_dockerignore_keeps_history_secrets_and_local_state_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".git", ".env", ".run", ".venv", ".tools", "**/__pycache__"):
        assert entry in ignored, f".dockerignore does not exclude {entry}"
    # What the build needs stays in.
    for needed in ("pyproject.toml", "uv.lock", "README.md", "shared", "services", "config"):
        assert needed not in ignored


def test_env_is_ignored_by_git_and_the_example_is_not() -> None:
    def ignored(path: str) -> bool:
        return subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT).returncode == 0

    assert ignored(".env")
    assert not ignored(".env.example")


# --- docker-compose: secrets from .env, only the API published -------------------------


def _compose_cmd() -> list[str]:
    if shutil.which("docker") and not shutil.which("docker-compose"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return [debian_tool("docker-compose", "docker-compose", "validate docker-compose.yml")]


def _env_example() -> list[tuple[str, str]]:
    pairs = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with only `env_file` (never a developer's own .env or
    environment) supplying the variables."""
    names = {n for n, _ in _env_example()}
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("SMSGW_")}
    return subprocess.run(
        [
            *_compose_cmd(),
            "--env-file",
            str(env_file),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "config",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def filled_env(tmp_path: Path) -> Path:
    """A .env made from .env.example, every empty value filled with a fresh secret."""
    lines = [f"{n}={v or secrets.token_hex(24)}" for n, v in _env_example()]
    path = tmp_path / "filled.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_env_example_documents_every_variable_compose_needs() -> None:
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    documented = {n for n, _ in _env_example()}
    assert used <= documented, f".env.example misses {used - documented}"
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert set(SECRET_VARS) | {"GRAFANA_ADMIN_PASSWORD"} <= required
    # The example ships no secret: copied unchanged, compose still refuses to start.
    assert all(v == "" for n, v in _env_example() if n in required)


def test_compose_without_env_fails_clearly(tmp_path: Path) -> None:
    empty = tmp_path / "empty.env"
    empty.write_text("")
    copied = tmp_path / "copied.env"
    copied.write_text((ROOT / ".env.example").read_text())
    for env_file in (empty, copied):
        out = compose_config(env_file)
        assert out.returncode != 0, out.stdout
        assert "is not set: copy .env.example to .env" in out.stderr, out.stderr


def _published(svc: dict[str, Any]) -> list[tuple[str, str]]:
    """(host address, host port) of each published port of a `config` output service."""
    result = []
    for port in svc.get("ports", []):
        if isinstance(port, dict):
            result.append((str(port.get("host_ip", "")), str(port.get("published", ""))))
        else:
            parts = str(port).split("/")[0].split(":")
            host_ip = parts[0] if len(parts) == 3 else ""
            result.append((host_ip, parts[-2] if len(parts) >= 2 else ""))
    return result


def test_compose_with_env_is_valid_publishes_only_the_api_and_is_production_safe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = compose_config(filled_env(tmp_path))
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    services = config["services"]
    for name, svc in services.items():
        for host_ip, host_port in _published(svc):
            if name == "api":
                assert host_port == "8000"
            else:
                assert host_ip == "127.0.0.1", f"{name} publishes {host_port} beyond this machine"
    assert _published(services["api"]), "the API is published"
    for infra in ("postgres", "sim-smsc", "sim-modem"):
        ports = {p for _, p in _published(services[infra])}
        assert not ports & {"5432", "5672", "2775", "7001"}, infra

    text = (ROOT / "docker-compose.yml").read_text()
    for known in ("guest", "sgw_compose_change_me", "POSTGRES_PASSWORD: postgres", ": admin"):
        assert known not in text, f"docker-compose.yml still carries {known!r}"

    # What the services get: config/docker.toml in production with the .env secrets starts.
    for service in SERVICE_TARGETS:
        env = services[service]["environment"]
        for k in list(os.environ):
            if k.startswith("SMSGW_"):
                monkeypatch.delenv(k)
        for k, v in env.items():
            monkeypatch.setenv(k, str(v))
        cfg = load_settings(ROOT / "config/docker.toml")
        assert cfg.environment == "production"
        assert not cfg.webhooks.allow_private
        check_production_safety(cfg)
