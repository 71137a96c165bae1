"""The YAML reader: hostile files are refused at load, located, cheaply; the rest reads as before."""

from __future__ import annotations

import datetime as dt
import tracemalloc
from pathlib import Path

import pytest
import yaml

from broadcaster.model.config import yaml_reader
from broadcaster.model.config.source import load_document
from broadcaster.model.config.yaml_reader import MAX_ALIAS_VALUES, MAX_DEPTH, parse_yaml


def bomb(levels: int, width: int = 10) -> str:
    """The classic "billion laughs": each level lists the previous one `width` times."""
    out = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        out.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return "\n".join(out) + "\n"


def parsed_within(text: str, budget_mb: float) -> yaml_reader.Parsed:
    """Parse `text`, failing if the parse allocated more than `budget_mb` at its peak."""
    tracemalloc.start()
    try:
        parsed = parse_yaml(text.encode("utf-8"), "x.yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < budget_mb * 2**20, f"the parse allocated {peak / 2**20:.0f} MB"
    return parsed


@pytest.mark.parametrize("levels", [7, 9, 30])
def test_an_alias_bomb_is_refused_at_the_alias_that_crosses_the_limit(levels: int) -> None:
    text = bomb(levels)
    assert len(text) < 3000 + 60 * levels  # a couple of kilobytes
    parsed = parsed_within(text, budget_mb=5)
    assert parsed.data is None and not parsed.ok
    # levels 1-3 add 12,330 values; each alias to level 3 adds 11,111 more: the eighth
    # crosses 100,000, whatever comes after
    assert [str(i) for i in parsed.issues] == [
        "x.yaml:5: a4[7]: 别名展开过多 aliases expand to more than 100,000 values "
        "('*a3' adds 11,111); write the values out"
    ]


def test_aliases_below_the_limit_are_read_and_share_their_value() -> None:
    text = "base: &b {hotline: '96110', office: 测试}\none: *b\ntwo: *b\n"
    parsed = parse_yaml(text.encode(), "x.yaml")
    assert not parsed.issues
    assert parsed.data["one"] == {"hotline": "96110", "office": "测试"}
    assert parsed.data["one"] is parsed.data["two"]  # shared, never copied


def test_aliases_may_add_as_much_as_the_file_writes_plus_the_limit() -> None:
    # 60,000 targets each reusing a 3-value mapping: more than the fixed limit, and fine
    items = "\n".join(f"  - {{id: t{i}, vars: *v}}" for i in range(40_000))
    text = "common: &v {a: 1, b: 2}\ntargets:\n" + items + "\n"
    parsed = parse_yaml(text.encode(), "x.yaml")
    assert not parsed.issues
    assert parsed.data["targets"][-1] == {"id": "t39999", "vars": {"a": 1, "b": 2}}
    assert MAX_ALIAS_VALUES < 3 * 40_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: &x [1, *x]\n",
            "x.yaml:1: a[1]: 递归别名 recursive alias: '*x' is used inside its own anchor",
        ),
        (
            "a: &x\n  b:\n    c: *x\n",
            "x.yaml:3: a.b.c: 递归别名 recursive alias: '*x' is used inside its own anchor",
        ),
    ],
)
def test_a_recursive_alias_is_refused(text: str, expected: str) -> None:
    parsed = parsed_within(text, budget_mb=1)
    assert [str(i) for i in parsed.issues] == [expected]


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 500, 100_000])
def test_nesting_deeper_than_the_limit_is_refused_without_recursing(depth: int) -> None:
    text = "a: " + "[" * depth + "]" * depth + "\n"
    parsed = parsed_within(text, budget_mb=5)
    assert len(parsed.issues) == 1
    issue = parsed.issues[0]
    assert (issue.file, issue.line) == ("x.yaml", 1)
    assert issue.path == "a" + "[0]" * (MAX_DEPTH - 1)
    assert issue.message == "嵌套过深 nesting deeper than 100 levels"


def test_nesting_at_the_limit_is_read() -> None:
    depth = MAX_DEPTH - 1  # below the top-level mapping
    parsed = parse_yaml(("a: " + "[" * depth + "1" + "]" * depth + "\n").encode(), "x.yaml")
    assert not parsed.issues
    value = parsed.data["a"]
    for _ in range(depth):
        value = value[0]
    assert value == 1


def test_nesting_through_aliases_counts_too() -> None:
    deep = "[" * 60 + "]" * 60
    parsed = parse_yaml(
        f"a: &d {deep}\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[*d]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n".encode(),
        "x.yaml",
    )
    assert [i.message for i in parsed.issues] == [
        "嵌套过深 nesting deeper than 100 levels (through alias '*d')"
    ]


def test_a_gbk_file_is_refused_with_save_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "schedules.yaml"
    path.write_bytes("campaign:\n  id: x\n  name: 示范县反诈宣传\n".encode("gbk"))
    doc, issues = load_document(path)
    assert [str(i) for i in issues] == [
        "schedules.yaml:3: 文件不是 UTF-8 编码 file is not UTF-8 (it looks like GBK/GB18030):"
        " save the file as UTF-8"
    ]
    assert doc.data == {}


def test_bytes_that_are_no_known_encoding_name_the_byte() -> None:
    parsed = parse_yaml(b"a: 1\nb: \xff\xfe\xff\n", "x.yaml")
    assert [str(i) for i in parsed.issues] == [
        "x.yaml:2: 文件不是 UTF-8 编码 file is not UTF-8 (byte 0xff on this line): save the file as UTF-8"
    ]


def test_a_utf8_bom_is_accepted() -> None:
    parsed = parse_yaml("\ufeffa: 测试\n".encode(), "x.yaml")
    assert not parsed.issues and parsed.data == {"a": "测试"}


@pytest.mark.parametrize(
    "text",
    ["base: &b {a: 1}\nthing:\n  <<: *b\n  c: 2\n", "thing:\n  !!merge <<: {a: 1}\n  c: 2\n"],
)
def test_merge_keys_have_their_own_message(text: str) -> None:
    parsed = parse_yaml(text.encode(), "x.yaml")
    assert [str(i) for i in parsed.issues] == [
        "x.yaml:3: thing: 不支持 YAML 合并键 '<<' is not supported; write the keys out"
        if "&b" in text
        else "x.yaml:2: thing: 不支持 YAML 合并键 '<<' is not supported; write the keys out"
    ]
    assert parsed.data["thing"] == {"c": 2}


def test_a_quoted_double_angle_key_is_an_ordinary_key() -> None:
    parsed = parse_yaml(b"thing: {'<<': 1}\n", "x.yaml")
    assert not parsed.issues and parsed.data == {"thing": {"<<": 1}}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: *nope\n", "x.yaml:1: YAML 语法错误 invalid YAML: found undefined alias 'nope'"),
        (
            "a: &x 1\nb: &x 2\n",
            "x.yaml:2: YAML 语法错误 invalid YAML: second occurrence "
            "(found duplicate anchor 'x'; first occurrence started on line 1)",
        ),
        (
            "a: 1\n---\nb: 2\n",
            "x.yaml:2: YAML 语法错误 invalid YAML: but found another document "
            "(expected a single document in the stream started on line 1)",
        ),
        (
            "a: [1, 2\nb: 3\n",
            "x.yaml:2: YAML 语法错误 invalid YAML: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence started on line 1)",
        ),
        (
            "a: b\x07c\n",
            "x.yaml:1: YAML 语法错误 invalid YAML: unacceptable character #x0007: "
            "special characters are not allowed",
        ),
    ],
)
def test_yaml_errors_are_worded_as_pyyaml_words_them(text: str, expected: str) -> None:
    parsed = parse_yaml(text.encode(), "x.yaml")
    assert [str(i) for i in parsed.issues] == [expected]


SAMPLES = [
    "a: 10:00\nb: on\nc: no\nd: 2026-03-05\ne: 010\nf: 0x1f\ng: true\nh: ~\ni: 1.5\nj: '7'\n",
    "x: !!str 5\ny: !!int '5'\nz: ! 5\nd: 2026-02-30\nq: \"2026-01-01\"\nn: .inf\nm: -.INF\nk: .nan\n",
    "list:\n  - a\n  - {b: [1, 2, {c: d}]}\n  - - nested\n    - more\n  -\nempty: {}\nnone:\n",
    "dup: 1\ndup: 2\n? [complex]\n: value\nok: yes\n",
    "base: &b {k: v, dup: 1, dup: 2}\nuse: *b\nscalar: &s plain\nagain: *s\n*s : as key\n",
    "|\n  not a mapping\n",
    "",
    "# only a comment\n",
    "---\n",
]


@pytest.mark.parametrize("text", SAMPLES)
def test_libyaml_and_pyyaml_parsers_read_alike(text: str) -> None:
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without libyaml")
    fast = yaml_reader._build_libyaml(text.encode(), "x.yaml")
    slow = yaml_reader._build_python(text, "x.yaml")
    assert repr(fast.root) == repr(slow.root)  # repr: nan is not equal to itself
    assert fast.issues == slow.issues


def test_lines_follow_keys_and_items() -> None:
    text = "a:\n  b: 1\n  c:\n    - x\n    - {d: 2}\ne: [1,\n  2]\n"
    parsed = parse_yaml(text.encode(), "x.yaml")
    # the tree: (line, *children), mapping children in key order, entries at their key's line
    assert parsed.lines == (1, (1, 2, (3, 4, (5, 5))), (6, 6, 7))
    assert parsed.data == {"a": {"b": 1, "c": ["x", {"d": 2}]}, "e": [1, 2]}


def test_dates_and_scalars_follow_yaml_1_2() -> None:
    parsed = parse_yaml(b"d: 2026-3-5\nt: 10:00\n", "x.yaml")
    assert parsed.data == {"d": dt.date(2026, 3, 5), "t": "10:00"}
