"""From speech or a supplied recording to a broadcast MP3, measured.

The chain: optional chime before and after, resampling to the output rate, loudness
normalised to an integrated target (default −16 LUFS, ITU-R BS.1770 via `pyloudnorm`)
under a true-peak ceiling (default −1 dBTP, measured on a 4× oversampled signal) by a
look-ahead limiter, then MP3 at a constant bit rate (64 kbit/s mono by default, LAME via
`lameenc`) with ID3 tags (`mutagen`) that carry the title and the measured figures, so a
file describes itself (duration, loudness, true peak) without being decoded again.

Supplied recordings (MP3 or WAV) are decoded with ffmpeg and checked first: corrupt,
wrong format, too long, silent or clipped ones are refused with the measured reason.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from broadcaster.audio.engines import Speech, read_wav
from broadcaster.errors import AudioError, RecordingRejectedError, SpeechEngineMissingError

__all__ = [
    "FFMPEG_INSTALL",
    "Measured",
    "Mp3Info",
    "Settings",
    "chime",
    "decode_recording",
    "encode_mp3",
    "loudness",
    "master",
    "mp3_info",
    "render",
    "true_peak",
]

FFMPEG_INSTALL = "apt-get install ffmpeg（或运行 or run scripts/bootstrap.sh）"
PIPELINE_VERSION = "1"  # bump when the chain changes: every cached file is made again


@dataclass(frozen=True)
class Settings:
    """What shapes the output file; every field is part of the cache key."""

    target_lufs: float = -16.0
    true_peak_dbtp: float = -1.0
    bitrate_kbps: int = 64
    sample_rate: int = 44100
    chime_before: bool = True
    chime_after: bool = True
    max_seconds: float = 300.0  # longest single item (speech or recording)
    # internal margin below the ceiling: MP3 encoding can raise peaks a little
    peak_margin_db: float = 1.0
    chime_file: str | None = field(default=None)

    def key(self) -> dict[str, object]:
        return {**self.__dict__, "pipeline": PIPELINE_VERSION}


@dataclass(frozen=True)
class Measured:
    """What was measured on the processed signal."""

    seconds: float
    lufs: float
    true_peak_dbtp: float
    sample_rate: int


# -- measuring ---------------------------------------------------------------------------------


def loudness(samples: np.ndarray, rate: int) -> float:
    """Integrated loudness in LUFS (ITU-R BS.1770-4); -inf for silence or < 0.4 s."""
    import pyloudnorm

    if len(samples) < int(0.4 * rate) + 1:
        return -math.inf
    value = float(pyloudnorm.Meter(rate).integrated_loudness(samples.astype(np.float64)))
    return value


def true_peak(samples: np.ndarray, rate: int) -> float:
    """True peak in dBTP: the sample peak of the signal oversampled 4× (BS.1770 annex 2)."""
    from scipy.signal import resample_poly

    if not len(samples):
        return -math.inf
    over = resample_poly(samples.astype(np.float32), 4, 1)
    peak = float(np.max(np.abs(over)))
    return 20 * math.log10(peak) if peak > 0 else -math.inf


# -- building blocks ---------------------------------------------------------------------------


def chime(rate: int) -> np.ndarray:
    """A two-tone 'ding-dong' of 1.2 s, made here (no file needed)."""
    out = []
    for freq, seconds in ((784.0, 0.55), (523.25, 0.65)):  # G5, C5
        t = np.arange(int(seconds * rate)) / rate
        tone = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(2 * np.pi * 2 * freq * t)
        envelope = np.exp(-3.5 * t) * np.minimum(1.0, t / 0.005)
        out.append((tone * envelope * 0.5).astype(np.float32))
    return np.concatenate(out)


def _resample(speech: Speech, rate: int) -> np.ndarray:
    if speech.rate == rate:
        return speech.samples.astype(np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(speech.rate, rate)
    return resample_poly(speech.samples, rate // g, speech.rate // g).astype(np.float32)


def _limit(samples: np.ndarray, ceiling: float, rate: int) -> np.ndarray:
    """Look-ahead peak limiter: never above `ceiling` (linear) at any sample.

    The gain each sample needs is spread by a centred minimum filter, then smoothed by a
    shorter centred average: the average of values that are all below a peak's own gain
    is still below it, so every peak is held, with 10 ms of attack and release.
    """
    from scipy.ndimage import minimum_filter1d, uniform_filter1d

    peak = np.abs(samples)
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-9))
    if need.min() >= 1.0:
        return samples
    width = max(3, int(0.010 * rate))
    gain = minimum_filter1d(need, size=2 * width + 1, mode="nearest")
    gain = uniform_filter1d(gain, size=width, mode="nearest")
    return (samples * np.minimum(gain, need)).astype(np.float32)


def master(samples: np.ndarray, rate: int, settings: Settings) -> tuple[np.ndarray, Measured]:
    """Normalise to the loudness target under the true-peak ceiling, and measure the result.

    Gain to the target, limit, measure again and correct the gain for what the limiter
    took (at most three passes); a last true-peak measurement scales down whatever
    inter-sample peak the limiter could not see. The figures returned are measured on the
    final signal, not assumed.
    """
    ceiling_db = settings.true_peak_dbtp - settings.peak_margin_db
    ceiling = 10 ** (ceiling_db / 20)
    samples = _band_limit(samples, rate)
    current = loudness(samples, rate)
    if not math.isfinite(current):
        raise AudioError("音频无声，无法调整响度 the audio is silent: loudness cannot be set")
    gain_db = settings.target_lufs - current
    out = samples
    measured = current
    for _ in range(3):
        out = _limit((samples * 10 ** (gain_db / 20)).astype(np.float32), ceiling, rate)
        measured = loudness(out, rate)
        error = settings.target_lufs - measured
        if abs(error) < 0.25:
            break
        gain_db += error  # the limiter took some loudness: ask for more gain
    tp = true_peak(out, rate)
    if tp > ceiling_db:
        out = (out * 10 ** ((ceiling_db - tp) / 20)).astype(np.float32)
        measured += ceiling_db - tp
        tp = ceiling_db
    return out, Measured(len(out) / rate, measured, tp, rate)


def _band_limit(samples: np.ndarray, rate: int) -> np.ndarray:
    """Low-pass at 10 kHz, as the 64 kbit/s encoder will: the loudness measured here is then
    the loudness of the decoded file."""
    from scipy.signal import butter, sosfilt

    cutoff = min(10_000.0, rate * 0.45)
    sos = butter(6, cutoff, btype="low", fs=rate, output="sos")
    return sosfilt(sos, samples).astype(np.float32)


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise SpeechEngineMissingError(
            f"未安装 ffmpeg, 无法解码录音 ffmpeg not found: install it with `{FFMPEG_INSTALL}`"
        )
    return path


def decode_recording(data: bytes, rate: int, *, name: str = "recording") -> Speech:
    """A supplied MP3 or WAV as mono PCM at `rate`; refuses other formats and corrupt files."""
    is_wav = data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    is_mp3 = data[:3] == b"ID3" or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
    if not (is_wav or is_mp3):
        raise RecordingRejectedError(
            f"{name}: 格式不对 wrong format: expected MP3 or WAV, got {data[:4]!r}…"
        )
    done = subprocess.run(
        [
            _ffmpeg(),
            "-v",
            "error",
            "-xerror",
            "-i",
            "pipe:0",
            "-f",
            "s16le",
            "-ac",
            "1",
            "-ar",
            str(rate),
            "pipe:1",
        ],
        input=data,
        capture_output=True,
        timeout=120,
    )
    error = done.stderr.decode("utf-8", "replace").strip().splitlines()
    if done.returncode != 0 or not done.stdout:
        raise RecordingRejectedError(
            f"{name}: 文件损坏 corrupt file: {error[-1] if error else 'no audio decoded'}"
        )
    samples = np.frombuffer(done.stdout, dtype="<i2").astype(np.float32) / 32768.0
    return Speech(samples, rate)


def check_recording(speech: Speech, settings: Settings, *, name: str = "recording") -> None:
    """Refuse a recording that is too long, silent or clipped, saying what was measured."""
    seconds = speech.seconds
    if seconds > settings.max_seconds:
        raise RecordingRejectedError(
            f"{name}: 太长 too long: {seconds:.1f} s, over the {settings.max_seconds:g} s limit"
        )
    if seconds < 0.5:
        raise RecordingRejectedError(f"{name}: 太短 too short: {seconds:.2f} s")
    level = loudness(speech.samples, speech.rate)
    if not math.isfinite(level) or level < -50:
        raise RecordingRejectedError(
            f"{name}: 无声 silent: integrated loudness {level:.1f} LUFS (below -50)"
        )
    full = np.abs(speech.samples) >= 0.999
    # clipping: runs of three or more samples at full scale
    runs = int(np.count_nonzero(full[2:] & full[1:-1] & full[:-2]))
    share = runs / len(speech.samples)
    if share > 0.0005:
        raise RecordingRejectedError(
            f"{name}: 削波失真 clipped: {runs} samples in runs at full scale"
            f" ({share:.2%} of the recording)"
        )


def encode_mp3(
    samples: np.ndarray,
    rate: int,
    settings: Settings,
    *,
    title: str,
    measured: Measured | None = None,
) -> bytes:
    """CBR mono MP3 with ID3v2 tags: the title, and the measured figures as TXXX frames."""
    import lameenc
    from mutagen.id3 import ID3, TIT2, TPE1, TXXX

    encoder = lameenc.Encoder()
    encoder.set_bit_rate(settings.bitrate_kbps)
    encoder.set_in_sample_rate(rate)
    encoder.set_out_sample_rate(rate)
    encoder.set_channels(1)
    encoder.set_quality(5)
    pcm = (np.clip(samples, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()
    audio = bytes(encoder.encode(pcm) + encoder.flush())
    tags = ID3()
    tags.add(TIT2(encoding=3, text=title))
    tags.add(TPE1(encoding=3, text="broadcaster"))
    if measured is not None:
        for key, value in (
            ("duration", f"{measured.seconds:.3f}"),
            ("lufs", f"{measured.lufs:.2f}"),
            ("true_peak_dbtp", f"{measured.true_peak_dbtp:.2f}"),
        ):
            tags.add(TXXX(encoding=3, desc=key, text=value))
    head = io.BytesIO()
    tags.save(head, v2_version=3, padding=lambda info: 0)
    return head.getvalue() + audio


@dataclass(frozen=True)
class Mp3Info:
    """What one of our MP3s says about itself (header and ID3 tags)."""

    title: str
    seconds: float
    lufs: float | None
    true_peak_dbtp: float | None
    bitrate_kbps: int
    sample_rate: int
    channels: int


def mp3_info(path: Path | bytes) -> Mp3Info:
    """Title, duration, bit rate, sample rate and the measured figures of one of our MP3s."""
    from mutagen.mp3 import MP3

    audio: Any = MP3(io.BytesIO(path) if isinstance(path, bytes) else path)
    tags: Any = audio.tags or {}
    figures = {
        frame.desc: float(frame.text[0]) for key, frame in tags.items() if key.startswith("TXXX:")
    }
    title = tags.get("TIT2")
    return Mp3Info(
        title=str(title.text[0]) if title else "",
        seconds=figures.get("duration", float(audio.info.length)),
        lufs=figures.get("lufs"),
        true_peak_dbtp=figures.get("true_peak_dbtp"),
        bitrate_kbps=int(audio.info.bitrate) // 1000,
        sample_rate=int(audio.info.sample_rate),
        channels=int(audio.info.channels),
    )


def _silence(seconds: float, rate: int) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.float32)


def render(speech: Speech, settings: Settings, *, title: str) -> tuple[bytes, Measured]:
    """Chime, speech, chime; normalised and encoded: the MP3 bytes and what was measured."""
    rate = settings.sample_rate
    body = _resample(speech, rate)
    bell = chime(rate)
    if settings.chime_file:
        data = Path(settings.chime_file).read_bytes()
        bell = _resample(decode_recording(data, rate, name=settings.chime_file), rate)
    parts = [_silence(0.2, rate)]
    if settings.chime_before:
        parts += [bell, _silence(0.4, rate)]
    parts.append(body)
    if settings.chime_after:
        parts += [_silence(0.4, rate), bell]
    parts.append(_silence(0.3, rate))
    mastered, measured = master(np.concatenate(parts), rate, settings)
    return encode_mp3(mastered, rate, settings, title=title, measured=measured), measured


def wav_bytes(speech: Speech) -> bytes:
    """16-bit mono WAV of some PCM (tests, previews)."""
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(speech.rate)
        w.writeframes((np.clip(speech.samples, -1, 32767 / 32768) * 32768).astype("<i2").tobytes())
    return buffer.getvalue()


__all__ += ["check_recording", "read_wav", "wav_bytes"]
