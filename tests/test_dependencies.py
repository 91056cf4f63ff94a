"""Dependencies are declared where they are imported, with the range they were tested on.

- deptry, run in each workspace package's directory against its own pyproject.toml: no
  package imported but undeclared (DEP001/DEP003), none declared but unused (DEP002), no
  dev-only package imported by shipped code (DEP004). The root package is smsgw_cli.
- Test code (every `tests/` directory, `bench/` left out) imports only what some
  pyproject.toml of the workspace declares (the packages' lists and the dev group).
- Every third-party dependency has a lower and an upper bound, and the version uv.lock
  pins satisfies it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [ROOT, ROOT / "shared", *sorted((ROOT / "services").glob("*/"))]
PACKAGES = [p for p in PACKAGES if (p / "pyproject.toml").exists()]
TEST_DIRS = [ROOT / "tests", ROOT / "shared" / "tests", *(p / "tests" for p in PACKAGES[2:])]


def _project(path: Path) -> dict:
    return tomllib.loads((path / "pyproject.toml").read_text())


def _workspace_names() -> set[str]:
    return {canonicalize_name(_project(p)["project"]["name"]) for p in PACKAGES}


def _requirements(path: Path, dev: bool = False) -> list[Requirement]:
    data = _project(path)
    lines = list(data["project"].get("dependencies", []))
    for extra in data["project"].get("optional-dependencies", {}).values():
        lines += extra
    if dev:
        for group in data.get("dependency-groups", {}).values():
            lines += [g for g in group if isinstance(g, str)]
    return [Requirement(line) for line in lines]


def _locked() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {canonicalize_name(p["name"]): p["version"] for p in lock["package"] if "version" in p}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: str(p.relative_to(ROOT)) or "root")
def test_deptry(package: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "deptry", ".", "--no-ansi"],
        cwd=package,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, f"deptry in {package}:\n{run.stdout}\n{run.stderr}"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_test_code_imports_only_declared_packages() -> None:
    declared = _workspace_names()
    for package in PACKAGES:
        declared |= {canonicalize_name(r.name) for r in _requirements(package, dev=True)}
    dists = packages_distributions()
    first_party = {"tests", "conftest"} | {
        d.name for p in PACKAGES for d in p.glob("smsgw_*") if d.is_dir()
    }
    local = {f.stem for d in TEST_DIRS for f in d.rglob("*.py")}
    missing: dict[str, set[str]] = {}
    for directory in TEST_DIRS:
        for file in directory.rglob("*.py"):
            for module in _imports(file) - first_party - local:
                if module in sys.stdlib_module_names:
                    continue
                owners = {canonicalize_name(d) for d in dists.get(module, [])}
                if not owners & declared:
                    missing.setdefault(module, set()).add(str(file.relative_to(ROOT)))
    assert not missing, f"imported by tests but declared nowhere: {missing}"


def test_every_dependency_is_bounded_and_locked_inside_its_range() -> None:
    workspace = _workspace_names()
    locked = _locked()
    problems = []
    for package in PACKAGES:
        for req in _requirements(package):
            name = canonicalize_name(req.name)
            if name in workspace:
                continue
            ops = {s.operator for s in req.specifier}
            if not ops & {">=", "==", "~=", ">"} or not ops & {"<", "<=", "==", "~="}:
                problems.append(f"{package.name}: {req} needs a lower and an upper bound")
            if name in locked and not req.specifier.contains(locked[name], prereleases=True):
                problems.append(f"{package.name}: uv.lock has {name} {locked[name]}, not {req}")
    assert not problems, "\n".join(problems)


def test_httpx_is_not_a_runtime_dependency_of_inbound() -> None:
    """Inbound delivers webhooks with aiohttp; httpx was declared but never imported."""
    names = {canonicalize_name(r.name) for r in _requirements(ROOT / "services" / "inbound")}
    assert "httpx" not in names


def test_workspace_module_map_is_complete() -> None:
    mapping = _project(ROOT)["tool"]["deptry"]["package_module_name_map"]
    for package in PACKAGES[1:]:
        name = _project(package)["project"]["name"]
        modules = [d.name for d in package.glob("smsgw_*") if d.is_dir()]
        assert mapping.get(name) in modules, f"root [tool.deptry] map lacks {name}"
    assert all(re.fullmatch(r"smsgw_\w+", m) for m in mapping.values())
