"""One loudspeaker script (or a supplied recording) to one cached MP3 artefact.

The cache key holds everything that shapes the file: the spoken text (after
normalisation) or the recording's sha256, the engine's identity (name, version,
voice, speed), the processing settings and the title. `ArtefactStore.make()` runs the
chain only when no file exists for that key, so a script is never synthesised twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from broadcaster.audio.engines import SpeechEngine
from broadcaster.audio.normalise import normalise
from broadcaster.audio.process import Settings, check_recording, decode_recording, render
from broadcaster.channel import Artefact, ArtefactStore
from broadcaster.errors import AudioError

__all__ = ["ScriptRenderer", "estimate_seconds"]

CHIME_SECONDS = 1.2
PADDING_SECONDS = 0.5  # leading and trailing silence
CHIME_GAP_SECONDS = 0.4
CHARS_PER_SECOND_AT_150 = 3.0  # espeak-ng cmn-latn-pinyin at -s 150 (channels.md §10)


def estimate_seconds(text: str, settings: Settings, speed: int = 150) -> float:
    """How long the rendered file of a script will be, without synthesising it."""
    spoken = normalise(text).text
    seconds = len(spoken) / (CHARS_PER_SECOND_AT_150 * speed / 150) + PADDING_SECONDS
    for on in (settings.chime_before, settings.chime_after):
        seconds += (CHIME_SECONDS + CHIME_GAP_SECONDS) if on else 0.0
    return seconds


@dataclass
class ScriptRenderer:
    """Makes the MP3 of a script through one engine and one set of processing settings."""

    engine: SpeechEngine
    settings: Settings
    made: int = 0  # files rendered by this renderer (cache misses)

    def cache_key(self, source: str, title: str) -> str:
        return json.dumps(
            {
                "source": source,
                "engine": self.engine.identity(),
                "settings": self.settings.key(),
                "title": title,
            },
            sort_keys=True,
            ensure_ascii=False,
        )

    def speech(self, text: str, title: str, store: ArtefactStore) -> Artefact:
        """The MP3 of a script read by the engine."""
        spoken = normalise(text).text
        if not spoken:
            raise AudioError("广播稿没有可朗读的文字 the script has nothing to speak")

        def build() -> bytes:
            audio = self.engine.synthesise(spoken)
            if audio.seconds > self.settings.max_seconds:
                raise AudioError(
                    f"广播稿太长 the script runs {audio.seconds:.1f} s,"
                    f" over the {self.settings.max_seconds:g} s limit"
                )
            self.made += 1
            return render(audio, self.settings, title=title)[0]

        return store.make(
            self.cache_key(f"text:{spoken}", title), "speech.mp3", "audio/mpeg", build
        )

    def recording(self, path: Path, title: str, store: ArtefactStore) -> Artefact:
        """The MP3 of a supplied recording, checked and processed like speech."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AudioError(f"{path.name}: 无法读取录音 cannot read the recording: {exc}") from exc
        sha = hashlib.sha256(data).hexdigest()

        def build() -> bytes:
            audio = decode_recording(data, self.settings.sample_rate, name=path.name)
            check_recording(audio, self.settings, name=path.name)
            self.made += 1
            return render(audio, self.settings, title=title)[0]

        return store.make(
            self.cache_key(f"file:{sha}", title), "recording.mp3", "audio/mpeg", build
        )
