"""试听 Listen: render a loudspeaker script to MP3 and play it in the page before approving.

The audio is made by the same chain and content cache as real sends
(`broadcaster.audio.preview`); `/listen/audio/<sha256>` serves a file of that cache.
"""

from __future__ import annotations

import re

from starlette.responses import Response

from broadcaster.errors import BroadcasterError
from broadcaster.vocab import MessageKind
from broadcaster.web.console.base import ConsoleRequest, page
from broadcaster.web.errors import WebError

_SHA = re.compile(r"^[0-9a-f]{64}$")


def _templates(req: ConsoleRequest) -> list[str]:
    renderer = req.service.app.campaign.renderer
    prefix = f"{MessageKind.LOUDSPEAKER.value}/"
    return sorted(t for t in renderer.list_templates() if t.startswith(prefix))


@page("/listen", "试听", "Listen", order=35)
def listen_page(req: ConsoleRequest) -> Response:
    from broadcaster.audio.preview import render_preview

    app = req.service.app
    campaign = app.campaign
    templates = _templates(req)
    targets = [(n.id, n.name) for n in campaign.targets]
    template, target = req.arg("template"), req.arg("target")
    result = None
    if template:
        if template not in templates:
            raise WebError(f"未知的广播模板 unknown loudspeaker template {template[:80]!r}")
        if target and target not in campaign.targets:
            raise WebError(f"未知的对象 unknown target {target[:80]!r}")
        try:
            result = render_preview(
                app, template, now=req.service.clock.now(), target=target or None
            )
        except BroadcasterError as exc:
            raise WebError(f"无法生成音频 cannot make the audio: {exc}") from None
    return req.render(
        "listen.html",
        title="试听 Listen",
        templates=templates,
        targets=targets,
        chosen_template=template,
        chosen_target=target,
        result=result,
    )


@page("/listen/audio/{sha}", "试听音频", "Listen audio", nav=False)
def listen_audio(req: ConsoleRequest) -> Response:
    sha = str(req.request.path_params.get("sha", "")).removesuffix(".mp3")
    if not _SHA.match(sha):
        raise WebError("文件名无效 not an audio file name")
    path = req.service.app.state_dir / "artefacts" / "files" / sha
    if not path.is_file():
        raise WebError("没有这个音频 no such audio file")
    return Response(
        path.read_bytes(),
        media_type="audio/mpeg",
        headers={"Cache-Control": "private, max-age=86400", "Accept-Ranges": "none"},
    )
