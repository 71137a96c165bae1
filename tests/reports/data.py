"""The November 2026 test log of the report tests, and the same figures computed
independently of the report code (straight from the list of deliveries)."""

from __future__ import annotations

import csv
import datetime as dt
from collections import Counter

from broadcaster.vocab import Status
from tests.conftest import REPO
from tests.reports.fixtures import Sent, at

# everyone on 东风镇's SMS list, read from the sample's file (name, phone)
_LIST = (REPO / "schedules.d/lists/dongfeng-farmers.csv").read_text(encoding="utf-8")
FARMERS = {phone: name for name, phone in csv.reader(_LIST.splitlines()[1:])}
FIRST_SMS = {"15000000204": Status.FAILED}
SECOND_SMS = {"13800000202": Status.FAILED}


def november() -> list[Sent]:
    sends: list[Sent] = []
    for number in list(FARMERS)[:4]:  # the fifth gets nothing
        sends.append(
            Sent(
                at("2026-11-09"),
                "sms_gateway",
                "dongfeng-farmers-sms",
                FIRST_SMS.get(number, Status.DELIVERED),
                "loan",
                number,
                "sms-twice-monthly",
            )
        )
        sends.append(
            Sent(
                at("2026-11-23"),
                "sms_gateway",
                "dongfeng-farmers-sms",
                SECOND_SMS.get(number, Status.DELIVERED),
                "phishing",
                number,
                "sms-twice-monthly",
            )
        )
    for day in ("2026-11-10", "2026-11-13"):
        sends.append(
            Sent(
                at(day),
                "group_handoff",
                "hexi-affairs",
                Status.DELIVERED,
                "order_brushing",
                rule="groups-twice-weekly",
            )
        )
        sends.append(
            Sent(
                at(day),
                "group_handoff",
                "g7-1-parents",
                Status.ACCEPTED,
                "game_fraud",
                rule="groups-twice-weekly",
            )
        )
    sends.append(
        Sent(
            at("2026-11-17"),
            "group_handoff",
            "lijia-affairs",
            Status.FAILED,
            "loan",
            rule="groups-twice-weekly",
        )
    )
    for i in range(7):
        day = dt.date(2026, 11, 2) + dt.timedelta(days=i)
        sends.append(
            Sent(
                at(day.isoformat(), "07:30"),
                "loudspeaker_scripts",
                "hexi-speaker",
                Status.ACCEPTED,
                "fake_police",
                rule="loudspeaker-daily",
            )
        )
    sends.append(
        Sent(
            at("2026-11-12", "08:00"),
            "led_items",
            "dongfeng-center-led",
            Status.ACCEPTED,
            "investment",
            rule="led-rotation",
        )
    )
    sends.append(
        Sent(
            at("2026-11-16", "10:30"),
            "voice_gateway",
            "dongfeng-voice",
            Status.ACCEPTED,
            "fake_police",
            "13800000201",
            "voice-monthly",
        )
    )
    sends.append(
        Sent(
            at("2026-11-16", "09:00"),
            "cadres_bot",
            "county-cadres",
            Status.SKIPPED,
            "impersonate_official",
            rule="cadres-bot-weekly",
        )
    )
    sends.append(
        Sent(
            at("2026-11-20", "09:00"),
            "sms_gateway",
            "qingshan-migrants-sms",
            Status.PLANNED,
            "job_scam",
            "13700000301",
            "sms-twice-monthly",
        )
    )
    # outside November: never counted
    sends.append(
        Sent(
            at("2026-10-31", "23:59"),
            "sms_gateway",
            "dongfeng-farmers-sms",
            Status.DELIVERED,
            "loan",
            "13800000201",
            "sms-twice-monthly",
        )
    )
    sends.append(
        Sent(
            at("2026-12-01", "00:00"),
            "group_handoff",
            "hexi-affairs",
            Status.DELIVERED,
            "loan",
            rule="groups-twice-weekly",
        )
    )
    return sends


def in_month(sends: list[Sent], year: int = 2026, month: int = 11) -> list[Sent]:
    return [s for s in sends if (s.at.year, s.at.month) == (year, month)]


def split(sends: list[Sent]) -> list[int]:
    c = Counter(s.status for s in sends)
    reached = c[Status.ACCEPTED] + c[Status.DELIVERED]
    total = len(sends)
    return [
        total,
        reached,
        c[Status.FAILED],
        c[Status.SKIPPED],
        total - reached - c[Status.FAILED] - c[Status.SKIPPED],
    ]
