"""Decode and measure audio the way a listener's terminal would play it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from broadcaster.audio.engines import Speech


def decode(data: bytes | Path, rate: int = 44100) -> Speech:
    """Decode an MP3 (or anything ffmpeg reads) to mono PCM, independently of the product."""
    source = data.read_bytes() if isinstance(data, Path) else data
    done = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
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
        input=source,
        capture_output=True,
        check=True,
    )
    return Speech(np.frombuffer(done.stdout, "<i2").astype(np.float32) / 32768, rate)


def probe(data: bytes) -> dict[str, str]:
    """ffprobe's view of a file: codec, sample rate, channels, bit rate, title tag."""
    done = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,sample_rate,channels,bit_rate:format_tags=title",
            "-of",
            "default=noprint_wrappers=1",
            "pipe:0",
        ],
        input=data,
        capture_output=True,
        check=True,
    )
    out = {}
    for line in done.stdout.decode().splitlines():
        key, _, value = line.partition("=")
        out[key.removeprefix("TAG:")] = value
    return out


def tone(seconds: float, rate: int = 44100, level: float = 0.3, freq: float = 440.0) -> Speech:
    t = np.arange(int(seconds * rate)) / rate
    # a syllable-like on/off envelope, so the gated loudness has speech-like blocks
    envelope = 0.55 + 0.45 * np.sin(2 * np.pi * 2.5 * t)
    return Speech((level * envelope * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate)
