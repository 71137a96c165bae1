"""Shared fixtures: a clean environment, a small campaign written to a temp folder."""

from __future__ import annotations

import datetime as dt
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

pytest_plugins = ["tests.fakes.fixtures", "tests.fakes.plugins", "tests.log.fixtures"]

# Secret values the tests hand to the product. None may ever appear in anything the suite
# printed: checked over every test's captured output and every CliRunner result at the end.
SECRET_CANARY = "tok-Canary-7Qx9"
SECRET_VALUES = (SECRET_CANARY, "S3cr3t-Token-XYZ", "tok-7f3a9c21e5")
_printed: list[str] = []


@pytest.fixture(autouse=True, scope="session")
def _record_cli_output() -> Iterator[None]:
    """Keep every CliRunner result's output for the end-of-session secret check."""
    from click.testing import CliRunner

    real = CliRunner.invoke

    def invoke(self: CliRunner, *args: Any, **kwargs: Any) -> Any:
        result = real(self, *args, **kwargs)
        _printed.append(result.output)
        return result

    CliRunner.invoke = invoke  # type: ignore[method-assign]
    yield
    CliRunner.invoke = real  # type: ignore[method-assign]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _printed.extend(text for _, text in report.sections)
    if report.longrepr is not None:
        _printed.append(str(report.longrepr))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any test printed a secret (stdout, stderr, logs, CLI output, tracebacks)."""
    leaked = sorted({s for s in SECRET_VALUES for text in _printed if s in text})
    if leaked:
        print(f"\nSECRET LEAK: {leaked} appeared in the output of the test suite", file=sys.stderr)
        session.exitstatus = 1


TZ = ZoneInfo("Asia/Shanghai")
NOW = dt.datetime(2026, 3, 2, 9, 0, tzinfo=TZ)  # a Monday in a year with an official file
REPO = Path(__file__).resolve().parent.parent

OUR_ENV_PREFIXES = ("BROADCASTER_", "WECOM_", "SMS_", "VOICE_", "TEST_SECRET")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's variables, and nothing is written to the home folder."""
    for name in list(os.environ):
        if name.startswith(OUR_ENV_PREFIXES):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


MINI = """
campaign:
  id: mini
  name: 迷你测试活动
  office: 测试派出所
phases:
  - {id: main, name: 集中宣传, start: 2026-01-01, end: 2026-12-31}
occasions:
  - {id: spring, name: 春节, lunar: "01-01", before: 7, after: 7, priority: 90, theme: festive}
default_theme: routine
themes:
  routine: {name: 日常, topics: [alpha, beta, gamma]}
  festive: {name: 节日, topics: [delta]}
templates: [tpl]
targets:
  - id: town
    name: 测试镇
    audience: villagers
    tags: [township]
    children:
      - {id: g1, name: 一组群, tags: [group]}
      - {id: g2, name: 二组群, tags: [group]}
      - {id: sms1, name: 短信名单, tags: [sms_list], contacts: ["13800000001", "13900000002"]}
channels:
  handoff: {type: outbox, kind: bot}
  texts: {type: outbox, kind: sms, max_length: 30, quiet_hours: "21:00-08:00"}
rules:
  - id: twice-weekly
    channels: [handoff]
    targets: {tags: [group]}
    when: {weekdays: [tue, fri], at: "10:00"}
  - id: sms-monthly
    channels: [texts]
    targets: {tags: [sms_list]}
    when: {monthdays: [5], at: "09:00", on_holiday: next_working_day}
"""

TEMPLATES = {
    "topics.yaml": """
alpha: {name: 甲类诈骗, en: Alpha fraud, slogan: 凡是甲就是诈骗}
beta: {name: 乙类诈骗, en: Beta fraud, slogan: 凡是乙就是诈骗}
gamma: {name: 丙类诈骗, en: Gamma fraud, slogan: 凡是丙就是诈骗}
delta: {name: 丁类诈骗, en: Delta fraud, slogan: 凡是丁就是诈骗}
""",
    "bot/alpha.j2": "### {{ topic.name }}\n{{ target.name }}：{{ topic.slogan }}",
    "bot/beta.j2": "### {{ topic.name }}\n{{ target.name }}：{{ topic.slogan }}",
    "bot/gamma.j2": "### {{ topic.name }}\n{{ target.name }}：{{ topic.slogan }}",
    "bot/delta.j2": "### {{ occasion.name }}·{{ topic.name }}\n{{ topic.slogan }}",
    "sms/alpha.j2": "{{ topic.slogan }}，请拨110",
    "sms/beta.j2": "{{ topic.slogan }}，请拨110",
    "sms/gamma.j2": "{{ topic.slogan }}，请拨110",
    "sms/delta.j2": "{{ topic.slogan }}，请拨110",
}


def write_campaign(
    folder: Path,
    yaml_text: str = MINI,
    templates: dict[str, str] | None = None,
    extra: dict[str, str] | None = None,
) -> Path:
    """Write a campaign (schedules.yaml + office templates + extra files); return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {**TEMPLATES, **(templates or {})}.items():
        p = folder / "tpl" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    for name, text in (extra or {}).items():
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    path = folder / "schedules.yaml"
    path.write_text(textwrap.dedent(yaml_text).lstrip("\n"), encoding="utf-8")
    return path


@pytest.fixture
def mini(tmp_path: Path) -> Path:
    return write_campaign(tmp_path / "mini")
