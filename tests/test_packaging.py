"""The installed package carries every module and data file the checkout has."""

from __future__ import annotations

import fnmatch
import subprocess
import tomllib
from pathlib import Path

from tests.conftest import REPO

SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "setuptools"
]
ROOTS = {folder: name for name, folder in SETUPTOOLS["package-dir"].items()}


def dotted(folder: Path) -> str:
    """The package name a folder of the checkout installs as."""
    top, *rest = folder.relative_to(REPO).parts
    return ".".join([ROOTS[top], *rest])


def tracked() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", *ROOTS], cwd=REPO, capture_output=True, text=True, check=True
    )
    return [REPO / line for line in out.stdout.splitlines()]


def test_every_package_is_listed() -> None:
    packages = {dotted(p.parent) for p in tracked() if p.name == "__init__.py"}
    assert packages - set(SETUPTOOLS["packages"]) == set()


def test_every_data_file_is_listed() -> None:
    data = SETUPTOOLS["package-data"]
    missing = []
    for path in tracked():
        if path.suffix == ".py":
            continue
        folder = path.parent
        while dotted(folder) not in SETUPTOOLS["packages"] and folder.parent != REPO:
            folder = folder.parent  # data in a sub-folder of a package (templates/, static/)
        package = dotted(folder)
        relative = path.relative_to(folder).as_posix()
        if not any(fnmatch.fnmatch(relative, g) for g in data.get(package, [])):
            missing.append(f"{package}: {relative}")
    assert missing == []
