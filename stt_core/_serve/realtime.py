"""``/v1/realtime``: OpenAI's Realtime API in transcription mode, over the served chain.

A client connects (``?intent=transcription``; a ``model=`` query is taken as the transcription
model until a ``session.update`` names one), is sent ``session.created``, configures the session
(``session.update``, GA, or ``transcription_session.update``, beta: answered in its own shape,
``protocol``), and appends audio. The server's VAD (or the client's commits) cuts it into items,
each heard by ``stt_core.realtime`` over the chain the model names (``listening``): deltas while
the user speaks (append-only, ``deltas``), then ``completed`` or, when no engine could
transcribe it, ``failed``, after which the session goes on.

Limits, each ending the session with an ``error`` event and a close that says why:

- a key (``api_key``): ``Authorization: Bearer KEY`` or, from a browser, the subprotocol
  ``openai-insecure-api-key.KEY``; a wrong or missing one is closed 1008;
- ``max_realtime_sessions`` at once (from the first ``session.update``): 1013, try again later;
- a message over ``max_message_mb``: 1009; with client turns, more than ``max_buffer_seconds``
  appended without a commit: 1008 (with the server's VAD, audio not yet transcribed past it holds
  the reader back instead: a client faster than real time waits for the engine);
- no ``session.update`` within ``head_timeout`` of connecting, or nothing sent for
  ``realtime_idle_timeout``: 1000 (audio before the first update is held, up to one message's
  worth, so a client that sends its update and its audio together loses nothing);
- a client that reads nothing for ``head_timeout`` while events wait is cut off
  (``http.websocket_protocol``).

A client that goes away stops its session's work at once: its stream and the engine calls in it
are cancelled. Bad events (malformed JSON, an unknown or unsupported type, a bad field) get an
``error`` naming the event and the field, and the session goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, MutableMapping
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket

from .._errors import ConfigError
from .._provider import check_language
from .._realtime import RealtimeSettings
from .admission import POLICY, TRY_LATER, Refusal, Seats, refused
from .listening import Item, Listening, committed
from .models import Models, UnknownEngine
from .protocol import (
    EMPTY_COMMIT,
    BadEvent,
    SessionConfig,
    base64_audio,
    beta_session,
    decode,
    error_event,
    event,
    ga_session,
    new_id,
    read_beta,
    read_ga,
)
from .settings import ServeSettings

logger = logging.getLogger("stt_core.serve")
NORMAL, TOO_BIG = 1000, 1009
MIN_COMMIT = 0.1  # seconds: OpenAI's least committable buffer
MAX_UNSENT = 256  # events waiting for a client that does not read: past it, the session ends
UNSUPPORTED = ("conversation.item.", "response.", "output_audio_buffer.")
Message = MutableMapping[str, Any]


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class _Gone(Exception):
    """The client hung up."""


async def serve_realtime(websocket: WebSocket, *, models: Models, settings: ServeSettings,
                         realtime: RealtimeSettings, seats: Seats) -> None:
    """One ``/v1/realtime`` connection, from its handshake to its close."""
    offered = websocket.scope.get("subprotocols") or []
    # A browser offers "realtime" and the key as subprotocols; the key is never echoed back.
    await websocket.accept(subprotocol="realtime" if "realtime" in offered else None)
    session = Session(websocket, models=models, settings=settings, realtime=realtime, seats=seats)
    await session.run(refused(websocket, settings, seats))


class Session:
    """One client's transcription session (module doc)."""

    def __init__(self, websocket: WebSocket, *, models: Models, settings: ServeSettings,
                 realtime: RealtimeSettings, seats: Seats) -> None:
        self.ws, self.models, self.limits, self.seats = websocket, models, settings, seats
        self.base = realtime
        self.id = new_id("sess")
        self.beta = websocket.headers.get("openai-beta", "").startswith("realtime=v1")
        self.config = SessionConfig(model=websocket.query_params.get("model"))
        self.chain = models.chain
        self.settings = self.config.settings(realtime)
        self.configured = self.seated = self.closing = False
        self.out: asyncio.Queue[Message | _Close] = asyncio.Queue()
        self.listening: Listening | None = None  # the stream hearing the audio now
        self.finishing: Listening | None = None  # the one before it, still transcribing
        self.item: Item | None = None  # with client turns: the item being appended to
        self.uncommitted = 0.0  # seconds appended since the last commit (client turns)
        self.clock = 0.0  # seconds of audio appended in the session
        self.odd = b""  # half a 16-bit sample, for the next append
        self.held: list[bytes] = []  # audio before the first session.update
        self.last_committed: str | None = None
        self._next: asyncio.Future[Message] | None = None  # the next message, read ahead
        self._opened = time.monotonic()

    async def run(self, refusal: Refusal | None) -> None:
        writer = asyncio.ensure_future(self._write())
        try:
            if refusal is not None:
                self._close(refusal.code, refusal.reason, refusal.message, refusal.error)
            else:
                self._send(event("session.created", session=self._described(beta=self.beta)))
                await self._read()
        except _Gone:
            pass
        finally:
            for listening in (self.listening, self.finishing):
                if listening is not None:
                    await listening.stop()  # nobody is left to read it: its work stops now
            if self._next is not None:
                self._next.cancel()
            if self.seated:
                self.seats.give_back()
            if self.closing:  # the error and the close are on their way (bounded: see the module doc)
                await asyncio.wait({writer}, timeout=self.limits.head_timeout + 5)
            writer.cancel()

    # -- reading ------------------------------------------------------------------------------------------

    async def _read(self) -> None:
        while not self.closing:
            message = await self._receive()
            if message is None:
                return
            text = message.get("text")
            if text is None:
                self._error("binary messages are not taken: send each event as JSON text",
                            code="invalid_message")
                continue
            if len(text) > self.limits.max_message_mb * 1_000_000:
                self._close(TOO_BIG, "message too big",
                            f"a message of {len(text) / 1e6:.1f} MB is over max_message_mb "
                            f"({self.limits.max_message_mb:g} MB): append audio in smaller pieces",
                            "message_too_big")
                return
            try:
                data = json.loads(text)
            except ValueError as e:
                self._error(f"the message is not valid JSON: {e}", code="invalid_json")
                continue
            if not isinstance(data, dict) or not isinstance(data.get("type"), str):
                self._error("an event is a JSON object with a string 'type'", code="invalid_event",
                            param="type")
                continue
            try:
                await self._handle(data)
            except BadEvent as e:
                event_id = data.get("event_id") if isinstance(data.get("event_id"), str) else None
                self._error(f"{data['type'][:64]}: {e.message}", code=e.code, param=e.param,
                            event_id=event_id)

    async def _receive(self) -> Message | None:
        """The next message; ``None`` when the session closed for idleness; ``_Gone`` on a hang-up.
        A session is idle when its client sends nothing and nothing it sent is still being
        transcribed (a client waiting for its finals is not idle)."""
        if self._next is None:
            self._next = asyncio.ensure_future(self.ws.receive())
        while True:
            if self.configured:
                wait = self.limits.realtime_idle_timeout
            else:
                wait = self._opened + self.limits.head_timeout - time.monotonic()
            done, _ = await asyncio.wait({self._next}, timeout=max(0.0, wait))
            if done:
                break
            if self.configured and self._transcribing():
                continue
            if self.configured:
                self._close(NORMAL, f"idle for {wait:.0f} s", f"no event for {wait:g} s "
                            "(realtime_idle_timeout): the session is closed", "idle_timeout")
            else:
                self._close(NORMAL, "no session.update", f"no session.update within "
                            f"{self.limits.head_timeout:g} s of connecting (head_timeout): send it first",
                            "session_not_configured")
            return None
        message, self._next = self._next.result(), None
        if message["type"] == "websocket.disconnect":
            raise _Gone
        return message

    def _transcribing(self) -> bool:
        """Whether audio the client sent is still being heard or transcribed."""
        finishing = self.finishing is not None and not self.finishing.task.done()
        return finishing or (self.listening is not None and self.listening.busy)

    async def _watching(self, work: Awaitable[None]) -> None:
        """``work``, while watching for a hang-up: a reader held back (a full buffer, a stream
        finishing) still notices at once that its client left."""
        task: asyncio.Future[None] = asyncio.ensure_future(work)
        if self._next is None:
            self._next = asyncio.ensure_future(self.ws.receive())
        either: set[asyncio.Future[Any]] = {task, self._next}
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if self._next.done() and self._next.result()["type"] == "websocket.disconnect":
            task.cancel()
            raise _Gone
        await task  # the message read ahead waits for its turn

    async def _handle(self, data: dict[str, Any]) -> None:
        kind = data["type"]
        if kind == "session.update":
            await self._update(read_ga(self.config, data.get("session")), beta=False)
        elif kind == "transcription_session.update":
            await self._update(read_beta(self.config, data.get("session")), beta=True)
        elif kind == "input_audio_buffer.append":
            await self._append(base64_audio(data.get("audio")))
        elif kind == "input_audio_buffer.commit":
            await self._commit()
        elif kind == "input_audio_buffer.clear":
            await self._clear()
        elif kind.startswith(UNSUPPORTED):
            raise BadEvent("not part of a transcription session (this server only transcribes: no "
                           "conversation, no responses)", param="type", code="unsupported_event")
        else:
            raise BadEvent("unknown event type", param="type", code="unknown_event")

    # -- the events ---------------------------------------------------------------------------------------

    async def _update(self, config: SessionConfig, *, beta: bool) -> None:
        param = "session.input_audio_transcription" if beta else "session.audio.input.transcription"
        try:
            chain = self.models.resolve(config.model)
        except UnknownEngine as e:
            raise BadEvent(str(e), param=f"{param}.model") from None
        try:
            check_language(config.hint)
        except ConfigError as e:  # not a language code
            raise BadEvent(str(e), param=f"{param}.{config.hint_field}") from None
        if not chain.capabilities.supports_language(config.hint):
            raise BadEvent(f"language {config.hint!r} is not taken by any engine of {chain.model}",
                           param=f"{param}.{config.hint_field}")
        if not self.seated:
            if not self.seats.take():
                self._close(TRY_LATER, "too many realtime sessions",
                            f"the server has {self.seats.limit} realtime sessions open "
                            "(max_realtime_sessions): try again later", "too_many_sessions")
                return
            self.seated = True
        if self.listening is not None and (chain is not self.chain or not config.hears_like(self.config)):
            await self._flush()  # heard so far as before; what comes next, as now asked
        if config.format != self.config.format:
            self.odd = b""
        self.config, self.chain, self.settings = config, chain, config.settings(self.base)
        if beta:
            self._send(event("transcription_session.updated", session=self._described(beta=True)))
        else:
            self._send(event("session.updated", session=self._described(beta=False)))
        if not self.configured:
            self.configured = True
            held, self.held = self.held, []
            for data in held:
                await self._append(data)

    async def _append(self, data: bytes) -> None:
        if not self.configured:
            self.held.append(data)
            if sum(map(len, self.held)) > self.limits.max_message_mb * 1_000_000:
                self._close(POLICY, "audio before session.update",
                            "audio was appended before any session.update: configure the session first",
                            "session_not_configured")
            return
        if self.config.format == "audio/pcm":  # 16-bit samples: an odd byte waits for its pair
            data = self.odd + data
            whole = len(data) // 2 * 2
            data, self.odd = data[:whole], data[whole:]
        if not data:
            return
        audio = decode(data, self.config.format)
        listening = self._listening()
        if self.config.turn_detection is None:
            self.uncommitted += audio.duration
            if self.uncommitted > self.limits.max_buffer_seconds:
                self._close(POLICY, "input audio buffer full",
                            f"{self.uncommitted:.0f} s of audio appended without a commit "
                            f"(max_buffer_seconds = {self.limits.max_buffer_seconds:g}): commit it",
                            "input_audio_buffer_full")
                return
        listening.put(audio)
        self.clock += audio.duration
        if listening.held > self.limits.max_buffer_seconds:
            await self._watching(listening.wait_room())

    async def _commit(self) -> None:
        if self.config.turn_detection is not None:  # the server's VAD: the speech in progress ends now
            if self.listening is None:
                raise BadEvent("no audio appended since the last turn",
                               code=EMPTY_COMMIT)
            await self._flush(commit=True)  # answered once heard: listening.end
            return
        if self.item is None or self.uncommitted < MIN_COMMIT:
            raise BadEvent(f"buffer too small: expected at least {MIN_COMMIT * 1000:.0f} ms of audio, "
                           f"got {self.uncommitted * 1000:.0f} ms", code=EMPTY_COMMIT)
        self.item.seconds = self.uncommitted
        self._send(committed(self.item, self._committing(self.item.id)))
        await self._flush()

    async def _clear(self) -> None:
        if (listening := self.listening) is not None:
            if self.config.turn_detection is None:
                await listening.stop()  # all it heard was the uncommitted item's
                self.listening = None
            else:
                listening.cut()  # the speech in progress goes; turns that already ended are answered
                await self._retire()
        self.listening, self.item, self.uncommitted, self.odd = None, None, 0.0, b""
        self._send(event("input_audio_buffer.cleared"))

    # -- the streams --------------------------------------------------------------------------------------

    def _listening(self) -> Listening:
        if self.listening is None:
            turns = self.config.turn_detection is not None
            self.item = None if turns else Item()
            self.listening = Listening(
                self.chain, self.settings, language=self.config.hint, send=self._send,
                max_buffer=self.limits.max_buffer_seconds, offset=self.clock, item=self.item,
                previous=self.finishing, committing=self._committing)
        return self.listening

    async def _flush(self, *, commit: bool = False) -> None:
        """The audio so far is heard to its end in its stream; the next audio starts another."""
        if self.listening is not None:
            self.listening.end(commit=commit)
            await self._retire()

    async def _retire(self) -> None:
        """The stream hearing now becomes the one finishing. At most one finishes beside the one
        hearing (a flush waits for the one before), so flushes cannot pile streams up."""
        if self.finishing is not None:
            await self._watching(self._finished(self.finishing))
        self.finishing, self.listening, self.item, self.uncommitted = self.listening, None, None, 0.0

    @staticmethod
    async def _finished(listening: Listening) -> None:
        await asyncio.wait({listening.task})  # done, failed or cancelled: its turn is over

    def _committing(self, item_id: str) -> str | None:
        previous, self.last_committed = self.last_committed, item_id
        return previous

    # -- writing ------------------------------------------------------------------------------------------

    def _described(self, *, beta: bool) -> dict[str, Any]:
        describe = beta_session if beta else ga_session
        return describe(self.config, self.id, self.settings)

    def _send(self, message: Message) -> None:
        if self.closing:
            return
        if self.out.qsize() >= MAX_UNSENT:  # it does not read: nothing more is made for it (the
            self.closing = True  # close frame cannot reach it either; the protocol cuts it off)
            logger.info("realtime session %s ended: its client reads nothing", self.id)
            return
        self.out.put_nowait(message)

    def _error(self, message: str, *, code: str, param: str | None = None,
               event_id: str | None = None) -> None:
        self._send(error_event(message, code=code, param=param, event_id=event_id))

    def _close(self, code: int, reason: str, message: str, error_code: str) -> None:
        """An ``error`` that says why, then the close (``reason`` short: a close frame holds 123 bytes)."""
        kind = "server_error" if code == TRY_LATER else "invalid_request_error"
        self._send(error_event(message, kind=kind, code=error_code))
        self.out.put_nowait(_Close(code, reason))
        self.closing = True
        logger.info("realtime session %s closed: %s", self.id, message)

    async def _write(self) -> None:
        with contextlib.suppress(Exception):  # a client gone mid-send: the reader sees it leave
            while True:
                message = await self.out.get()
                if isinstance(message, _Close):
                    await self.ws.close(message.code, message.reason)
                    return
                await self.ws.send_text(json.dumps(message, ensure_ascii=False))
