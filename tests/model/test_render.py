from __future__ import annotations

from pathlib import Path

import pytest

from broadcaster.channel import MessageKind
from broadcaster.errors import TemplateError
from broadcaster.model.render import Renderer


def office(tmp_path: Path, files: dict[str, str]) -> Renderer:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return Renderer([tmp_path])


def test_audience_variant_wins_and_office_folder_overrides_the_library(tmp_path: Path) -> None:
    renderer = office(tmp_path, {"sms/loan.j2": "本县版本：{{ topic.name }}"})
    assert (
        renderer.template_name(MessageKind.SMS, "impersonate_teacher", "parents")
        == "sms/impersonate_teacher.parents.j2"
    )
    assert (
        renderer.template_name(MessageKind.SMS, "impersonate_teacher", "villagers")
        == "sms/impersonate_teacher.j2"
    )
    assert renderer.template_name(MessageKind.SMS, "no_such_topic", None) is None
    name = renderer.template_name(MessageKind.SMS, "loan", None)
    assert renderer.source(name)[1] == str(tmp_path / "sms/loan.j2")
    assert (
        renderer.render(name, MessageKind.SMS, {"topic": {"name": "贷款诈骗"}})
        == "本县版本：贷款诈骗"
    )


def test_undefined_variables_are_errors_with_file_and_line(tmp_path: Path) -> None:
    renderer = office(tmp_path, {"sms/x.j2": "第一行\n{{ target.nickname }}"})
    with pytest.raises(TemplateError) as info:
        renderer.render("sms/x.j2", MessageKind.SMS, {"target": {"name": "群"}})
    assert (
        str(info.value)
        == f"{tmp_path}/sms/x.j2:2: 模板渲染失败 render failed: 未定义的变量 undefined variable: 'dict object' has no attribute 'nickname'"
    )


def test_the_sandbox_refuses_unsafe_access(tmp_path: Path) -> None:
    renderer = office(tmp_path, {"sms/x.j2": "{{ topic.__class__.__mro__ }}"})
    with pytest.raises(TemplateError, match="模板渲染失败 render failed"):
        renderer.render("sms/x.j2", MessageKind.SMS, {"topic": {}})


def test_sms_and_led_become_one_line_bot_keeps_lines(tmp_path: Path) -> None:
    renderer = office(
        tmp_path,
        {"sms/x.j2": "第一句，\n  第二句。\n", "bot/x.j2": "### 标题\n\n\n\n- 一   \n- 二\n"},
    )
    assert renderer.render("sms/x.j2", MessageKind.SMS, {}) == "第一句，第二句。"
    assert renderer.render("bot/x.j2", MessageKind.BOT, {}) == "### 标题\n\n- 一\n- 二"


def test_renders_are_cached_by_what_the_template_reads(tmp_path: Path) -> None:
    renderer = office(tmp_path, {"sms/x.j2": "{{ topic.name }}"})
    calls = []

    def context() -> dict:
        calls.append(1)
        return {"topic": {"name": "贷款"}, "target": {"name": "甲"}}

    for target in ("a", "b", "c"):
        renderer.render("sms/x.j2", MessageKind.SMS, context, {"topic": "loan", "target": target})
    assert len(calls) == 1  # the template does not read target: one render
    assert renderer.reads("sms/x.j2") == frozenset({"topic"})


def test_template_version_covers_its_fragments(tmp_path: Path) -> None:
    renderer = office(
        tmp_path,
        {
            "_fragments/f.j2": "{% macro tail() %}110{% endmacro %}",
            "sms/x.j2": '{% from "_fragments/f.j2" import tail %}{{ tail() }}',
        },
    )
    before = renderer.sha("sms/x.j2")
    (tmp_path / "_fragments/f.j2").write_text(
        "{% macro tail() %}96110{% endmacro %}", encoding="utf-8"
    )
    assert Renderer([tmp_path]).sha("sms/x.j2") != before


def test_every_undefined_use_is_found_with_its_file_and_line(tmp_path: Path) -> None:
    renderer = office(
        tmp_path,
        {
            "_fragments/f.j2": "{% macro tail() %}{{ vars.hotline }}{% endmacro %}",
            "sms/x.j2": (
                '{% from "_fragments/f.j2" import tail %}第一行\n'
                "{{ target.nickname }}{{ nope }}\n"
                "{% if vars.station is defined %}{{ vars.station }}{% endif %}\n"
                "{{ missing.attr.more }} {{ target.name }}\n"
                "{% for x in nothing %}{{ x }}{% endfor %}{{ tail() }}{{ nope }}"
            ),
        },
    )
    context = {"target": {"name": "群"}, "vars": {}}
    with pytest.raises(TemplateError):  # the normal render stops at the first
        renderer.render("sms/x.j2", MessageKind.SMS, context)
    x, f = str(tmp_path / "sms/x.j2"), str(tmp_path / "_fragments/f.j2")
    assert renderer.undefined_uses("sms/x.j2", context) == [
        (x, 2, "'dict object' has no attribute 'nickname'"),
        (x, 2, "'nope' is undefined"),
        (x, 4, "'missing' is undefined"),
        (x, 5, "'nothing' is undefined"),
        (f, 1, "'vars' is undefined"),  # an imported macro sees no context (Jinja's rule)
        (x, 5, "'nope' is undefined"),
    ]
    complete = {
        "vars": {"station": 2},
        "nope": 1,
        "missing": {"attr": {"more": 1}},
        "nothing": [],
        "target": {"name": "群", "nickname": "n"},
    }
    assert renderer.undefined_uses("sms/x.j2", complete) == [(f, 1, "'vars' is undefined")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"l{i}: &l{i} [" + ", ".join([f"*{'a' if i == 1 else f'l{i - 1}'}"] * 10) + "]\n"
                for i in range(1, 10)
            ),
            "topics.yaml:5: 无法读取 cannot read topics: 别名展开过多 aliases expand to more than "
            "100,000 values ('*l3' adds 11,111); write the values out",
        ),
        (
            "loan: {en: Loan}\n",
            "topics.yaml:1: 无法读取 cannot read topics: loan: expected a mapping with name, en, slogan, audiences",
        ),
        ("- loan\n", "topics.yaml:1: 无法读取 cannot read topics: expected a mapping of topic ids"),
    ],
)
def test_a_broken_topics_file_is_a_located_template_error(
    tmp_path: Path, text: str, expected: str
) -> None:
    renderer = office(tmp_path, {"topics.yaml": text})
    with pytest.raises(TemplateError) as info:
        renderer.topics  # noqa: B018
    assert str(info.value) == f"{tmp_path}/{expected}"


def test_a_gbk_topics_file_says_save_as_utf8(tmp_path: Path) -> None:
    (tmp_path / "topics.yaml").write_bytes("loan: {name: 贷款诈骗}\n".encode("gbk"))
    with pytest.raises(TemplateError) as info:
        Renderer([tmp_path]).topics  # noqa: B018
    assert str(info.value) == (
        f"{tmp_path}/topics.yaml:1: 无法读取 cannot read topics: 文件不是 UTF-8 编码 file is not "
        "UTF-8 (it looks like GBK/GB18030): save the file as UTF-8"
    )
