"""scripts/bootstrap.sh (`make run`, `make test` on a fresh checkout): a .venv whose Python
is broken or too old is rebuilt; a working one is kept.

Offline and fast: the script runs in a copy of the project with PYTHON pointing at a
stub interpreter that logs its calls, makes a "venv" whose python is the stub again,
answers `-m pip` without installing anything and runs everything else with this
test's own interpreter (Python 3.11+, where broadcaster's dependencies are installed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO

STUB = textwrap.dedent(
    """\
    #!/bin/sh
    echo "$0 $*" >> "$STUB_LOG"
    case "$1 $2" in
      "-m venv") mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0 ;;
      "-m pip") exit 0 ;;
    esac
    exec {python} "$@"
    """
)


def write_script(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of what bootstrap.sh reads: itself, pyproject.toml and the package."""
    root = tmp_path / "project"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "bootstrap.sh", root / "scripts" / "bootstrap.sh")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "broadcaster").symlink_to(REPO / "broadcaster")
    return root


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    return write_script(tmp_path / "bin" / "python3", STUB.format(python=sys.executable))


def bootstrap(
    project: Path, python: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = project.parent / "stub.log"
    log.unlink(missing_ok=True)
    done = subprocess.run(
        ["bash", str(project / "scripts" / "bootstrap.sh"), *args],
        cwd=project,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": str(python), "STUB_LOG": str(log)},
        timeout=60,
        check=False,
    )
    calls = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return done, calls


def venv_calls(calls: list[str]) -> list[str]:
    return [c for c in calls if " -m venv " in f"{c} "]


def test_a_venv_whose_python_fails_is_rebuilt(project: Path, stub: Path) -> None:
    broken = write_script(project / ".venv" / "bin" / "python", "#!/bin/sh\nexit 1\n")
    (project / ".venv" / ".installed").touch()  # it even claims to be installed
    (project / ".venv" / "left-over").touch()
    done, calls = bootstrap(project, stub)
    assert done.returncode == 0, done.stderr
    assert "虚拟环境不可用，重建 .venv has no working Python 3.11+: rebuilding it" in done.stderr
    assert venv_calls(calls) == [f"{stub} -m venv .venv"]
    assert not (project / ".venv" / "left-over").exists()
    assert broken.read_text(encoding="utf-8") != "#!/bin/sh\nexit 1\n"  # the stub's copy now
    assert any(
        c.endswith("-m pip -q --disable-pip-version-check install -e .[audio]") for c in calls
    )
    assert (project / ".venv" / ".installed").exists()


def test_a_venv_with_too_old_a_python_is_rebuilt(project: Path, stub: Path) -> None:
    """What a first `make run` with Python 3.10 leaves behind (its pip install failed)."""
    old = textwrap.dedent(
        """\
        #!/bin/sh
        case "$*" in *version_info*) exit 1 ;; esac  # Python 3.10: the version check fails
        exit 0
        """
    )
    write_script(project / ".venv" / "bin" / "python", old)
    done, calls = bootstrap(project, stub)
    assert done.returncode == 0, done.stderr
    assert venv_calls(calls) == [f"{stub} -m venv .venv"]
    assert (project / ".venv" / "bin" / "python").read_text(encoding="utf-8") != old


def test_a_venv_without_its_python_is_rebuilt(project: Path, stub: Path) -> None:
    (project / ".venv" / "bin").mkdir(parents=True)  # creation was cut short
    done, calls = bootstrap(project, stub)
    assert done.returncode == 0, done.stderr
    assert venv_calls(calls) == [f"{stub} -m venv .venv"]


def test_a_working_installed_venv_is_kept_and_nothing_is_installed(
    project: Path, stub: Path
) -> None:
    done, _ = bootstrap(project, stub)
    assert done.returncode == 0, done.stderr
    marker = project / ".venv" / "kept"
    marker.touch()
    done, calls = bootstrap(project, stub)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert marker.exists()
    assert venv_calls(calls) == []
    assert not [c for c in calls if " -m pip " in c]


def test_too_old_a_python_is_refused_before_anything_is_made(project: Path, tmp_path: Path) -> None:
    old = write_script(tmp_path / "bin" / "python3.10", "#!/bin/sh\nexit 1\n")
    done, _ = bootstrap(project, old)
    assert done.returncode == 1
    assert done.stderr == (
        f"需要 Python 3.11 或更高版本 Python 3.11 or newer is required; PYTHON={old} is not\n"
    )
    assert not (project / ".venv").exists()
