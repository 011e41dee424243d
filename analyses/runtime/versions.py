"""The versions a result is made with: the numerical libraries and this package, stored with
every result (`store.py`) so a cache hit made with other versions says so."""
from __future__ import annotations

import functools
import tomllib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

_LIBRARIES = ("torch", "transformer-lens", "transformers", "duckdb")
PACKAGE = "interpretability-workbench"  # this project, as pyproject.toml names it
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def library_versions() -> dict[str, str]:
    """The versions a result is made with: the numerical libraries and this package."""
    return dict(_installed_versions())


@functools.cache
def _installed_versions() -> dict[str, str]:
    return {**{name: version(name) for name in _LIBRARIES}, PACKAGE: _package_version()}


def _package_version() -> str:
    """A checkout runs its own source: its pyproject.toml's version, else the installed one."""
    if PYPROJECT.is_file():
        return tomllib.loads(PYPROJECT.read_text())["project"]["version"]
    try:
        return version(PACKAGE)
    except PackageNotFoundError:
        return "unknown"


def version_differences(made_with: dict[str, str], running: dict[str, str]) -> list[str]:
    """"torch 2.1 (this server runs 2.3)" for each library a result was made with another version of."""
    return [f"{name} {then} (this server runs {running[name]})"
            for name, then in made_with.items() if name in running and running[name] != then]
