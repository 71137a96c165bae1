"""What every SMS channel shares: its settings, the billing check at validate, quiet hours.

An SMS plugin (`sms-http`, `aliyun-sms`, `tencent-sms`) makes its settings model a
subclass of `SmsSettings` and calls `check_sms_message()` from its `check_message()`:

    class AliyunSmsSettings(SmsSettings):
        max_billed_chars: int | None = 500  # the provider's maximum
        ...

    def check_message(self, message):
        return check_sms_message(message, self.settings)

`sms_billing()` reads the same keys from a channel's raw settings, so `plan` (which
loads no plugin) shows billed parts per SMS variant. Nothing here sends or reads a file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol

from pydantic import Field

from broadcaster.billing import Billed, BillingRule, billed, signed_text
from broadcaster.channel import Capabilities, ChannelSettings, Message
from broadcaster.vocab import Addressing, MessageKind, QuietHours, RateLimit

__all__ = [
    "SMS_QUIET_HOURS",
    "CloudSmsSettings",
    "SmsSettings",
    "billing_of",
    "check_sms_message",
    "cloud_sms_capabilities",
    "sms_billing",
]

# Design (channels.md §1): no SMS or call at night, 21:00-08:00 in the campaign's zone
# (Asia/Shanghai by default); deferred to the morning, never dropped. A channel's
# `quiet_hours:` in the config overrides it.
SMS_QUIET_HOURS = QuietHours(dt.time(21, 0), dt.time(8, 0))


class SmsSettings(ChannelSettings):
    """Settings every SMS channel carries (a base for the plugin's own `Settings`)."""

    sign_name: str = ""  # the approved 【签名】 signature; counted in the billed length
    billing: BillingRule = "mainland"  # mainland: every character 1, 70 then 67; 3gpp: GSM-7/UCS-2
    max_billed_chars: int | None = Field(default=None, gt=0)  # the provider's maximum (Aliyun 500)
    max_parts: int | None = Field(default=None, gt=0)  # the office's budget: billed SMS per send


def billing_of(text: str, sign_name: str = "", rule: BillingRule = "mainland") -> Billed:
    """The billing of `text` as sent with `sign_name` under `rule`."""
    return billed(signed_text(sign_name, text), rule)


def check_sms_message(message: Message, settings: SmsSettings) -> list[str]:
    """Problems `validate` reports for one SMS variant: over the provider's maximum or the
    budget of billed parts, or characters the mainland count cannot take (emoji)."""
    problems: list[str] = []
    text = message.text
    if settings.billing == "mainland":
        wide = sorted({c for c in text if ord(c) > 0xFFFF})
        if wide:
            problems.append(
                f"含表情等字符 contains characters outside the BMP (emoji?): {''.join(wide[:5])}"
                " — mainland providers refuse or mis-bill them; remove them"
            )
    found = billing_of(text, settings.sign_name, settings.billing)
    limit = settings.max_billed_chars
    if limit is not None and found.length > limit:
        problems.append(
            f"短信计费长度超出上限 billed length {found.length} (signature included), over the"
            f" provider's maximum {limit}"
        )
    budget = settings.max_parts
    if budget is not None and found.parts > budget:
        problems.append(
            f"短信计费条数超出预算 {found.parts} billed SMS ({found.length} chars, signature"
            f" included), over the budget of {budget} (max_parts)"
        )
    return problems


def sms_billing(settings: Mapping[str, Any]) -> tuple[str, BillingRule]:
    """(sign_name, rule) from a channel's raw `settings:` block, as `plan` reads it."""
    sign = settings.get("sign_name")
    rule = settings.get("billing")
    return (
        sign if isinstance(sign, str) else "",
        rule if rule in ("mainland", "3gpp") else "mainland",
    )


class CloudSmsSettings(Protocol):
    """What the cloud SMS plugins (Aliyun, Tencent) set their capabilities from."""

    batch_size: int
    calls_per_second: float
    timeout: tuple[float, float]
    settle_seconds: float
    receipt_hours: float
    receipt_poll_seconds: float
    query_batch: int


def cloud_sms_capabilities(s: CloudSmsSettings) -> Capabilities:
    """A cloud SMS provider's capabilities: one template per call, batches of numbers, a call
    rate per account, receipts awaited for `receipt_hours` and looked up in batches."""
    return Capabilities(
        kinds=frozenset({MessageKind.SMS}),
        addressing=Addressing.CONTACTS,
        batch_size=s.batch_size,
        batch_by_message=True,
        rate_limit=RateLimit(max(1, int(s.calls_per_second)), 1.0),
        concurrency=8,
        reconciles=True,
        settle_seconds=sum(s.timeout) + s.settle_seconds,
        outcome_window=s.receipt_hours * 3600.0,
        outcome_poll=s.receipt_poll_seconds,
        reconcile_batch=s.query_batch,
    )
