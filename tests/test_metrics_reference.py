"""docs/metrics.md lists exactly the metrics the services register (name, type, labels,
service), and no metric carries a label whose values are unbounded (numbers, ids, texts).

The metrics are read from prometheus_client's registries after importing every module that
uses prometheus_client (and building the two sets created on first use: the modem worker's
`metrics()` and the SMPP worker's `SmppMetrics`); a scan of the sources for `Counter("…")`,
`Gauge("…")`… makes sure no registration was missed. `python -m tests.test_metrics_reference`
prints the table rows the code implies, to paste into docs/metrics.md.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs/metrics.md"
SERVICE_BY_PACKAGE = {  # the package that registers a metric -> the service exporting it
    "smsgw_api": "api",
    "smsgw_inbound": "inbound",
    "smsgw_modem": "modem-worker",
    "smsgw_smpp": "smpp-worker",
}
# Label names whose values come from a small set: configuration (modem, bind, route as a
# route id or a URL template), protocol enums (status, state, outcome…). A phone number,
# message/batch/key id, URL, host, sender or text must never be a label (one series each).
ALLOWED_LABELS = {
    "method",  # HTTP method
    "route",  # API route template ("/v1/messages/{message_id}") or a send route ("smpp:b1")
    "status",  # HTTP status, message status, or SMPP command_status name
    "reason",  # a rejection reason code
    "outcome",  # sent / failed / retry / dead …
    "state",  # a message or delivery report state
    "result",  # applied / duplicate / parked …
    "changed",  # true / false
    "ok",  # true / false
    "kind",
    "event_type",
    "modem",  # configured modem id
    "bind",  # configured SMPP bind id
    "policy",  # a retention policy ([retention] table kinds)
    "table",  # a store table name
}
FORBIDDEN_LABEL_WORDS = re.compile(
    r"number|phone|msisdn|recipient|sender|to$|^from|message|msg|batch|id$|key|url|host|"
    r"text|body|email|user|token|ip$|address|reference",
)
REGISTRATION = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*\"(smsgw_\w+)\"")


@dataclass(frozen=True)
class Metric:
    """One metric as exposed: counters with their `_total` suffix."""

    name: str
    type: str
    labels: tuple[str, ...]
    service: str
    help: str


def _sources() -> list[Path]:
    files = [*ROOT.glob("services/*/smsgw_*/**/*.py"), *ROOT.glob("shared/smsgw_shared/**/*.py")]
    return sorted(p for p in files if "/tests/" not in p.as_posix())


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[2:] if rel.parts[0] == "services" else rel.parts[1:]
    return ".".join(p for p in parts if p != "__init__")


@cache
def registered_in_source() -> dict[str, str]:
    """Base name (as passed to the constructor, `_total` dropped) -> the service whose
    package registers it, for every registration found in the sources."""
    names = {}
    for path in _sources():
        service = SERVICE_BY_PACKAGE.get(_module_name(path).split(".")[0], "?")
        for name in REGISTRATION.findall(path.read_text()):
            names[re.sub(r"_total$", "", name)] = service
    return names


def _walk(registry: CollectorRegistry) -> list[Any]:
    # prometheus_client keeps its collectors in this mapping; collect() would not show the
    # label names of a labelled metric with no child yet.
    return list(registry._collector_to_names)


@cache
def code_metrics() -> dict[str, Metric]:
    """Every smsgw metric the services register, by exposed name."""
    for path in _sources():
        if "prometheus_client" in path.read_text():
            importlib.import_module(_module_name(path))
    from smsgw_modem.metrics import metrics
    from smsgw_smpp.metrics import SmppMetrics

    metrics()  # the modem worker's set, created on first use in the default registry
    collectors = _walk(REGISTRY) + _walk(SmppMetrics().registry)
    found: dict[str, Metric] = {}
    for c in collectors:
        base = getattr(c, "_name", "")
        if not base.startswith("smsgw_"):
            continue  # process_* and python_* from prometheus_client's default collectors
        kind = c._type
        name = base + "_total" if kind == "counter" else base
        service = registered_in_source().get(base, "?")
        found[name] = Metric(name, kind, tuple(c._labelnames), service, c._documentation)
    return found


def exported_names() -> set[str]:
    """Names to query in PromQL (histograms also as `_bucket`, `_sum`, `_count`)."""
    return set(code_metrics())


def doc_metrics() -> dict[str, Metric]:
    """The rows of the table in docs/metrics.md."""
    rows: dict[str, Metric] = {}
    for line in DOC.read_text().splitlines():
        if not line.startswith("| `smsgw_"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 5, f"docs/metrics.md: row needs 5 cells: {line}"
        name, kind, labels, service, meaning = cells
        label_names = tuple(re.findall(r"`(\w+)`", labels))
        assert name not in rows, f"docs/metrics.md lists {name} twice"
        rows[name.strip("`")] = Metric(name.strip("`"), kind, label_names, service, meaning)
    return rows


def table_row(m: Metric) -> str:
    labels = ", ".join(f"`{label}`" for label in m.labels) or "—"
    return f"| `{m.name}` | {m.type} | {labels} | {m.service} | {m.help} |"


def test_every_registration_in_the_sources_is_seen() -> None:
    code = {re.sub(r"_total$", "", n) for n in code_metrics()}
    assert set(registered_in_source()) == code, (
        "metrics registered in code that this test does not build (or the reverse): "
        f"{set(registered_in_source()) ^ code}"
    )


def test_docs_list_exactly_the_metrics_of_the_code() -> None:
    code, doc = code_metrics(), doc_metrics()
    missing = [table_row(code[n]) for n in sorted(set(code) - set(doc))]
    assert not missing, "docs/metrics.md misses these rows:\n" + "\n".join(missing)
    extra = sorted(set(doc) - set(code))
    assert not extra, f"docs/metrics.md lists metrics no service registers: {extra}"
    for name, m in code.items():
        d = doc[name]
        assert (d.type, d.labels, d.service) == (m.type, m.labels, m.service), (
            f"docs/metrics.md row of {name} says {d.type} {d.labels} {d.service}; "
            f"the code: {table_row(m)}"
        )
        assert d.help, f"docs/metrics.md: {name} has no meaning"


def test_metric_names_follow_the_conventions() -> None:
    for name, m in code_metrics().items():
        assert m.service in SERVICE_BY_PACKAGE.values(), f"{name}: registered outside a service"
        assert re.fullmatch(r"smsgw_[a-z0-9_]+", name), name
        assert m.help.strip(), f"{name} has no help text"
        if m.type in ("histogram", "summary"):
            assert not name.endswith("_total"), name


def test_no_label_is_unbounded() -> None:
    for name, m in code_metrics().items():
        for label in m.labels:
            assert not FORBIDDEN_LABEL_WORDS.search(label) or label in ALLOWED_LABELS, (
                f"{name}: label {label!r} looks like a per-message value"
            )
            assert label in ALLOWED_LABELS, (
                f"{name}: label {label!r} is not in the allow-list of bounded labels; if its "
                "values come from a small fixed set, add it to ALLOWED_LABELS with a reason"
            )


def test_forbidden_label_words_catch_the_usual_suspects() -> None:
    for bad in ("to", "from_", "phone", "msisdn", "message_id", "batch_id", "key_id", "url"):
        assert FORBIDDEN_LABEL_WORDS.search(bad), bad
        assert bad not in ALLOWED_LABELS


async def test_request_metrics_carry_the_route_template_never_the_path() -> None:
    """Ids and phone numbers in a URL stay out of the labels of the API's request metrics."""
    import httpx
    from fastapi import FastAPI

    from smsgw_api.middleware import LATENCY, REQUESTS, MetricsMiddleware

    app = FastAPI()

    @app.get("/v1/messages/{message_id}")
    async def one(message_id: str) -> dict[str, str]:
        return {"id": message_id}

    values = ["0192f0a4-5b6c-7d8e-9f00-112233445566", "+79160001234", "89203048606"]
    transport = httpx.ASGITransport(app=MetricsMiddleware(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for value in values:
            assert (await client.get(f"/v1/messages/{value}")).status_code == 200
            assert (await client.get(f"/{value}")).status_code == 404
    seen = {
        v
        for metric in (REQUESTS, LATENCY)
        for family in metric.collect()
        for sample in family.samples
        for v in sample.labels.values()
    }
    assert {"/v1/messages/{message_id}", "unmatched"} <= seen
    for value in values:
        assert not any(value in label for label in seen), value


if __name__ == "__main__":
    print("| metric | type | labels | service | meaning |")
    print("|---|---|---|---|---|")
    for metric in sorted(code_metrics().values(), key=lambda m: m.name):
        print(table_row(metric))
