"""审核把关: validate, run, the dispatcher and the console refuse unapproved template
versions; `approve` records who, when and a note in the log's append-only table and on the
ledger file; an edit makes a new version; urgent alerts go first and are recorded so."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from broadcaster.cli import cli
from broadcaster.engine.app import App
from broadcaster.engine.clock import VirtualClock
from broadcaster.log import DeliveryLog
from broadcaster.model.plan import Planner
from broadcaster.reports.approvals import ApprovalStore, approve
from broadcaster.reports.ledger import Version, read_ledger
from broadcaster.vocab import ErrorClass, Status
from tests.conftest import MINI, TZ, write_campaign
from tests.log.fixtures import HASH_KEY, raw_connection

APPROVAL = """
approval:
  required: true
  urgent: [alert]
"""
ALERT_RULE = """
  - id: alert-now
    channels: [texts]
    targets: {tags: [sms_list]}
    template: alert
    when: {dates: [2026-03-04], at: "10:00"}
"""
TEMPLATES = {"sms/alert.j2": "紧急预警：{{ vars.case|default('冒充客服诈骗') }}，请拨110"}
NOW = "2026-03-02"


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    text = MINI + APPROVAL
    text = text.replace("\nrules:\n", "\nrules:\n" + ALERT_RULE.lstrip("\n"), 1)
    return write_campaign(tmp_path / "mini", text, templates=TEMPLATES)


def cli_run(config: Path, *args: str) -> tuple[int, str]:
    state = config.parent / "var"
    result = CliRunner().invoke(cli, ["-c", str(config), *args])
    del state
    return result.exit_code, result.output


def test_validate_refuses_until_approved_and_again_after_an_edit(campaign: Path) -> None:
    code, out = cli_run(campaign, "validate", "--now", NOW)
    assert code == 1
    assert (
        "tpl/bot/alpha.j2: 内容未审核 template version" in out
        and "is not approved (rules: twice-weekly); approve it: broadcaster approve bot/alpha.j2"
        in out
    )
    assert "tpl/sms/alert.j2" not in out  # urgent: may go first
    code, out = cli_run(
        campaign, "approve", "bot/alpha.j2", "--by", "王审核", "--note", "已核对", "--now", NOW
    )
    assert code == 0 and "审核通过 approved: tpl/bot/alpha.j2" in out
    code, out = cli_run(campaign, "approve", "--all", "--by", "王审核", "--now", NOW)
    assert code == 0 and "已审核 already approved: tpl/bot/alpha.j2" in out
    code, out = cli_run(campaign, "validate", "--now", NOW)
    assert code == 0, out
    entries, problems = read_ledger(campaign.parent / "approvals.yaml", "approvals.yaml")
    assert not problems and {e.by for e in entries} == {"王审核"}
    assert next(e for e in entries if e.template == "bot/alpha.j2").note == "已核对"
    # an edited template is a new version: refused again, naming the file
    (campaign.parent / "tpl/sms/beta.j2").write_text(
        "{{ topic.slogan }}，请拨96110", encoding="utf-8"
    )
    code, out = cli_run(campaign, "validate", "--now", NOW)
    assert code == 1
    assert "tpl/sms/beta.j2: 内容未审核" in out and "tpl/bot/alpha.j2: 内容未审核" not in out


def test_run_refuses_unapproved_content_and_starts_nothing(campaign: Path) -> None:
    code, out = cli_run(campaign, "run", "--no-live")
    assert code == 1
    assert "内容未审核" in out and "启动 starting" not in out


def test_unknown_template_and_missing_arguments(campaign: Path) -> None:
    code, out = cli_run(campaign, "approve", "sms/nope.j2", "--by", "x", "--now", NOW)
    assert code == 2 and "没有规则使用这个模板 no rule sends a template 'sms/nope.j2'" in out
    code, out = cli_run(campaign, "approve", "--now", NOW)
    assert code == 2 and "--all" in out


def test_approvals_are_append_only(log_url: str, tmp_path: Path) -> None:
    campaign_path = write_campaign(tmp_path / "c", MINI + APPROVAL)
    app = App.load(campaign_path, now=dt.datetime(2026, 3, 2, 9, tzinfo=TZ), environ={})
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        store = ApprovalStore(log)
        at = dt.datetime(2026, 3, 2, 9, tzinfo=TZ)
        approve(
            store,
            app.campaign,
            Version("sms/alpha.j2", "a" * 64, "tpl/sms/alpha.j2"),
            by="甲",
            note="n",
            at=at,
        )
        assert [(r.template, r.by, r.at) for r in store.rows()] == [("sms/alpha.j2", "甲", at)]
        store.close()
    for sql in ("UPDATE approvals SET by = 'x'", "DELETE FROM approvals"):
        with pytest.raises(sa.exc.DBAPIError), raw_connection(log_url) as conn, conn.begin():
            conn.execute(sa.text(sql))


def fire(app: App, log: DeliveryLog, rule: str, day: dt.date) -> None:
    clock = VirtualClock(dt.datetime.combine(day, dt.time(8), tzinfo=TZ))
    dispatcher = app.dispatcher(log, HASH_KEY, clock=clock, heartbeat=False)
    try:
        spec = app.campaign.rule(rule)
        start = dt.datetime.combine(day, dt.time(), tzinfo=TZ)
        occurrence = next(
            Planner(app.campaign).rule_occurrences(spec, start, start + dt.timedelta(days=1))
        )
        clock.set(occurrence.at)
        dispatcher.fire(occurrence).wait()
    finally:
        dispatcher.close()


def test_the_dispatcher_holds_back_unapproved_versions_and_sends_urgent_ones(
    campaign: Path,
) -> None:
    # approve only the bot templates
    for name in ("bot/alpha.j2", "bot/beta.j2", "bot/gamma.j2"):
        assert cli_run(campaign, "approve", name, "--by", "王审核", "--now", NOW)[0] == 0
    app = App.load(
        campaign,
        now=dt.datetime(2026, 3, 2, 9, tzinfo=TZ),
        environ={},
        state_dir=campaign.parent / "var",
    )
    with DeliveryLog.open(
        f"sqlite:///{campaign.parent / 'gate.sqlite3'}", hash_key=HASH_KEY
    ) as log:
        fire(app, log, "twice-weekly", dt.date(2026, 3, 3))  # bot: approved
        fire(app, log, "sms-monthly", dt.date(2026, 3, 5))  # sms topics: not approved
        fire(app, log, "alert-now", dt.date(2026, 3, 4))  # urgent: goes first
        log.flush()
        rows = {(r.rule_id, r.status, r.error_class, r.reason) for r in log.deliveries()}
        store = ApprovalStore(log)
        urgent = [(r.template, r.state, r.by) for r in store.rows()]
        store.close()
    sent = {r for r in rows if r[0] == "twice-weekly"}
    assert {r[1] for r in sent} == {Status.ACCEPTED}  # an outbox accepts
    held = {r for r in rows if r[0] == "sms-monthly"}
    assert len(held) == 1
    (_, status, error, reason) = held.pop()
    assert status is Status.SKIPPED and error is ErrorClass.CONTENT
    assert reason.startswith("内容未审核 not approved: tpl/sms/")
    assert {r[1] for r in rows if r[0] == "alert-now"} == {Status.ACCEPTED}
    assert urgent == [("sms/alert.j2", "urgent", "broadcaster")]
    entries, _ = read_ledger(campaign.parent / "approvals.yaml", "")
    assert [e.state for e in entries if e.template == "sms/alert.j2"] == ["urgent"]
    # listed as sent before approval, still to approve
    code, out = cli_run(
        campaign, "approvals", "--state-dir", str(campaign.parent / "var"), "--now", NOW
    )
    assert code == 0
    assert "待审核 pending" in out
