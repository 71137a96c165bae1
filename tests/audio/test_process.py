"""Real speech, processed and encoded, then decoded and measured independently."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from broadcaster.audio.engines import EspeakEngine, Speech
from broadcaster.audio.normalise import normalise
from broadcaster.audio.process import (
    Settings,
    check_recording,
    decode_recording,
    loudness,
    mp3_info,
    render,
    true_peak,
    wav_bytes,
)
from broadcaster.errors import RecordingRejectedError, SpeechEngineMissingError
from tests.audio.helpers import decode, probe, tone

SCRIPT = "乡亲们请注意！陌生电话让您转账，一律是诈骗。请拨打反诈专线96110，或者报警电话110。"


@pytest.fixture(scope="module")
def speech() -> Speech:
    return EspeakEngine().synthesise(normalise(SCRIPT).text)


@pytest.fixture(scope="module")
def rendered(speech: Speech) -> tuple[bytes, object]:
    return render(speech, Settings(), title="反诈提醒·测试")


def test_espeak_makes_real_speech(speech: Speech) -> None:
    assert speech.rate == 22050
    # about 3 characters a second at -s 150: 40 spoken characters take 9 to 20 seconds
    assert 9 < speech.seconds < 20
    assert loudness(speech.samples, speech.rate) > -35  # not silent


def test_the_mp3_is_cbr_64k_mono_with_a_title(rendered: tuple[bytes, object]) -> None:
    mp3, _ = rendered
    info = probe(mp3)
    assert info["codec_name"] == "mp3"
    assert info["sample_rate"] == "44100"
    assert info["channels"] == "1"
    assert info["bit_rate"] == "64000"
    assert info["title"] == "反诈提醒·测试"
    # constant bit rate: the size is the bit rate times the duration (ID3 head aside)
    decoded = decode(mp3)
    assert abs(len(mp3) - 64000 / 8 * decoded.seconds) < 4000


def test_decoded_loudness_and_true_peak_meet_the_targets(
    speech: Speech, rendered: tuple[bytes, object]
) -> None:
    mp3, _measured = rendered
    decoded = decode(mp3)
    # duration: the speech plus two chimes (1.2 s each) and short gaps
    assert speech.seconds + 2.4 < decoded.seconds < speech.seconds + 4.5
    lufs = loudness(decoded.samples, decoded.rate)
    assert abs(lufs - (-16.0)) <= 1.0, lufs
    assert true_peak(decoded.samples, decoded.rate) < -1.0
    # what the file says about itself was measured, and agrees with the independent decode
    info = mp3_info(mp3)
    assert info.lufs == pytest.approx(lufs, abs=1.0)
    assert info.true_peak_dbtp is not None and info.true_peak_dbtp <= -1.0
    assert info.seconds == pytest.approx(decoded.seconds, abs=0.1)
    assert (info.bitrate_kbps, info.sample_rate, info.channels) == (64, 44100, 1)


def test_another_target_is_met_too(speech: Speech) -> None:
    settings = Settings(
        target_lufs=-19.0,
        true_peak_dbtp=-2.0,
        chime_before=False,
        chime_after=False,
        bitrate_kbps=32,
        sample_rate=22050,
    )
    mp3, _measured = render(speech, settings, title="t")
    decoded = decode(mp3, 22050)
    assert abs(loudness(decoded.samples, 22050) - (-19.0)) <= 1.0
    assert true_peak(decoded.samples, 22050) < -2.0
    assert probe(mp3)["bit_rate"] == "32000"
    assert decoded.seconds == pytest.approx(speech.seconds + 0.5, abs=0.2)  # no chimes


def test_the_same_input_makes_the_same_bytes(speech: Speech) -> None:
    settings = Settings(chime_before=False, chime_after=False)
    assert render(speech, settings, title="a")[0] == render(speech, settings, title="a")[0]


# -- supplied recordings -----------------------------------------------------------------


def test_a_good_recording_goes_through_the_same_chain() -> None:
    recording = decode_recording(wav_bytes(tone(6.0, level=0.05)), 44100, name="cadre.wav")
    check_recording(recording, Settings(), name="cadre.wav")
    mp3, _measured = render(recording, Settings(), title="村干部录音")
    decoded = decode(mp3)
    assert abs(loudness(decoded.samples, 44100) - (-16.0)) <= 1.0
    assert true_peak(decoded.samples, 44100) < -1.0


def test_an_mp3_recording_is_decoded(rendered: tuple[bytes, object]) -> None:
    recording = decode_recording(rendered[0], 44100, name="office.mp3")
    check_recording(recording, Settings())
    assert recording.seconds > 10


def test_a_silent_recording_is_refused_with_its_level() -> None:
    silent = Speech(np.zeros(44100 * 5, dtype=np.float32), 44100)
    with pytest.raises(RecordingRejectedError) as caught:
        check_recording(decode_recording(wav_bytes(silent), 44100), Settings(), name="a.wav")
    assert str(caught.value) == "a.wav: 无声 silent: integrated loudness -inf LUFS (below -50)"
    hiss = tone(5.0, level=0.003)
    with pytest.raises(RecordingRejectedError, match=r"无声 silent: integrated loudness -5\d\.\d"):
        check_recording(hiss, Settings(), name="b.wav")


def test_a_clipped_recording_is_refused_with_the_share_clipped() -> None:
    loud = tone(5.0, level=3.0)  # driven far past full scale, then clipped by the WAV
    with pytest.raises(RecordingRejectedError, match=r"c.wav: 削波失真 clipped: \d+ samples"):
        check_recording(decode_recording(wav_bytes(loud), 44100), Settings(), name="c.wav")


def test_a_too_long_recording_is_refused_with_its_length() -> None:
    with pytest.raises(RecordingRejectedError) as caught:
        check_recording(tone(12.0), Settings(max_seconds=10), name="d.wav")
    assert str(caught.value) == "d.wav: 太长 too long: 12.0 s, over the 10 s limit"


def test_a_corrupt_or_foreign_file_is_refused() -> None:
    with pytest.raises(RecordingRejectedError) as caught:
        decode_recording(b"OggS\x00\x02 an ogg file", 44100, name="e.ogg")
    assert str(caught.value) == "e.ogg: 格式不对 wrong format: expected MP3 or WAV, got b'OggS'…"
    broken = wav_bytes(tone(2.0))[:30]  # a WAV header cut off before its data
    with pytest.raises(RecordingRejectedError, match=r"f.wav: 文件损坏 corrupt file: "):
        decode_recording(broken, 44100, name="f.wav")
    garbage = b"ID3\x03\x00\x00\x00\x00\x00\x00" + bytes(range(256)) * 20
    with pytest.raises(RecordingRejectedError, match=r"g.mp3: 文件损坏 corrupt file: "):
        decode_recording(garbage, 44100, name="g.mp3")


def test_a_missing_engine_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = EspeakEngine(binary="espeak-ng-not-installed")
    assert engine.check() == (
        "未安装语音合成引擎 TTS engine espeak-ng not found (espeak-ng-not-installed): "
        "install it with `apt-get install espeak-ng（或运行 or run scripts/bootstrap.sh）`"
    )
    with pytest.raises(SpeechEngineMissingError, match="apt-get install espeak-ng"):
        engine.synthesise("你好")
    assert shutil.which("espeak-ng")  # the real one is installed here (scripts/bootstrap.sh)
    assert math.isfinite(loudness(tone(1.0).samples, 44100))
