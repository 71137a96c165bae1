from __future__ import annotations

import random
from pathlib import Path

import phonenumbers
import pytest

from broadcaster.model.targets import (
    TargetNode,
    TargetTree,
    mask_phone,
    parse_contacts_csv,
    parse_phone,
)


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("13800000201", "138****0201"),
        ("+86 138 0000 0201", "138****0201"),
        ("0571-88880001", "0571****0001"),  # Hangzhou landline
        ("010-66668888", "010****8888"),  # Beijing: two-digit area code
        ("021 5555 6666", "021****6666"),
    ],
)
def test_numbers_are_parsed_and_shown_masked(raw: str, shown: str) -> None:
    number = parse_phone(raw)
    assert number is not None and number.startswith("+86")
    assert mask_phone(number) == shown


@pytest.mark.parametrize("raw", ["12345", "", "00000000000", "+1 202 555 0100", "1380000020"])
def test_what_is_not_a_mainland_number_is_refused(raw: str) -> None:
    assert parse_phone(raw) is None


def _phonenumbers(raw: str) -> str | None:
    """What phonenumbers alone says: the reference the fast path must equal."""
    text = raw.strip().replace(" ", "").replace("-", "")
    if not text:
        return None
    try:
        parsed = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        return None
    if parsed.country_code != 86 or not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _samples(rng: random.Random) -> list[str]:
    out = []
    for prefix in range(1000, 2000):  # every 4-digit start of an 11-digit number
        out += [f"{prefix}{rng.randrange(10**7):07d}" for _ in range(20)]
    for _ in range(30_000):
        d = f"1{rng.randrange(10**10):010d}"
        out.append(
            rng.choice(
                [
                    d,
                    "+86" + d,
                    f"+86 {d[:3]} {d[3:7]} {d[7:]}",
                    f"{d[:3]}-{d[3:7]}-{d[7:]}",
                    "86" + d,
                    "0086" + d,
                    f" {d} ",
                    d[:-1],
                    d + "7",
                    "+8" + d,
                ]
            )
        )
    for _ in range(20_000):  # landlines, service numbers, junk
        head = rng.choice(
            ["0", "01", "010-", "021 ", "0571-", "0755", "400", "95", "+86 10 ", "+1 "]
        )
        out.append(head + str(rng.randrange(10 ** rng.randint(3, 10))))
    return out


def test_the_fast_path_says_exactly_what_phonenumbers_says() -> None:
    samples = _samples(random.Random(20260302))
    assert len(samples) == 70_000
    differ = [
        (s, parse_phone(s), _phonenumbers(s)) for s in samples if parse_phone(s) != _phonenumbers(s)
    ]
    assert differ == []
    valid = sum(1 for s in samples if parse_phone(s))
    assert 20_000 < valid < len(samples)  # both kinds are well represented


def test_contacts_csv_reads_as_csv_dictreader_would(tmp_path: Path) -> None:
    raw = (
        "name,phone,phone\n"  # a repeated column: the last one counts
        "甲,x,13800000001\n"
        "\n"  # a blank line is skipped, lines still count
        '"乙, 二",y,"139 0000 0002"\n'
        "丙\n"  # a short row: no phone
        '"丁\n多行",z,13800000001\n'
    ).encode()
    contacts, problems = parse_contacts_csv(raw, "people.csv")
    assert [(c.number, c.display, c.name) for c in contacts] == [
        ("+8613800000001", "138****0001", "甲"),
        ("+8613900000002", "139****0002", "乙, 二"),
    ]
    assert [(p.line, p.message) for p in problems] == [
        (5, "phone: 号码无效 not a mainland mobile or landline number: (empty)"),
        (7, "phone: 重复号码 duplicate of line 2: 138****0001"),
    ]


def test_contacts_csv_with_a_bom_and_without_a_phone_column(tmp_path: Path) -> None:
    contacts, problems = parse_contacts_csv("\ufeffphone\n13800000001\n".encode(), "a.csv")
    assert [c.number for c in contacts] == ["+8613800000001"] and not problems
    contacts, problems = parse_contacts_csv(b"name,tel\n", "b.csv")
    assert not contacts
    assert [(p.file, p.line, p.message) for p in problems] == [
        ("b.csv", 1, "缺少 phone 列 expected a header row with a 'phone' column")
    ]


def test_a_gbk_contacts_file_says_save_as_utf8() -> None:
    raw = "name,phone\n张三,13800000001\n".encode("gb18030")
    contacts, problems = parse_contacts_csv(raw, "people.csv")
    assert not contacts
    assert [(p.line, p.message) for p in problems] == [
        (
            2,
            "文件不是 UTF-8 编码 file is not UTF-8 (it looks like GBK/GB18030, as Excel saves it):"
            " save the file as UTF-8 (Excel: CSV UTF-8)",
        )
    ]


def test_selection_by_tags_audiences_subtrees_and_ids_keeps_tree_order() -> None:
    def node(
        tid: str, parent: str | None, tags: set[str], audience: str | None = None
    ) -> TargetNode:
        return TargetNode(tid, tid, frozenset(tags), audience, parent, (), (tid,))

    county = TargetNode(
        "county", "县", frozenset({"county"}), None, None, (), ("县",), children=("a", "b")
    )
    a = TargetNode(
        "a",
        "a",
        frozenset({"town"}),
        "v",
        "county",
        ("county",),
        ("县", "a"),
        children=("a1", "a2"),
    )
    tree = TargetTree(
        [
            county,
            a,
            node("a1", "a", {"group", "x"}, "v"),
            node("a2", "a", {"group"}, "p"),
            node("b", "county", {"group", "x"}, "p"),
        ]
    )
    assert tree.select(tags=["group"]) == ("a1", "a2", "b")
    assert tree.select(all_tags=["group", "x"]) == ("a1", "b")
    assert tree.select(tags=["group"], audiences=["p"]) == ("a2", "b")
    assert tree.select(under=["a"], tags=["group"]) == ("a1", "a2")
    assert tree.select(under=["a"]) == ("a", "a1", "a2")
    assert tree.select(ids=["b", "a1", "nope"]) == ("a1", "b")
    assert tree.select(tags=["group"], exclude=["a"]) == ("b",)
    assert tree.select(tags=["nope"]) == ()
    assert tree.select(under=["nope"], tags=["group"]) == ()
