"""The Prometheus alert rules (deploy/prometheus/alerts.yml) are valid, wired into the compose
Prometheus, name metrics that exist, and each fires past its threshold and not before
(`promtool test rules` on deploy/prometheus/alerts_test.yml)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.debian import debian_tool
from tests.test_metrics_reference import exported_names

ROOT = Path(__file__).resolve().parents[1]
PROM = ROOT / "deploy/prometheus"
SEVERITIES = {"critical", "warning", "info"}
# Metrics that come from RabbitMQ's own plugin, not from smsgw (the `rabbitmq` scrape job).
RABBITMQ_METRICS = {
    "rabbitmq_detailed_queue_messages_ready",
    "rabbitmq_detailed_queue_messages",
    "rabbitmq_detailed_queue_consumers",
}


def _duration(text: str) -> int:
    """Seconds of a Prometheus duration such as `1h30m` or `5m`."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w)", text)
    assert parts and "".join(n + u for n, u in parts) == text, f"bad duration {text!r}"
    return int(sum(int(n) * units[u] for n, u in parts))


@pytest.fixture(scope="session")
def promtool() -> str:
    return debian_tool("promtool", "prometheus", "check the alert rules")


def _run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], cwd=PROM, capture_output=True, text=True, timeout=120)


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load((PROM / "alerts.yml").read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_alert_rules_are_valid(promtool: str) -> None:
    out = _run(promtool, "check", "rules", "alerts.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_prometheus_config_is_valid_and_loads_the_rules(promtool: str) -> None:
    out = _run(promtool, "check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 rule files found" in out.stdout, out.stdout
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert config["rule_files"] == ["alerts.yml"]


def test_alert_unit_tests_pass(promtool: str) -> None:
    """Each alert's threshold, its `for` and its rendered annotations."""
    out = _run(promtool, "test", "rules", "alerts_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_alert_has_a_quiet_case_before_a_firing_case() -> None:
    tests = yaml.safe_load((PROM / "alerts_test.yml").read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    quiet: dict[str, list[int]] = {}
    firing: dict[str, list[int]] = {}
    for group in tests["tests"]:
        for case in group["alert_rule_test"]:
            seen = firing if case.get("exp_alerts") else quiet
            seen.setdefault(case["alertname"], []).append(_duration(case["eval_time"]))
    for rule in _rules():
        name = rule["alert"]
        assert name in firing, f"{name}: no case where it fires"
        assert name in quiet, f"{name}: no case where it does not fire yet"
        assert min(quiet[name]) < min(firing[name]), f"{name}: the quiet case comes first"
        if "for" in rule:
            # Not yet firing while pending: a quiet case at least `for` after the start.
            assert max(quiet[name]) >= _duration(rule["for"]), f"{name}: test its `for`"


def test_alerts_are_labelled_and_explained() -> None:
    names = [rule["alert"] for rule in _rules()]
    assert len(names) == len(set(names)), "alert names are unique"
    for rule in _rules():
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["alert"].startswith("Smsgw"), rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]


def test_the_operations_alerts_exist() -> None:
    """What issue 17 asks an operator to be told about, by the metric each one watches."""
    exprs = {rule["alert"]: rule["expr"] for rule in _rules()}
    wanted = {
        "SmsgwTargetDown": "up{",
        "SmsgwModemDown": "smsgw_modem_connected",
        "SmsgwSmppBindDown": "smsgw_smpp_bound",
        "SmsgwEventQueueAge": "smsgw_inbound_projection_lag_seconds_bucket",
        "SmsgwJobQueueBacklog": "rabbitmq_detailed_queue_messages_ready",
        "SmsgwUnmatchedDeliveryReports": "smsgw_inbound_unmatched_reports_total",
        "SmsgwWebhookFailures": "smsgw_inbound_webhook_attempts_total",
        "SmsgwOutboxBacklog": "smsgw_api_outbox_backlog",
        "SmsgwDeadLetterQueueGrowing": ".dlq",
        "SmsgwStoreUnavailable": 'status="503"',
    }
    for alert, needle in wanted.items():
        assert alert in exprs, f"no alert {alert}"
        assert needle in exprs[alert], f"{alert} does not watch {needle}"


def test_alerts_name_metrics_the_services_export() -> None:
    exported = exported_names()
    for rule in _rules():
        for name in set(re.findall(r"\b(smsgw_[a-z_]+|rabbitmq_[a-z_]+)\b", rule["expr"])):
            if name.startswith("rabbitmq_"):
                assert name in RABBITMQ_METRICS, f"{rule['alert']}: {name} is not scraped"
                continue
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert name in exported or base in exported, (
                f"{rule['alert']}: no service exports {name}"
            )


def test_rabbitmq_is_scraped_for_the_queue_alerts() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    rabbit = jobs["rabbitmq"]
    assert rabbit["metrics_path"] == "/metrics/detailed"
    assert {"queue_coarse_metrics", "queue_consumer_count"} <= set(rabbit["params"]["family"])
    # Every job an alert names exists (SmsgwTargetDown watches smsgw-* and rabbitmq).
    assert {"smsgw-api", "smsgw-inbound", "smsgw-modem-worker", "smsgw-smpp-worker"} <= set(jobs)


def test_compose_prometheus_mounts_the_rules() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro" in volumes
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in volumes
