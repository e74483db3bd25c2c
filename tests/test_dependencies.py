"""Dependencies that will still install next year: each bounded below its next major, with its reason; the conda
route installs the same list (environment.yml installs the project itself, torch pinned as the Makefile pins it)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> list[tuple[Requirement, str]]:
    """(requirement, its comment) of every dependency in pyproject.toml, extras included."""
    text = (ROOT / "pyproject.toml").read_text()
    project = tomllib.loads(text)["project"]
    names = project["dependencies"] + [r for group in project["optional-dependencies"].values() for r in group]
    out = []
    for spec in names:
        if spec.startswith("harmlib["):
            continue
        line = next(ln for ln in text.splitlines() if f'"{spec}"' in ln)
        out.append((Requirement(spec), line.split("#", 1)[1].strip() if "#" in line else ""))
    return out


def test_every_dependency_has_an_upper_bound_and_a_reason():
    unbounded = [
        str(r) for r, _ in _requirements() if not any(s.operator in ("<", "<=", "~=", "==") for s in r.specifier)
    ]
    assert not unbounded, f"no upper bound: {unbounded}"
    silent = [str(r) for r, why in _requirements() if not why]
    assert not silent, f"a bound without a reason: {silent}"


def test_intensity_normalization_stays_below_its_breaking_4():
    req = dict((r.name, r) for r, _ in _requirements())["intensity-normalization"]
    assert not req.specifier.contains("4.0.0") and req.specifier.contains("3.0.1")


def test_the_installed_versions_satisfy_the_bounds():
    from importlib.metadata import PackageNotFoundError, version

    for req, _ in _requirements():
        try:
            have = version(req.name)
        except PackageNotFoundError:
            continue
        assert req.specifier.contains(re.sub(r"\+.*", "", have), prereleases=True), f"{req.name} {have} outside {req}"


def test_environment_yml_installs_the_project_with_the_makefiles_torch():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    torch = re.search(r"^TORCH \?= (\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert "-e .[all]" in pip and torch in pip, pip
    assert not [d for d in env["dependencies"] if isinstance(d, str) and d.split("=")[0] not in ("python", "pip")]
