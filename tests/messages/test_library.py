"""The built-in message library (messages/): every template renders and fits its channel.

Each template is rendered twice through the real `Renderer`: once with the sparsest
context the engine can give (no occasion, no phase, empty `vars`, no office name)
and once with everything filled in. The checks per kind follow the channel brief:

* sms: at most 60 characters (the 【signature】 is added on top; 70 is one billed
  message), ends with the hotline fragment, no emoji, no URLs, no Latin letters
  except "APP";
* bot: a `### ` title (with the occasion name when there is one), 3 to 6 short
  lines or bullets, the footer fragment, at most 500 characters;
* led: one line, at most 40 characters, GB2312 only, ends with the hotline fragment;
* loudspeaker: 100 to 190 spoken characters, no Arabic digits and no Latin letters,
  96110 said twice, a greeting for elderly and villager variants.

Report reminders (report_weekly, report_monthly) go to office staff, not the public:
their sms carries no hotline and their bot message ends with the report footer.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from broadcaster.channel import MessageKind
from broadcaster.model.render import WEEKDAY_NAMES, Renderer

AUDIENCES = {
    "villagers",
    "elderly",
    "parents",
    "pupils",
    "students",
    "migrant_workers",
    "cadres",
    "bank_customers",
    "general",
}

# The variables the engine passes (broadcaster.context.message_context); nothing else exists.
CONTEXT_VARS = {
    "campaign", "target", "vars", "theme", "topic", "occasion", "phase",
    "date", "weekday", "lunar", "time", "channel", "rule",
}  # fmt: skip

REQUIRED_TOPICS = {
    "order_brushing",
    "loan",
    "online_shopping",
    "fake_customer_service",
    "impersonate_acquaintance",
    "fake_police",
    "impersonate_official",
    "impersonate_teacher",
    "game_fraud",
    "investment",
    "illegal_fundraising",
    "health_products",
    "job_scam",
    "one_ring_call",
    "phishing",
    "two_cards",
    "relative_accident",
    "illegal_border_crossing",
    "medical_insurance",
}

REPORTS = {"report_weekly", "report_monthly"}
NON_TOPIC = {
    "report_weekly": {MessageKind.SMS, MessageKind.BOT},
    "report_monthly": {MessageKind.SMS, MessageKind.BOT},
    "alert": set(MessageKind),
}

# Deadline days: the weekly forms are due on Thursday; the monthly report is due by the
# 5th, here rolled from Sunday 2025-01-05 to Monday 2025-01-06 (previous month: 12月).
DATES = {"report_weekly": dt.date(2025, 1, 23), "report_monthly": dt.date(2025, 1, 6)}
DEFAULT_DATE = dt.date(2025, 3, 11)

OCCASION = {"id": "consumer_rights_day", "name": "3·15消费者权益日"}
FULL_VARS = {
    "police_station": "示范县公安局城关派出所",
    "police_phone": "0000-1234567",
    "alert_text": "近期有人冒充快递客服以理赔为由诈骗",
}
FALLBACK_ALERT = "近期电信网络诈骗高发，请大家提高警惕"

SMS_MAX, LED_MAX, BOT_MAX = 60, 40, 500
SPOKEN_MIN, SPOKEN_MAX = 100, 190
BOT_BODY_LINES = (3, 6)
BOT_LINE_MAX = 90
GREETINGS = ("乡亲们", "各位", "老乡们", "大爷大妈")

RENDERER = Renderer()
TEMPLATES = RENDERER.list_templates()


def split_name(name: str) -> tuple[MessageKind, str, str | None]:
    """'bot/two_cards.students.j2' -> (BOT, 'two_cards', 'students')."""
    kind, _, rest = name.partition("/")
    base, _, audience = rest.removesuffix(".j2").partition(".")
    return MessageKind(kind), base, audience or None


def make_context(name: str, full: bool) -> dict[str, Any]:
    kind, base, audience = split_name(name)
    topic = RENDERER.topics[base].as_context() if base in RENDERER.topics else None
    date = DATES.get(base, DEFAULT_DATE)
    return {
        "campaign": {
            "id": "demo-2025",
            "name": "示范县反电诈集中宣传",
            "office": "示范县公安局反诈中心" if full else "",
        },
        "target": {
            "id": "chengguan.dongcun.grid3",
            "name": "东村第三网格",
            "audience": audience,
            "tags": ["village", "grid"] if full else [],
            "path": ["示范县", "城关镇", "东村"],
        },
        "vars": dict(FULL_VARS) if full else {},
        "theme": {"id": "financial_consumers", "name": "金融消费者权益保护"} if full else None,
        "topic": topic,
        "occasion": dict(OCCASION) if full else None,
        "phase": {"id": "concentrated", "name": "集中宣传"} if full else None,
        "date": date,
        "weekday": WEEKDAY_NAMES[date.weekday()],
        "lunar": "二月十二",
        "time": "09:30",
        "channel": {"id": f"demo_{kind.value}", "kind": kind.value, "name": f"示范{kind.value}"},
        "rule": {"id": "weekly_push", "name": "每周推送"},
    }


def tidy(kind: MessageKind, text: str) -> str:
    """The engine's whitespace rules, for fragments rendered on their own."""
    if kind in (MessageKind.SMS, MessageKind.LED):
        return re.sub(r"\s*\n\s*", "", text).strip()
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def fragment(call: str, kind: MessageKind, context: dict[str, Any]) -> str:
    """Render one macro of _fragments/common.j2, e.g. fragment('sms_tail()', ...)."""
    macro = call.partition("(")[0]
    source = f'{{% from "_fragments/common.j2" import {macro} %}}{{{{ {call} }}}}'
    return tidy(kind, RENDERER.env.from_string(source).render(context))


def spoken_length(text: str) -> int:
    return len(re.sub(r"\s", "", text))


def is_gb2312(text: str) -> bool:
    """Encodable in GB2312: GBK bytes whose double-byte pairs lie in A1-F7 / A1-FE.

    Python's own gb2312 codec must accept the text too: it rejects "—" and "·"
    (it maps A1AA and A1A4 to other code points), and so may an older screen's
    import tool, so the library keeps clear of both.
    """
    try:
        data = text.encode("gbk")
        text.encode("gb2312")
    except UnicodeEncodeError:
        return False
    i = 0
    while i < len(data):
        if data[i] < 0x80:
            i += 1
            continue
        lead, trail = data[i], data[i + 1]
        if not (0xA1 <= lead <= 0xF7 and 0xA1 <= trail <= 0xFE):
            return False
        i += 2
    return True


def has_emoji(text: str) -> bool:
    return any(
        ord(c) > 0xFFFF
        or 0x2600 <= ord(c) <= 0x27BF
        or 0x2B00 <= ord(c) <= 0x2BFF
        or ord(c) == 0xFE0F
        for c in text
    )


URL = re.compile(r"https?:|://|www\.|\.(com|cn|net|org)\b", re.IGNORECASE)
LATIN = re.compile(r"[A-Za-zＡ-Ｚａ-ｚ]")
DIGIT = re.compile(r"[0-9０-９]")


# -- the catalogue


def test_topics_catalogue():
    topics = RENDERER.topics
    assert len(topics) >= 16
    assert set(topics) >= REQUIRED_TOPICS, sorted(REQUIRED_TOPICS - set(topics))
    for tid, topic in topics.items():
        assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", tid), tid
        assert re.search(r"[\u4e00-\u9fff]", topic.name), tid
        assert topic.en and re.search(r"[A-Za-z]", topic.en), tid
        assert re.search(r"[\u4e00-\u9fff]", topic.slogan), tid
        assert topic.slogan[-1] in "。！", f"{tid}: the slogan is one full sentence"
        assert topic.audiences, tid
        assert set(topic.audiences) <= AUDIENCES, (tid, set(topic.audiences) - AUDIENCES)
        assert len(set(topic.audiences)) == len(topic.audiences), tid


def test_slogans_quote_the_plans():
    """Where a plan's starter text fits (domain.md §5.4), the slogan is that text."""
    topics = RENDERER.topics
    assert topics["order_brushing"].slogan == "凡是网络兼职刷单返还佣金就是诈骗！"
    assert topics["loan"].slogan == "凡是免息无抵押担保网络贷款就是诈骗！"
    assert topics["investment"].slogan == "凡是低投入高回报网络投资理财就是诈骗！"
    assert topics["impersonate_acquaintance"].slogan == "凡是以QQ、微信好友名义要求转账就是诈骗！"
    assert topics["fake_police"].slogan == "凡是以公检法办案名义要求将资金转入安全账户就是诈骗！"
    assert "114" in topics["relative_accident"].slogan
    assert "高薪诚聘" in topics["job_scam"].slogan


@pytest.mark.parametrize("topic", sorted(RENDERER.topics))
def test_every_topic_has_all_kinds(topic):
    for kind in MessageKind:
        assert RENDERER.template_name(kind, topic, None) == f"{kind.value}/{topic}.j2"


def test_non_topic_templates_exist():
    for name, kinds in NON_TOPIC.items():
        for kind in kinds:
            assert RENDERER.template_name(kind, name, None) == f"{kind.value}/{name}.j2"


def test_every_template_is_a_topic_or_a_known_reminder():
    for name in TEMPLATES:
        _, base, audience = split_name(name)
        assert base in RENDERER.topics or base in NON_TOPIC, name
        assert audience is None or audience in AUDIENCES, name


def test_audience_variants():
    variants = [n for n in TEMPLATES if split_name(n)[2] is not None]
    assert len(variants) >= 20, variants
    for name in variants:
        kind, base, audience = split_name(name)
        # the variant wins for its audience, the plain template for everyone else
        assert RENDERER.template_name(kind, base, audience) == name
        assert RENDERER.template_name(kind, base, None) == f"{kind.value}/{base}.j2"
        if base in RENDERER.topics:
            assert audience in RENDERER.topics[base].audiences, (
                f"{name}: add {audience} to topics.yaml"
            )


@pytest.mark.parametrize("name", TEMPLATES)
def test_reads_only_context_variables(name):
    reads = RENDERER.reads(name)
    assert reads <= CONTEXT_VARS, sorted(reads - CONTEXT_VARS)
    if split_name(name)[1] in NON_TOPIC:
        assert "topic" not in reads, "report and alert templates have no topic"


# -- every template, rendered


@pytest.mark.parametrize("full", [False, True], ids=["sparse", "full"])
@pytest.mark.parametrize("name", TEMPLATES)
def test_template_fits_its_channel(name, full):
    kind, base, audience = split_name(name)
    context = make_context(name, full)
    text = RENDERER.render(name, kind, context)

    assert text.strip(), "empty message"
    for leftover in ("{{", "}}", "{%", "%}", "{#", "None", "Undefined", "[]"):
        assert leftover not in text, f"{leftover!r} in {text!r}"
    assert not URL.search(text), text
    assert "\t" not in text

    check = {
        MessageKind.SMS: check_sms,
        MessageKind.BOT: check_bot,
        MessageKind.LED: check_led,
        MessageKind.LOUDSPEAKER: check_loudspeaker,
    }[kind]
    check(text, base, audience, context)


def check_sms(text: str, base: str, audience: str | None, context: dict[str, Any]) -> None:
    assert "\n" not in text
    assert len(text) <= SMS_MAX, f"{len(text)} characters: {text}"
    if base not in REPORTS:
        assert text.endswith(fragment("sms_tail()", MessageKind.SMS, context)), text
    assert not has_emoji(text), text
    assert not LATIN.search(text.replace("APP", "")), text


def check_bot(text: str, base: str, audience: str | None, context: dict[str, Any]) -> None:
    assert len(text) <= BOT_MAX, f"{len(text)} characters"
    lines = text.split("\n")
    title = lines[0]
    assert title.startswith("### ") and title[4:].strip(), title
    occasion = context["occasion"]
    if occasion and base not in REPORTS:
        assert occasion["name"] in title, title
    if base in REPORTS:
        footer = fragment("report_footer(campaign)", MessageKind.BOT, context)
    else:
        footer = fragment("bot_footer(vars, campaign)", MessageKind.BOT, context)
    assert text.endswith("\n\n" + footer), text
    body = [line for line in text[: -len(footer)].split("\n")[1:] if line.strip()]
    low, high = BOT_BODY_LINES
    assert low <= len(body) <= high, body
    for line in body:
        assert len(line) <= BOT_LINE_MAX, line
        assert not line.startswith("#"), "one title only"
    if context["vars"].get("police_station") and base not in REPORTS:
        assert context["vars"]["police_station"] in text
    if context["campaign"]["office"]:
        assert context["campaign"]["office"] in text


def check_led(text: str, base: str, audience: str | None, context: dict[str, Any]) -> None:
    assert "\n" not in text
    assert len(text) <= LED_MAX, f"{len(text)} characters: {text}"
    assert is_gb2312(text), [c for c in text if not is_gb2312(c)]
    assert text.endswith(fragment("led_tail()", MessageKind.LED, context)), text


def check_loudspeaker(text: str, base: str, audience: str | None, context: dict[str, Any]) -> None:
    n = spoken_length(text)
    assert SPOKEN_MIN <= n <= SPOKEN_MAX, f"{n} spoken characters"
    assert not DIGIT.search(text), DIGIT.findall(text)
    assert not LATIN.search(text), LATIN.findall(text)
    assert text.count("九六幺幺零") >= 2, "say 96110 twice"
    assert len(re.findall(r"(?<!九六)幺幺零", text)) >= 2, "say 110 twice"
    assert text.endswith(fragment("ls_tail(vars)", MessageKind.LOUDSPEAKER, context))
    if audience in ("elderly", "villagers"):
        assert text.startswith(GREETINGS), text[:20]
    elif base in RENDERER.topics:
        assert text.startswith(fragment("ls_open()", MessageKind.LOUDSPEAKER, context)), text[:20]
    if context["vars"].get("police_station"):
        assert context["vars"]["police_station"] in text


# -- rotation and content


@pytest.mark.parametrize("kind", list(MessageKind), ids=lambda k: k.value)
def test_topics_do_not_share_texts(kind):
    """Within a theme the rotation changes topic, so the message must change too."""
    seen: dict[str, str] = {}
    for name in TEMPLATES:
        k, base, _ = split_name(name)
        if k is not kind or base not in RENDERER.topics:
            continue
        text = RENDERER.render(name, kind, make_context(name, full=False))
        assert text not in seen, f"{name} repeats {seen.get(text)}"
        seen[text] = name


def test_variants_differ_from_plain():
    for name in TEMPLATES:
        kind, base, audience = split_name(name)
        if audience is None:
            continue
        plain = f"{kind.value}/{base}.j2"
        context = make_context(name, full=False)
        assert RENDERER.render(name, kind, context) != RENDERER.render(plain, kind, context), name


@pytest.mark.parametrize("kind", [MessageKind.SMS, MessageKind.BOT], ids=lambda k: k.value)
def test_weekly_report(kind):
    name = f"{kind.value}/report_weekly.j2"
    context = make_context(name, full=False)
    text = RENDERER.render(name, kind, context)
    assert "请于今天（2025-01-23 星期四）下班前" in text
    assert "《反电诈入户宣传登记表》" in text
    assert "《反诈骗宣传活动统计表》" in text
    assert "平安办" in text


@pytest.mark.parametrize("kind", [MessageKind.SMS, MessageKind.BOT], ids=lambda k: k.value)
def test_monthly_report(kind):
    name = f"{kind.value}/report_monthly.j2"
    context = make_context(name, full=False)
    text = RENDERER.render(name, kind, context)
    assert "请于今天（2025-01-06 星期一）下班前" in text
    assert "12月" in text  # the previous month, across the year boundary
    assert "综治办" in text
    for part in ("文字", "图片", "数据"):
        assert part in text
    context["date"] = dt.date(2025, 6, 5)
    context["weekday"] = WEEKDAY_NAMES[context["date"].weekday()]
    assert "5月" in RENDERER.render(name, kind, context)


@pytest.mark.parametrize("kind", list(MessageKind), ids=lambda k: k.value)
def test_alert_uses_alert_text_or_fallback(kind):
    name = f"{kind.value}/alert.j2"
    given = RENDERER.render(name, kind, make_context(name, full=True))
    assert FULL_VARS["alert_text"] + "。" in given
    fallback = RENDERER.render(name, kind, make_context(name, full=False))
    assert FALLBACK_ALERT in fallback


def test_loudspeaker_reads_phone_numbers_digit_by_digit():
    context = make_context("loudspeaker/fake_police.j2", full=True)
    context["vars"] = {"police_station": "城关派出所", "police_phone": "0571-96110"}
    text = RENDERER.render("loudspeaker/fake_police.j2", MessageKind.LOUDSPEAKER, context)
    assert "零五七幺，九六幺幺零" in text
    assert not DIGIT.search(text)


def test_relative_accident_points_to_114():
    for kind, expected in [
        (MessageKind.SMS, "114"),
        (MessageKind.BOT, "114"),
        (MessageKind.LED, "114"),
        (MessageKind.LOUDSPEAKER, "幺幺四"),
    ]:
        name = f"{kind.value}/relative_accident.j2"
        assert expected in RENDERER.render(name, kind, make_context(name, full=False)), kind
