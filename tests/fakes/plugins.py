"""Install `tests/example_plugin` with pip, for tests of plugin discovery.

The distribution is installed with `pip install --no-deps --target <session tmp>`, not
into the venv: an installed `echo` (plus its deliberately broken and clashing entry
points) would change `Registry()` for every other test and every other user of the
venv (e.g. the exact "expected one of outbox, webhook" config error). The
`example_plugin` fixture puts that folder on `sys.path` for one test, so
`importlib.metadata` sees the distribution and its entry points only there. When the
distribution is already installed in the venv, nothing is installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["DIST_NAME", "EXAMPLE_PLUGIN", "example_plugin", "example_plugin_site"]

EXAMPLE_PLUGIN = Path(__file__).resolve().parent.parent / "example_plugin"
DIST_NAME = "broadcaster-example-plugin"
MODULE = "broadcaster_example_plugin"


def _installed() -> bool:
    try:
        importlib.metadata.distribution(DIST_NAME)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def _can_build_offline() -> bool:
    """setuptools builds wheels by itself from 70.1; before that it needs `wheel`."""
    if importlib.util.find_spec("wheel") is not None:
        return True
    version = importlib.metadata.version("setuptools").split(".")
    return (int(version[0]), int(version[1])) >= (70, 1)


_site: list[Path] = []  # one install per test session, whichever conftest asked first


def install(folder: Path) -> Path:
    """pip-install the example distribution into `folder/site`; return that folder."""
    if _site:
        return _site[0]
    source = folder / "src"  # pip builds in the source tree: keep build/ out of the repo
    shutil.copytree(EXAMPLE_PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = folder / "site"
    done = None
    if _can_build_offline():
        done = _pip("--no-build-isolation", "--target", str(site), str(source))
    if done is None or done.returncode != 0:
        # build isolated: pip fetches setuptools from the package index
        done = _pip("--target", str(site), str(source))
    if done.returncode != 0:
        pytest.fail(f"cannot install {EXAMPLE_PLUGIN}:\n{done.stdout}\n{done.stderr}")
    _site.append(site)
    return site


@pytest.fixture(scope="session")
def example_plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A folder holding the installed example distribution; None if the venv has it."""
    if _installed():
        return None
    return _site[0] if _site else install(tmp_path_factory.mktemp("example_plugin"))


@pytest.fixture
def example_plugin(example_plugin_site: Path | None) -> Iterator[None]:
    """The example distribution is importable and its entry points visible, for this test."""
    if example_plugin_site is None:
        yield
        return
    sys.path.insert(0, str(example_plugin_site))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(example_plugin_site))
        for name in [m for m in sys.modules if m == MODULE or m.startswith(f"{MODULE}.")]:
            del sys.modules[name]
        importlib.invalidate_caches()
