"""Audio for the loudspeaker channel: speech engines, text normalisation, loudness, MP3, playlists.

`normalise` is pure; `engines` runs espeak-ng (Debian) and `cloud` the Aliyun and
Tencent Cloud speech APIs; `process` measures and shapes the signal (numpy, scipy,
pyloudnorm, lameenc, mutagen: the `audio` extra) and decodes recordings with ffmpeg;
`script` caches one script's MP3 by content; `playlist` writes M3U8 and manifests.

May import: the standard library, numpy, scipy, pyloudnorm, lameenc, mutagen,
`broadcaster.channel`, `broadcaster.errors`, `broadcaster.vocab`. Nothing here touches the
delivery log; HTTP only through a session handed in (`cloud`).
"""
