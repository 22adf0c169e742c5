"""``stream=true`` on ``POST /v1/audio/transcriptions``: the answer as server-sent events, as
OpenAI streams it (the openai SDK's ``stream=True`` reads them):

    data: {"type": "transcript.text.delta", "delta": "..."}     one per piece of the file, in order
    data: {"type": "transcript.text.done", "text": "...", "usage": {"type": "duration", "seconds": ...}}

The file is cut at pauses near every ``PIECE_SECONDS`` (``file_pieces``, never decoded whole) and
each piece's transcript is a delta as soon as the chain gives it, so a long file shows its words
as they are transcribed. The deltas joined are the pieces' texts joined as for any long file
(``joined_text``): a piece's closing full stop waits for the next piece, which may show it was
the cut's. The first piece is transcribed before the answer starts: a request that fails at once
gets the HTTP status the non-streamed one would; a later failure is an ``error`` event (the SDK
raises it) and ends the stream. The request keeps its place in line until the
stream ends; a client that hangs up cancels the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from .._audio.files import file_pieces
from .._chain.chain import Chain
from .._errors import InvalidAudioError, STTError
from .._provider import file_transcripts
from .._types import joined_text
from .http import Line, save_upload, unless_the_client_leaves

PIECE_SECONDS = 30.0  # a delta every 30 s of audio at most (whisper's own window)
STREAMED_FORMATS = ("json", "text")


async def streamed(chain: Chain, form: dict[str, Any], line: Line, request: Request,
                   error_body: Callable[[STTError], dict[str, Any]]) -> StreamingResponse:
    """The SSE answer. It owns the request's place in line from here (``line.leave()`` when the
    stream ends), so the caller must not leave it once this returned."""
    held = contextlib.AsyncExitStack()  # what the stream holds until it ends
    try:
        path = Path(held.enter_context(tempfile.TemporaryDirectory(prefix="stt-core-serve-"))) / "upload"
        upload: UploadFile = form["upload"]
        if not await asyncio.to_thread(save_upload, upload.file, path):
            raise InvalidAudioError(f"audio is empty: {upload.filename or 'the upload'} has no bytes")
        await unless_the_client_leaves(request, held.enter_async_context(line.turn()))  # gone: never run
        events = _events(chain, path, form, upload.filename or "the upload")
        held.push_async_callback(events.aclose)
        first = await unless_the_client_leaves(request, anext(events))
    except BaseException:
        await held.aclose()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            async with held:
                yield first
                try:
                    async for chunk in events:
                        yield chunk
                except STTError as e:  # past the first piece the status is sent: an error event ends it
                    yield _data(error_body(e))
        finally:
            line.leave()

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _events(chain: Chain, path: Path, form: dict[str, Any], name: str) -> AsyncGenerator[bytes]:
    heard = _heard(chain, path, form)
    try:
        async with contextlib.aclosing(heard):
            async for event in heard:
                yield event
    except InvalidAudioError as e:  # said of the temporary file (opened, or a piece): say it of the client's
        raise InvalidAudioError(str(e).replace(str(path), name)) from None


async def _heard(chain: Chain, path: Path, form: dict[str, Any]) -> AsyncGenerator[bytes]:
    file = file_pieces(path, PIECE_SECONDS)
    heard = file_transcripts(chain, file, language=form["language"], prompt=form["prompt"],
                             word_timestamps=False)
    texts: list[str] = []
    sent, language, provider, seconds = "", None, "", 0.0
    async with contextlib.aclosing(heard):
        async for start, end, result in heard:
            seconds = end
            if isinstance(result, STTError):
                raise result  # a piece lost: the client can ask again, and gets the whole text then
            language, provider = language or result.language, result.provider
            if text := result.text.strip():
                texts.append(text)
                # A piece's closing full stop waits for the next piece: if that goes on in lower
                # case, the stop was the cut's, and the joined text drops it (``Transcript.joined``).
                joined = joined_text(texts)
                if delta := joined.removesuffix(".")[len(sent):]:
                    sent += delta
                    yield _data({"type": "transcript.text.delta", "delta": delta})
            elif not texts and start == 0:
                yield b": nothing heard in the first piece\n\n"  # a comment: the answer starts, no text
    text = joined_text(texts)
    if text[len(sent):]:  # the last piece's full stop
        yield _data({"type": "transcript.text.delta", "delta": text[len(sent):]})
    done: dict[str, Any] = {"type": "transcript.text.done", "text": text,
                            "usage": {"type": "duration", "seconds": round(file.duration or seconds, 3)},
                            "engine": provider}
    if language:
        done["languages"] = [{"code": language}]
    yield _data(done)


def _data(payload: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()
