"""The floor for any ARI design: a minimal ARI app on aiohttp, no database, no charging.

    python bench/minimal_ari.py URL USER PASSWORD ENDPOINT WORKDIR

A channel entering ``Stasis(benchmin,in)`` is handled the way callcontrol handles a
number routed to a user, with nothing else: originate to ENDPOINT (``PJSIP/1001``)
straight into the app; when the phone answers (its StasisStart), answer the caller,
create a mixing bridge and add both; when either leaves the app, hang up the other
and destroy the bridge. Same SIP sequence as callcontrol's routed call, so the
INVITE->200 times compare.

``Stasis(benchmin,ivr)`` is the floor for an IVR that puts callers through: answer,
play ``sound:beep``; on the key 1 (stop the prompt if it still plays) originate to
ENDPOINT and play a ringing tone to the caller; when the phone answers, stop the tone,
bridge both. The same prompt, key and media as callcontrol's ``ivr`` path in
bench/calls.py, without flows, routing or charging.

``Stasis(benchmin,answer)`` is the yardstick of issue 12's CPU target: answer the
caller and nothing else (the caller hangs up).

It writes to WORKDIR: ``bridged.log`` (the caller number of every bridged call, or
answered one on the answer path) and
``lag.log`` (per second: epoch seconds and the event loop's peak lag in ms).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

APP = "benchmin"
SAMPLE = 0.05


class Minimal:
    def __init__(self, url: str, user: str, password: str, endpoint: str, work: Path) -> None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.root = url.rstrip("/") + "/ari"
        self.session = aiohttp.ClientSession(headers={"Authorization": f"Basic {token}"})
        self.endpoint = endpoint
        self.peer: dict[str, str] = {}  # channel -> the other channel of its call
        self.bridge: dict[str, str] = {}  # channel -> its bridge
        self.caller_number: dict[str, str] = {}
        self.prompt: dict[str, str] = {}  # an IVR caller -> its prompt's playback, if playing
        self.ringback: dict[str, str] = {}  # an IVR caller -> its ringing tone's playback
        self.bridged = (work / "bridged.log").open("a", buffering=1)
        self.lag = (work / "lag.log").open("a", buffering=1)
        self.ids = itertools.count()
        self.tasks: set[asyncio.Task[None]] = set()

    async def request(self, method: str, path: str, **params: str) -> Any:
        async with self.session.request(method, self.root + path, params=params) as resp:
            body = await resp.read()
            return json.loads(body) if body and resp.status < 300 else None

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer(self, caller: dict[str, Any]) -> None:
        """The yardstick: answer, and nothing else (the caller hangs up)."""
        await self.request("POST", f"/channels/{caller['id']}/answer")
        self.bridged.write(caller.get("caller", {}).get("number", "") + "\n")

    async def ivr(self, caller: dict[str, Any]) -> None:
        channel = caller["id"]
        self.caller_number[channel] = caller.get("caller", {}).get("number", "")
        await self.request("POST", f"/channels/{channel}/answer")
        playback = self.prompt[channel] = f"bp-{next(self.ids)}"
        await self.request(
            "POST", f"/channels/{channel}/play", media="sound:beep", playbackId=playback
        )

    async def key(self, channel: str, digit: str) -> None:
        if digit != "1" or channel not in self.caller_number or channel in self.peer:
            return
        prompt = self.prompt.pop(channel, None)
        if prompt is not None:
            await self.request("DELETE", f"/playbacks/{prompt}")
        await self.ring({"id": channel, "caller": {"number": self.caller_number[channel]}})
        tone = self.ringback[channel] = f"br-{next(self.ids)}"
        await self.request("POST", f"/channels/{channel}/play", media="tone:ring", playbackId=tone)

    async def ring(self, caller: dict[str, Any]) -> None:
        callee = f"bm-{next(self.ids)}-{caller['id']}"
        self.peer[caller["id"]], self.peer[callee] = callee, caller["id"]
        self.caller_number[caller["id"]] = caller.get("caller", {}).get("number", "")
        await self.request(
            "POST",
            "/channels",
            endpoint=self.endpoint,
            app=APP,
            appArgs=f"out,{caller['id']}",
            channelId=callee,
            timeout="30",
        )

    async def connect(self, caller: str, callee: str) -> None:
        tone = self.ringback.pop(caller, None)
        if tone is None:
            await self.request("POST", f"/channels/{caller}/answer")
        else:  # an IVR caller, answered already
            await self.request("DELETE", f"/playbacks/{tone}")
        bridge = f"bb-{callee}"
        self.bridge[caller] = self.bridge[callee] = bridge
        await self.request("POST", "/bridges", type="mixing", bridgeId=bridge)
        await self.request("POST", f"/bridges/{bridge}/addChannel", channel=f"{caller},{callee}")
        self.bridged.write(self.caller_number.pop(caller, "") + "\n")

    async def gone(self, channel: str) -> None:
        other = self.peer.pop(channel, None)
        bridge = self.bridge.pop(channel, None)
        self.caller_number.pop(channel, None)
        self.prompt.pop(channel, None)
        self.ringback.pop(channel, None)
        if other is not None:
            self.peer.pop(other, None)
            self.bridge.pop(other, None)
            await self.request("DELETE", f"/channels/{other}")
        if bridge is not None:
            await self.request("DELETE", f"/bridges/{bridge}")

    async def events(self) -> None:
        url = f"{self.root}/events?app={APP}"
        async with self.session.ws_connect(url) as ws:
            print("connected", flush=True)
            async for message in ws:
                event = json.loads(message.data)
                kind = event["type"]
                if kind == "StasisStart":
                    args = event.get("args") or [""]
                    channel = event["channel"]
                    if args[0] == "in":
                        self.spawn(self.ring(channel))
                    elif args[0] == "ivr":
                        self.spawn(self.ivr(channel))
                    elif args[0] == "answer":
                        self.spawn(self.answer(channel))
                    elif args[0] == "out" and len(args) > 1:
                        self.spawn(self.connect(args[1], channel["id"]))
                elif kind == "PlaybackFinished":
                    target = event["playback"].get("target_uri", "")
                    if target.startswith("channel:"):
                        caller = target.removeprefix("channel:")
                        if self.prompt.get(caller) == event["playback"]["id"]:
                            del self.prompt[caller]
                elif kind == "ChannelDtmfReceived":
                    self.spawn(self.key(event["channel"]["id"], event["digit"]))
                elif kind == "StasisEnd":
                    self.spawn(self.gone(event["channel"]["id"]))

    async def measure_lag(self) -> None:
        loop = asyncio.get_running_loop()
        peak, second = 0.0, int(time.time())
        while True:
            before = loop.time()
            await asyncio.sleep(SAMPLE)
            peak = max(peak, loop.time() - before - SAMPLE)
            if int(time.time()) != second:
                self.lag.write(f"{second} {peak * 1e3:.1f}\n")
                peak, second = 0.0, int(time.time())


async def main() -> None:
    url, user, password, endpoint, work = sys.argv[1:6]
    app = Minimal(url, user, password, endpoint, Path(work))
    lag = asyncio.create_task(app.measure_lag())
    try:
        await app.events()
    finally:
        lag.cancel()
        await app.session.close()


if __name__ == "__main__":
    asyncio.run(main())
