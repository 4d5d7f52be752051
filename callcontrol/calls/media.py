"""Prompts to ARI media URIs: stock sounds by name, everything else over HTTP.

    Sound("tt-monkeys")            -> sound:tt-monkeys
    File(recordings/welcome.wav)   -> sound:<media_url>/recordings/recordings/welcome.wav
    Say("Welcome")                 -> sound:<media_url>/tts/tts-<hash>.wav  (espeak-ng, cached)

Asterisk fetches the HTTP ones once into its media cache (res_http_media_cache),
so this works with Asterisk on another host. Speech is synthesized ahead of calls
(``prepare``: at start and whenever flows change), so a caller never waits for it;
a text met for the first time during a call is synthesized then (in a thread).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

from callcontrol.ivr.model import File, Prompt, Say, Sound
from callcontrol.ivr.tts import synthesize_async

log = logging.getLogger(__name__)


class PromptMedia:
    def __init__(self, media_url: str, flows_dir: Path, tts_dir: Path) -> None:
        self.media_url = media_url.rstrip("/")
        self.flows_dir = flows_dir.resolve()
        self.tts_dir = tts_dir

    async def uri(self, prompt: Prompt) -> str:
        if isinstance(prompt, Sound):
            return f"sound:{prompt.name}"
        if isinstance(prompt, File):
            relative = prompt.path.resolve().relative_to(self.flows_dir)
            return f"sound:{self.media_url}/recordings/{quote(str(relative))}"
        if isinstance(prompt, Say):
            path = await synthesize_async(prompt.text, prompt.voice, self.tts_dir)
            return f"sound:{self.media_url}/tts/{quote(path.name)}"
        raise TypeError(f"not a prompt: {prompt!r}")

    async def uris(self, prompts: Sequence[Prompt]) -> list[str]:
        return [await self.uri(p) for p in prompts]

    async def prepare(self, prompts: Iterable[Prompt]) -> None:
        """Synthesize every Say prompt now, so calls never wait for the TTS engine."""
        for prompt in prompts:
            if isinstance(prompt, Say):
                try:
                    await synthesize_async(prompt.text, prompt.voice, self.tts_dir)
                except Exception as exc:  # a missing engine must not stop the app
                    log.error("cannot synthesize %r: %s", prompt.text, exc)


def says_in(value: object, found: list[Say] | None = None) -> list[Say]:
    """Every Say prompt reachable from a flow (or any model value), for ``prepare``."""
    found = [] if found is None else found
    if isinstance(value, Say):
        found.append(value)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            says_in(getattr(value, f.name), found)
    elif isinstance(value, dict):
        for item in value.values():
            says_in(item, found)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            says_in(item, found)
    return found
