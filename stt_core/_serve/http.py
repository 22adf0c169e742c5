"""The HTTP layer under ``stt-core serve``'s endpoints: OpenAI-style error bodies, places in line,
the upload bound and its saving, what happens when a client hangs up or a shutdown's grace runs out, and the
head timeout for idle and slowloris connections."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import IO, Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

from .admission import Seats
from .settings import ServeSettings

logger = logging.getLogger("stt_core.serve")
T = TypeVar("T")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


def error_response(status: int, message: str, kind: str, *, param: str | None = None,
                   code: str | None = None, headers: dict[str, str] | None = None) -> JSONResponse:
    """An OpenAI-style error body, which the openai SDK turns into its own error classes."""
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


class Line:
    """At most ``concurrent`` requests inside, ``waiting`` more in line, the rest turned away."""

    def __init__(self, concurrent: int, waiting: int) -> None:
        self._inside = asyncio.Semaphore(concurrent)
        self._admitted = Seats(concurrent + waiting)  # inside and in line

    def admit(self) -> bool:
        return self._admitted.take()

    def leave(self) -> None:
        self._admitted.give_back()

    async def in_turn(self, work: Callable[[], Awaitable[T]]) -> T:
        """``work()`` once one of the ``concurrent`` places is free (made only then: a request
        that leaves while it waits leaves no coroutine behind)."""
        async with self._inside:
            return await work()

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """One of the ``concurrent`` places, held for as long as the block runs (a streamed answer)."""
        async with self._inside:
            yield


class TooLarge(Exception):
    pass


def save_upload(upload: IO[bytes], path: Path) -> int:
    """Write the upload to ``path``; its size in bytes."""
    upload.seek(0)
    with path.open("wb") as out:
        shutil.copyfileobj(upload, out)
        return out.tell()


def too_large(max_upload_mb: float) -> JSONResponse:
    return error_response(413, f"the upload is larger than {max_upload_mb:g} MB (max_upload_mb)",
                          "invalid_request_error", param="file", code="file_too_large")


class BodyLimit:
    """Refuse a body over ``limit`` bytes with 413: at once when Content-Length says so, and while
    it arrives when it does not (chunked: the endpoint stops reading at ``TooLarge``), so an
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
                raise TooLarge
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, send: Callable[[Message], Awaitable[None]]) -> None:
        response = too_large(self.limit / 1_000_000)
        await response({"type": "http"}, _no_body, send)


class AnswerWhenCancelled:
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
            answer = error_response(503, "the server is shutting down: retry the request", "server_error",
                                    code="shutting_down", headers={"Retry-After": "1"})
            await answer(scope, receive, send)  # the cancel is answered here, not passed on
        finally:
            self.in_flight.discard(task)


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class ClientLeft(Exception):
    """The client closed its connection before its answer was ready."""



async def unless_the_client_leaves(request: Request, work: Awaitable[T]) -> T:
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
        raise ClientLeft
    return task.result()


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

        def handle_websocket_upgrade(self, event: Any) -> None:
            self._head_due.cancel()  # the connection is the WebSocket protocol's now
            super().handle_websocket_upgrade(event)

        def _head_overdue(self) -> None:
            waiting_for_a_head = self.cycle is None or self.cycle.response_complete
            if waiting_for_a_head and not self.transport.is_closing():
                self.transport.close()

    return HeadTimeoutProtocol


def websocket_protocol(stall_timeout: float) -> type[asyncio.Protocol]:
    """uvicorn's WebSocket protocol (websockets' sans-I/O one), cutting off a client that reads
    nothing for ``stall_timeout`` seconds: while the server has events for it (uvicorn alone
    would wait for ever on a full send buffer), or once the connection is closing (a close frame
    cannot reach a client that does not read, and asyncio would keep the socket to flush it).
    (It pauses its reading after each message until the app takes it, which is what holds back
    a client faster than the server.)"""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    class StallTimeoutProtocol(WebSocketsSansIOProtocol):
        _stalled: asyncio.TimerHandle | None = None
        _lost = False

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            if (sock := transport.get_extra_info("socket")) is not None:
                # Fixed buffers (the kernel doubles them), not ones that grow to megabytes for a
                # client that does not read, or sends far ahead of what is transcribed: events are
                # small and read at once; 256 kB is 4 s of base64 audio at 24 kHz.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
            close = self.transport.close

            def close_within_the_timeout() -> None:
                close()
                self.loop.call_later(stall_timeout, self._cut_off_if_open)

            self.transport.close = close_within_the_timeout  # type: ignore[method-assign]

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._stalled is None:
                self._stalled = self.loop.call_later(stall_timeout, self._cut_off_if_open)

        def resume_writing(self) -> None:
            super().resume_writing()
            self._resumed()

        def connection_lost(self, exc: Exception | None) -> None:
            self._lost = True
            self._resumed()
            super().connection_lost(exc)

        def _resumed(self) -> None:
            if self._stalled is not None:
                self._stalled.cancel()
                self._stalled = None

        def _cut_off_if_open(self) -> None:
            self._stalled = None
            if not self._lost:
                logger.info("cut off a WebSocket client that read nothing for %g s", stall_timeout)
                self.transport.abort()  # connection_lost follows: the app sees the client gone

    return StallTimeoutProtocol
