"""Prompts over HTTP, so Asterisk can play them wherever it runs.

Asterisk plays ``sound:http://<app>/media/...`` URIs by fetching the file once into
its HTTP media cache (res_http_media_cache), so the app and Asterisk need not share
a file system. Two trees are served, read-only:

    /media/recordings/<path>   the organisation's recordings, under the flows directory
    /media/tts/<hash>.wav      speech synthesized from flow text, cached by content hash

Paths are confined to their tree (no ``..``, no symlink escapes) and only audio
formats Asterisk can play are served.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from callcontrol.errors import ConfigError

log = logging.getLogger(__name__)

AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".gsm": "audio/gsm",
    ".ulaw": "audio/basic",
    ".alaw": "audio/x-alaw-basic",
    ".sln": "audio/L16",
}


def _confined(root: Path, relative: str) -> Path | None:
    """``root/relative`` if it is a servable audio file inside root, else None."""
    base = root.resolve()
    candidate = (base / relative).resolve()
    if not candidate.is_relative_to(base) or candidate.suffix.lower() not in AUDIO_TYPES:
        return None
    return candidate if candidate.is_file() else None


def media_app(recordings_dir: Path, tts_dir: Path) -> web.Application:
    async def serve(request: web.Request) -> web.StreamResponse:
        tree = recordings_dir if request.match_info["tree"] == "recordings" else tts_dir
        path = _confined(tree, request.match_info["path"])
        if path is None:
            raise web.HTTPNotFound(text="no such prompt\n")
        log.info("serving %s to %s", path.name, request.remote)
        return web.FileResponse(path, headers={"Content-Type": AUDIO_TYPES[path.suffix.lower()]})

    app = web.Application()
    app.router.add_get("/media/{tree:recordings|tts}/{path:.+}", serve)
    return app


class MediaServer:
    """The media tree on its own aiohttp runner; started and stopped by the app."""

    def __init__(self, listen: str, recordings_dir: Path, tts_dir: Path) -> None:
        host, _, port = listen.rpartition(":")
        self.host, self.port = host or "127.0.0.1", int(port)
        self.app = media_app(recordings_dir, tts_dir)
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(
                f"cannot serve prompts on {self.host}:{self.port}: {exc.strerror or exc} "
                "(another instance? change the setting media_listen)"
            ) from exc
        log.info("serving prompts on http://%s:%d/media/", self.host, self.port)

    @property
    def bound(self) -> list[tuple[str, int]]:
        """The (address, port) the server listens on, once started."""
        return [(str(a[0]), int(a[1])) for a in self._runner.addresses] if self._runner else []

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
