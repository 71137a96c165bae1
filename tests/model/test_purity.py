"""The model is pure: `plan` and `validate` touch no network, no database and (for plan) no
plugin; nothing in broadcaster/model reads a clock."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

NETWORK_AND_SQL = ("requests", "urllib3", "sqlalchemy", "psycopg", "alembic", "apscheduler")


def modules_after(folder: Path, *args: str) -> tuple[int, str, set[str]]:
    """Run a command in a fresh interpreter; what it printed and every module it imported."""
    code = (
        "import json, sys\n"
        "from click.testing import CliRunner\n"
        "from broadcaster.cli import cli\n"
        f"result = CliRunner().invoke(cli, {list(args)!r})\n"
        "print(json.dumps({'code': result.exit_code, 'out': result.output[-2000:],"
        " 'modules': sorted(sys.modules)}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, check=True
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    return data["code"], data["out"], set(data["modules"])


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("purity")
    shutil.copy(REPO / "schedules.yaml", folder / "schedules.yaml")
    shutil.copytree(REPO / "schedules.d", folder / "schedules.d")
    return folder


def heavy(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in names)


def test_plan_imports_no_network_no_database_and_no_plugin(sample: Path) -> None:
    code, out, modules = modules_after(
        sample, "plan", "--now", "2026-11-24", "--from", "2026-12-01", "--to", "2026-12-07"
    )
    assert code == 0, out
    assert heavy(modules, NETWORK_AND_SQL) == []
    assert sorted(m for m in modules if m.startswith("broadcaster.channels.")) == []
    assert "broadcaster.log" not in modules and "broadcaster.engine.dispatch" not in modules


def test_validate_imports_no_network_and_no_database(sample: Path) -> None:
    """validate runs the plugins' own checks (billing length, charset): over plugin classes
    with an offline session, so no HTTP library is even imported."""
    code, out, modules = modules_after(sample, "validate", "--now", "2026-11-24")
    assert code == 0, out
    assert heavy(modules, NETWORK_AND_SQL) == []
    assert "broadcaster.channels.webhook" in modules  # its checks ran


READS = {"now", "today", "utcnow"}  # datetime.now(), date.today() ...
TIMERS = {"time", "monotonic", "perf_counter"}  # time.time() ... (not dt.time(10, 0))


def test_nothing_in_the_model_reads_a_clock() -> None:
    found = []
    for path in sorted((REPO / "broadcaster" / "model").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            owner = node.func.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            reads = node.func.attr in READS and name in {"datetime", "date", "dt"}
            timer = node.func.attr in TIMERS and name == "time" and not node.args
            if reads or timer:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert found == []
