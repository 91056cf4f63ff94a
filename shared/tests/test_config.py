"""Settings: file + environment, and clear errors for bad files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smsgw_shared.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


def test_env_wins_over_file(tmp_path, monkeypatch):
    p = write(tmp_path, 'namespace = "file"\n[api]\nport = 9000\nmax_parts = 4\n')
    monkeypatch.setenv("SMSGW_NAMESPACE", "env")
    monkeypatch.setenv("SMSGW_API__PORT", "9100")
    s = load_settings(p)
    assert (s.namespace, s.api.port, s.api.max_parts) == ("env", 9100, 4)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[api]\nport = 'abc'\n", "api.port"),
        ("[api]\nbogus = 1\n", "api.bogus: unknown option"),
        ("[routing]\ndefault = 'sms:x'\n", "invalid route"),
        ("[[routing.rules]]\nto = 'modem:*'\n", "exactly one of 'prefix' or 'regex'"),
        ("[[routing.rules]]\nregex = '('\nto = 'modem:*'\n", "invalid regex"),
        ("[[modems]]\nid = 'm1'\nurl = 'x'\n[[modems]]\nid = 'm1'\nurl = 'y'\n", "duplicate"),
        ("[[modems]]\nurl = 'x'\n", "modems.0.id"),
        ("this is = not toml [", "not valid TOML"),
    ],
)
def test_bad_files_name_the_key(tmp_path, text, needle):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert needle in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    p = write(tmp_path, "[api]\nport = 'abc'\n")
    r = subprocess.run(
        [sys.executable, "-m", "smsgw_cli.main", "--config", str(p), "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "api.port" in r.stderr


def _fields(model: type, prefix: str = "") -> set[str]:
    from pydantic import BaseModel

    out = set()
    for name, f in model.model_fields.items():
        ann = f.annotation
        inner = getattr(ann, "__args__", (ann,))
        sub = next((a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if sub is not None:
            out |= _fields(sub, f"{prefix}{name}.")
        else:
            out.add(f"{prefix}{name}")
    return out


def test_shipped_configs_load_and_example_documents_every_option():
    dev = load_settings(ROOT / "config" / "dev.toml")
    assert load_settings(ROOT / "config" / "docker.toml").simulators.modem_host == "0.0.0.0"
    assert dev.simulators.smsc and dev.modems
    example = ROOT / "config" / "example.toml"
    load_settings(example)
    text = example.read_text()
    missing = [
        f for f in sorted(_fields(Settings)) if f.rsplit(".", 1)[-1] not in text and f != "config"
    ]
    assert not missing, f"config/example.toml does not mention: {missing}"
