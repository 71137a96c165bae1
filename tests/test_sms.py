"""The shared SMS settings and the billing check every SMS channel runs at validate."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from broadcaster.channel import Message, MessageKind
from broadcaster.sms import (
    SMS_QUIET_HOURS,
    SmsSettings,
    billing_of,
    check_sms_message,
    sms_billing,
)


def sms(text: str) -> Message:
    return Message(MessageKind.SMS, text, "sms/alpha.j2", "0" * 64)


def test_the_signature_is_billed_with_its_brackets() -> None:
    # 64 characters of body + 【反诈中心】 (6) = 70: one SMS; one more character: two
    assert billing_of("诈" * 64, "反诈中心").parts == 1
    assert billing_of("诈" * 65, "反诈中心").length == 71
    assert billing_of("诈" * 65, "反诈中心").parts == 2
    assert billing_of("a" * 160, "", "3gpp").parts == 1


def test_over_the_providers_maximum_names_the_count() -> None:
    settings = SmsSettings(sign_name="反诈中心", max_billed_chars=500)
    assert check_sms_message(sms("诈" * 494), settings) == []
    assert check_sms_message(sms("诈" * 495), settings) == [
        "短信计费长度超出上限 billed length 501 (signature included), over the provider's"
        " maximum 500"
    ]


def test_over_the_budget_of_parts_names_the_count() -> None:
    settings = SmsSettings(sign_name="反诈中心", max_parts=2)
    assert check_sms_message(sms("诈" * 128), settings) == []  # 134 = 2 × 67
    assert check_sms_message(sms("诈" * 129), settings) == [
        "短信计费条数超出预算 3 billed SMS (135 chars, signature included), over the budget"
        " of 2 (max_parts)"
    ]


def test_3gpp_counts_gsm7_then_ucs2() -> None:
    settings = SmsSettings(billing="3gpp", max_parts=1)
    assert check_sms_message(sms("a" * 160), settings) == []
    assert "2 billed SMS" in check_sms_message(sms("a" * 161), settings)[0]
    assert "2 billed SMS" in check_sms_message(sms("诈" * 71), settings)[0]


def test_emoji_are_refused_under_the_mainland_rule() -> None:
    problems = check_sms_message(sms("注意防骗😀"), SmsSettings())
    assert problems and "emoji" in problems[0] and "😀" in problems[0]
    assert check_sms_message(sms("注意防骗😀"), SmsSettings(billing="3gpp")) == []


def test_settings_refuse_an_unknown_rule_and_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        SmsSettings(billing="gsm")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        SmsSettings.model_validate({"signature": "x"})


def test_plan_reads_the_same_keys_from_raw_settings() -> None:
    assert sms_billing({"sign_name": "反诈中心", "billing": "3gpp"}) == ("反诈中心", "3gpp")
    assert sms_billing({}) == ("", "mainland")


def test_default_quiet_hours_are_the_night() -> None:
    assert SMS_QUIET_HOURS.contains(dt.time(21, 0))
    assert SMS_QUIET_HOURS.contains(dt.time(7, 59))
    assert not SMS_QUIET_HOURS.contains(dt.time(8, 0))
    assert not SMS_QUIET_HOURS.contains(dt.time(20, 59))
