"""`broadcaster report monthly` on the sample campaign over a November 2026 test log: the
XLSX read back cell by cell against figures computed straight from the test's deliveries;
the CSV in UTF-8 with BOM; the HTML page opened offline in headless Chromium with its SVG
charts drawn; the PNG charts; an empty period; the offline-activity form."""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook
from playwright.sync_api import Browser, sync_playwright

from broadcaster.cli import cli
from broadcaster.vocab import Status
from tests.conftest import REPO
from tests.reports.data import FARMERS, in_month, november, split
from tests.reports.fixtures import Sent, chain_of, copy_sample, fill, sample_campaign

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]  # fmt: skip
SENDS = november()
FORM = (
    "示范县反电诈入户宣传登记表\n"
    "日期,乡镇(街道),村(社区),活动类型,入户户数,受众人数,宣传人员,备注\n"
    "2026-11-03,东风镇,河西村,入户走访,35,80,网格员甲,\n"
    '2026/11/18,东风镇,上塘村,乡村大讲堂,0,120,派出所,=HYPERLINK("x")\n'
    "2026年11月21日,青山镇,李家村,入户走访,12,30,,\n"
    "2026-12-02,青山镇,李家村,入户走访,5,9,,next month\n"
)


def run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-c", str(config), *args, "--now", "2026-12-06"])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample, its November log, the form, and the report in every format."""
    folder = tmp_path_factory.mktemp("report")
    config = copy_sample(folder)
    fill(config, folder / "var", SENDS)
    (folder / "form.csv").write_bytes(FORM.encode("gb18030"))  # as Excel saves it
    code, out = run(
        config, "report", "monthly", "--period", "2026-11", "--out", str(folder / "out"),
        "--offline", str(folder / "form.csv"),
        *("--format", "xlsx", "--format", "csv", "--format", "html", "--format", "png"),
    )  # fmt: skip
    assert code == 0, out
    assert "投递 deliveries 24 · 已触达 reached 19 · 线下活动 offline activities 3" in out
    return folder / "out"


@functools.cache
def workbook(path: Path) -> Any:
    return load_workbook(path)


def sheet_rows(path: Path, name: str) -> list[list[object]]:
    return [list(r) for r in workbook(path)[name].iter_rows(values_only=True)]


def expected_channels() -> list[list[object]]:
    campaign = sample_campaign(REPO / "schedules.yaml")
    month = in_month(SENDS)
    out = []
    for cid in sorted({s.channel for s in month}):
        mine = [s for s in month if s.channel == cid]
        counts = split(mine)
        spec = campaign.channels[cid]
        row: list[object] = [
            cid,
            spec.name,
            spec.kind.value,
            *counts,
            round(counts[1] / counts[0], 4),
        ]
        if cid in ("sms_gateway", "voice_gateway"):  # per person: once per list
            people = {(s.target, s.number) for s in mine}
            reached = {
                (s.target, s.number)
                for s in mine
                if s.status in (Status.ACCEPTED, Status.DELIVERED)
            }
            row += [len(people), len(reached)]
        else:
            row += [None, None]
        out.append(row)
    return out


def test_xlsx_cell_by_cell(written: Path) -> None:
    path = written / "report-demo-county-2026-11.xlsx"
    book = workbook(path)
    assert book.sheetnames == [
        "概要",
        "渠道",
        "区域",
        "对象类型",
        "诈骗类型",
        "分周",
        "未达标",
        "核查",
        "线下活动",
    ]
    for ws in book.worksheets:
        assert ws.freeze_panes == "A2"  # the header row stays on screen
        assert all(ws.column_dimensions[c].width >= 8 for c in "AB")
    channels = sheet_rows(path, "渠道")
    assert channels[0][:4] == ["渠道 channel", "名称 name", "类型 kind", "计划投递 deliveries"]
    assert channels[1:] == expected_channels()
    assert book["渠道"]["I2"].number_format == "0.0%"
    # a Chinese header is wider than its text in characters
    assert book["渠道"].column_dimensions["B"].width >= 2 * len("县直机关企业微信群机器人")

    # per area (township): deliveries by the second level of the target's path, offline beside
    month = in_month(SENDS)
    campaign = sample_campaign(REPO / "schedules.yaml")
    by_area: dict[str, list[Sent]] = defaultdict(list)
    for s in month:
        path_names = campaign.targets[s.target].path
        by_area[
            path_names[1] if len(path_names) >= 3 else f"{path_names[0]} 本级 county level"
        ].append(s)
    offline = {"东风镇": [2, 35, 200], "青山镇": [1, 12, 30]}
    expected = []
    for area in sorted(by_area):
        c = split(by_area[area])
        expected.append([area, *c, round(c[1] / c[0], 4), *offline.get(area, [0, 0, 0])])
    assert sheet_rows(path, "区域")[1:] == expected

    # per week: reached per channel and week, weeks cut at the month's edges
    weeks = sheet_rows(path, "分周")
    assert weeks[0][1:] == ["W44 11-01~11-01", "W45 11-02~11-08", "W46 11-09~11-15",
                            "W47 11-16~11-22", "W48 11-23~11-29", "W49 11-30~11-30", "合计 total"]  # fmt: skip
    spans = [(1, 1), (2, 8), (9, 15), (16, 22), (23, 29), (30, 30)]
    for row in weeks[1:]:
        mine = [
            s
            for s in month
            if s.channel == row[0] and s.status in (Status.ACCEPTED, Status.DELIVERED)
        ]
        counts = [sum(1 for s in mine if a <= s.at.day <= b) for a, b in spans]
        assert row[1:] == [*counts, sum(counts)]

    # duties: by person on the SMS lists (twice a month), by group (twice a week)
    short = sheet_rows(path, "未达标")[1:]
    sms = [r for r in short if r[0] == "短信名单每月至少2条" and r[2] == "dongfeng-farmers-sms"]
    reached = defaultdict(int)
    for s in month:
        if s.channel == "sms_gateway" and s.status in (Status.ACCEPTED, Status.DELIVERED):
            reached[s.number] += 1
    assert sorted((r[4], r[6]) for r in sms) == sorted(
        (f"{FARMERS[n]} {n[:3]}****{n[-4:]}", reached[n]) for n in FARMERS if reached[n] < 2
    )
    hexi = sorted(r[1] for r in short if r[2] == "hexi-affairs")
    assert hexi == ["2026-W45 (11-02~11-08)", "2026-W47 (11-16~11-22)", "2026-W48 (11-23~11-29)"]
    assert not any(r[2] == "hexi-speaker" and r[1].startswith("2026-W45") for r in short)  # 7 of 7
    assert all("1380000" not in str(c) for r in short for c in r[:4])  # numbers only masked

    checks = sheet_rows(path, "核查")[1:]
    assert checks == [["显示屏未更新 stale screen", "dongfeng-center-led", "东风镇便民服务中心门口显示屏",
                       "最后更新 last item accepted: 2026-11-12 08:00 (1 planned)"]]  # fmt: skip
    form = sheet_rows(path, "线下活动")[1:]
    assert [r[:6] for r in form] == [
        [dt.datetime(2026, 11, 3), "东风镇", "河西村", "入户走访", 35, 80],
        [dt.datetime(2026, 11, 18), "东风镇", "上塘村", "乡村大讲堂", 0, 120],
        [dt.datetime(2026, 11, 21), "青山镇", "李家村", "入户走访", 12, 30],
    ]
    summary = dict((r[0], r[1]) for r in sheet_rows(path, "概要")[1:])
    head, records = chain_of(written.parent / "var")
    assert (summary["链头 chain head"], summary["记录数 records"]) == (head, records)
    assert summary["计划投递 deliveries"] == len(month)


def test_csv_is_utf8_with_bom_and_safe(written: Path) -> None:
    raw = (written / "report-demo-county-2026-11-offline.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    text = raw.decode("utf-8-sig")
    assert "乡村大讲堂" in text and "'=HYPERLINK" in text  # a formula cell is neutralised
    channels = (written / "report-demo-county-2026-11-channels.csv").read_text(encoding="utf-8-sig")
    assert "sms_gateway,县短信平台,sms,9,6,2,0,1,66.7%,5,4" in channels.splitlines()


def test_png_charts(written: Path) -> None:
    for name in ("chart_per_period", "chart_coverage"):
        data = (written / f"report-demo-county-2026-11-{name}.png").read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: apt-get install -y chromium (scripts/bootstrap.sh dev)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def test_html_renders_its_charts_offline(written: Path, browser: Browser, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((written / "report-demo-county-2026-11.html").as_uri())
    for chart in ("#chart-per-period", "#chart-coverage"):
        box = page.locator(chart).bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100
        bars = page.locator(f"{chart} rect.bar")
        assert bars.count() > 0
        sizes = [bars.nth(i).bounding_box() for i in range(bars.count())]
        assert any(b is not None and b["height"] > 5 and b["width"] > 5 for b in sizes)
    assert page.locator("#chart-coverage rect.bar").count() == 4  # one per area
    assert "东风镇" in (page.locator("#chart-coverage").text_content() or "")
    assert "链头 chain head" in page.inner_text("#seal")
    assert page.locator("#t-channels tbody tr").count() == len(expected_channels())
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 20_000
    assert all(u.startswith("file://") for u in requests)  # nothing from a network
    context.close()


def test_a_period_with_no_data_says_so(written: Path, tmp_path: Path) -> None:
    config = written.parent / "schedules.yaml"
    code, out = run(config, "report", "weekly", "--period", "2026-W30", "--format", "html",
                    "--format", "xlsx", "--out", str(tmp_path))  # fmt: skip
    assert code == 0, out
    assert "本期无数据 no deliveries and no offline activities in 2026-W30" in out
    html = (tmp_path / "report-demo-county-2026-W30.html").read_text(encoding="utf-8")
    assert 'id="no-data"' in html and "本期无数据" in html
    channels = sheet_rows(tmp_path / "report-demo-county-2026-W30.xlsx", "渠道")
    assert channels[1][0] == "无数据 none" and set(channels[1][1:]) <= {None}


def test_bad_period_and_bad_form(written: Path, tmp_path: Path) -> None:
    config = written.parent / "schedules.yaml"
    code, out = run(config, "report", "monthly", "--period", "2026-13")
    assert code == 2 and "expected a month YYYY-MM" in out
    code, out = run(config, "report", "weekly", "--period", "2026-11")
    assert code == 2 and "expected an ISO week YYYY-Www" in out
    form = tmp_path / "bad.csv"
    form.write_text(
        "日期,乡镇(街道),活动类型,入户户数\n2026-11-03,东风镇,入户走访,3\n2026-11-31,东风镇,讲座,x\n,,入户走访,2\n",
        encoding="utf-8",
    )
    code, out = run(config, "report", "monthly", "--period", "2026-11", "--offline", str(form),
                    "--out", str(tmp_path / "never"))  # fmt: skip
    assert code == 1
    assert (
        f"{form}:3: 日期 date: 应为日期 expected a date such as 2026-11-03; got '2026-11-31'" in out
    )
    assert (
        f"{form}:3: 入户户数 households: 应为非负整数 expected a whole number ≥ 0; got 'x'" in out
    )
    assert f"{form}:4: 乡镇(街道) township: 不能为空 must not be empty" in out
    assert "(no report written)" in out and not (tmp_path / "never").exists()


def test_the_same_figures_and_lookup_on_sqlite_and_postgresql(log_url: str) -> None:
    """The report's aggregates and the lookup's index reads on both databases."""
    from broadcaster.log import DeliveryLog
    from broadcaster.model.calendar import ChinaCalendar
    from broadcaster.reports import lookup as lk
    from broadcaster.reports.chain import seal
    from broadcaster.reports.figures import build_report
    from broadcaster.reports.periods import deadlines, parse_period
    from tests.log.fixtures import HASH_KEY
    from tests.reports.fixtures import write_log

    campaign = sample_campaign(REPO / "schedules.yaml")
    period = parse_period("monthly", "2026-11")
    with DeliveryLog.open(log_url, hash_key=HASH_KEY) as log:
        write_log(log, campaign, SENDS)
        report = build_report(
            log,
            campaign,
            period,
            seal=seal(log),
            deadlines=deadlines(period, ChinaCalendar.load()),
            generated_at=dt.datetime(2026, 12, 6, tzinfo=dt.UTC),
        )
        subject = lk.by_phone(campaign, "13800000201", log.recipient_hash)
        log.read(lambda conn: lk.read_sections(conn, subject, campaign=campaign.id))
    assert report.table("channels").rows == expected_channels()
    own = subject.sections[0].rows
    assert [(r.scheduled_at.date(), r.channel_id, r.status) for r in own] == [
        (dt.date(2026, 11, 23), "sms_gateway", Status.DELIVERED),
        (dt.date(2026, 11, 16), "voice_gateway", Status.ACCEPTED),
        (dt.date(2026, 11, 9), "sms_gateway", Status.DELIVERED),
        (dt.date(2026, 10, 31), "sms_gateway", Status.DELIVERED),
    ]
