"""A one-shot FastAGI client for the PBX tests: what a second hangup handler sends."""

from __future__ import annotations

import asyncio


async def settle_once(listen: str, call_id: str, *, talk: str) -> str:
    """Send ``settle`` for ``call_id`` as Asterisk would; the status the server set."""
    host, _, port = listen.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    status = ""
    try:
        env = {
            "agi_network": "yes",
            "agi_network_script": "settle",
            "agi_channel": "PJSIP/carrier-ffffffff",
            "agi_uniqueid": "0.0",
            "agi_arg_1": call_id,
            "agi_arg_2": talk,
            "agi_arg_3": "ANSWER",
        }
        writer.write("".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n")
        await writer.drain()
        async with asyncio.timeout(10):
            while line := (await reader.readline()).decode().strip():
                if line.startswith("GET VARIABLE"):
                    writer.write(b"200 result=0\n")
                else:
                    if line.startswith("SET VARIABLE CALLCONTROL_STATUS"):
                        status = line.split('"')[1]
                    writer.write(b"200 result=1\n")
                await writer.drain()
    finally:
        writer.close()
    return status
