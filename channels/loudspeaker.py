"""loudspeaker: village loudspeakers (大喇叭 / 村村响 / IP broadcast), scripts as timed MP3s.

Plugin alias: loudspeaker. Sends the loudspeaker variant of a template as audio: the
script is normalised for speaking (hotlines digit by digit with 幺), synthesised by a
text-to-speech engine (espeak-ng offline by default; Aliyun or Tencent Cloud), or an
office's own recording is used; then chimed, loudness-normalised (−16 LUFS, −1 dBTP)
and encoded as a CBR MP3, cached by content (`prepare()`, `artefacts.make`). `send()`
puts one timed entry per target on an IP broadcast platform (the generic HTTP bridge,
`channels/ip_broadcast.py`), or, with no platform, into a bundle folder per target
(MP3s, `playlist.m3u8`, `schedule.json`) for the operator. The air time is the rule's
time plus `lead_minutes`, so the upload goes ahead of air time. `validate` checks
the script (what cannot be spoken), the recordings, each programme's length and the
quiet hours. Provider notes: channels.md §10.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from broadcaster.audio.cloud import AliyunTtsSettings, TencentTtsSettings
from broadcaster.channel import (
    Addressing,
    Artefact,
    ArtefactStore,
    BaseChannel,
    Capabilities,
    ChannelSettings,
    Delivery,
    ErrorClass,
    Message,
    MessageKind,
    QuietHours,
    Recipient,
    Result,
    ScheduledSend,
)
from broadcaster.channels.ip_broadcast import (
    BridgeSettings,
    BroadcastPlatform,
    BundlePlatform,
    HttpBridge,
)

__all__ = ["LoudspeakerChannel", "LoudspeakerSettings"]

AUDIO_EXTRA = "pip install 'broadcaster[audio]'（或运行 or run scripts/bootstrap.sh）"


def _clock_time(value: str) -> str:
    try:
        return dt.time.fromisoformat(value.strip().zfill(5)).strftime("%H:%M")
    except ValueError:
        raise ValueError(f"时间格式应为 HH:MM expected a time like 07:00; got {value!r}") from None


class Loop(ChannelSettings):
    """A gate speaker: the programme repeats from its air time until `until`."""

    until: str  # "20:00"
    gap_seconds: int = Field(default=300, ge=5)

    @field_validator("until")
    @classmethod
    def _until(cls, v: str) -> str:
        return _clock_time(v)


class Loudness(ChannelSettings):
    target_lufs: float = Field(default=-16.0, ge=-30.0, le=-10.0)
    true_peak_dbtp: float = Field(default=-1.0, ge=-9.0, le=0.0)


class Mp3(ChannelSettings):
    bitrate_kbps: Literal[32, 40, 48, 56, 64, 80, 96, 112, 128] = 64
    sample_rate: Literal[22050, 24000, 32000, 44100, 48000] = 44100


class Chime(ChannelSettings):
    before: bool = True
    after: bool = True
    file: str | None = None  # an MP3/WAV of the office's own chime (relative: campaign folder)


class LoudspeakerSettings(ChannelSettings):
    engine: Literal["espeak", "aliyun", "tencent"] = "espeak"
    voice: str = "cmn-latn-pinyin"  # espeak-ng voice (`cmn` reads many characters as English)
    speed: int = Field(default=150, ge=80, le=400)  # espeak-ng words per minute
    aliyun: AliyunTtsSettings | None = None  # the Aliyun engine (broadcaster.audio.cloud)
    tencent: TencentTtsSettings | None = None  # the Tencent Cloud engine
    loudness: Loudness = Field(default_factory=Loudness)
    mp3: Mp3 = Field(default_factory=Mp3)
    chime: Chime = Field(default_factory=Chime)
    # template name (e.g. "loudspeaker/fake_police.villagers.j2") -> the office's recording
    recordings: dict[str, str] = Field(default_factory=dict)
    max_item_seconds: float = Field(default=180.0, gt=0)  # one script or recording
    max_programme_seconds: float = Field(default=600.0, gt=0)  # everything in one slot
    quiet_hours: str = "21:00-06:30"
    lead_minutes: int = Field(default=15, ge=0, le=1440)  # air time = rule time + this
    plays: int = Field(default=1, ge=1, le=3)  # plays in a row per slot
    gap_seconds: int = Field(default=5, ge=5)  # between plays
    loops: dict[str, Loop] = Field(default_factory=dict)  # target id -> loop (gate speakers)
    zones: dict[str, list[str]] = Field(default_factory=dict)  # target id -> platform zones
    platform: BridgeSettings | None = None  # None: a bundle folder per target
    bundle_folder: str = "bundle"  # inside the channel's data folder

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, v: str) -> str:
        try:
            QuietHours.parse(v)
        except ValueError:
            raise ValueError(
                f"免打扰时段格式应为 HH:MM-HH:MM expected e.g. 21:00-06:30; got {v!r}"
            ) from None
        return v

    @model_validator(mode="after")
    def _engine_settings(self) -> LoudspeakerSettings:
        if self.engine != "espeak" and getattr(self, self.engine) is None:
            raise ValueError(
                f"engine: {self.engine} 需要 {self.engine}: 设置块 needs a `{self.engine}:` block"
                " with its keys"
            )
        return self


class LoudspeakerChannel(BaseChannel):
    """Scripts to loudness-normalised MP3s, on timed playlists per village."""

    name = "loudspeaker"
    Settings = LoudspeakerSettings
    contract_example: ClassVar[dict[str, Any]] = {"chime": {"before": False, "after": False}}

    def __init__(self, settings: LoudspeakerSettings, context: Any) -> None:
        super().__init__(settings, context)
        self._renderer: Any = None
        self._platform: BroadcastPlatform | None = None
        self._own_store: ArtefactStore | None = None
        self._lock = threading.Lock()
        self._quiet = QuietHours.parse(settings.quiet_hours)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            kinds=frozenset({MessageKind.LOUDSPEAKER}),
            addressing=Addressing.TARGET,
            batch_size=1,
            concurrency=2,  # rendering is CPU work
            quiet_hours=self._quiet,
            reconciles=True,
            settle_seconds=sum(self.settings.platform.timeout) + 5 if self.settings.platform else 5,
            outcome_window=2 * 86400.0 if self.settings.platform else None,  # play reports
            outcome_poll=1800.0,
        )

    # -- parts

    def _path(self, name: str) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.context.base_dir / path

    def audio_settings(self) -> Any:
        from broadcaster.audio.process import Settings

        s = self.settings
        return Settings(
            target_lufs=s.loudness.target_lufs,
            true_peak_dbtp=s.loudness.true_peak_dbtp,
            bitrate_kbps=s.mp3.bitrate_kbps,
            sample_rate=s.mp3.sample_rate,
            chime_before=s.chime.before,
            chime_after=s.chime.after,
            max_seconds=s.max_item_seconds,
            chime_file=str(self._path(s.chime.file)) if s.chime.file else None,
        )

    def engine(self) -> Any:
        s = self.settings
        if s.engine == "aliyun" and s.aliyun is not None:
            from broadcaster.audio.cloud import AliyunEngine

            return AliyunEngine(s.aliyun, self.context.http, self.context.clock)
        if s.engine == "tencent" and s.tencent is not None:
            from broadcaster.audio.cloud import TencentEngine

            return TencentEngine(s.tencent, self.context.http, self.context.clock)
        from broadcaster.audio.engines import EspeakEngine

        return EspeakEngine(voice=s.voice, speed=s.speed)

    def renderer(self) -> Any:
        with self._lock:
            if self._renderer is None:
                from broadcaster.audio.script import ScriptRenderer

                self._renderer = ScriptRenderer(self.engine(), self.audio_settings())
            return self._renderer

    def platform(self) -> BroadcastPlatform:
        with self._lock:
            if self._platform is None:
                if self.settings.platform is None:
                    root = self.context.data_dir / self.settings.bundle_folder
                    self._platform = BundlePlatform(root)
                else:
                    self._platform = HttpBridge(self.settings.platform, self.context.http)
            return self._platform

    # -- checks

    def check(self) -> str | None:
        missing = super().check()
        if missing:
            return missing
        try:
            import lameenc  # noqa: F401
            import numpy  # noqa: F401
            import pyloudnorm  # noqa: F401
        except ImportError as exc:
            return (
                f"缺少音频组件 audio libraries missing ({exc.name}): install with `{AUDIO_EXTRA}`"
            )
        try:
            engine = self.engine()
        except Exception as exc:
            return f"语音引擎设置有误 TTS engine settings: {exc}"
        answer: str | None = engine.check()
        if answer is None and self.settings.recordings:
            import shutil

            if shutil.which("ffmpeg") is None:
                from broadcaster.audio.process import FFMPEG_INSTALL

                return f"未安装 ffmpeg, 无法解码录音 ffmpeg not found: install it with `{FFMPEG_INSTALL}`"
        return answer

    def check_message(self, message: Message) -> list[str]:
        """What cannot be spoken; a recording that cannot be broadcast; a script too long."""
        recording = self.settings.recordings.get(message.template)
        if recording is not None:
            return self._recording_problems(recording)
        from broadcaster.audio.normalise import normalise
        from broadcaster.audio.script import estimate_seconds

        problems = list(normalise(message.text).problems)
        seconds = estimate_seconds(message.text, self.audio_settings(), self.settings.speed)
        if seconds > self.settings.max_item_seconds:
            problems.append(
                f"广播稿太长 the script runs about {seconds:.0f} s (estimated),"
                f" over max_item_seconds {self.settings.max_item_seconds:g}"
            )
        return problems

    def _recording_problems(self, name: str) -> list[str]:
        from broadcaster.audio.process import check_recording, decode_recording
        from broadcaster.errors import AudioError

        path = self._path(name)
        try:
            data = path.read_bytes()
        except OSError:
            return [f"录音文件不存在 recording not found: {name}"]
        try:
            audio = decode_recording(data, self.settings.mp3.sample_rate, name=name)
            check_recording(audio, self.audio_settings(), name=name)
        except AudioError as exc:
            return [str(exc)]
        return []

    def _item_seconds(self, message: Message, cache: dict[str, float]) -> float:
        key = message.template if message.template in self.settings.recordings else message.text
        if key not in cache:
            from broadcaster.audio.script import (
                CHIME_GAP_SECONDS,
                CHIME_SECONDS,
                PADDING_SECONDS,
                estimate_seconds,
            )

            settings = self.audio_settings()
            recording = self.settings.recordings.get(message.template)
            if recording is not None:
                seconds = _recording_seconds(self._path(recording))
                chimes = int(settings.chime_before) + int(settings.chime_after)
                cache[key] = (
                    seconds + PADDING_SECONDS + chimes * (CHIME_SECONDS + CHIME_GAP_SECONDS)
                )
            else:
                cache[key] = estimate_seconds(message.text, settings, self.settings.speed)
        return cache[key]

    def check_schedule(self, sends: Sequence[ScheduledSend]) -> list[str]:
        """Each slot's programme against max_programme_seconds; air times and loops against
        the quiet hours. One report per rule, target and time of day."""
        lead = dt.timedelta(minutes=self.settings.lead_minutes)
        slots: dict[tuple[str, dt.datetime], list[ScheduledSend]] = defaultdict(list)
        for send in sends:
            slots[(send.target_id, send.at + lead)].append(send)
        problems: dict[tuple[str, str, str, str], str] = {}
        cache: dict[str, float] = {}
        plays, gap = self.settings.plays, self.settings.gap_seconds
        for (target, air), items in sorted(slots.items()):
            seconds = sum(self._item_seconds(s.message, cache) for s in items)
            seconds = seconds * plays + gap * (plays * len(items) - 1)
            rules = ",".join(sorted({s.rule_id for s in items}))
            name = items[0].target_name
            where = f"规则 rule '{rules}', 目标 target '{target}' ({name}), {air:%H:%M}"
            if seconds > self.settings.max_programme_seconds:
                problems.setdefault(
                    ("long", rules, target, f"{air:%H:%M}"),
                    f"{where}: 节目太长 programme runs about {seconds:.0f} s,"
                    f" over max_programme_seconds {self.settings.max_programme_seconds:g}",
                )
            end = air + dt.timedelta(seconds=seconds)
            loop = self.settings.loops.get(target)
            if loop is not None:
                until = dt.time.fromisoformat(loop.until)
                end = max(end, air.replace(hour=until.hour, minute=until.minute))
            if self._in_quiet(air, end):
                problems.setdefault(
                    ("quiet", rules, target, f"{air:%H:%M}"),
                    f"{where}–{end:%H:%M}: 落入免打扰时段 falls in quiet hours {self._quiet}",
                )
        return list(problems.values())

    def _in_quiet(self, start: dt.datetime, end: dt.datetime) -> bool:
        """Whether any minute of [start, end] is inside the quiet hours."""
        t = start
        while t <= end:
            if self._quiet.contains(t.time()):
                return True
            t += dt.timedelta(minutes=1)
        return self._quiet.contains(end.time())

    # -- making and sending

    def prepare(self, message: Message, artefacts: ArtefactStore) -> Message:
        """Make (or find in the cache) the MP3 of the script or of the office's recording."""
        title = _title(message)
        renderer = self.renderer()
        recording = self.settings.recordings.get(message.template)
        if recording is not None:
            artefact = renderer.recording(self._path(recording), title, artefacts)
        else:
            artefact = renderer.speech(message.text, title, artefacts)
        return replace(message, artefacts=(artefact,))

    def _audio(self, message: Message) -> Artefact:
        for artefact in message.artefacts:
            if artefact.media_type == "audio/mpeg" and artefact.path.is_file():
                return artefact
        with self._lock:
            if self._own_store is None:
                from broadcaster.engine.artefacts import FileArtefactStore

                self._own_store = FileArtefactStore(self.context.data_dir / "artefacts")
        return self.prepare(message, self._own_store).artefacts[0]

    def entry(self, delivery: Delivery, audio: Artefact) -> Any:
        from broadcaster.audio.playlist import PlaylistEntry
        from broadcaster.audio.process import mp3_info

        info = mp3_info(audio.path)
        air = delivery.scheduled_at + dt.timedelta(minutes=self.settings.lead_minutes)
        target = delivery.recipient.target_id
        loop = self.settings.loops.get(target)
        zones = self.settings.zones.get(target) or [delivery.recipient.address]
        return PlaylistEntry(
            key=delivery.key,
            target=target,
            file=f"{audio.sha256[:16]}.mp3",
            sha256=audio.sha256,
            title=info.title,
            seconds=round(info.seconds, 3),
            lufs=info.lufs,
            true_peak_dbtp=info.true_peak_dbtp,
            start=air.isoformat(),
            slot=f"{air:%H:%M}",
            valid_from=air.date().isoformat(),
            valid_until=air.date().isoformat(),
            plays=self.settings.plays,
            gap_seconds=loop.gap_seconds if loop else self.settings.gap_seconds,
            loop_until=loop.until if loop else None,
            zones=zones,
        )

    def send(self, batch: Sequence[Delivery]) -> list[Result]:
        return [self._send_one(d) for d in batch]

    def _send_one(self, delivery: Delivery) -> Result:
        from broadcaster.errors import AudioError, SpeechEngineMissingError

        try:
            audio = self._audio(delivery.message)
            entry = self.entry(delivery, audio)
        except SpeechEngineMissingError as exc:
            return Result.fail(delivery, ErrorClass.CONFIG, str(exc))
        except AudioError as exc:
            return Result.fail(delivery, ErrorClass.CONTENT, str(exc))
        return self.platform().deliver(delivery, entry, audio.path)

    def reconcile(self, pending: Sequence[Delivery]) -> list[Result]:
        """A task whose acknowledgement was lost (looked up by our key), or a play report."""
        out = []
        for d in pending:
            found = self.platform().lookup(d)
            if found is not None:
                out.append(found)
        return out

    def endpoint(self, recipient: Recipient) -> str:
        if self.settings.platform is not None:
            return self.settings.platform.base_url
        return self.context.instance_id


def _title(message: Message) -> str:
    """The ID3 title: the message title, else the first sentence (at most 30 characters)."""
    if message.title:
        return message.title[:60]
    first = message.text.strip().splitlines()[0] if message.text.strip() else "反诈提醒"
    for mark in "。！？!?":
        first = first.split(mark)[0]
    return first[:30] or "反诈提醒"


def _recording_seconds(path: Path) -> float:
    """A recording's length, from its header (MP3) or its frame count (WAV)."""
    import wave

    try:
        if path.suffix.lower() == ".wav":
            with wave.open(str(path)) as w:
                return w.getnframes() / w.getframerate()
        from mutagen.mp3 import MP3

        audio: Any = MP3(str(path))
        return float(audio.info.length)
    except Exception:
        return 0.0  # unreadable: check_message reports it
