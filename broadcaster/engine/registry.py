"""Find channel plugins: the built-ins, then the `broadcaster.channels` entry-point group.

Plugins are imported on first use. A plugin that fails to import, does not meet the
contract, or takes a name already taken is disabled on its own, with the reason;
everything else keeps working.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

from broadcaster.channel import Channel, ChannelSettings

__all__ = ["BUILTINS", "PluginInfo", "Registry"]

ENTRY_POINT_GROUP = "broadcaster.channels"

# name -> "module:Class"; the module, the name and the entry point agree.
BUILTINS: dict[str, str] = {
    "aliyun-sms": "broadcaster.channels.aliyun_sms:AliyunSmsChannel",
    "led": "broadcaster.channels.led:LedChannel",
    "outbox": "broadcaster.channels.outbox:OutboxChannel",
    "tencent-sms": "broadcaster.channels.tencent_sms:TencentSmsChannel",
    "voice-call": "broadcaster.channels.voice_call:VoiceCallChannel",
    "webhook": "broadcaster.channels.webhook:WebhookChannel",
    "sms-http": "broadcaster.channels.sms_http:SmsHttpChannel",
    "wecom-bot": "broadcaster.channels.wecom_bot:WeComBotChannel",
    "dingtalk-bot": "broadcaster.channels.dingtalk_bot:DingTalkBotChannel",
    "feishu-bot": "broadcaster.channels.feishu_bot:FeishuBotChannel",
    "handoff": "broadcaster.channels.handoff:HandoffChannel",
    "loudspeaker": "broadcaster.channels.loudspeaker:LoudspeakerChannel",
}

_REQUIRED = (
    "name",
    "Settings",
    "capabilities",
    "check",
    "check_message",
    "check_schedule",
    "endpoint",
    "prepare",
    "send",
    "reconcile",
    "pull_outcomes",
    "routes",
    "close",
)


@dataclass(frozen=True)
class PluginInfo:
    """One discovered plugin: loaded, or disabled with the reason."""

    name: str
    source: str  # "built-in" or the distribution that provides it
    target: str  # "module:Class"
    cls: type[Channel] | None = None
    error: str | None = None


def _load(target: str) -> type:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    return getattr(module, attr)


def _contract_problem(name: str, cls: object) -> str | None:
    missing = [m for m in _REQUIRED if not hasattr(cls, m)]
    if missing:
        return (
            f"不符合渠道协议 does not implement the channel contract: missing {', '.join(missing)}"
        )
    if getattr(cls, "name", None) != name:
        return (
            f"名称不一致 declares name {getattr(cls, 'name', None)!r} but is registered as {name!r}"
        )
    settings = getattr(cls, "Settings", None)
    if not (isinstance(settings, type) and issubclass(settings, ChannelSettings)):
        return "Settings 必须继承 ChannelSettings: Settings must subclass broadcaster.channel.ChannelSettings"
    return None


class Registry:
    """Name -> plugin class, for built-ins and installed third-party plugins."""

    def __init__(self, *, include_entry_points: bool = True, extra: dict[str, str] | None = None):
        """`extra`: more plugins by name -> "module:Class" (tests, embedding programs)."""
        self._infos: dict[str, PluginInfo] = {}
        self._rejected: list[PluginInfo] = []
        for name, target in BUILTINS.items():
            self._infos[name] = self._try(name, "built-in", target)
        for name, target in (extra or {}).items():
            self._infos.setdefault(name, self._try(name, "extra", target))
        if include_entry_points:
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                dist = ep.dist.name if ep.dist else "?"
                if ep.name in self._infos:
                    self._rejected.append(
                        PluginInfo(
                            ep.name,
                            dist,
                            ep.value,
                            error=f"名称冲突 name clashes with the {self._infos[ep.name].source} "
                            f"plugin '{ep.name}'; this one is ignored",
                        )
                    )
                    continue
                self._infos[ep.name] = self._try(ep.name, dist, ep.value)

    @staticmethod
    def _try(name: str, source: str, target: str) -> PluginInfo:
        try:
            cls = _load(target)
        except ImportError as exc:
            return PluginInfo(name, source, target, error=f"无法导入 cannot import {target}: {exc}")
        except Exception as exc:  # a broken plugin must only disable itself
            return PluginInfo(
                name, source, target, error=f"加载失败 failed to load {target}: {exc!r}"
            )
        problem = _contract_problem(name, cls)
        if problem:
            return PluginInfo(name, source, target, error=problem)
        return PluginInfo(name, source, target, cls=cls)

    def names(self) -> list[str]:
        """Names usable as `type:` in the config."""
        return sorted(n for n, i in self._infos.items() if i.cls is not None)

    def all(self) -> list[PluginInfo]:
        """Every plugin seen, usable or not, clashes included."""
        return sorted([*self._infos.values(), *self._rejected], key=lambda i: (i.name, i.source))

    def get(self, name: str) -> PluginInfo | None:
        return self._infos.get(name)
