"""The loudspeaker channel: cached MP3s, validate checks, bundles and the HTTP bridge."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from broadcaster.audio.process import mp3_info, wav_bytes
from broadcaster.channel import Delivery, Message, MessageKind, ScheduledSend, Status
from broadcaster.channels.loudspeaker import LoudspeakerChannel, LoudspeakerSettings
from broadcaster.engine.artefacts import FileArtefactStore
from broadcaster.engine.http import channel_context
from broadcaster.vocab import ErrorClass
from tests.audio.helpers import decode, tone
from tests.conftest import NOW, TZ
from tests.fakes.broadcast_platform import BroadcastPlatformFake
from tests.fakes.deliveries import delivery
from tests.fakes.http import serving

SCRIPT = "乡亲们请注意！陌生电话让您转账，一律是诈骗。请拨打反诈专线96110。"
Make = Callable[..., LoudspeakerChannel]


def message(text: str = SCRIPT, template: str = "loudspeaker/alpha.j2") -> Message:
    return Message(MessageKind.LOUDSPEAKER, text, template, "0" * 64, "routine", "alpha")


def ls_delivery(n: int = 1, text: str = SCRIPT, target: str = "hexi-speaker") -> Delivery:
    d = delivery(n, channel="speakers", kind=MessageKind.LOUDSPEAKER, text=text)
    recipient = dataclasses.replace(d.recipient, target_id=target, address=target, display=target)
    return dataclasses.replace(d, recipient=recipient)


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> FileArtefactStore:
    """One content cache for the module's sends: a script is rendered once for all tests."""
    return FileArtefactStore(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def make(tmp_path: Path, shared_cache: FileArtefactStore) -> Iterator[Make]:
    opened: list[LoudspeakerChannel] = []

    def factory(environ: dict[str, str] | None = None, **data: Any) -> LoudspeakerChannel:
        settings = LoudspeakerSettings.model_validate(data, context={"environ": environ or {}})
        context = channel_context(
            "speakers",
            concurrency=2,
            clock=lambda: NOW,
            data_dir=tmp_path / "data",
            base_dir=tmp_path,
        )
        channel = LoudspeakerChannel(settings, context)
        channel._own_store = shared_cache  # what send() renders unprepared messages into
        opened.append(channel)
        return channel

    yield factory
    for channel in opened:
        channel.close()
        channel.context.http.close()


@pytest.fixture
def platform() -> Iterator[BroadcastPlatformFake]:
    yield from serving(BroadcastPlatformFake(password="pw-Canary-3"))


def bridged(make: Make, platform: BroadcastPlatformFake, **data: Any) -> LoudspeakerChannel:
    return make(
        {"BROADCAST_PASSWORD": "pw-Canary-3"},
        platform={
            "base_url": platform.url,
            "username": "county",
            "password": {"env": "BROADCAST_PASSWORD"},
            "timeout": [1, 1],
        },
        **data,
    )


# -- making audio, once per content --------------------------------------------------------


def test_prepare_makes_one_measured_mp3_per_script(make: Make, tmp_path: Path) -> None:
    channel = make()
    store = FileArtefactStore(tmp_path / "artefacts")
    prepared = channel.prepare(message(), store)
    (mp3,) = prepared.artefacts
    assert (mp3.name, mp3.media_type) == ("speech.mp3", "audio/mpeg")
    info = mp3_info(mp3.path)
    assert info.title == "乡亲们请注意"
    assert info.lufs is not None and abs(info.lufs + 16) <= 0.5
    assert (info.bitrate_kbps, info.sample_rate, info.channels) == (64, 44100, 1)
    # the same script again, even through a new channel instance: never synthesised twice
    again = make().prepare(message(), store)
    assert again.artefacts == prepared.artefacts
    assert (store.made, store.reused) == (1, 1)
    # the artefact (with its sha256) is what the engine logs in the delivery's payload
    assert prepared.payload()["artefacts"] == [mp3.describe()]  # type: ignore[index]


def test_other_settings_or_text_make_another_file(make: Make, tmp_path: Path) -> None:
    store = FileArtefactStore(tmp_path / "artefacts")
    first = make().prepare(message(), store).artefacts[0]
    quieter = make(loudness={"target_lufs": -19}).prepare(message(), store).artefacts[0]
    other = make().prepare(message(SCRIPT + "谢谢。"), store).artefacts[0]
    assert len({first.sha256, quieter.sha256, other.sha256}) == 3
    assert store.made == 3


def test_an_office_recording_goes_through_the_same_chain(make: Make, tmp_path: Path) -> None:
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "cadre.wav").write_bytes(wav_bytes(tone(5.0, level=0.05)))
    channel = make(recordings={"loudspeaker/dialect.j2": "rec/cadre.wav"})
    assert channel.check_message(message(template="loudspeaker/dialect.j2")) == []
    store = FileArtefactStore(tmp_path / "artefacts")
    (mp3,) = channel.prepare(message(template="loudspeaker/dialect.j2"), store).artefacts
    assert mp3.name == "recording.mp3"
    decoded = decode(mp3.path)
    assert 7.0 < decoded.seconds < 9.5  # 5 s, two chimes, gaps


def test_a_bad_recording_is_reported_at_validate_with_the_measurement(
    make: Make, tmp_path: Path
) -> None:
    (tmp_path / "silent.wav").write_bytes(wav_bytes(tone(3.0, level=0.0)))
    (tmp_path / "broken.mp3").write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\x00" * 500)
    (tmp_path / "long.wav").write_bytes(wav_bytes(tone(12.0, level=0.05)))
    channel = make(
        max_item_seconds=10,
        recordings={
            "a.j2": "silent.wav",
            "b.j2": "broken.mp3",
            "c.j2": "long.wav",
            "d.j2": "x.mp3",
        },
    )
    assert channel.check_message(message(template="a.j2")) == [
        "silent.wav: 无声 silent: integrated loudness -inf LUFS (below -50)"
    ]
    (broken,) = channel.check_message(message(template="b.j2"))
    assert broken.startswith("broken.mp3: 文件损坏 corrupt file: ")
    assert channel.check_message(message(template="c.j2")) == [
        "long.wav: 太长 too long: 12.0 s, over the 10 s limit"
    ]
    assert channel.check_message(message(template="d.j2")) == [
        "录音文件不存在 recording not found: x.mp3"
    ]


# -- validate ------------------------------------------------------------------------------


def test_text_the_engine_cannot_speak_is_reported(make: Make) -> None:
    channel = make()
    assert channel.check_message(message()) == []
    assert channel.check_message(message("扫码下载APP，访问www.fz.cn👍")) == [
        "无法朗读的拉丁字母 Latin letters cannot be spoken in Chinese: 'www', 'fz', 'cn'"
        " (write it in Chinese)",
        "无法朗读的符号或表情 symbols or emoji cannot be spoken: '👍' (removed)",
    ]
    long_script = "请注意防范电信网络诈骗。" * 60  # 720 characters, about four minutes
    (problem,) = make(max_item_seconds=120).check_message(message(long_script))
    assert problem.startswith("广播稿太长 the script runs about 24")
    assert problem.endswith("s (estimated), over max_item_seconds 120")


def sends(*times: str, target: str = "hexi-speaker", text: str = SCRIPT, n: int = 1) -> list:
    out = []
    for t in times:
        hour, minute = map(int, t.split(":"))
        at = dt.datetime(2026, 3, 3, hour, minute, tzinfo=TZ)
        out += [ScheduledSend(at, "daily", target, "河西村大喇叭", message(text))] * n
    return out


def test_a_good_schedule_passes(make: Make) -> None:
    channel = make(lead_minutes=10)
    assert channel.check_schedule(sends("06:50", "18:20")) == []


def test_quiet_hours_are_enforced_at_validate(make: Make) -> None:
    channel = make(lead_minutes=10)  # default quiet hours 21:00-06:30
    assert channel.check_schedule(sends("21:20", "06:00", "12:00")) == [
        "规则 rule 'daily', 目标 target 'hexi-speaker' (河西村大喇叭), 06:10–06:10:"
        " 落入免打扰时段 falls in quiet hours 21:00-06:30",
        "规则 rule 'daily', 目标 target 'hexi-speaker' (河西村大喇叭), 21:30–21:30:"
        " 落入免打扰时段 falls in quiet hours 21:00-06:30",
    ]
    # a programme that runs into the quiet hours is caught too
    (late,) = make(lead_minutes=0).check_schedule(sends("20:59", n=5))
    assert "20:59–21:00" in late and "falls in quiet hours" in late


def test_a_gate_speaker_loop_must_end_before_quiet_hours(make: Make) -> None:
    ok = make(lead_minutes=0, loops={"gate": {"until": "20:00", "gap_seconds": 300}})
    assert ok.check_schedule(sends("08:00", target="gate")) == []
    late = make(lead_minutes=0, loops={"gate": {"until": "22:30"}})
    (problem,) = late.check_schedule(sends("08:00", target="gate"))
    assert problem.endswith("08:00–22:30: 落入免打扰时段 falls in quiet hours 21:00-06:30")


def test_the_programme_length_is_checked_per_slot(make: Make) -> None:
    channel = make(lead_minutes=0, max_programme_seconds=60, plays=2)
    # three items in one slot (a 村村响 playlist), each about 28 s, played twice
    (problem,) = channel.check_schedule(sends("07:00", n=3))
    assert problem.startswith(
        "规则 rule 'daily', 目标 target 'hexi-speaker' (河西村大喇叭), 07:00:"
    )
    assert "节目太长 programme runs about 1" in problem
    assert problem.endswith("over max_programme_seconds 60")
    assert make(lead_minutes=0, max_programme_seconds=60).check_schedule(sends("07:00")) == []


def test_bad_settings_are_refused_with_the_key() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        LoudspeakerSettings.model_validate(
            {"quiet_hours": "21-6", "mp3": {"bitrate_kbps": 65}, "loops": {"g": {"until": "8pm"}}}
        )
    locs = sorted(".".join(map(str, e["loc"])) for e in caught.value.errors())
    assert locs == ["loops.g.until", "mp3.bitrate_kbps", "quiet_hours"]


def test_a_missing_engine_is_a_clear_check_not_a_traceback(
    make: Make, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no espeak-ng on the PATH
    assert make().check() == (
        "未安装语音合成引擎 TTS engine espeak-ng not found (espeak-ng): install it with "
        "`apt-get install espeak-ng（或运行 or run scripts/bootstrap.sh）`"
    )
    result = make().send([ls_delivery()])[0]
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONFIG)
    assert "apt-get install espeak-ng" in result.reason


# -- bundle: no platform API ---------------------------------------------------------------


def test_a_bundle_holds_the_mp3_playlist_and_manifest(make: Make, tmp_path: Path) -> None:
    channel = make(lead_minutes=15, loops={"gate": {"until": "20:00", "gap_seconds": 600}})
    first, second, gate = (
        ls_delivery(1),
        ls_delivery(2, SCRIPT + "谢谢。"),
        ls_delivery(3, target="gate"),
    )
    results = channel.send([first, second, gate])
    assert [r.status for r in results] == [Status.ACCEPTED] * 3
    folder = tmp_path / "data" / "bundle" / "hexi-speaker"
    manifest = json.loads((folder / "schedule.json").read_text("utf-8"))
    assert manifest["ebm_class"] == 5
    entries = manifest["entries"]
    assert [e["key"] for e in entries] == sorted([first.key, second.key])
    air = first.scheduled_at + dt.timedelta(minutes=15)
    entry = next(e for e in entries if e["key"] == first.key)
    assert entry["start"] == air.isoformat() and entry["slot"] == f"{air:%H:%M}"
    assert entry["valid_from"] == entry["valid_until"] == air.date().isoformat()
    assert abs(entry["lufs"] + 16) <= 0.5 and entry["true_peak_dbtp"] <= -1.0
    assert 10 < entry["seconds"] < 40
    mp3 = folder / entry["file"]
    assert mp3.is_file() and decode(mp3).seconds == pytest.approx(entry["seconds"], abs=0.1)
    playlist = (folder / "playlist.m3u8").read_text("utf-8").splitlines()
    assert playlist[0] == "#EXTM3U"
    assert playlist[1] == f"#EXTINF:{round(entry['seconds'])},乡亲们请注意"
    assert len(playlist) == 5
    gate_entry = json.loads((tmp_path / "data/bundle/gate/schedule.json").read_text())["entries"][0]
    assert (gate_entry["loop_until"], gate_entry["gap_seconds"]) == ("20:00", 600)
    # the same delivery sent again (a retry) replaces its entry: never played twice
    assert channel.send([first])[0].status is Status.ACCEPTED
    again = json.loads((folder / "schedule.json").read_text("utf-8"))["entries"]
    assert sorted(e["key"] for e in again) == sorted([first.key, second.key])
    assert channel.reconcile([first]) == [dataclasses.replace(results[0], provider_id=None)]


# -- the HTTP bridge ------------------------------------------------------------------------


def test_the_bridge_uploads_then_creates_and_enables_the_task(
    make: Make, platform: BroadcastPlatformFake
) -> None:
    channel = bridged(make, platform, zones={"hexi-speaker": ["zone-7"]})
    d = ls_delivery()
    (result,) = channel.send([d])
    assert (result.status, result.provider_id) == (Status.ACCEPTED, "t-0001")
    assert [r.path for r in platform.requests] == [
        "/user/gtoken",
        "/user/uploadfile",
        "/user/add_task",
        "/user/enabletask",
    ]
    (task,) = platform.tasks.values()
    assert task["enabled"] is True and task["external_id"] == d.key
    assert task["zones"] == ["zone-7"] and task["ebm_class"] == 5
    (data,) = platform.files.values()
    assert mp3_info(data).bitrate_kbps == 64
    # the password went to the login form only, never into a header or the task
    assert "pw-Canary-3" not in json.dumps(task) and "pw-Canary-3" not in repr(channel.settings)


def test_a_malformed_upload_is_refused_by_the_platform(
    make: Make, platform: BroadcastPlatformFake, tmp_path: Path
) -> None:
    channel = bridged(make, platform)
    d = ls_delivery()
    prepared = channel.prepare(d.message, FileArtefactStore(tmp_path / "a"))
    wav = tmp_path / "not-an.mp3"
    wav.write_bytes(wav_bytes(tone(1.0)))  # a WAV under an .mp3 name
    bad = dataclasses.replace(prepared.artefacts[0], path=wav)
    entry = channel.entry(d, prepared.artefacts[0])
    result = channel.platform().deliver(d, entry, bad.path)
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONTENT)
    assert result.reason == "平台拒绝 platform refused (bad_upload): 不是 MP3 文件 not an MP3"
    assert platform.tasks == {}


def test_an_expired_token_logs_in_again_once(make: Make, platform: BroadcastPlatformFake) -> None:
    channel = bridged(make, platform)
    assert channel.send([ls_delivery(1)])[0].status is Status.ACCEPTED
    platform.expire_token()
    assert channel.send([ls_delivery(2)])[0].status is Status.ACCEPTED
    assert platform.logins == 2


def test_a_wrong_password_is_a_config_failure(make: Make, platform: BroadcastPlatformFake) -> None:
    platform.password = "other"
    (result,) = bridged(make, platform).send([ls_delivery()])
    assert (result.status, result.error_class) == (Status.FAILED, ErrorClass.CONFIG)
    assert result.reason == (
        "登录被拒绝 the platform refused our login: 平台拒绝 platform refused (login_failed):"
        " 用户名或密码错误"
    )


def test_busy_is_throttled_and_5xx_on_upload_is_transient(
    make: Make, platform: BroadcastPlatformFake
) -> None:
    channel = bridged(make, platform)
    platform.busy = True
    (busy,) = channel.send([ls_delivery(1)])
    assert (busy.error_class, busy.retry_after) == (ErrorClass.THROTTLED, 120.0)
    platform.busy = False
    platform.upload_status = 502
    (bad_gateway,) = channel.send([ls_delivery(2)])
    assert (bad_gateway.status, bad_gateway.error_class) == (Status.FAILED, ErrorClass.TRANSIENT)
    assert platform.tasks == {}


def test_a_lost_task_answer_is_unknown_then_found_by_our_key(
    make: Make, platform: BroadcastPlatformFake
) -> None:
    channel = bridged(make, platform)
    d = ls_delivery()
    platform.hang_on_task = True
    (result,) = channel.send([d])
    assert (result.status, result.error_class) == (Status.UNKNOWN, ErrorClass.UNKNOWN)
    platform.hang_on_task = False
    (found,) = channel.reconcile([d])
    assert (found.status, found.provider_id) == (Status.ACCEPTED, "t-0001")
    assert len(platform.tasks) == 1 and platform.tasks["t-0001"]["enabled"] is True
    # a key the platform never saw is safe to send again
    (absent,) = channel.reconcile([ls_delivery(2)])
    assert (absent.status, absent.error_class) == (Status.FAILED, ErrorClass.TRANSIENT)


def test_a_5xx_after_the_task_is_unknown_not_retried(
    make: Make, platform: BroadcastPlatformFake
) -> None:
    platform.task_status = 503
    (result,) = bridged(make, platform).send([ls_delivery()])
    assert result.status is Status.UNKNOWN and len(platform.tasks) == 1


def test_play_reports_are_the_late_outcome(make: Make, platform: BroadcastPlatformFake) -> None:
    channel = bridged(make, platform)
    played, offline, waiting = ls_delivery(1), ls_delivery(2), ls_delivery(3)
    results = channel.send([played, offline, waiting])
    ids = [r.provider_id for r in results]
    platform.play_reports[ids[0]] = {"played": [{"terminal": "T1", "at": "07:00:03"}]}
    platform.play_reports[ids[1]] = {"failed": [{"terminal": "T2", "reason": "offline"}]}
    sent = [
        dataclasses.replace(d, provider_id=i)
        for d, i in zip([played, offline, waiting], ids, strict=True)
    ]
    outcomes = {r.key: r for r in channel.reconcile(sent)}
    assert outcomes[played.key].status is Status.DELIVERED
    assert (outcomes[offline.key].status, outcomes[offline.key].error_class) == (
        Status.FAILED,
        ErrorClass.RECIPIENT,
    )
    assert outcomes[offline.key].reason == "未播出 not played: offline (1 terminals)"
    assert waiting.key not in outcomes  # nothing reported yet: asked again later
    assert channel.capabilities.late_outcomes


def test_the_fake_platform_refuses_what_a_platform_refuses(
    platform: BroadcastPlatformFake, tmp_path: Path
) -> None:
    """The fake itself: a wrong checksum, a missing file part, an emergency class."""
    import requests

    with requests.Session() as s:
        token = s.post(
            f"{platform.url}/user/gtoken", data={"username": "county", "password": "pw-Canary-3"}
        ).json()["token"]
        s.headers["X-Token"] = token
        mp3 = b"ID3" + bytes(64)
        wrong_sum = s.post(
            f"{platform.url}/user/uploadfile",
            files={"file": ("a.mp3", mp3, "audio/mpeg")},
            data={"sha256": "0" * 64},
        ).json()
        assert wrong_sum == {
            "res": False,
            "code": "bad_upload",
            "msg": "校验和不符 sha256 mismatch",
        }
        no_file = s.post(f"{platform.url}/user/uploadfile", data={"sha256": "0" * 64}).json()
        assert no_file["code"] == "bad_upload"
        emergency = s.post(
            f"{platform.url}/user/add_task",
            json={
                "file_id": "x",
                "start": "2026-03-03T07:00:00+08:00",
                "weekdays": "1111111",
                "ebm_class": 1,
                "external_id": "k",
            },
        ).json()
        assert emergency["msg"] == "字段错误 bad fields: file_id, ebm_class"
    assert platform.files == {} and platform.tasks == {}


# -- through the engine ---------------------------------------------------------------------


def test_the_engine_logs_the_mp3_hash_and_never_airs_twice(
    tmp_path: Path, platform: BroadcastPlatformFake
) -> None:
    """Fire a loudspeaker rule through the real dispatcher: the platform gets one task per
    speaker, the log holds each delivery with the MP3's sha256, firing again sends nothing."""
    from broadcaster.engine.clock import VirtualClock
    from broadcaster.log import DeliveryLog
    from broadcaster.model.plan import Planner
    from tests.engine.helpers import DAY, TOKEN_ENV, at, load, write_engine_campaign

    path = write_engine_campaign(tmp_path / "c", "http://127.0.0.1:9")
    config = json.loads(path.read_text("utf-8"))
    config["targets"][0]["children"] += [
        {"id": "s1", "name": "一村大喇叭", "tags": ["speaker"]},
        {"id": "s2", "name": "二村大喇叭", "tags": ["speaker"]},
    ]
    config["channels"]["speakers"] = {
        "type": "loudspeaker",
        "kind": "loudspeaker",
        "settings": {
            "chime": {"before": False, "after": False},
            "speed": 300,  # the built-in scripts run a minute at 150: keep the test quick
            "mp3": {"bitrate_kbps": 32, "sample_rate": 22050},
            "platform": {
                "base_url": platform.url,
                "username": "county",
                "password": {"env": "TEST_SECRET_BROADCAST"},
                "timeout": [2, 5],
            },
        },
    }
    config["rules"] = [
        {
            "id": "speakers",
            "channels": ["speakers"],
            "targets": {"tags": ["speaker"]},
            "when": {"dates": [DAY.isoformat()], "at": "06:45"},
        },
    ]
    path.write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    app = load(path, environ={**TOKEN_ENV, "TEST_SECRET_BROADCAST": "pw-Canary-3"})
    store = DeliveryLog.open(f"sqlite:///{tmp_path}/log.sqlite3", hash_key=b"k")
    dispatcher = app.dispatcher(
        store, b"k", clock=VirtualClock(at(2026, 3, 3, 6, 45)), heartbeat=False
    )
    try:
        spec = app.campaign.rule("speakers")
        occurrence = next(
            Planner(app.campaign).rule_occurrences(spec, at(2026, 3, 3), at(2026, 3, 4))
        )
        assert dispatcher.fire(occurrence).wait().counts == {"accepted": 2}
        rows = store.deliveries(channel="speakers")
        assert {r.status for r in rows} == {Status.ACCEPTED}
        uploaded = {hashlib.sha256(data).hexdigest() for data in platform.files.values()}
        tasks = {t["external_id"]: t for t in platform.tasks.values()}
        for row in rows:  # each speaker's task airs the file whose hash the log holds
            payload = store.payload(row.payload_sha256)  # type: ignore[arg-type]
            assert payload is not None
            (artefact,) = payload["artefacts"]
            assert artefact["name"] == "speech.mp3"
            assert artefact["sha256"] == tasks[row.key]["sha256"] and artefact["sha256"] in uploaded
        assert (
            sorted(t["start"] for t in platform.tasks.values()) == ["2026-03-03T07:00:00+08:00"] * 2
        )
        dispatcher.fire(occurrence).wait()
        assert len(platform.tasks) == 2  # firing again airs nothing twice
    finally:
        dispatcher.close()
        store.close()
