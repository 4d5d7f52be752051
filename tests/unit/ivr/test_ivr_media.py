"""TTS (espeak-ng, cached 8 kHz WAV), the resampler, the sound catalog, the graph, and
the DigitBuffer that real ports build on."""

from __future__ import annotations

import asyncio
import math
import shutil
import stat
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from callcontrol.ivr import tts
from callcontrol.ivr.errors import GraphError, TtsError
from callcontrol.ivr.graph import draw, to_dot
from callcontrol.ivr.loader import load_flow
from callcontrol.ivr.port import CallerHungUp, DigitBuffer
from callcontrol.ivr.sounds import resolve_in_root, sounds_in_dir, system_sounds_dir

FLOWS = Path(__file__).resolve().parents[3] / "ivr_flows"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="no espeak-ng")
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="no graphviz")


# ---- TTS -------------------------------------------------------------------------------


@needs_espeak
def test_tts_writes_8khz_mono_16bit_wav_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs: list[str] = []
    real = tts._run_engine

    def counting(executable: str, text: str, voice: str, out: Path) -> None:
        runs.append(text)
        real(executable, text, voice, out)

    monkeypatch.setattr(tts, "_run_engine", counting)
    path = tts.synthesize("Welcome to Example Limited", "en-gb", tmp_path)
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert 0.5 < w.getnframes() / 8000 < 5
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    mtime = path.stat().st_mtime_ns
    assert tts.synthesize("Welcome to Example Limited", "en-gb", tmp_path) == path
    assert runs == ["Welcome to Example Limited"]  # the second call did not run espeak-ng
    assert path.stat().st_mtime_ns == mtime
    other = tts.synthesize("Welcome to Example Limited", None, tmp_path)
    assert other != path and len(runs) == 2  # the voice is part of the key
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, other.name])


@needs_espeak
async def test_tts_async_and_concurrent(tmp_path: Path) -> None:
    path = await tts.synthesize_async("One moment please", None, tmp_path)
    assert path.is_file()
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: tts.synthesize("Same text", None, tmp_path), range(4)))
    assert len(set(paths)) == 1 and paths[0].is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_tts_missing_engine_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TtsError, match="no-such-espeak is not installed"):
        tts.synthesize("hi", None, tmp_path, executable="no-such-espeak")
    with pytest.raises(TtsError, match="empty"):
        tts.synthesize("  ", None, tmp_path)


@needs_espeak
def test_tts_bad_voice_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TtsError, match="voice 'xx-nonexistent'"):
        tts.synthesize("hello", "xx-nonexistent", tmp_path)


def test_resampler_keeps_speech_band_and_removes_aliases() -> None:
    def rms_after(freq: float) -> float:
        tone = [int(10000 * math.sin(2 * math.pi * freq * i / 22050)) for i in range(22050)]
        out = tts.resample(tone, 22050, 8000)
        assert len(out) == 8000
        body = out[200:-200]
        return math.sqrt(sum(v * v for v in body) / len(body))

    assert 6800 < rms_after(1000) < 7300  # a sine of amplitude 10000 has RMS 7071
    assert rms_after(6000) < 100  # above 4 kHz: would alias, must be filtered out
    assert list(tts.resample([1, 2, 3], 8000, 8000)) == [1, 2, 3]


def test_tts_cache_key_covers_text_voice_and_version(tmp_path: Path) -> None:
    a = tts.tts_path("hi", None, tmp_path, "1.51")
    assert a == tts.tts_path("hi", "en", tmp_path, "1.51")  # None is the default voice
    assert a != tts.tts_path("hi", None, tmp_path, "1.52")
    assert a != tts.tts_path("hi ", None, tmp_path, "1.51")


# ---- sounds ----------------------------------------------------------------------------


def test_sounds_in_dir_names_and_subdirectories(tmp_path: Path) -> None:
    (tmp_path / "digits").mkdir()
    for name in ("hello.gsm", "hello.wav", "tt-monkeys.ulaw", "digits/1.gsm", "README"):
        (tmp_path / name).write_bytes(b"")
    assert sounds_in_dir(tmp_path) == {"hello", "tt-monkeys", "digits/1"}
    assert sounds_in_dir(tmp_path / "missing") == set()


def test_sounds_through_a_chroot_symlink(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    real = root / "usr/share/asterisk/sounds/en_US_f_Allison"
    real.mkdir(parents=True)
    (real / "beep.gsm").write_bytes(b"")
    (root / "etc/alternatives").mkdir(parents=True)
    (root / "etc/alternatives/asterisk-prompt-en").symlink_to(
        "/usr/share/asterisk/sounds/en_US_f_Allison"
    )
    (root / "usr/share/asterisk/sounds/en").symlink_to("/etc/alternatives/asterisk-prompt-en")
    assert resolve_in_root(root, "/usr/share/asterisk/sounds/en") == real
    assert sounds_in_dir(root / "usr/share/asterisk/sounds/en") == {"beep"}
    assert system_sounds_dir(root) == real


def test_dev_pbx_sounds_if_present() -> None:
    root = Path("/var/cache/callcontrol/rootfs")
    if not (root / "usr/share/asterisk/sounds").is_dir():
        pytest.skip("no development PBX root file system")
    names = sounds_in_dir(root / "usr/share/asterisk/sounds/en")
    assert {"tt-monkeys", "vm-goodbye", "digits/1"} <= names


# ---- graph -----------------------------------------------------------------------------


def test_dot_text_has_every_node_and_key() -> None:
    dot = to_dot(load_flow(FLOWS / "main.yaml"))
    assert dot.startswith('digraph "main" {')
    for text in ('"n:office_hours"', '"n:main"', '"n:support"', 'label="key 9"', "ring alice"):
        assert text in dot
    assert '"start" -> "n:office_hours";' in dot


@needs_dot
def test_graph_writes_svg_and_png(tmp_path: Path) -> None:
    flow = load_flow(FLOWS / "main.yaml")
    svg = draw(flow, tmp_path / "main.svg")
    assert "<svg" in svg.read_text() and "menu support" in svg.read_text()
    png = draw(flow, tmp_path / "main.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_graph_errors(tmp_path: Path) -> None:
    flow = load_flow(FLOWS / "main.yaml")
    with pytest.raises(GraphError, match="not installed"):
        draw(flow, tmp_path / "x.svg", dot="no-such-dot")
    with pytest.raises(GraphError, match=r"\.svg or \.png"):
        draw(flow, tmp_path / "x.pdf")


# ---- DigitBuffer -----------------------------------------------------------------------


async def test_digit_buffer_reads_buffered_then_waits_then_times_out() -> None:
    buffer = DigitBuffer(limit=3)
    for digit in "12345":
        buffer.push(digit)
    assert buffer.pending() == 3  # the flood beyond the limit is dropped
    assert [await buffer.read(0) for _ in range(3)] == ["1", "2", "3"]
    assert await buffer.read(0.01) is None
    reader = asyncio.create_task(buffer.read(None))
    await asyncio.sleep(0)
    buffer.push("9")
    assert await reader == "9"


async def test_digit_buffer_read_until_playback_done() -> None:
    buffer = DigitBuffer()
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, None)
    assert await buffer.read_until(done) is None
    assert await buffer.read_until(done) is None  # already done: at once


async def test_digit_buffer_close_wakes_the_reader() -> None:
    before = asyncio.all_tasks()
    buffer = DigitBuffer()
    reader = asyncio.create_task(buffer.read(None))
    await asyncio.sleep(0)
    buffer.close()
    with pytest.raises(CallerHungUp):
        await reader
    with pytest.raises(CallerHungUp):
        await buffer.read(1)
    buffer.push("1")  # ignored after the hang-up
    assert buffer.pending() == 0
    assert asyncio.all_tasks() == before
