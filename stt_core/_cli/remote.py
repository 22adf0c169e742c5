"""``stt-core listen --url ws://host:port``: the same listening, through a remote ``stt-core serve``
(its ``/v1/realtime``), so the CLI is a client of its own server.

The audio goes as 24 kHz 16-bit PCM (``audio/pcm``), resampled as it streams; the session asks
for the server's VAD with this machine's ``[realtime]`` threshold, pre-roll and silence, and the
chain (``--chain``, sent as the model) or the server's own. Deltas are shown as the interim,
``completed`` as each final (its engine in ``--format json``). At the end of the audio it sends
a pause as long as the silence that ends a turn, then a commit, which the server answers once it
has heard everything; then it waits for the finals still due. The key is ``[serve] api_key``
(``STT_SERVE__API_KEY``), sent as ``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import soxr

from .._audio.audio import Audio
from .._errors import ConfigError, ProviderError, ProviderUnavailable
from .._realtime import RealtimeSettings
from .._serve.protocol import EMPTY_COMMIT, turn_detection
from .._serve.protocol import PCM_RATE as RATE  # what audio/pcm is taken at
from .._types import StreamEvent


def endpoint(url: str) -> str:
    """``ws://host:port`` (or http://, or a URL already ending in /v1/realtime) as the endpoint."""
    parts = urlsplit(url if "://" in url else f"ws://{url}")
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigError(f"--url {url!r}: give the server as ws://host:port (or wss://, http://, https://)")
    path = parts.path.rstrip("/")
    if not path.endswith("/realtime"):
        path += "/realtime" if path.endswith("/v1") else "/v1/realtime"
    return urlunsplit((scheme, parts.netloc, path, "intent=transcription", ""))


async def pcm24(audio: AsyncIterable[Audio]) -> AsyncIterator[bytes]:
    """Each chunk as 24 kHz mono 16-bit PCM, resampled as a stream (no clicks between chunks)."""
    resampler: soxr.ResampleStream | None = None
    rate = 0
    async for chunk in audio:
        if chunk.sample_rate != rate:
            rate = chunk.sample_rate
            resampler = None if rate == RATE else soxr.ResampleStream(rate, RATE, 1, dtype="float32")
        mono = chunk.mono_float32()
        samples = mono if resampler is None else resampler.resample_chunk(mono)
        yield (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()


async def listen_remote(url: str, audio: AsyncIterable[Audio], show: Any, *, model: str | None,
                        language: str | None, settings: RealtimeSettings, key: str | None) -> int:
    """Stream ``audio`` to the server at ``url``; each event to ``show.event``. 0, or 1 when an
    utterance could not be transcribed."""
    try:
        import websockets
    except ImportError as e:
        raise ConfigError(f"stt-core listen --url needs websockets: pip install 'stt-core[serve]' ({e})"
                          ) from None
    address = endpoint(url)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        connection = await websockets.connect(address, additional_headers=headers, max_size=None)
    except (OSError, websockets.InvalidHandshake) as e:
        raise ProviderUnavailable(f"cannot reach {address}: {e}") from None
    async with connection as ws:
        session = Remote(ws, show)
        await session.start(model=model, language=language, settings=settings)
        sending = asyncio.ensure_future(session.send_all(pcm24(audio), settings))
        try:
            await session.receive()
        finally:
            sending.cancel()
    return 1 if session.failed else 0


class Remote:
    """One session with the server: what it is sent, and its events shown."""

    def __init__(self, ws: Any, show: Any) -> None:
        self.ws, self.show = ws, show
        self.pending: dict[str, float | None] = {}  # item id -> where its speech started
        self.ended: dict[str, float] = {}  # item id -> where its speech ended (the server's VAD said)
        self.texts: dict[str, str] = {}  # item id -> its deltas joined
        self.committed = False  # the last commit is sent: its answer ends the session
        self.failed = 0
        self.padding = 0.0  # prefix_padding_ms asked for: in audio_start_ms, as OpenAI counts it

    async def start(self, *, model: str | None, language: str | None, settings: RealtimeSettings) -> None:
        self.padding = settings.pre_roll
        created = await self._next()
        if created.get("type") != "session.created":
            said = f"the server did not open a session: {_said(created)}"
            if "invalid_api_key" in json.dumps(created):  # the caller's to fix (exit 2), not a failure
                raise ConfigError(f"{said} (the key sent is [serve] api_key here: STT_SERVE__API_KEY)")
            raise ProviderError(said)
        turns = turn_detection(settings)
        transcription = {"model": model or "stt-core", "language": language}
        await self._send({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
            "format": {"type": "audio/pcm", "rate": RATE}, "transcription": transcription,
            "turn_detection": turns}}}})
        updated = await self._next()
        if updated.get("type") != "session.updated":
            raise ConfigError(f"the server refused the session: {_said(updated)}")

    async def send_all(self, pcm: AsyncIterator[bytes], settings: RealtimeSettings) -> None:
        async for data in pcm:
            if data:
                await self._send({"type": "input_audio_buffer.append",
                                  "audio": base64.b64encode(data).decode()})
        # A pause that ends any turn in progress, so the commit finds none: its answer (commit_empty)
        # then comes once the server has heard all of the audio and sent every final.
        pause = bytes(2 * round(RATE * (settings.min_silence + 0.3)))
        await self._send({"type": "input_audio_buffer.append", "audio": base64.b64encode(pause).decode()})
        self.committed = True
        await self._send({"type": "input_audio_buffer.commit"})

    async def receive(self) -> None:
        while True:
            message = await self._next()
            kind = message.get("type")
            if kind == "error":
                if message["error"].get("code") == EMPTY_COMMIT and self.committed:
                    return  # sent after every final of the audio before it
                raise ProviderError(f"the server said: {_said(message)}")
            self._show(kind, message)

    def _show(self, kind: str | None, message: dict[str, Any]) -> None:
        item = str(message.get("item_id", ""))
        if kind == "input_audio_buffer.speech_started":
            start = message["audio_start_ms"] / 1000 + self.padding  # where the VAD heard speech start
            self.pending[item], self.texts[item] = start, ""
            self.show.event(StreamEvent("speech_start", "", start=start))
        elif kind == "input_audio_buffer.speech_stopped":
            self.ended[item] = message["audio_end_ms"] / 1000
            self.show.event(StreamEvent("speech_end", "", start=self.pending.get(item), end=self.ended[item]))
        elif kind == "conversation.item.input_audio_transcription.delta":
            self.texts[item] = self.texts.get(item, "") + str(message.get("delta") or "")
            self.show.event(StreamEvent("interim", self.texts[item], start=self.pending.get(item)))
        elif kind == "conversation.item.input_audio_transcription.completed":
            languages = message.get("languages") or [{}]
            self.show.event(StreamEvent("final", str(message.get("transcript", "")),
                                        start=self.pending.pop(item, None), end=self.ended.pop(item, None),
                                        language=languages[0].get("code"),
                                        provider=str(message.get("engine", ""))))
            self.texts.pop(item, None)
        elif kind == "conversation.item.input_audio_transcription.failed":
            self.failed += 1
            self.pending.pop(item, None)
            self.ended.pop(item, None)
            self.show.event(StreamEvent("failed", "", error=ProviderError(_said(message))))

    async def _next(self) -> dict[str, Any]:
        import websockets

        try:
            message = json.loads(await self.ws.recv())
        except websockets.ConnectionClosed as e:
            reason = e.rcvd.reason if e.rcvd is not None else ""
            raise ProviderError(f"the server closed the session: {reason or 'connection lost'}") from None
        if not isinstance(message, dict):
            raise ProviderError(f"the server sent {message!r}, not an event")
        return message

    async def _send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))


def _said(message: dict[str, Any]) -> str:
    error = message.get("error")
    return str(error.get("message", error)) if isinstance(error, dict) else json.dumps(message)
