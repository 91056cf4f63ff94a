"""The container files stay in step with the code (no Docker engine here to run them)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from smsgw_shared.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def _sources() -> str:
    return "\n".join(p.read_text() for p in ROOT.glob("services/*/smsgw_*/**/*.py")) + "\n".join(
        p.read_text() for p in ROOT.glob("shared/smsgw_shared/**/*.py")
    )


def test_dashboard_queries_name_metrics_that_exist():
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


def test_compose_builds_existing_dockerfiles_and_configs():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            assert (ROOT / build["dockerfile"]).exists(), name
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
    hosts = {m.url.split("//")[1].split(":")[0] for m in cfg.modems}
    assert hosts <= set(compose["services"])
    assert {b.host for b in cfg.smpp.binds} <= set(compose["services"])
