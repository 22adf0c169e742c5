"""``stt-core serve``: the configured chain behind an OpenAI-compatible HTTP API (FastAPI, uvicorn).

    POST /v1/audio/transcriptions   multipart: file, model, language, prompt, response_format,
                                    timestamp_granularities[]   (what the openai SDK sends)
    GET  /v1/models                 the chain, as the one model it serves
    GET  /health                    liveness: the process answers
    GET  /ready                     the chain has an engine that can take a request now

Models are loaded before the port opens. A request's body must arrive within ``body_timeout``
and be at most ``max_upload_mb`` (bounded while it arrives, not after); only then does it take a
place in line, so slow uploads never keep real requests out. At most ``max_concurrent`` requests
are transcribed at once and ``max_waiting`` more wait their turn; past that the answer is 429
with Retry-After, never an unbounded queue. The upload goes through the chain as a file, so a
long one is sent in pieces (``transcribe_file``): a request holds one piece of decoded audio,
whatever a small file claims to hold. A client that hangs up cancels its request. Connections
that send no request head within ``head_timeout`` are closed. On SIGTERM uvicorn stops taking
connections and finishes the requests in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import math
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from ._chain import Chain
from ._errors import (
    AllProvidersFailed,
    ConfigError,
    InvalidAudioError,
    ProviderTimeout,
    ProviderUnavailable,
    STTError,
)
from ._server_settings import SECTION, ServeSettings
from .openai_api import RESPONSE_FORMATS, response_body

logger = logging.getLogger("stt_core.serve")
T = TypeVar("T")
MODEL_ID = "stt-core"
__all__ = ["MODEL_ID", "SECTION", "ServeSettings", "create_app", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


def create_app(chain: Chain, settings: ServeSettings | None = None) -> FastAPI:
    """The HTTP API over ``chain``; the app owns the chain (warms it up, closes it)."""
    settings = settings or ServeSettings()
    gate = _Gate(settings.max_concurrent, settings.max_waiting)

    in_flight: set[asyncio.Task[Any]] = set()  # the requests being answered

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await chain.warmup()  # before the port opens: the first request pays no model load
        try:
            yield
        finally:
            if in_flight:  # cancelled by uvicorn when the grace ran out: let them send their 503
                await asyncio.wait(set(in_flight), timeout=5)
            await chain.aclose()

    app = FastAPI(title="stt-core", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> JSONResponse:
        engines = chain.ready()
        return JSONResponse({"ready": bool(engines), "engines": engines, "chain": chain.model},
                            status_code=200 if engines else 503)

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        if denied := _check_key(request, settings):
            return denied
        return JSONResponse({"object": "list", "data": [
            {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": chain.model},
        ]})

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        if denied := _check_key(request, settings):
            return denied
        form: dict[str, Any] = {}
        try:
            try:
                async with asyncio.timeout(settings.body_timeout):
                    form = await _read_form(request)
            except TimeoutError:
                raise _Refused(408, f"the upload did not arrive within {settings.body_timeout:g} s "
                                    "(body_timeout)", code="body_timeout") from None
            _check_servable(chain, form)
            if not gate.admit():
                raise _Refused(429, f"the server is busy ({settings.max_concurrent} requests transcribing "
                                    f"and {settings.max_waiting} waiting): retry later", "rate_limit_error",
                               headers={"Retry-After": "1"})
            try:
                return await _unless_the_client_leaves(request, gate.in_turn(_transcribe(chain, form)))
            finally:
                gate.leave()
        except _TooLarge:
            return _too_large(settings.max_upload_mb)
        except _Refused as e:
            return _error(e.status, e.message, e.kind, param=e.param, code=e.code, headers=e.headers)
        except STTError as e:
            return _stt_error(e, chain)
        except _ClientLeft:
            return Response(status_code=499)  # nobody reads it: the client closed the connection
        finally:
            if upload := form.get("upload"):
                await upload.close()

    app.add_middleware(_BodyLimit, limit=int(settings.max_upload_mb * 1_000_000))
    app.add_middleware(_AnswerWhenCancelled, in_flight=in_flight)
    return app


class _Refused(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", *,
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param
        self.code, self.headers = code, headers


class _ClientLeft(Exception):
    """The client closed its connection before its answer was ready."""


async def _read_form(request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _Refused(400, "expected a multipart/form-data body with a file field")
    try:
        form = await request.form(max_files=1, max_fields=32)
    except _TooLarge:
        raise
    except Exception as e:  # starlette's parse errors: a malformed body
        raise _Refused(400, f"cannot read the multipart body: {e}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _Refused(400, "the file field is missing: send the audio as multipart field 'file'",
                       param="file")
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    if not fields.get("model"):
        raise _Refused(400, "the model field is missing (any value: this server has one model, "
                            f"{MODEL_ID!r})", param="model")
    response_format = fields.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise _Refused(400, f"response_format {response_format!r} is not one of "
                            f"{', '.join(RESPONSE_FORMATS)}", param="response_format")
    granularities = tuple(str(v) for k, v in form.multi_items() if k == "timestamp_granularities[]")
    if unknown := set(granularities) - {"word", "segment"}:
        raise _Refused(400, f"timestamp_granularities {sorted(unknown)} are not word or segment",
                       param="timestamp_granularities")
    return {
        "upload": upload,
        "language": fields.get("language") or None,
        "prompt": fields.get("prompt") or None,
        "response_format": response_format,
        "granularities": granularities or ("segment",),
    }


def _check_servable(chain: Chain, form: dict[str, Any]) -> None:
    """A request no engine of the chain declares it can take is the client's to change (400 naming
    the parameter), not a 503 the client would retry: no wait makes it servable."""
    language = form["language"]
    if not chain.capabilities.supports_language(language):
        raise _Refused(400, f"language {language!r} is not taken by any engine of the chain ({chain.model}): "
                            "send another language, or none to detect it", param="language")
    if "word" in form["granularities"] and not chain.capabilities.word_timestamps:
        raise _Refused(400, f"no engine of the chain ({chain.model}) gives word timestamps",
                       param="timestamp_granularities")


async def _transcribe(chain: Chain, form: dict[str, Any]) -> Response:
    """The upload through the chain as a file, so that a long one goes in pieces: memory is bounded
    by one piece of audio, not by what a small file claims to hold."""
    upload: UploadFile = form["upload"]
    name = upload.filename or "the upload"
    with tempfile.TemporaryDirectory(prefix="stt-core-serve-") as folder:
        path = Path(folder) / "upload"
        if not await asyncio.to_thread(_save, upload.file, path):
            raise InvalidAudioError(f"audio is empty: {name} has no bytes")
        try:
            transcript = await chain.transcribe(
                path, language=form["language"], prompt=form["prompt"],
                word_timestamps="word" in form["granularities"],
            )
        except InvalidAudioError as e:  # said of the temporary file: say it of the client's
            raise InvalidAudioError(str(e).replace(str(path), name)) from None
    body, media_type = response_body(transcript, form["response_format"],
                                     granularities=form["granularities"])
    headers = {"X-STT-Provider": transcript.provider}
    if warnings := transcript.metadata.get("warnings"):  # a truncated upload, transcribed as far as it goes
        said = "; ".join(str(w).replace(str(path), name) for w in warnings)
        headers["X-STT-Warning"] = said.encode("ascii", "backslashreplace").decode()
    return Response(body, media_type=media_type, headers=headers)


def _save(upload: IO[bytes], path: Path) -> int:
    """Write the upload to ``path``; its size in bytes."""
    upload.seek(0)
    with path.open("wb") as out:
        shutil.copyfileobj(upload, out)
        return out.tell()


async def _unless_the_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """``work``, cancelled when the client hangs up first: nobody is left to answer, and its
    engines' time belongs to the requests still waiting (a cancelled call counts against no
    engine's breaker)."""
    task = asyncio.ensure_future(work)

    async def hung_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(hung_up())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise _ClientLeft
    return task.result()


def _stt_error(e: STTError, chain: Chain) -> JSONResponse:
    """The chain's error as an honest status: 400 bad input; 503 when no engine could take it
    (try again after the breakers' cool-down); 504 when they ran out of time; 502 when they failed."""
    if isinstance(e, InvalidAudioError):
        return _error(400, str(e), "invalid_request_error", param="file", code="invalid_audio")
    if isinstance(e, ConfigError):
        return _error(400, str(e), "invalid_request_error")
    causes = [cause for _, cause in e.errors] if isinstance(e, AllProvidersFailed) else [e]
    if all(isinstance(c, ProviderUnavailable) for c in causes):
        wait = max(1, math.ceil(chain.breaker_policy.cooldown))
        return _error(503, str(e), "server_error", code="unavailable", headers={"Retry-After": str(wait)})
    if any(isinstance(c, ProviderTimeout) for c in causes):
        return _error(504, str(e), "server_error", code="timeout")
    return _error(502, str(e), "server_error", code="engines_failed")


def _check_key(request: Request, settings: ServeSettings) -> JSONResponse | None:
    if settings.api_key is None:
        return None
    scheme, _, sent = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(  # the scheme is case-insensitive (RFC 9110)
            sent.strip().encode(), settings.api_key.get_secret_value().encode()):
        return None
    return _error(401, "invalid or missing API key (Authorization: Bearer ...)", "invalid_request_error",
                  code="invalid_api_key")


def _error(status: int, message: str, kind: str, *, param: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> JSONResponse:
    """An OpenAI-style error body, which the openai SDK turns into its own error classes."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


class _Gate:
    """At most ``concurrent`` requests inside, ``waiting`` more in line, the rest turned away."""

    def __init__(self, concurrent: int, waiting: int) -> None:
        self._inside = asyncio.Semaphore(concurrent)
        self._limit = concurrent + waiting
        self._admitted = 0

    def admit(self) -> bool:
        if self._admitted >= self._limit:
            return False
        self._admitted += 1
        return True

    def leave(self) -> None:
        self._admitted -= 1

    async def in_turn(self, work: Awaitable[T]) -> T:
        """``work`` once one of the ``concurrent`` places is free."""
        async with self._inside:
            return await work


class _TooLarge(Exception):
    pass


def _too_large(max_upload_mb: float) -> JSONResponse:
    return _error(413, f"the upload is larger than {max_upload_mb:g} MB (max_upload_mb)",
                  "invalid_request_error", param="file", code="file_too_large")


class _BodyLimit:
    """Refuse a body over ``limit`` bytes with 413: at once when Content-Length says so, and while
    it arrives when it does not (chunked: the endpoint stops reading at ``_TooLarge``), so an
    endless upload never fills memory or disk."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise _TooLarge
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Callable[[Message], Awaitable[None]]) -> None:
        response = _too_large(self.limit / 1_000_000)
        await response({"type": "http"}, _no_body, send)


class _AnswerWhenCancelled:
    """A request still in flight when a shutdown's grace (``shutdown_timeout``) runs out is
    cancelled by uvicorn, which would answer a plain-text 500 and log a traceback: it gets the
    OpenAI error body, 503 with Retry-After, so a client retries (elsewhere) instead."""

    def __init__(self, app: ASGIApp, in_flight: set[asyncio.Task[Any]]) -> None:
        self.app, self.in_flight = app, in_flight

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        task = asyncio.current_task()
        assert task is not None
        self.in_flight.add(task)
        try:
            await self.app(scope, receive, tracked)
        except asyncio.CancelledError:
            if started:
                raise
            answer = _error(503, "the server is shutting down: retry the request", "server_error",
                            code="shutting_down", headers={"Retry-After": "1"})
            await answer(scope, receive, send)  # the cancel is answered here, not passed on
        finally:
            self.in_flight.discard(task)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def serve(chain: Chain, settings: ServeSettings) -> None:
    """Run the server until SIGINT / SIGTERM (then finish the requests in flight)."""
    import uvicorn

    warn_if_open(settings)
    uvicorn.run(create_app(chain, settings), host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=settings.shutdown_timeout, lifespan="on",
                http=head_timeout_protocol(settings.head_timeout))


def warn_if_open(settings: ServeSettings) -> None:
    """A server any other host can reach, with no key asked for, is said to be one."""
    try:
        loopback = settings.host == "localhost" or ipaddress.ip_address(settings.host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        loopback = False
    if settings.api_key is None and not loopback:
        logger.warning("listening on %s with no api_key: anyone who can reach this address can use "
                       "the chain (set [serve] api_key)", settings.host)


def head_timeout_protocol(head_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol, closing a connection that has not sent its request's head within
    ``head_timeout`` seconds of opening or of its last answer: uvicorn alone keeps an idle or a
    slowloris connection (a header byte every few seconds) open for ever. It builds on uvicorn's
    H11Protocol (its loop, transport, cycle and on_response_complete), which the serve tests
    exercise with real sockets."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeadTimeoutProtocol(H11Protocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._head_due = self.loop.call_later(head_timeout, self._head_overdue)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._head_due.cancel()  # the next request's head is due from now
            self._head_due = self.loop.call_later(head_timeout, self._head_overdue)

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_due.cancel()
            super().connection_lost(exc)

        def _head_overdue(self) -> None:
            waiting_for_a_head = self.cycle is None or self.cycle.response_complete
            if waiting_for_a_head and not self.transport.is_closing():
                self.transport.close()

    return HeadTimeoutProtocol
