"""What the shared-inference tests run inside real LiveKit job processes (imported there by name).

Each job reads its orders from the job's metadata (JSON), does them through the STT that
``prewarm`` built in its process, and writes what happened to the file the orders name.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from speech import FIXTURES

HEAVY = ("torch", "funasr", "faster_whisper", "ctranslate2")  # not onnxruntime: LiveKit's Silero VAD uses it


def setup(proc: Any) -> None:
    from stt_core_livekit import prewarm

    started = time.perf_counter()
    prewarm(proc)
    proc.userdata["setup_seconds"] = time.perf_counter() - started


async def entrypoint(ctx: Any) -> None:
    orders = json.loads(ctx.job.metadata)
    report: dict[str, Any] = {"results": [], "setup_seconds": ctx.proc.userdata["setup_seconds"]}
    try:
        if orders.get("agent_session"):
            report["results"].append(await _agent_session(ctx, orders["agent_session"]))
        else:
            await _until(orders.get("start_at", 0.0))
            report["results"] = await asyncio.gather(*(_recognize(ctx, item) for item in orders["items"]))
            report["finished_at"] = time.time()
    except Exception as e:  # the test reads it from the report rather than a lost traceback
        report["error"] = f"{type(e).__name__}: {e}"
    report["heavy_modules"] = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))
    _write(orders["report"], json.dumps(report))
    ctx.shutdown("done")


def _write(path: str, text: str) -> None:
    """Whole or not at all: the test reads the file as soon as it exists."""
    partial = Path(f"{path}.partial")
    partial.write_text(text)
    partial.rename(path)


async def _until(when: float) -> None:
    await asyncio.sleep(max(0.0, when - time.time()))


async def _recognize(ctx: Any, item: dict[str, Any]) -> dict[str, Any]:
    from stt_core import Audio
    from stt_core_livekit import STT, audio_to_frames, configured_chain

    if item.get("chain"):
        stt = STT(configured_chain(names=item["chain"]), language=item.get("language"))
    else:
        stt = STT.from_process(ctx.proc, language=item.get("language"))
    clips = [Audio.from_file(FIXTURES / f"{name}.wav").to(sample_rate=48_000)
             for name in item.get("fixtures", [item["fixture"]])]  # several: said one after another
    audio = Audio.concat(clips * item.get("repeat", 1))
    if item.get("marker"):
        _write(item["marker"], "sending")
    started = time.perf_counter()
    try:
        event = await stt.recognize(audio_to_frames(audio))
    except Exception as e:
        return {"fixture": item["fixture"], "error": f"{type(e).__name__}: {e}",
                "seconds": time.perf_counter() - started}
    data = event.alternatives[0]
    return {"fixture": item["fixture"], "text": data.text, "provider": data.metadata["provider"],
            "seconds": time.perf_counter() - started}


async def _agent_session(ctx: Any, orders: dict[str, Any]) -> dict[str, Any]:
    from livekit.agents import Agent, AgentSession
    from livekit.plugins import silero
    from test_agent_session import FixtureAudio

    from stt_core import Audio
    from stt_core_livekit import STT, configured_chain

    fixture = orders["fixture"]
    stt = STT(configured_chain(names=orders["chain"])) if orders.get("chain") else STT.from_process(ctx.proc)
    session = AgentSession(stt=stt, vad=silero.VAD.load(), turn_handling={"turn_detection": "stt"})
    final: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def heard(event: Any) -> None:
        if event.is_final and not final.done():
            final.set_result({"fixture": fixture, "text": event.transcript,
                              "provider": session.stt.provider if session.stt else None})

    session.on("user_input_transcribed", heard)
    session.input.audio = FixtureAudio(Audio.from_file(FIXTURES / f"{fixture}.wav"))
    await session.start(agent=Agent(instructions="Listen."))
    try:
        return await asyncio.wait_for(final, timeout=60)
    finally:
        await session.aclose()
