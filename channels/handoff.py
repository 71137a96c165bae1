"""handoff: ordinary WeChat groups, forwarded by hand by the person responsible for each.

Plugin alias: handoff. Personal WeChat groups (村务群 village-affairs, 家长群 parent
groups) have no bot API, and unofficial clients get accounts banned (`channels.md` §8).
So for each target (a group) this channel prepares what its responsible person (grid
worker, teacher) forwards: the copy-ready plain text (at most 500 characters) and an
image card PNG drawn with a CJK font, and serves them on `broadcaster serve` behind a
per-person, per-delivery signed link that expires:

    GET  /confirm/<channel>/<token>           the phone page: text, copy button, card
    GET  /confirm/<channel>/<token>/card.png  the card, to long-press-save
    POST /confirm/<channel>/<token>           "已转发 forwarded" (CSRF double-submit)

Outcomes: sending writes the hand-off pack and leaves the delivery accepted
(`handoff_sent`); the person's confirmation makes it delivered (`forwarded_confirmed`,
never "delivered to the group's members"); a link that expires first fails it with
error class `expired`. A forged, reused or expired link is refused with a page saying so.

The person is the target's address on this channel: `{key: <person id>, name: 王五}`.
With `notify: <channel id>` every hand-off also goes, as its own logged delivery, to
that channel (SMS, a WeCom bot) addressed to the same target, with the link in its text
(`notify_text`, placeholders {person} {group} {link} {until}).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from broadcaster.cards import CardStyle, FontSpec
from broadcaster.channel import (
    ArtefactStore,
    BaseChannel,
    Capabilities,
    ChannelSettings,
    Delivery,
    ErrorClass,
    InboundReply,
    InboundRequest,
    InboundRoute,
    LinkSigner,
    Message,
    MessageKind,
    Outcome,
    Recipient,
    Result,
    Status,
)

__all__ = ["HandoffChannel", "HandoffSettings", "plain_text"]

MAX_TEXT = 500  # characters of the copy-ready text
SHOWN_ZONE = ZoneInfo("Asia/Shanghai")
CSRF_COOKIE = "bc_handoff"
# itsdangerous: body.signature, the body led by "." when it was compressed
TOKEN = re.compile(r"\.?[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}")
REFUSED_FORGED = "链接无效 this link is not valid (it was changed, or made for another page)"
CONFIRMED = "forwarded_confirmed"
SENT = "handoff_sent"
EXPIRED = "expired"


class HandoffSettings(ChannelSettings):
    public_url: str  # where phones reach `broadcaster serve`, e.g. https://fz.example.gov.cn
    link_hours: float = Field(default=72.0, gt=0, le=24 * 31)  # a link works this long
    confirm_hours: float = Field(
        default=24.0, gt=0, le=24 * 31
    )  # deadline, unless a relay sets one
    notify: str | None = None  # channel id that sends each person their link
    notify_text: str = (
        "【反诈宣传】{person}您好，请将本期反诈宣传转发至「{group}」：{link}"
        " 打开后复制文字、保存图片，转发后点“已转发”（{until}前有效）。"
    )
    title: str = "反电诈提醒"  # the card's title when the message has none
    footer: str = "全民反诈 共创平安 · 反诈专线 96110"
    font: str | None = None  # a CJK font file; default: Noto Sans CJK found by fontconfig

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(
                "须为 http(s) 地址 expected the service's public http(s) address,"
                " e.g. https://fz.example.gov.cn"
            )
        return v.rstrip("/")

    @field_validator("notify_text")
    @classmethod
    def _placeholders(cls, v: str) -> str:
        if "{link}" not in v:
            raise ValueError("须含 {link} the notification must carry the link: write {link}")
        try:
            v.format(person="", group="", link="", until="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"占位符无效 unknown placeholder {exc}: use {{person}} {{group}} {{link}} {{until}}"
            ) from None
        return v


_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)\)")
_EMPHASIS = re.compile(r"(\*\*|__|~~|`)(.+?)\1")


def plain_text(markdown: str) -> str:
    """The text as it is pasted into a WeChat group: no markdown marks, links written out."""
    lines = []
    for raw in markdown.splitlines():
        line = raw.strip()
        line = re.sub(r"^#{1,6}\s*", "", line)
        line = re.sub(r"^>\s?", "", line)
        line = re.sub(r"^[-*+]\s+", "· ", line)
        line = _LINK.sub(
            lambda m: (
                m.group(1) if m.group(0).startswith("!") else f"{m.group(1)} {m.group(2)}".strip()
            ),
            line,
        )
        line = _EMPHASIS.sub(r"\2", line)
        lines.append(line)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class HandoffChannel(BaseChannel):
    """Prepares hand-off packs and serves them behind signed links."""

    name = "handoff"
    Settings = HandoffSettings
    settings: HandoffSettings
    contract_example: dict[str, Any] = {"public_url": "http://127.0.0.1:9"}  # noqa: RUF012

    @property
    def purpose(self) -> str:
        return f"handoff:{self.context.instance_id}"  # a link of another channel is forged here

    @property
    def capabilities(self) -> Capabilities:
        window = self.settings.link_hours * 3600
        return Capabilities(
            kinds=frozenset({MessageKind.BOT}),
            requires_address=True,  # each group names its responsible person
            batch_size=100,
            concurrency=2,
            settle_seconds=0,  # writing a pack either happened or it did not
            reconciles=True,  # the packs on disk say what was written
            outcome_window=window + 3600,  # confirmations come until the link expires
            outcome_poll=900,
        )

    # -- checks

    def check(self) -> str | None:
        from broadcaster.cards import FontMissingError, find_cjk_font

        try:
            import itsdangerous  # noqa: F401  (the links)
            import PIL  # noqa: F401  (the cards)
        except ImportError as exc:
            return (
                f"缺少 {exc.name} the hand-off needs the web extra: pip install 'broadcaster[web]'"
            )
        try:
            find_cjk_font(self.settings.font)
        except FontMissingError as exc:
            return str(exc)
        return None

    def check_message(self, message: Message) -> list[str]:
        text = plain_text(message.text)
        if len(text) > MAX_TEXT:
            return [
                f"转发文字过长 the text to forward has {len(text)} characters, at most"
                f" {MAX_TEXT} fit a WeChat message people forward"
            ]
        return []

    def endpoint(self, recipient: Recipient) -> str:
        return self.context.instance_id  # nothing is rate-limited: packs are files

    # -- preparing and sending

    def prepare(self, message: Message, artefacts: ArtefactStore) -> Message:
        from broadcaster.cards import render_card

        problems = self.check_message(message)
        if problems:
            raise ValueError(problems[0])
        text = plain_text(message.text)
        title, body, font, style = self._card_of(message)
        cache_key = json.dumps(
            {
                "card": 1,
                "title": title,
                "body": body,
                "footer": self.settings.footer,
                "font": font.describe(),
                "style": style.__dict__,
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        card = artefacts.make(
            cache_key,
            "card.png",
            "image/png",
            lambda: render_card(title, body, self.settings.footer, font, style),
        )
        return replace(message, parts=(text,), artefacts=(card,))

    def _card_of(self, message: Message) -> tuple[str, str, FontSpec, CardStyle]:
        from broadcaster.cards import CardStyle, find_cjk_font

        text = plain_text(message.text)
        title = message.title or self.settings.title
        body = text.removeprefix(message.title).lstrip() if message.title else text
        return title, body, find_cjk_font(self.settings.font), CardStyle()

    def _draw(self, message: Message) -> bytes:
        from broadcaster.cards import render_card

        title, body, font, style = self._card_of(message)
        return render_card(title, body, self.settings.footer, font, style)

    def person(self, recipient: Recipient) -> str:
        return recipient.extra.get("name") or recipient.address

    def expires(self, delivery: Delivery) -> dt.datetime:
        return delivery.scheduled_at + dt.timedelta(hours=self.settings.link_hours)

    def link_for(self, delivery: Delivery) -> str:
        """The person's link for this delivery: the same every time it is asked for."""
        links = self.context.links
        if links is None:
            raise RuntimeError("signed links are unavailable")
        token = links.sign(
            self.purpose,
            delivery.recipient.address,
            jti=delivery.key,
            expires=self.expires(delivery),
        )
        return f"{self.settings.public_url}/confirm/{self.context.instance_id}/{token}"

    def notification(self, delivery: Delivery) -> str:
        """The text the notify channel sends the person: the link in it."""
        until = self.expires(delivery).astimezone(SHOWN_ZONE)
        return self.settings.notify_text.format(
            person=self.person(delivery.recipient),
            group=delivery.recipient.display,
            link=self.link_for(delivery),
            until=f"{until:%m-%d %H:%M}",
        )

    def confirmer(self, delivery: Delivery) -> tuple[str, dt.timedelta]:
        """Who confirms this delivery by hand, and how long they have (a relay hop's
        deadline replaces it)."""
        return self.person(delivery.recipient), dt.timedelta(hours=self.settings.confirm_hours)

    def companions(self, delivery: Delivery) -> list[tuple[str, str]]:
        """Deliveries the engine logs and sends beside this one: with `notify`, the
        person's link through that channel (to the same target's address there)."""
        if self.settings.notify is None:
            return []
        return [(self.settings.notify, self.notification(delivery))]

    def _pack_path(self, key: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{16,64}", key):
            raise ValueError("not a delivery key")
        return self.context.data_dir / "packs" / f"{key}.json"

    def _card_path(self, sha: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError("not a card hash")
        return self.context.data_dir / "cards" / f"{sha}.png"

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        results = []
        for d in batch:
            try:
                results.append(self._write_pack(d))
            except OSError as exc:
                reason = f"无法写入转发包 cannot write the hand-off pack: {exc.strerror or exc}"
                results.append(Result.fail(d, ErrorClass.TRANSIENT, reason))
        return results

    def _write_pack(self, d: Delivery) -> Result:
        card = next((a for a in d.message.artefacts if a.name == "card.png"), None)
        if card is not None and card.path.is_file():
            card_sha, data = card.sha256, card.path.read_bytes
        else:  # not prepared here (or its file is gone): draw it again, same bytes
            drawn = self._draw(d.message)
            card_sha, data = hashlib.sha256(drawn).hexdigest(), lambda: drawn
        card_path = self._card_path(card_sha)
        if not card_path.exists():
            _write_atomic(card_path, data())
        pack = {
            "key": d.key,
            "target": d.recipient.target_id,
            "group": d.recipient.display,
            "person": self.person(d.recipient),
            "text": d.message.parts[0] if d.message.parts else plain_text(d.message.text),
            "card": card_sha,
            "expires": self.expires(d).isoformat(),
        }
        _write_atomic(self._pack_path(d.key), json.dumps(pack, ensure_ascii=False).encode("utf-8"))
        return Result(
            d.key,
            Status.ACCEPTED,
            reason=f"{SENT} 已备好转发包，待确认 the hand-off is ready, waiting for confirmation",
            provider_id=d.key,
        )

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        """A pack on disk was written (accepted); none: safe to write again. An accepted
        hand-off whose link expired unconfirmed is failed as expired."""
        now = self.context.clock()
        out = []
        for d in pending:
            if not self._pack_path(d.key).exists():
                out.append(Result.fail(d, ErrorClass.TRANSIENT, "转发包未写入 no pack written"))
            elif now >= self.expires(d):
                out.append(
                    Result.fail(
                        d,
                        ErrorClass.EXPIRED,
                        f"{EXPIRED} 链接已过期，未确认转发 the link expired unconfirmed",
                    )
                )
            else:
                out.append(Result(d.key, Status.ACCEPTED, reason=SENT, provider_id=d.key))
        return out

    # -- the phone page

    def routes(self) -> Sequence[InboundRoute]:
        return (
            InboundRoute("/{token}/card.png", self._card, ("GET",), "confirm", "宣传卡片"),
            InboundRoute("/{token}", self._page, ("GET", "POST"), "confirm", "转发确认页"),
        )

    def _links(self, request: InboundRequest) -> LinkSigner | None:
        return request.links or self.context.links

    def _claims(self, request: InboundRequest, token: str, *, use: bool) -> Any:
        if not TOKEN.fullmatch(token):
            raise _Refused(403, REFUSED_FORGED)
        links = self._links(request)
        if links is None:
            raise _Refused(503, "链接服务不可用 links are unavailable")
        try:
            return links.verify(self.purpose, token) if use else links.peek(self.purpose, token)
        except Exception as exc:  # LinkError: forged, expired, used
            reason = getattr(exc, "reason", None)
            if reason is None:
                raise
            raise _Refused(410 if reason in ("expired", "used") else 403, str(exc)) from None

    def _pack(self, key: str) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads(self._pack_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise _Refused(404, "转发内容不存在 this hand-off is not here") from None
        return data

    def _page(self, request: InboundRequest) -> InboundReply:
        token = request.path.split("/")[1]
        try:
            if request.method == "POST":
                return self._confirm(request, token)
            claims = self._claims(request, token, use=False)
            pack = self._pack(claims.jti)
        except _Refused as refused:
            return refused.reply()
        csrf = secrets.token_urlsafe(24)
        cookie = (
            f"{CSRF_COOKIE}={csrf}; Path=/confirm/{self.context.instance_id}/; HttpOnly;"
            " SameSite=Strict"
        )
        until = claims.expires.astimezone(SHOWN_ZONE)
        body = PAGE.format(
            cid=html.escape(self.context.instance_id),
            token=html.escape(token),
            group=html.escape(pack["group"]),
            person=html.escape(pack["person"]),
            text=html.escape(pack["text"]),
            until=f"{until:%Y-%m-%d %H:%M}",
            csrf=csrf,
        )
        return InboundReply(200, body, "text/html; charset=utf-8", {"set-cookie": cookie})

    def _confirm(self, request: InboundRequest, token: str) -> InboundReply:
        form = parse_qs(request.body.decode("utf-8", "replace"))
        sent = (form.get("csrf") or [""])[0]
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(request.headers.get("cookie", ""))
        except Exception:
            jar = SimpleCookie()
        kept = jar[CSRF_COOKIE].value if CSRF_COOKIE in jar else ""
        if not sent or not hmac.compare_digest(sent, kept):
            return _Refused(
                403, "表单已失效，请重新打开链接 the form expired: open the link again"
            ).reply()
        claims = self._claims(request, token, use=True)
        pack = self._pack(claims.jti)
        now = self.context.clock()
        outcome = Outcome(
            Status.DELIVERED,
            key=claims.jti,
            at=now,
            reason=f"{CONFIRMED} {pack['person']} 已确认转发至「{pack['group']}」"
            " confirmed forwarding by hand (not a receipt from the group's members)",
        )
        body = DONE.format(
            cid=html.escape(self.context.instance_id),
            group=html.escape(pack["group"]),
            at=f"{now.astimezone(SHOWN_ZONE):%Y-%m-%d %H:%M}",
        )
        return InboundReply(200, body, "text/html; charset=utf-8", outcomes=[outcome])

    def _card(self, request: InboundRequest) -> InboundReply:
        token = request.path.split("/")[1]
        try:
            claims = self._claims(request, token, use=False)
            pack = self._pack(claims.jti)
            data = self._card_path(pack["card"]).read_bytes()
        except _Refused as refused:
            return refused.reply()
        except (OSError, ValueError):
            return _Refused(404, "图片不存在 the card is not here").reply()
        return InboundReply(200, data, "image/png", {"cache-control": "private, max-age=600"})


class _Refused(Exception):
    """A request the page refuses: its status and a bilingual reason (shown as a page)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message

    def reply(self) -> InboundReply:
        english = self.message.split(" ", 1)[-1]
        return InboundReply.json({"error": english, "错误": self.message}, status=self.status)


PAGE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>转发到群 Forward to the group</title>
<link rel="stylesheet" href="/static/handoff.css">
<script src="/static/handoff.js" defer></script>
</head><body><main>
<h1>请转发到「{group}」<small>Forward to {group}</small></h1>
<p class="who">{person}：复制文字、保存图片，发到群里后点“已转发”。<br>
<small>Copy the text, save the card, post both in the group, then press “forwarded”.
链接有效至 valid until {until}</small></p>
<section><h2>1. 复制文字 <small>Copy the text</small></h2>
<textarea id="text" readonly rows="8">{text}</textarea>
<button id="copy" type="button">复制文字 Copy text</button>
<span id="copied" hidden>已复制 copied</span></section>
<section><h2>2. 长按图片保存 <small>Long-press the card to save it</small></h2>
<img id="card" src="/confirm/{cid}/{token}/card.png" alt="宣传卡片 the card"></section>
<section><h2>3. 转发后确认 <small>Confirm after forwarding</small></h2>
<form method="post" action="/confirm/{cid}/{token}">
<input type="hidden" name="csrf" value="{csrf}">
<button id="confirm" type="submit">已转发 forwarded</button></form></section>
</main></body></html>
"""

DONE = """<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>已确认 Confirmed</title>
<link rel="stylesheet" href="/static/handoff.css">
</head><body><main>
<h1 id="done">已记录，谢谢！<small>Recorded, thank you.</small></h1>
<p>已确认转发至「{group}」，{at}。<br><small>Forwarding to {group} confirmed at {at}.</small></p>
</main></body></html>
"""
