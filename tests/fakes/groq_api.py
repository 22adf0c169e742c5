"""A fake Groq API (and, as ``FakeOpenAI``, OpenAI's) on 127.0.0.1 that speaks the real wire protocol.

``POST /openai/v1/audio/transcriptions`` takes the OpenAI-style multipart form the SDK sends
(``file``, ``model``, ``language``, ``prompt``, ``response_format``, ``temperature``,
``timestamp_granularities[]``) with ``Authorization: Bearer <key>``, decodes the audio, records the
request, and answers with verbose_json. ``GET /openai/v1/models`` answers a model list. Faults are
queued per request: ``429`` (with Retry-After), ``500``, ``401``, ``401_echo`` (a 401 whose message
quotes the key sent), ``bad_model`` (a 400 about the server's model file), ``slow`` (answers after
``slow_seconds``), ``drop`` (closes the connection in the middle of the body), ``bad_json``, and
answers that are not transcripts: ``html`` (a proxy's 502 page with status 200), ``empty_object``
(``{}``), ``empty`` (no body); ``trickle`` (a good answer a byte at a time), ``huge`` (5 MB of
JSON), ``redirect`` (307 to ``redirect_to``), ``bad_times`` (NaN, infinite, negative, unordered
times). ``down = True`` is an outage: every endpoint answers 500, the
model list (the provider's health check) included.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections import deque
from dataclasses import dataclass, field

import soundfile as sf
from aiohttp import web

from stt_core import Audio

KEY = "gsk_test_secret_key_0123456789"
NOT_TRANSCRIPTS = {  # 200s that a proxy, a broken deploy or a half-configured gateway send
    "html": (b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>", "text/html"),
    "empty_object": (b"{}", "application/json"),
    "empty": (b"", "application/json"),
}


@dataclass
class Received:
    fields: dict[str, str | list[str]]
    audio: Audio
    filename: str


@dataclass
class FakeGroq:
    text: str = "hello from groq"
    max_upload_bytes: int | None = None  # a file larger than this: 413
    language: str = "english"
    avg_logprob: float = -0.2  # the Whisper signals each verbose_json segment carries
    no_speech_prob: float = 0.01
    temperature: float = 0.0
    compression_ratio: float = 1.1
    faults: deque[str] = field(default_factory=deque)
    retry_after: str = "1"
    slow_seconds: float = 3.0
    latency: float = 0.0  # every answer takes this long, as a real engine's inference does
    requests: list[Received] = field(default_factory=list)
    attempts: int = 0  # every request, faulty or not
    health_checks: int = 0
    down: bool = False
    slow_transports: list[asyncio.BaseTransport] = field(default_factory=list)  # sockets of "slow" requests
    url: str = ""
    prefix: str = "/openai/v1"  # where the groq SDK sends its requests
    key: str | None = KEY  # None: a self-hosted server that asks for no key
    redirect_to: str = ""  # where the "redirect" fault sends the client

    def app(self) -> web.Application:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_post(f"{self.prefix}/audio/transcriptions", self.transcriptions)
        app.router.add_get(f"{self.prefix}/models", self.models)
        return app

    def _authorised(self, request: web.Request) -> bool:
        return self.key is None or request.headers.get("Authorization") == f"Bearer {self.key}"

    async def models(self, request: web.Request) -> web.StreamResponse:
        self.health_checks += 1
        if self.down:
            return _error(500, "Internal Server Error", "internal_server_error")
        if not self._authorised(request):
            return _error(401, "Invalid API Key", "invalid_api_key")
        models = [{"id": "whisper-large-v3-turbo", "object": "model"}]
        return web.json_response({"object": "list", "data": models})

    async def transcriptions(self, request: web.Request) -> web.StreamResponse:
        self.attempts += 1
        fault = self.faults.popleft() if self.faults else None
        if fault == "401_echo":  # a gateway that quotes the credential it refused
            sent = request.headers.get("Authorization", "")
            return _error(401, f"Invalid API Key: {sent} (api_key={sent.removeprefix('Bearer ')})",
                          "invalid_api_key")
        if fault == "401" or not self._authorised(request):
            return _error(401, "Invalid API Key", "invalid_api_key")
        fields: dict[str, str | list[str]] = {}
        audio, filename = None, ""
        async for part in await request.multipart():
            if part.name == "file":
                filename = part.filename or ""
                data = await part.read()
                if self.max_upload_bytes is not None and len(data) > self.max_upload_bytes:
                    return _error(413, "Request Entity Too Large", "request_too_large")  # as Groq's 25 MB
                samples, rate = sf.read(io.BytesIO(data), dtype="float32")
                audio = Audio(samples, rate)
            elif part.name and part.name.endswith("[]"):
                fields.setdefault(part.name[:-2], []).append(await part.text())  # type: ignore[union-attr]
            elif part.name:
                fields[part.name] = await part.text()
        if audio is None or "model" not in fields:
            return _error(400, "file and model are required", "invalid_request_error")
        if fault == "429":
            return _error(429, "Rate limit reached for model", "rate_limit_exceeded",
                          headers={"retry-after": self.retry_after})
        if fault == "500" or self.down:
            return _error(500, "Internal Server Error", "internal_server_error")
        if fault == "bad_model":  # the server's own set-up is broken, not the caller's audio
            return _error(400, "could not load model file whisper-9.bin", "invalid_request_error")
        if fault == "bad_audio":
            return _error(400, "could not process file - is it a valid media file?", "invalid_request_error")
        if self.latency:
            await asyncio.sleep(self.latency)
        if fault == "slow":
            assert request.transport is not None
            self.slow_transports.append(request.transport)
            await asyncio.sleep(self.slow_seconds)
        self.requests.append(Received(fields, audio, filename))
        body = self._answer(audio, len(self.requests), fields.get("response_format"))
        if fault == "bad_json":
            return web.Response(body=b'{"text": "half an ans', content_type="application/json")
        if fault == "trickle":  # a whole answer, a byte every 0.2 s: no single read is slow
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            for byte in body:
                await response.write(bytes([byte]))
                await asyncio.sleep(0.2)
            return response
        if fault == "huge":  # 5 MB of JSON, its size not declared
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            await response.prepare(request)
            await response.write(b'{"text": "' + b"a" * 5_000_000 + b'"}')
            return response
        if fault == "redirect":  # to another origin, which would get the audio and the key
            raise web.HTTPTemporaryRedirect(self.redirect_to)
        if fault == "bad_times":  # NaN, infinite, negative and out-of-order times
            answer = json.loads(body)
            answer["duration"] = float("nan")
            answer["segments"] = [
                {**answer["segments"][0], "start": 2.0, "end": float("inf"), "text": " second"},
                {**answer["segments"][0], "start": -1.0, "end": 1.0, "text": " first"},
                {**answer["segments"][0], "start": float("nan"), "end": 3.0, "text": " third"},
            ]
            answer["words"] = [{"word": "w", "start": float("nan"), "end": 1.0}]
            return web.Response(body=json.dumps(answer).encode(), content_type="application/json")
        if fault in NOT_TRANSCRIPTS:
            body, content_type = NOT_TRANSCRIPTS[fault]
            return web.Response(body=body, headers={"Content-Type": content_type})
        if fault == "drop":
            response = web.StreamResponse(headers={"Content-Type": "application/json",
                                                   "Content-Length": str(len(body))})
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
            assert request.transport is not None
            request.transport.close()  # the connection dies mid-body
            return response
        if fields.get("response_format") == "text":
            return web.Response(body=body, content_type="text/plain")
        return web.Response(body=body, content_type="application/json")

    def _answer(self, audio: Audio, number: int, response_format: object) -> bytes:
        verbose = self._verbose(audio, number)
        if response_format == "text":
            return str(verbose["text"]).encode() + b"\n"
        if response_format == "json":
            return json.dumps({"text": verbose["text"]}).encode()
        return json.dumps(verbose).encode()

    def _verbose(self, audio: Audio, number: int) -> dict[str, object]:
        text = self.text.replace("{n}", str(number))
        words = text.split()
        step = audio.duration / max(1, len(words))
        return {
            "task": "transcribe",
            "language": self.language,
            "duration": audio.duration,
            "text": " " + text,
            "segments": [{
                "id": 0, "seek": 0, "start": 0.0, "end": audio.duration, "text": " " + text,
                "tokens": [50364, 2425], "temperature": self.temperature, "avg_logprob": self.avg_logprob,
                "compression_ratio": self.compression_ratio, "no_speech_prob": self.no_speech_prob,
            }],
            "words": [{"word": w, "start": i * step, "end": (i + 1) * step} for i, w in enumerate(words)],
            "x_groq": {"id": f"req_{number:04d}"},
        }


def _error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> web.Response:
    error_type = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": error_type, "code": code}},
                             status=status, headers=headers)


@dataclass
class FakeOpenAI(FakeGroq):
    """The same API where the openai SDK (and vLLM, speaches, LocalAI) serve it: under ``/v1``."""

    text: str = "hello from openai"
    prefix: str = "/v1"
