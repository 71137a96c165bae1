"""The scrubber replaces every registered secret, however many there are (a key per bot)."""

from __future__ import annotations

import pytest

from broadcaster.log.scrub import Scrubber


@pytest.mark.parametrize("count", [3, 2_000])
def test_every_registered_secret_is_replaced(count: int) -> None:
    keys = [f"group-bot-{i:05d}" for i in range(count)]  # all share a long prefix
    scrub = Scrubber(keys)
    text = f"invalid webhook url {keys[-1]}, hint: {keys[0]}; ok"
    assert scrub(text) == "invalid webhook url ***, hint: ***; ok"
    assert scrub("nothing secret here") == "nothing secret here"


def test_the_longest_secret_wins_and_short_ones_still_count() -> None:
    secrets = [f"tok{i:03d}" for i in range(40)] + ["tok001-and-more", "abcd"]
    scrub = Scrubber(secrets)
    assert scrub("x tok001-and-more y abcd z tok039") == "x *** y *** z ***"
    assert scrub("tok") == "tok"  # shorter than any secret
