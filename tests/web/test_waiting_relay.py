"""The 待确认 Waiting page with a relay: hops counted per level apart from direct deliveries,
hops past their deadline by person, an operator's confirmation (and a viewer refused)."""

from __future__ import annotations

import datetime as dt
import re

from broadcaster.log.relay import hop_states
from broadcaster.vocab import ErrorClass, Status
from tests.channels.relay_campaign import AT, confirm_by_link
from tests.channels.relay_campaign import handoff_live as handoff_live  # the fixture
from tests.web.conftest import PASSWORD, Live, csrf_of, fire

H = dt.timedelta(hours=1)


def test_the_waiting_page_counts_hops_and_lists_the_late_by_person(handoff_live: Live) -> None:
    live = handoff_live
    for name, role in (("olga", "operator"), ("vera", "viewer")):
        live.service.accounts.add(name, role, PASSWORD)
    fire(live, "case-push", AT)
    hops = {
        h.target_id: h for h in live.service.log.read(lambda conn: hop_states(conn, "relay", AT))
    }
    live.clock.set(AT + 1 * H)
    confirm_by_link(live, hops["v1"].key)  # in time
    live.clock.set(AT + 4 * H + 30 * dt.timedelta(minutes=1))  # past both deadlines
    olga = live.session("olga")
    page = olga.get(live.url + "/waiting", timeout=30).text
    tally = re.search(r'<table id="relay-tally">(.*?)</table>', page, re.S)
    assert tally is not None
    rows = re.findall(r"<tr><t[hd]>(.*?)</tr>", tally.group(1), re.S)
    cells = [re.findall(r"<t[hd]>([^<]*)</t[hd]>", "<td>" + r) for r in rows]
    assert cells[1:] == [
        ["1 village", "2", "1", "0", "0", "1", "0"],
        ["2 grid", "3", "0", "0", "0", "3", "0"],
        ["合计 all", "5", "1", "0", "0", "4", "0"],
    ]
    overdue = re.search(r'<table id="overdue">(.*?)</table>', page, re.S)
    assert overdue is not None
    people = re.findall(
        r'<tr data-key="[0-9a-f]+"><td>([^<]*)</td><td>([^<]*)</td>', overdue.group(1)
    )
    assert people == sorted(  # by person
        [
            ("吴村干", "王家村"),
            ("周网格员", "王家村一网格群"),
            ("张网格员", "李家村二网格群"),
            ("王网格员", "李家村一网格群"),
        ]
    )
    assert "李村干" not in overdue.group(1)
    assert "群转发 hand-offs: 5，已确认 confirmed 1" in page
    waiting = re.search(r'<table id="waiting">(.*?)</table>', page, re.S)
    assert waiting is not None  # still accepted, with the person who must confirm
    assert "王网格员" in waiting.group(1) and "李村干" not in waiting.group(1)
    # a viewer sees the list but no confirm button, and cannot post one
    vera = live.session("vera")
    assert "/waiting/confirm" not in vera.get(live.url + "/waiting", timeout=30).text
    refused = vera.post(
        live.url + "/waiting/confirm",
        data={"key": hops["g3"].key, "note": "电话确认", "csrf": csrf_of(vera)},
        timeout=30,
    )
    assert refused.status_code == 403
    # the operator confirms g3 after a phone call: recorded as theirs, late
    no_note = olga.post(
        live.url + "/waiting/confirm",
        data={"key": hops["g3"].key, "note": "", "csrf": csrf_of(olga)},
        timeout=30,
    )
    assert no_note.status_code == 400 and "请写明依据" in no_note.text
    done = olga.post(
        live.url + "/waiting/confirm",
        data={"key": hops["g3"].key, "note": "电话确认已转发", "csrf": csrf_of(olga)},
        timeout=30,
        allow_redirects=False,
    )
    assert done.status_code == 303, done.text[:300]
    state = live.service.log.latest([hops["g3"].key])[hops["g3"].key]
    assert state.status is Status.DELIVERED and state.error_class is ErrorClass.OPERATOR
    assert "operator:olga" in state.reason
    assert live.service.store.actions(actor="olga")[0].action == "confirm_forwarded"
    [g3] = live.service.log.read(
        lambda conn: hop_states(conn, "relay", live.clock.now(), keys=[hops["g3"].key])
    )
    assert g3.done and g3.late
    page = olga.get(live.url + "/waiting", timeout=30).text
    assert "周网格员" not in re.search(r'<table id="overdue">(.*?)</table>', page, re.S).group(1)  # type: ignore[union-attr]
    # confirming it again is refused with a readable page
    again = olga.post(
        live.url + "/waiting/confirm",
        data={"key": hops["g3"].key, "note": "再次", "csrf": csrf_of(olga)},
        timeout=30,
    )
    assert again.status_code == 400 and "没有待确认的转发" in again.text
