from __future__ import annotations

import pytest

from broadcaster.model.targets import mask_phone, parse_phone


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
