"""Text-to-speech engines behind one small interface.

An engine turns normalised Chinese text into mono PCM. `identity()` names the engine,
its version and its voice settings: it is part of every cache key, so a new engine
version or voice makes new files. The default, `espeak`, is Debian's espeak-ng with
the Mandarin voice `cmn-latn-pinyin` (`cmn` reads many Han characters as English-spelt
pinyin), offline. Cloud engines (`aliyun`, `tencent`) live in `broadcaster.audio.cloud`.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from broadcaster.errors import AudioError, SpeechEngineMissingError

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ESPEAK_INSTALL", "EspeakEngine", "Speech", "SpeechEngine", "read_wav"]

ESPEAK_INSTALL = "apt-get install espeak-ng（或运行 or run scripts/bootstrap.sh）"


@dataclass(frozen=True)
class Speech:
    """Mono PCM: float32 samples in [-1, 1] at `rate` Hz."""

    samples: np.ndarray
    rate: int

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


@runtime_checkable
class SpeechEngine(Protocol):
    """A text-to-speech engine."""

    name: str  # "espeak", "aliyun", "tencent"

    def identity(self) -> str: ...  # engine, version, voice, speed: part of the cache key

    def check(self) -> str | None: ...  # None when ready, else why not (with the install command)

    def synthesise(self, text: str) -> Speech: ...  # normalised text in, PCM out


def read_wav(data: bytes) -> Speech:
    """PCM from a 16-bit WAV; tolerates the unknown lengths of a streamed header."""
    import numpy as np

    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise AudioError("不是 WAV 文件 not a WAV file")
    # walk the chunks: a streamed WAV (espeak-ng --stdout) carries 0x7fffffff lengths
    pos, channels, rate, width = 12, 1, 0, 2
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "little")
        if chunk == b"fmt ":
            with wave.open(io.BytesIO(data[: pos + 8 + size] + b"data\0\0\0\0")) as w:
                channels, rate, width = w.getnchannels(), w.getframerate(), w.getsampwidth()
        elif chunk == b"data":
            pcm = data[pos + 8 : pos + 8 + min(size, len(data))]
            break
        pos += 8 + size + (size & 1)
    else:
        raise AudioError("WAV 文件没有数据 WAV file has no data chunk")
    if width != 2 or not rate:
        raise AudioError(f"不支持的 WAV 格式 unsupported WAV: {width * 8}-bit at {rate} Hz")
    pcm = pcm[: len(pcm) - len(pcm) % (2 * channels)]
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return Speech(samples, rate)


@functools.cache
def _espeak_version(binary: str) -> str:
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    # "eSpeak NG text-to-speech: 1.51  Data at: ..."
    return done.stdout.split(":")[1].split()[0] if ":" in done.stdout else "unknown"


class EspeakEngine:
    """Debian's espeak-ng, offline: `espeak-ng -v cmn-latn-pinyin -s 150 --stdout TEXT`."""

    name = "espeak"

    def __init__(self, voice: str = "cmn-latn-pinyin", speed: int = 150, binary: str = "espeak-ng"):
        self.voice = voice
        self.speed = speed
        self.binary = binary

    def _path(self) -> str:
        path = shutil.which(self.binary)
        if path is None:
            raise SpeechEngineMissingError(self.check() or "espeak-ng missing")
        return path

    def check(self) -> str | None:
        if shutil.which(self.binary) is None:
            return (
                f"未安装语音合成引擎 TTS engine espeak-ng not found ({self.binary}): "
                f"install it with `{ESPEAK_INSTALL}`"
            )
        return None

    def identity(self) -> str:
        return f"espeak-ng {_espeak_version(self._path())} voice={self.voice} speed={self.speed}"

    def synthesise(self, text: str) -> Speech:
        done = subprocess.run(
            [self._path(), "-v", self.voice, "-s", str(self.speed), "--stdout", "--", text],
            capture_output=True,
            timeout=120,
        )
        if done.returncode != 0 or len(done.stdout) <= 44:
            error = done.stderr.decode("utf-8", "replace").strip()[:200]
            raise AudioError(f"espeak-ng 合成失败 synthesis failed: {error or 'no audio'}")
        return read_wav(done.stdout)
