"""Render the loudspeaker scripts of 500 villages: speed against real time, and the cache.

Each village's daily playlist has three items (村村响): the township's case broadcast of
the day (one of the shipped loudspeaker templates, read with the township's police
station and phone), the township's alert, and a short notice naming the village. 500
villages sit in 25 townships of 20, so most scripts are shared.

* project, first run: `LoudspeakerChannel.prepare` for every item of every playlist, an
  empty content cache: each distinct script is synthesised, normalised and encoded once;
* project, second run: the same with the cache filled (nothing is made again);
* baseline: synthesising each village's playlist from scratch (the same espeak-ng,
  loudness and MP3 chain, no cache), measured in the same run on a sample of villages and
  scaled to all of them.

Figures: seconds of processing (CPU, this process and espeak-ng, on one core) per minute
of audio made, i.e. the speed against real time (target ≥ 10×); first run against the
baseline (the cache's saving); second run against the first (target ≥ 20×).
"""

from __future__ import annotations

import datetime as dt
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

TOPICS = [
    "fake_police.villagers",
    "order_brushing",
    "loan",
    "fake_customer_service",
    "impersonate_official.villagers",
    "investment",
    "health_products.elderly",
    "relative_accident.elderly",
]
PER_TOWNSHIP = 20


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def playlists(villages: int) -> list[list[tuple[str, str]]]:
    """(template, text) of each village's three items."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    messages = Path(__file__).resolve().parent.parent / "messages"
    env = Environment(loader=FileSystemLoader(messages), undefined=StrictUndefined)
    out = []
    for i in range(villages):
        township = i // PER_TOWNSHIP
        station = f"第{township + 1}派出所"
        values = {"police_station": station, "police_phone": f"0571-8{township:03d}6110"}
        topic = TOPICS[township % len(TOPICS)]
        case = env.get_template(f"loudspeaker/{topic}.j2").render(vars=values)
        alert = env.get_template("loudspeaker/alert.j2").render(vars=values)
        notice = (
            f"{i + 1}号村的乡亲们请注意：今晚七点在村委会开反诈宣传会，"
            f"{station}的民警会来讲解，请各户派一人参加。"
        )
        out.append(
            [
                (f"loudspeaker/{topic}.j2", case),
                ("loudspeaker/alert.j2", alert),
                ("loudspeaker/notice.j2", notice),
            ]
        )
    return out


def _channel(folder: Path) -> Any:
    from broadcaster.channels.loudspeaker import LoudspeakerChannel, LoudspeakerSettings
    from broadcaster.engine.http import channel_context

    context = channel_context(
        "speakers",
        concurrency=1,
        clock=lambda: dt.datetime.now(dt.UTC),
        data_dir=folder / "data",
        base_dir=folder,
    )
    return LoudspeakerChannel(LoudspeakerSettings(), context)


def run_project(items: list[list[tuple[str, str]]], store: Any, channel: Any) -> dict[str, float]:
    from broadcaster.audio.process import mp3_info
    from broadcaster.channel import Message, MessageKind

    made_before = store.made
    seen: set[str] = set()
    audio = 0.0
    cpu, wall = _cpu(), time.perf_counter()
    for playlist in items:
        for template, text in playlist:
            message = Message(MessageKind.LOUDSPEAKER, text, template, "")
            artefact = channel.prepare(message, store).artefacts[0]
            if artefact.sha256 not in seen:
                seen.add(artefact.sha256)
    cpu, wall = _cpu() - cpu, time.perf_counter() - wall
    made = store.made - made_before
    if made:
        audio = sum(mp3_info(p).seconds for p in (store.folder / "files").iterdir())
    return {"cpu": cpu, "wall": wall, "made": made, "files": len(seen), "audio": audio}


def run_baseline(items: list[list[tuple[str, str]]]) -> dict[str, float]:
    """Each village's playlist from scratch: synthesise, normalise and encode every item."""
    from broadcaster.audio.engines import EspeakEngine
    from broadcaster.audio.normalise import normalise
    from broadcaster.audio.process import Settings, render

    engine, settings = EspeakEngine(), Settings()
    audio = 0.0
    cpu, wall = _cpu(), time.perf_counter()
    for playlist in items:
        for _, text in playlist:
            speech = engine.synthesise(normalise(text).text)
            _, measured = render(speech, settings, title=text[:10])
            audio += measured.seconds
    return {"cpu": _cpu() - cpu, "wall": time.perf_counter() - wall, "audio": audio}


def main(*, quick: bool = False) -> dict[str, Any]:
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target says
    from broadcaster.engine.artefacts import FileArtefactStore

    villages, sample = (40, 4) if quick else (500, 20)
    items = playlists(villages)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        channel = _channel(folder)
        # warm the imports (numpy, scipy, pyloudnorm) outside the timings
        run_baseline([[("", "预热。")]])
        store = FileArtefactStore(folder / "artefacts")
        first = run_project(items, store, channel)
        second = run_project(items, store, channel)
        base = run_baseline(items[:sample])
        channel.context.http.close()
    scale = villages / sample
    base_wall = base["wall"] * scale
    per_minute = first["cpu"] / (first["audio"] / 60)
    base_per_minute = base["cpu"] / (base["audio"] / 60)
    print(f"\n== audio: {villages} villages × 3 items ({villages // PER_TOWNSHIP} townships) ==")
    print(
        f"project, 1st run   {first['made']:>5} files made, {first['audio'] / 60:7.1f} min of audio "
        f"in {first['wall']:7.1f}s (CPU {first['cpu']:.1f}s) = {per_minute:5.2f} s per audio minute "
        f"= {60 / per_minute:5.1f}× real time (target ≥ 10×)"
    )
    print(
        f"project, 2nd run   {second['made']:>5} files made (all {villages * 3} items from the cache) "
        f"in {second['wall']:7.2f}s"
    )
    print(
        f"baseline           each village from scratch: {sample} villages measured, "
        f"{base['audio'] / 60:.1f} min of audio in {base['wall']:.1f}s "
        f"({base_per_minute:.2f} s per audio minute) → {base_wall:,.0f}s for {villages}"
    )
    print(
        f"ratios: 1st run vs from scratch {base_wall / first['wall']:.1f}× faster "
        f"(the cache's saving: {1 - first['wall'] / base_wall:.0%} of the time); "
        f"2nd run vs 1st {first['wall'] / second['wall']:.0f}× faster (target ≥ 20×); "
        f"chain speed {60 / per_minute:.1f}× real time (target ≥ 10×)"
    )
    return {"first": first, "second": second, "baseline": base, "scale": scale}
