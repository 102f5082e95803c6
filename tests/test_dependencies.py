"""Reproducible installs (#14 item 10): every dependency bounded in
pyproject.toml, and pinned in constraints.txt, which scripts/_venv.sh installs with."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + [
        r for group in project["optional-dependencies"].values() for r in group
    ]
    return [Requirement(r) for r in listed]


def pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pairs = [line.split("==") for line in lines if line and not line.startswith("#")]
    return {canonicalize_name(name): version for name, version in pairs}


def test_every_dependency_has_a_lower_and_an_upper_bound() -> None:
    unbounded = [
        str(r)
        for r in requirements()
        if not {s.operator for s in r.specifier} & {">=", ">", "~=", "=="}
        or not {s.operator for s in r.specifier} & {"<", "<=", "~=", "=="}
    ]
    assert unbounded == []


def test_every_dependency_is_pinned_within_its_bounds() -> None:
    pinned = pins()
    missing = [r.name for r in requirements() if canonicalize_name(r.name) not in pinned]
    assert missing == [], "run scripts/lock after changing pyproject.toml"
    outside = [
        f"{r.name}=={pinned[canonicalize_name(r.name)]} not in {r.specifier}"
        for r in requirements()
        if not r.specifier.contains(pinned[canonicalize_name(r.name)], prereleases=True)
    ]
    assert outside == []


def test_installs_use_the_constraints() -> None:
    assert "-c constraints.txt" in (ROOT / "scripts" / "_venv.sh").read_text()
