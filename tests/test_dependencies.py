"""The lock files pin what pyproject.toml asks for, inside its ranges, and are what the tests run on.

pyproject.toml states ranges; requirements/run.lock and requirements/test.lock (made by `make lock`) pin
every package with hashes, and `make run` / `make test` install from them. These tests fail when the two
drift apart: a dependency added to pyproject.toml without `make lock`, a range changed so that a pin falls
out of it, or a run lock that pins another version than the test lock.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUN_LOCK = ROOT / "requirements" / "run.lock"
TEST_LOCK = ROOT / "requirements" / "test.lock"
FIX = "run `make lock` (README, Tests and CI)"


def lock_pins(path: Path) -> dict[str, Requirement]:
    """Each pinned requirement of a lock file by canonical name (continuations joined, hashes dropped)."""
    pins = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.split(" --hash=", 1)[0].strip()
        if line and not line.startswith("#"):
            requirement = Requirement(line)
            pins[canonicalize_name(requirement.name)] = requirement
    return pins


def pinned_version(requirement: Requirement) -> Version:
    (spec,) = requirement.specifier
    assert spec.operator == "==", f"{requirement} is not an exact pin"
    return Version(spec.version)


RUN_PINS = lock_pins(RUN_LOCK)
TEST_PINS = lock_pins(TEST_LOCK)
RUN_DEPENDENCIES = [Requirement(r) for r in PYPROJECT["dependencies"]]
EXTRA_DEPENDENCIES = [Requirement(r) for extra in PYPROJECT["optional-dependencies"].values() for r in extra]


def extra_requirements(requirement: Requirement) -> list[Requirement]:
    """What the extras named in ``requirement`` (``psycopg[binary]``) add, from the installed metadata."""
    if not requirement.extras:
        return []
    added = []
    for line in metadata.requires(requirement.name) or []:
        dependency = Requirement(line)
        if dependency.marker and any(dependency.marker.evaluate({"extra": e}) for e in requirement.extras):
            added.append(dependency)
    return added


@pytest.mark.parametrize(
    "lock, dependencies",
    [
        pytest.param(RUN_PINS, RUN_DEPENDENCIES, id="run.lock"),
        pytest.param(TEST_PINS, RUN_DEPENDENCIES + EXTRA_DEPENDENCIES, id="test.lock"),
    ],
)
def test_every_dependency_is_pinned_inside_its_range(lock, dependencies):
    assert dependencies
    for requirement in dependencies:
        for needed in [requirement, *extra_requirements(requirement)]:
            name = canonicalize_name(needed.name)
            assert name in lock, f"{needed} (pyproject.toml) is not in the lock: {FIX}"
            version = pinned_version(lock[name])
            assert needed.specifier.contains(version, prereleases=True), (
                f"the lock pins {name}=={version}, outside pyproject.toml's {needed}: {FIX}"
            )


def test_every_range_has_an_upper_bound():
    for requirement in RUN_DEPENDENCIES + EXTRA_DEPENDENCIES:
        assert any(spec.operator in ("<", "<=", "==", "~=") for spec in requirement.specifier), (
            f"{requirement}: add the next major (or, for ruff-like 0.x tools, the next minor) as a bound"
        )


def test_the_run_lock_pins_what_the_test_lock_pins():
    # `make lock` resolves the run lock within the test lock: `make run` runs the versions CI tested.
    assert set(RUN_PINS) < set(TEST_PINS)
    for name, requirement in RUN_PINS.items():
        assert pinned_version(requirement) == pinned_version(TEST_PINS[name]), name


def test_every_pin_carries_hashes():
    # pip then checks each downloaded file against the lock (hash-checking mode for the whole file).
    for path in (RUN_LOCK, TEST_LOCK):
        blocks = path.read_text().replace("\\\n", " ").splitlines()
        pins = [b for b in blocks if b.strip() and not b.startswith(("#", " "))]
        assert pins and all("--hash=sha256:" in b for b in pins), path.name


def test_the_tests_run_on_the_locked_versions():
    # `make test` installs test.lock: a package at another version means this environment is not the
    # one CI tests (reinstall with `make test`, or `make lock` after changing pyproject.toml).
    different = {}
    for name, requirement in TEST_PINS.items():
        if requirement.marker is None or requirement.marker.evaluate():
            installed = Version(metadata.version(name))
            if installed != pinned_version(requirement):
                different[name] = f"{installed} installed, {pinned_version(requirement)} locked"
    assert different == {}
