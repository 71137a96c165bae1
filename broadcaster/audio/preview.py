"""Render one loudspeaker script to an MP3 so an office can listen before approving.

Used by `broadcaster audio preview TEMPLATE [--target T] [--out FILE]` and the console's
"试听 listen" page. The text is rendered exactly as a send would render it (the target's
variables, today's theme), then made by the loudspeaker channel's own chain (its engine,
loudness and MP3 settings; the defaults when the campaign has no `type: loudspeaker`
channel), through the same content cache as real sends.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broadcaster.channel import Message, MessageKind
from broadcaster.errors import InvalidArgumentError

__all__ = ["AudioPreview", "render_preview"]


@dataclass(frozen=True)
class AudioPreview:
    """One rendered script, with what was measured on it."""

    template: str
    target: str
    channel: str
    text: str
    spoken: str
    problems: tuple[str, ...]
    path: Path
    sha256: str
    seconds: float
    lufs: float | None
    true_peak_dbtp: float | None
    bitrate_kbps: int
    sample_rate: int


def _pick_channel(app: Any, channel: str | None) -> str:
    speaking = [cid for cid, p in app.channels.items() if p.kind is MessageKind.LOUDSPEAKER]
    if channel is not None:
        if channel not in speaking:
            raise InvalidArgumentError(
                f"不是广播渠道 not a loudspeaker channel: {channel!r};"
                f" expected one of {', '.join(speaking) or '(none)'}"
            )
        return channel
    if not speaking:
        raise InvalidArgumentError(
            "配置中没有广播渠道 the campaign has no channel of kind loudspeaker"
        )
    typed = [cid for cid in speaking if app.channels[cid].type == "loudspeaker"]
    return (typed or speaking)[0]


def _template(app: Any, name: str, audience: str | None) -> str:
    renderer = app.campaign.renderer
    if name.endswith(".j2"):
        found = name if "/" in name else f"loudspeaker/{name}"
    else:
        found = renderer.template_name(MessageKind.LOUDSPEAKER, name, audience)
    if found is None or found not in renderer.list_templates():
        known = sorted(
            t.removeprefix("loudspeaker/").removesuffix(".j2")
            for t in renderer.list_templates()
            if t.startswith("loudspeaker/")
        )
        raise InvalidArgumentError(
            f"未知的广播模板 unknown loudspeaker template {name!r};"
            f" expected one of {', '.join(known)}"
        )
    return str(found)


def render_preview(
    app: Any,
    template: str,
    *,
    now: dt.datetime,
    target: str | None = None,
    channel: str | None = None,
    out: Path | None = None,
) -> AudioPreview:
    """Render `template` for `target` (default: the first target) through `channel`."""
    import shutil

    from broadcaster.audio.normalise import normalise
    from broadcaster.audio.process import mp3_info
    from broadcaster.channels.loudspeaker import LoudspeakerChannel, LoudspeakerSettings
    from broadcaster.engine.artefacts import FileArtefactStore
    from broadcaster.model.adhoc import AdHoc
    from broadcaster.model.plan import Planner

    campaign = app.campaign
    channel_id = _pick_channel(app, channel)
    if target is None:
        target = next(iter(campaign.targets)).id
    if target not in campaign.targets:
        raise InvalidArgumentError(f"未知的对象 unknown target {target!r}")
    node = campaign.targets[target]
    name = _template(app, template, getattr(node, "audience", None))
    topic = None
    stem = name.removeprefix("loudspeaker/").removesuffix(".j2").split(".")[0]
    if stem in campaign.renderer.topics:
        topic = stem
    adhoc = AdHoc("audio-preview", (channel_id,), (target,), template=name)
    occurrence = adhoc.occurrence(now)
    text = Planner(campaign).text(name, occurrence, channel_id, target, None, None, topic)
    profile = app.channels[channel_id]
    if profile.type == "loudspeaker":
        speaker = profile.open_offline(campaign.base_dir, app.state_dir, now)
    else:  # a loudspeaker script sent another way (outbox, voice): the default audio chain
        from broadcaster.channel import ChannelContext
        from broadcaster.engine.channels import OfflineHTTP

        http: Any = OfflineHTTP()
        folder = app.state_dir / "channels" / channel_id
        context = ChannelContext(channel_id, http, lambda: now, folder, campaign.base_dir)
        speaker = LoudspeakerChannel(LoudspeakerSettings(), context)
    problem = speaker.check()
    if problem is not None:
        from broadcaster.errors import SpeechEngineMissingError

        raise SpeechEngineMissingError(problem)
    message = Message(MessageKind.LOUDSPEAKER, text, name, "", topic=topic)
    store = FileArtefactStore(app.state_dir / "artefacts")
    prepared = speaker.prepare(message, store)
    artefact = prepared.artefacts[0]
    path = artefact.path
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artefact.path, out)
        path = out
    info = mp3_info(artefact.path)
    spoken = normalise(text)
    return AudioPreview(
        template=name,
        target=target,
        channel=channel_id,
        text=text,
        spoken=spoken.text,
        problems=spoken.problems,
        path=path,
        sha256=artefact.sha256,
        seconds=info.seconds,
        lufs=info.lufs,
        true_peak_dbtp=info.true_peak_dbtp,
        bitrate_kbps=info.bitrate_kbps,
        sample_rate=info.sample_rate,
    )
