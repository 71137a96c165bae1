"""Console pages and the CSV export after a retention prune: the masked number is shown as
expired, never as the stored `pruned:<sha256>`."""

from __future__ import annotations

import dataclasses
import datetime as dt

from broadcaster.log import chain
from tests.web.conftest import Live
from tests.web.test_hooks import SMS_AT
from tests.web.test_pages import add


def test_pruned_masked_numbers_show_as_expired(live: Live) -> None:
    keys = add(live, 2)  # scheduled 2026-03-02
    log = live.service.log
    log.prune(dt.datetime(2026, 3, 3, tzinfo=SMS_AT.tzinfo), SMS_AT, "admin")
    assert all(
        dataclasses.asdict(s)["recipient_display"].startswith(chain.PRUNED)
        for s in log.latest(keys).values()
    )
    s = live.session("vera")
    pages = [
        s.get(live.url + "/log?from=2026-03-01", timeout=30),
        s.get(live.url + f"/log/delivery?key={keys[0]}", timeout=30),
        s.get(live.url + "/log.csv?from=2026-03-01", timeout=30),
    ]
    for page in pages:
        assert page.status_code == 200, page.text
        text = page.content.decode("utf-8-sig")
        assert "已过保留期 expired" in text and chain.PRUNED not in text
