"""Text to speech for ``say:`` prompts: espeak-ng into cached 8 kHz WAV files.

``synthesize(text, voice, cache_dir)`` returns ``cache_dir/tts-<hash>.wav``, an
8000 Hz mono 16-bit WAV that Asterisk plays natively. The hash covers the text,
the voice and the engine's version, so a changed prompt or engine gets a new file
and an unchanged one is synthesized once. espeak-ng writes 22050 Hz; the
conversion is done here in Python (a windowed-sinc low-pass resampler), so no sox
is needed. Files are written to a temporary name and renamed into place: readers
never see half a file, and concurrent callers (threads or processes) at worst
synthesize the same file twice. ``synthesize_async`` runs it in a thread.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import hashlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from callcontrol.ivr.errors import TtsError

__all__ = ["ENGINE", "engine_version", "resample", "synthesize", "synthesize_async", "tts_path"]

ENGINE = "espeak-ng"
DEFAULT_VOICE = "en"
TARGET_RATE = 8000
TIMEOUT_S = 60.0
_TAPS_HALF = 8  # filter half-width, in input samples at the cutoff scale


@lru_cache(maxsize=4)
def engine_version(executable: str = ENGINE) -> str:
    """The engine's version line (part of the cache key); raises TtsError if missing."""
    path = shutil.which(executable)
    if path is None:
        raise TtsError(
            f"{executable} is not installed: say: prompts need it "
            "(Debian/Ubuntu: apt-get install espeak-ng)"
        )
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TtsError(f"{executable} --version failed: {exc}") from exc
    return done.stdout.strip().splitlines()[0] if done.stdout.strip() else "unknown"


def tts_path(text: str, voice: str | None, cache_dir: Path, version: str) -> Path:
    """Where the audio for (text, voice, engine version) is cached."""
    key = "\0".join((ENGINE, version, voice or DEFAULT_VOICE, text))
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]
    return cache_dir / f"tts-{digest}.wav"


def synthesize(
    text: str, voice: str | None, cache_dir: str | Path, *, executable: str = ENGINE
) -> Path:
    """The cached 8 kHz mono 16-bit WAV of ``text`` spoken in ``voice``."""
    if not text.strip():
        raise TtsError("nothing to say: the text is empty")
    cache = Path(cache_dir)
    target = tts_path(text, voice, cache, engine_version(executable))
    if target.is_file():
        return target
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TtsError(f"cannot create the TTS cache {cache}: {exc.strerror or exc}") from exc
    raw_fd, raw_name = tempfile.mkstemp(prefix=".espeak-", suffix=".wav", dir=cache)
    os.close(raw_fd)
    out_fd, out_name = tempfile.mkstemp(prefix=".tts-", suffix=".wav", dir=cache)
    os.close(out_fd)
    try:
        _run_engine(executable, text, voice or DEFAULT_VOICE, Path(raw_name))
        _convert(Path(raw_name), Path(out_name))
        os.chmod(out_name, 0o644)  # Asterisk runs as another user and must read it
        os.replace(out_name, target)
    finally:
        for name in (raw_name, out_name):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
    return target


async def synthesize_async(
    text: str, voice: str | None, cache_dir: str | Path, *, executable: str = ENGINE
) -> Path:
    """``synthesize`` in a worker thread (the event loop keeps running)."""
    return await asyncio.to_thread(synthesize, text, voice, cache_dir, executable=executable)


def _run_engine(executable: str, text: str, voice: str, out: Path) -> None:
    path = shutil.which(executable)
    if path is None:
        raise TtsError(f"{executable} is not installed (apt-get install espeak-ng)")
    try:
        done = subprocess.run(
            [path, "-v", voice, "-w", str(out), "--stdin"],
            input=text,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TtsError(f"{executable} failed: {exc}") from exc
    if done.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
        detail = (done.stderr or done.stdout).strip()[:200]
        raise TtsError(f"{executable} failed (voice {voice!r}): {detail or done.returncode}")


def _convert(source: Path, target: Path) -> None:
    """Any 16-bit PCM WAV -> 8000 Hz mono 16-bit WAV."""
    try:
        with wave.open(str(source), "rb") as w:
            rate, channels, width = w.getframerate(), w.getnchannels(), w.getsampwidth()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as exc:
        raise TtsError(f"the TTS engine wrote an unreadable WAV: {exc}") from exc
    if width != 2:
        raise TtsError(f"the TTS engine wrote {8 * width}-bit audio; expected 16-bit")
    samples = array.array("h")
    samples.frombytes(frames)
    if sys.byteorder == "big":
        samples.byteswap()
    if channels > 1:
        samples = array.array(
            "h",
            (sum(samples[i : i + channels]) // channels for i in range(0, len(samples), channels)),
        )
    out = resample(samples, rate, TARGET_RATE)
    if sys.byteorder == "big":
        out.byteswap()
    with wave.open(str(target), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(TARGET_RATE)
        w.writeframes(out.tobytes())


def resample(samples: Sequence[int], source_rate: int, target_rate: int) -> array.array[int]:
    """Band-limited resampling of 16-bit samples (Hann-windowed sinc, polyphase)."""
    if source_rate == target_rate:
        return array.array("h", samples)
    g = math.gcd(source_rate, target_rate)
    up, down = target_rate // g, source_rate // g  # output i sits at input i*down/up
    cutoff = min(1.0, target_rate / source_rate) * 0.92  # of the input Nyquist
    half = math.ceil(_TAPS_HALF / cutoff)
    # one filter per output phase: phase p is offset p/up of an input sample
    phases: list[list[float]] = []
    for p in range(up):
        frac = p / up
        taps = []
        for k in range(-half + 1, half + 1):
            x = k - frac
            window = 0.5 + 0.5 * math.cos(math.pi * x / half) if abs(x) < half else 0.0
            arg = math.pi * cutoff * x
            sinc = 1.0 if abs(arg) < 1e-12 else math.sin(arg) / arg
            taps.append(cutoff * sinc * window)
        phases.append(taps)
    n_in = len(samples)
    n_out = (n_in * up) // down
    out = array.array("h", bytes(2 * n_out))
    for i in range(n_out):
        pos = i * down
        base, p = divmod(pos, up)
        taps = phases[p]
        acc = 0.0
        start = base - half + 1
        for j, weight in enumerate(taps):
            idx = start + j
            if 0 <= idx < n_in:
                acc += samples[idx] * weight
        out[i] = max(-32768, min(32767, round(acc)))
    return out
