"""A fake Deepgram API on 127.0.0.1 that speaks the real wire protocol.

- ``POST /v1/listen?model=...`` with ``Authorization: Token <key>`` and the audio as the body:
  the pre-recorded API's JSON (``metadata``, ``results.channels[].alternatives[]`` with words).
- ``GET /v1/listen`` upgraded to a WebSocket: binary linear16 frames in; ``Results`` messages
  (interim and final, with ``start``/``duration``) out as the audio passes each scripted utterance;
  ``KeepAlive``, ``Finalize`` and ``CloseStream`` JSON messages handled as Deepgram does.

The fake does not recognise speech: a test scripts what the audio says (``utterances``, with
times), and the fake checks the audio it received. Faults: queued HTTP statuses (``429`` with
Retry-After, ``500``, ``401``, ``bad_json``, ``slow``, and 200s that are not transcripts:
``html``, ``empty_object``), a bad key refused at the WebSocket handshake, ``drop_after`` seconds
of streamed audio (over all sockets), when the socket dies with no close frame (every socket after
it too, unless ``drop_once``), and live ``mode``s: ``"mute"`` takes
audio and says nothing (pings still answered), ``"skipped"`` sends only messages the SDK skips,
``"bogus_final"`` sends an empty final result claiming to end at 1000 s after the first audio.
Every answer carries ``confidence`` (its best alternative's); a batch request with
``detect_language=true`` is answered in ``detected_language``, one with ``language`` in that one.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import soundfile as sf
from aiohttp import WSMsgType, web

from stt_core import Audio

KEY = "dg_test_secret_key_abcdef0123456789"
RATE = 16_000


@dataclass
class FakeDeepgram:
    utterances: list[tuple[float, float, str]] = field(default_factory=list)
    confidence: float = 0.98
    detected_language: str = "en"
    faults: deque[str] = field(default_factory=deque)
    slow_seconds: float = 3.0
    drop_after: float | None = None
    drop_once: bool = False  # only the first socket to pass drop_after dies (the engine comes back)
    mode: str = "normal"
    url: str = ""
    open_sockets: int = 0  # live sockets the server still holds
    # What the fake saw, for the tests to check.
    batch_requests: list[tuple[dict[str, str], Audio]] = field(default_factory=list)
    stream_params: list[dict[str, str]] = field(default_factory=list)
    streamed: bytearray = field(default_factory=bytearray)
    control: list[str] = field(default_factory=list)
    attempts: int = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_post("/v1/listen", self.prerecorded)
        app.router.add_get("/v1/listen", self.live)
        return app

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Token {KEY}"

    # -- pre-recorded -----------------------------------------------------------------------------

    async def prerecorded(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        fault = self.faults.popleft() if self.faults else None
        if fault == "401" or not self._authorised(request):
            return _error(401, "INVALID_AUTH", "Invalid credentials.")
        body = await request.read()
        try:
            samples, rate = sf.read(io.BytesIO(body), dtype="float32")
        except sf.LibsndfileError:
            return _error(400, "Bad Request", "failed to process audio: corrupt or unsupported data")
        if fault == "429":
            return _error(429, "TOO_MANY_REQUESTS", "Too many requests", headers={"Retry-After": "1"})
        if fault == "500":
            return _error(500, "INTERNAL_SERVER_ERROR", "Something went wrong")
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        audio = Audio(samples, rate)
        self.batch_requests.append((dict(request.query), audio))
        if fault == "bad_json":
            return web.Response(body=b'{"metadata": {', content_type="application/json")
        if fault == "html":
            return web.Response(body=b"<html><title>502 Bad Gateway</title></html>", content_type="text/html")
        if fault == "empty_object":
            return web.json_response({})
        words = [w for _, _, text in self.utterances for w in text.split()]
        transcript = " ".join(words)
        return web.json_response({
            "metadata": {"transaction_key": "deprecated", "request_id": str(uuid.uuid4()), "sha256": "0" * 64,
                         "created": "2026-11-24T00:00:00.000Z", "duration": audio.duration, "channels": 1,
                         "models": ["30089e05"], "model_info": {}},
            "results": {"channels": [{
                "detected_language": (self.detected_language if request.query.get("detect_language") == "true"
                                      else request.query.get("language", "en")),
                "alternatives": [{"transcript": transcript, "confidence": self.confidence,
                                  "words": _words(self.utterances)}],
            }]},
        })

    # -- live -------------------------------------------------------------------------------------

    async def live(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        if not self._authorised(request):
            return _error(401, "INVALID_AUTH", "Invalid credentials.")
        self.stream_params.append(dict(request.query))
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self.open_sockets += 1
        try:
            return await self._live(request, ws)
        finally:
            self.open_sockets -= 1

    async def _live(self, request: web.Request, ws: web.WebSocketResponse) -> web.WebSocketResponse:
        received = 0.0
        interim_sent: set[int] = set()
        final_sent: set[int] = set()

        async def results(index: int, final: bool, from_finalize: bool = False) -> None:
            start, end, text = self.utterances[index]
            words = text.split()
            if not final:
                words = words[: max(1, len(words) // 2)]
            await ws.send_json(_results(start, end, " ".join(words), final, from_finalize, self.confidence))

        async for message in ws:
            if message.type == WSMsgType.BINARY:
                first = not self.streamed
                self.streamed += message.data
                received = len(self.streamed) / 2 / RATE
                if self.mode == "mute":
                    continue
                if self.mode == "skipped":
                    await ws.send_json({"type": "SpeechStarted", "channel": [0], "timestamp": received})
                    continue
                if self.mode == "bogus_final" and first:
                    await ws.send_json(_results(0.0, 1000.0, "", True, False, self.confidence))
                if self.drop_after is not None and received >= self.drop_after:
                    assert request.transport is not None
                    request.transport.abort()  # dies with no close frame, as a network fault does
                    if self.drop_once:
                        self.drop_after = None
                    break
                for i, (start, end, _) in enumerate(self.utterances):
                    if i not in final_sent and received >= end:
                        final_sent.add(i)
                        await results(i, final=True)
                    elif i not in interim_sent and i not in final_sent and received >= (start + end) / 2:
                        interim_sent.add(i)
                        await results(i, final=False)
            elif message.type == WSMsgType.TEXT:
                kind = json.loads(message.data)["type"]
                self.control.append(kind)
                if kind == "Finalize":  # flush what was heard so far
                    for i, (start, _, _) in enumerate(self.utterances):
                        if i not in final_sent and received > start:
                            final_sent.add(i)
                            await results(i, final=True, from_finalize=True)
                elif kind == "CloseStream":
                    await ws.send_json({"type": "Metadata", "transaction_key": "deprecated",
                                        "request_id": str(uuid.uuid4()), "sha256": "0" * 64,
                                        "created": "2026-11-24T00:00:00.000Z", "duration": received,
                                        "channels": 1})
                    await ws.close()
        return ws

    def streamed_audio(self) -> np.ndarray:
        return np.frombuffer(bytes(self.streamed), dtype=np.int16)


def _words(utterances: list[tuple[float, float, str]]) -> list[dict[str, object]]:
    out = []
    for start, end, text in utterances:
        words = text.split()
        step = (end - start) / max(1, len(words))
        out += [{"word": w.lower().strip(".,"), "punctuated_word": w, "start": start + i * step,
                 "end": start + (i + 1) * step, "confidence": 0.97} for i, w in enumerate(words)]
    return out


def _results(
    start: float, end: float, text: str, final: bool, from_finalize: bool, confidence: float
) -> dict[str, object]:
    return {
        "type": "Results", "channel_index": [0, 1], "duration": end - start, "start": start,
        "is_final": final, "speech_final": final, "from_finalize": from_finalize,
        "channel": {"alternatives": [{"transcript": text, "confidence": confidence,
                                      "words": _words([(start, end, text)])}]},
        "metadata": {"request_id": str(uuid.uuid4()),
                     "model_info": {"name": "general-nova-3", "version": "2025-04-17.21547",
                                    "arch": "nova-3"},
                     "model_uuid": str(uuid.uuid4())},
    }


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"err_code": code, "err_msg": message, "request_id": str(uuid.uuid4())},
                             status=status, headers=headers)
