"""Bad input: every case names file, line and key, says what was expected, and applies nothing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from broadcaster.cli import cli
from broadcaster.engine.app import App
from broadcaster.errors import ConfigError
from tests.conftest import MINI, TZ, write_campaign

TODAY = dt.date(2026, 3, 2)


def load_campaign(path: Path, *, today: dt.date, environ: dict[str, str] | None = None) -> App:
    """The whole check `validate` makes: the model, then the channels against their plugins."""
    return App.load(
        path,
        now=dt.datetime.combine(today, dt.time(9), tzinfo=TZ),
        environ=environ or {},
        state_dir=path.parent / "var",
    )


WEBHOOK_WITH_SECRET = """handoff:
    type: webhook
    kind: bot
    settings:
      url: https://example.org/hook
      success: {json_path: code, equals: OK}
      secrets: {token: {env: TEST_SECRET_TOKEN}}"""

CASES = {
    "broken YAML": (
        MINI.replace("  office: 测试派出所", "  office: [测试派出所"),
        {},
        {},
        "schedules.yaml:5: YAML 语法错误 invalid YAML: expected ',' or ']', but got ':' "
        "(while parsing a flow sequence started on line 4)",
    ),
    "unknown key": (
        MINI.replace(
            '    when: {weekdays: [tue, fri], at: "10:00"}',
            '    when: {weekdays: [tue, fri], at: "10:00"}\n    chanels: [handoff]',
        ),
        {},
        {},
        "schedules.yaml:31: rules[0].chanels: 未知字段 unknown key 'chanels'; expected one of id, name, "
        "channels, targets, when, phases, active, theme, topics, template, recipients, enabled, relay (did you mean 'channels'?)",
    ),
    "wrong type": (
        MINI.replace("priority: 90", "priority: high"),
        {},
        {},
        "schedules.yaml:8: occasions[0].priority: 应为整数 expected an integer; got 'high'",
    ),
    "unknown channel type": (
        MINI.replace("handoff: {type: outbox, kind: bot}", "handoff: {type: outbx, kind: bot}"),
        {},
        {},
        "schedules.yaml:24: channels.handoff.type: 未知的渠道类型 unknown channel type: expected one of "
        "aliyun-sms, dingtalk-bot, feishu-bot, handoff, led, loudspeaker, outbox, sms-http,"
        " tencent-sms, voice-call, webhook, wecom-bot; got 'outbx' (did you mean 'outbox'?)",
    ),
    "missing environment secret": (
        MINI.replace("handoff: {type: outbox, kind: bot}", WEBHOOK_WITH_SECRET),
        {},
        {},
        "schedules.yaml:30: channels.handoff.settings.secrets.token: 缺少环境变量 environment variable "
        "TEST_SECRET_TOKEN is not set (set it, or write enabled: auto to run without this channel)",
    ),
    "secret written inline": (
        MINI.replace(
            "handoff: {type: outbox, kind: bot}",
            WEBHOOK_WITH_SECRET.replace("{env: TEST_SECRET_TOKEN}", "abc123"),
        ),
        {},
        {},
        "schedules.yaml:30: channels.handoff.settings.secrets.token: 密钥须来自环境变量 secrets come from "
        "environment variables: write {env: NAME}",
    ),
    "template syntax error": (
        MINI,
        {"bot/alpha.j2": "### {{ topic.name }\n"},
        {},
        "tpl/bot/alpha.j2:1: 模板语法错误 template syntax error: unexpected '}' (rule 'twice-weekly', channel 'handoff')",
    ),
    "undefined template variable": (
        MINI,
        {"bot/beta.j2": "### {{ topic.name }}\n{{ target.nickname }}"},
        {},
        "tpl/bot/beta.j2:2: 模板渲染失败 render failed: 未定义的变量 undefined variable: 'dict object' has no "
        "attribute 'nickname' (rule 'twice-weekly', channel 'handoff')",
    ),
    "rule that selects no target": (
        MINI.replace("targets: {tags: [group]}", "targets: {tags: [group], under: [sms1]}"),
        {},
        {},
        "schedules.yaml:29: rules[0].targets: 选择不到任何对象 selects no target",
    ),
    "date that does not exist": (
        MINI.replace("end: 2026-12-31", "end: 2026-02-30"),
        {},
        {},
        "schedules.yaml:6: phases[0].end: 日期不存在 date does not exist: 2026-02-30",
    ),
    "month-day that does not exist": (
        MINI.replace('lunar: "01-01"', 'date: "02-30"'),
        {},
        {},
        "schedules.yaml:8: occasions[0].date: 日期不存在 date does not exist: 02-30",
    ),
    "lunar date that does not exist": (
        MINI.replace('lunar: "01-01"', 'lunar: "13-01"'),
        {},
        {},
        "schedules.yaml:8: occasions[0].lunar: 农历日期不存在 lunar date does not exist: 13-01 "
        "(months 1-12, days 1-29, or 30 in long months)",
    ),
    "lunar day 30 that not every year has": (
        MINI.replace('lunar: "01-01"', 'lunar: "12-30"'),
        {},
        {},
        "schedules.yaml:8: occasions[0].lunar: 农历日期并非每年都有 lunar day 30 does not exist in every year; "
        "anchor on the next month's 1st with before: 1 (除夕 = lunar 01-01, before: 1)",
    ),
    "include cycle": (
        MINI + "include: [more.yaml]\n",
        {},
        {"more.yaml": "include: [schedules.yaml]\n"},
        "more.yaml:1: include[0]: 循环引用 include cycle: schedules.yaml → more.yaml → schedules.yaml",
    ),
    "time inside the channel's quiet hours": (
        MINI.replace('when: {monthdays: [5], at: "09:00"', 'when: {monthdays: [5], at: "22:30"'),
        {},
        {},
        "schedules.yaml:34: rules[1].when.at[0]: 处于渠道免打扰时段 22:30 is inside channel 'texts' quiet hours 21:00-08:00",
    ),
    "SMS variant over its length budget": (
        MINI,
        {"sms/alpha.j2": "{{ topic.slogan }}，这是一条非常非常非常非常非常长的短信内容，请拨110"},
        {},
        "tpl/sms/alpha.j2:1: 超出长度预算 34 characters, over channel 'texts' max_length 30 (rule 'sms-monthly', target 'sms1')",
    ),
    "tag typo": (
        MINI.replace("targets: {tags: [group]}", "targets: {tags: [grop]}"),
        {},
        {},
        "schedules.yaml:29: rules[0].targets.tags[0]: 没有对象带此标签 no target has tag 'grop' (did you mean 'group'?)",
    ),
    "invalid phone number": (
        MINI.replace('"13900000002"', '"12345"'),
        {},
        {},
        "schedules.yaml:22: targets[0].children[2].contacts[1]: 号码无效 not a mainland mobile or landline "
        "number: **** (5 digits)",
    ),
    "time written wrong": (
        MINI.replace('at: "10:00"', 'at: "25:00"'),
        {},
        {},
        "schedules.yaml:30: rules[0].when.at: 时间格式错误 expected a time HH:MM such as \"10:00\"; got '25:00'",
    ),
    "weekday number instead of name": (
        MINI.replace("weekdays: [tue, fri]", "weekdays: [2, fri]"),
        {},
        {},
        "schedules.yaml:30: rules[0].when.weekdays: 星期写法错误 expected weekday names mon, tue, wed, thu, fri, "
        "sat, sun; got 2",
    ),
    "duplicate key": (
        MINI.replace("  office: 测试派出所", "  office: 测试派出所\n  office: 另一个"),
        {},
        {},
        "schedules.yaml:5: campaign.office: 重复的键 duplicate key; first defined on line 4",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gives_one_exact_located_message(tmp_path: Path, case: str) -> None:
    text, templates, extra, expected = CASES[case]
    path = write_campaign(tmp_path, text, templates, extra)
    with pytest.raises(ConfigError) as info:
        load_campaign(path, today=TODAY)
    assert [str(i) for i in info.value.issues] == [expected]


@pytest.mark.parametrize(
    "case", ["broken YAML", "unknown channel type", "template syntax error", "include cycle"]
)
def test_validate_prints_the_error_and_exits_1(tmp_path: Path, case: str) -> None:
    text, templates, extra, expected = CASES[case]
    path = write_campaign(tmp_path, text, templates, extra)
    result = CliRunner().invoke(cli, ["-c", str(path), "validate", "--now", "2026-03-02"])
    assert result.exit_code == 1
    assert expected in result.output
    assert "配置有 1 处错误 (1 error in configuration)" in result.output


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    text = MINI.replace("priority: 90", "priority: high").replace(
        "kind: bot}", "kind: bot, colour: red}"
    )
    path = write_campaign(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_campaign(path, today=TODAY)
    assert [str(i) for i in info.value.issues] == [
        "schedules.yaml:8: occasions[0].priority: 应为整数 expected an integer; got 'high'",
        "schedules.yaml:24: channels.handoff.colour: 未知字段 unknown key 'colour'; expected one of type, kind, "
        "addressing, name, enabled, quiet_hours, max_length, concurrency, rate_limit, settings",
    ]


def test_cross_reference_errors_are_all_reported_together(tmp_path: Path) -> None:
    text = MINI.replace("targets: {tags: [group]}", "targets: {tags: [grop]}").replace(
        "channels: [texts]", "channels: [txts]"
    )
    path = write_campaign(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_campaign(path, today=TODAY)
    assert [str(i) for i in info.value.issues] == [
        "schedules.yaml:29: rules[0].targets.tags[0]: 没有对象带此标签 no target has tag 'grop' (did you mean 'group'?)",
        "schedules.yaml:32: rules[1].channels[0]: 未知的渠道 unknown channel 'txts'; expected one of handoff, texts "
        "(did you mean 'texts'?)",
    ]


def test_contact_file_reports_every_bad_row(tmp_path: Path) -> None:
    text = MINI.replace('contacts: ["13800000001", "13900000002"]', "contacts_file: people.csv")
    path = write_campaign(
        tmp_path,
        text,
        extra={
            "people.csv": "name,phone\nA,13800000001\nB,123\nC,13800000001\nD,\nE,0571-88886666\n"
        },
    )
    with pytest.raises(ConfigError) as info:
        load_campaign(path, today=TODAY)
    assert [str(i) for i in info.value.issues] == [
        "people.csv:3: phone: 号码无效 not a mainland mobile or landline number: **** (3 digits)",
        "people.csv:4: phone: 重复号码 duplicate of line 2: 138****0001",
        "people.csv:5: phone: 号码无效 not a mainland mobile or landline number: (empty)",
    ]


def test_enabled_auto_disables_a_channel_without_its_secret(tmp_path: Path) -> None:
    text = MINI.replace(
        "handoff: {type: outbox, kind: bot}",
        WEBHOOK_WITH_SECRET.replace("kind: bot", "kind: bot\n    enabled: auto"),
    )
    app = load_campaign(write_campaign(tmp_path, text), today=TODAY)
    handoff = app.channels["handoff"]
    assert not handoff.enabled
    assert handoff.disabled_reason == "缺少环境变量 environment variable TEST_SECRET_TOKEN not set"
    again = load_campaign(
        write_campaign(tmp_path, text), today=TODAY, environ={"TEST_SECRET_TOKEN": "s3cret"}
    )
    assert again.channels["handoff"].enabled
    assert "s3cret" not in repr(again.channels["handoff"].settings)


def _bomb(levels: int) -> str:
    lines = ["lol0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


HOSTILE = {
    # 1.7 KB that would expand to 10**10 values
    "alias bomb": (
        _bomb(9),
        "schedules.yaml:5: lol4[7]: 别名展开过多 aliases expand to more than 100,000 values "
        "('*l3' adds 11,111); write the values out",
    ),
    "recursive alias": (
        "campaign: &c\n  id: x\n  name: *c\n",
        "schedules.yaml:3: campaign.name: 递归别名 recursive alias: '*c' is used inside its own anchor",
    ),
    "nesting 500 levels deep": (
        "campaign: " + "[" * 500 + "]" * 500 + "\n",
        "schedules.yaml:1: campaign" + "[0]" * 99 + ": 嵌套过深 nesting deeper than 100 levels",
    ),
    "merge key": (
        MINI.replace(
            "  texts: {type: outbox",
            "  base: &base {type: outbox, kind: sms}\n  texts: {<<: *base, type: outbox",
        ),
        "schedules.yaml:26: channels.texts: 不支持 YAML 合并键 '<<' is not supported; write the keys out",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_yaml_is_refused_at_load_with_one_located_error(tmp_path: Path, case: str) -> None:
    text, expected = HOSTILE[case]
    path = write_campaign(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_campaign(path, today=TODAY)
    assert [str(i) for i in info.value.issues] == [expected]
    result = CliRunner().invoke(cli, ["-c", str(path), "validate", "--now", "2026-03-02"])
    assert result.exit_code == 1, result.output
    assert expected in result.output
    assert "Traceback" not in result.output


def test_a_gbk_config_is_refused_with_save_as_utf8(tmp_path: Path) -> None:
    path = write_campaign(tmp_path)
    path.write_bytes(path.read_text(encoding="utf-8").encode("gbk"))
    with pytest.raises(ConfigError) as info:
        load_campaign(path, today=TODAY)
    assert [str(i) for i in info.value.issues] == [
        "schedules.yaml:3: 文件不是 UTF-8 编码 file is not UTF-8 (it looks like GBK/GB18030):"
        " save the file as UTF-8"
    ]


def test_a_gbk_contact_file_is_refused_with_save_as_utf8(tmp_path: Path) -> None:
    text = MINI.replace('contacts: ["13800000001", "13900000002"]', "contacts_file: people.csv")
    path = write_campaign(tmp_path, text)
    (tmp_path / "people.csv").write_bytes("name,phone\n张三,13800000001\n".encode("gbk"))
    with pytest.raises(ConfigError) as info:
        load_campaign(path, today=TODAY)
    assert [str(i) for i in info.value.issues] == [
        "people.csv:2: 文件不是 UTF-8 编码 file is not UTF-8 (it looks like GBK/GB18030, as Excel"
        " saves it): save the file as UTF-8 (Excel: CSV UTF-8)",
        "schedules.yaml:33: rules[1].targets: 对象没有联系人 channel 'texts' sends to people, but these "
        "targets have no contacts: sms1",
    ]


def test_every_undefined_template_variable_is_reported(tmp_path: Path) -> None:
    template = (
        "### {{ topic.name }}\n"
        "{{ target.nickname }}\n"
        "{% if vars.hotline is defined %}{{ vars.hotline }}{% endif %}\n"
        "{{ vars.station }}，{{ contact_person }}\n"
    )
    path = write_campaign(tmp_path, MINI, {"bot/beta.j2": template})
    with pytest.raises(ConfigError) as info:
        load_campaign(path, today=TODAY)
    where = "(rule 'twice-weekly', channel 'handoff')"
    assert [str(i) for i in info.value.issues] == [
        "tpl/bot/beta.j2:2: 模板渲染失败 render failed: 未定义的变量 undefined variable: 'dict object' has no "
        f"attribute 'nickname' {where}",
        "tpl/bot/beta.j2:4: 模板渲染失败 render failed: 未定义的变量 undefined variable: 'dict object' has no "
        f"attribute 'station' {where}",
        f"tpl/bot/beta.j2:4: 模板渲染失败 render failed: 未定义的变量 undefined variable: 'contact_person' is undefined {where}",
    ]
