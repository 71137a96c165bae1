"""A campaign whose groups each have a WeCom, a DingTalk and a Feishu bot, aimed at the fakes."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from tests.conftest import TZ, write_campaign

__all__ = ["DAY", "GROUPS", "bot_environ", "write_bot_campaign"]

DAY = dt.date(2026, 3, 3)  # a Tuesday
GROUPS = 6
# ~8,700 UTF-8 bytes in 12 paragraphs: 3 parts of WeCom markdown
LONG = (
    "{% for i in range(12) %}第{{ i + 1 }}段 {{ topic.name }}提醒 {{ target.name }}："
    + "凡是刷单返利、冒充客服退款、网络贷款先交保证金的都是诈骗。" * 8
    + "\n\n{% endfor %}{{ topic.slogan }}"
)


def bot_environ(groups: int = GROUPS) -> dict[str, str]:
    """Each group's bot keys and secrets, as the environment gives them."""
    env = {}
    for n in range(1, groups + 1):
        env[f"WECOM_G{n}"] = f"wecom-key-{n}"
        env[f"DING_G{n}"] = f"ding-token-{n}"
        env[f"DING_SECRET_G{n}"] = f"SECding-secret-{n}"
        env[f"FEISHU_G{n}"] = f"feishu-token-{n}"
        env[f"FEISHU_SECRET_G{n}"] = f"feishu-secret-{n}"
    return env


def write_bot_campaign(
    folder: Path,
    *,
    wecom: str,
    dingtalk: str,
    feishu: str,
    groups: int = GROUPS,
    rules: int = 4,
    channels: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """`rules` rules fire at 10:00 on DAY onto every group through every bot channel (two
    WeCom channel instances post to the same bots), each a long message split into parts."""
    targets = [
        {
            "id": f"g{n}",
            "name": f"{n}组群",
            "tags": ["group"],
            "address": {
                "wecom": {"env": f"WECOM_G{n}"},
                "wecom_urgent": {"env": f"WECOM_G{n}"},
                "ding": {"key": {"env": f"DING_G{n}"}, "secret": {"env": f"DING_SECRET_G{n}"}},
                "feishu": {
                    "key": {"env": f"FEISHU_G{n}"},
                    "secret": {"env": f"FEISHU_SECRET_G{n}"},
                },
            },
        }
        for n in range(1, groups + 1)
    ]
    timeout = [1, 0.5]
    all_channels: dict[str, dict[str, Any]] = {
        "wecom": {"type": "wecom-bot", "kind": "bot", "settings": {"base_url": wecom}},
        "wecom_urgent": {"type": "wecom-bot", "kind": "bot", "settings": {"base_url": wecom}},
        "ding": {
            "type": "dingtalk-bot",
            "kind": "bot",
            "settings": {"base_url": dingtalk, "max_bytes": 2048, "keywords": ["提醒"]},
        },
        "feishu": {"type": "feishu-bot", "kind": "bot", "settings": {"base_url": feishu}},
    }
    for cid, spec in all_channels.items():
        spec["settings"]["timeout"] = timeout
        spec.update((channels or {}).get(cid, {}))
    topics = ["alpha", "beta", "gamma", "delta"]
    config = {
        "campaign": {"id": "bots", "name": "群机器人测试", "office": "测试派出所"},
        "phases": [{"id": "main", "name": "集中宣传", "start": "2026-01-01", "end": "2026-12-31"}],
        "default_theme": "routine",
        "themes": {"routine": {"name": "日常", "topics": topics}},
        "templates": ["tpl"],
        "targets": [{"id": "town", "name": "测试镇", "audience": "villagers", "children": targets}],
        "channels": all_channels,
        "rules": [
            {
                "id": f"burst{i + 1}",
                "channels": list(all_channels),
                "targets": {"tags": ["group"]},
                "topics": [topics[i % len(topics)]],
                "when": {"dates": [DAY.isoformat()], "at": "10:00"},
            }
            for i in range(rules)
        ],
    }
    return write_campaign(
        folder,
        json.dumps(config, ensure_ascii=False, indent=1),
        templates={f"bot/{t}.j2": LONG for t in topics},
    )


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hour, minute), tzinfo=TZ)
