"""``stt-core serve``: the configured chain behind an OpenAI-compatible HTTP API (FastAPI, uvicorn).

    POST /v1/audio/transcriptions   multipart: file, model, language, languages[], prompt,
                                    response_format, timestamp_granularities[], stream
                                    (what the openai SDK sends)
    WS   /v1/realtime               OpenAI's Realtime API, transcription intent (``realtime``)
    GET  /                          a page to try it in a browser (``page``)
    GET  /v1/models                 the chain, as the one model it serves
    GET  /health                    liveness: the process answers
    GET  /ready                     the chain has an engine that can take a request now
    GET  /metrics                   stt-core's metrics in Prometheus text (behind api_key when set)

Models are loaded before the port opens. A request's body must arrive within ``body_timeout``
and be at most ``max_upload_mb`` (bounded while it arrives, not after); only then does it take a
place in line, so slow uploads never keep real requests out. At most ``max_concurrent`` requests
are transcribed at once and ``max_waiting`` more wait their turn; past that the answer is 429
with Retry-After, never an unbounded queue. The upload goes through the chain as a file, so a
long one is sent in pieces (``transcribe_file``): a request holds one piece of decoded audio,
whatever a small file claims to hold. A client that hangs up cancels its request. Connections
that send no request head within ``head_timeout`` are closed. On SIGTERM uvicorn stops taking
connections and finishes the requests in flight. A client's ``traceparent`` header makes the
request's span (``stt_core.telemetry``) a child of the client's.
"""

from __future__ import annotations

import asyncio
import json
import math
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from .. import telemetry
from .._chain.chain import Chain
from .._errors import (
    AllProvidersFailed,
    ConfigError,
    InvalidAudioError,
    ProviderTimeout,
    ProviderUnavailable,
    STTError,
)
from .._provider import transcribe_file
from .._realtime import RealtimeSettings
from .._registry import UnusableEngine, install_command
from ..openai_api import RESPONSE_FORMATS, response_body
from .admission import Seats, bearer, holds_the_key
from .http import (
    AnswerWhenCancelled,
    BodyLimit,
    ClientLeft,
    Line,
    TooLarge,
    error_response,
    head_timeout_protocol,
    save_upload,
    too_large,
    unless_the_client_leaves,
    warn_if_open,
    websocket_protocol,
)
from .models import Models, UnknownEngine
from .page import page
from .protocol import language_hint
from .realtime import serve_realtime
from .settings import ServeSettings
from .streaming import STREAMED_FORMATS, streamed

MODEL_ID = "stt-core"


def create_app(chain: Chain, settings: ServeSettings | None = None, *,
               realtime: RealtimeSettings | None = None) -> FastAPI:
    """The HTTP API over ``chain``; the app owns the chain (warms it up, closes it). ``realtime``
    is what ``/v1/realtime`` starts from (the ``[realtime]`` table) before a client's VAD settings."""
    settings = settings or ServeSettings()
    line = Line(settings.max_concurrent, settings.max_waiting)
    named = Models(chain)  # what a request's model names
    seats = Seats(settings.max_realtime_sessions)
    realtime = realtime or RealtimeSettings()

    in_flight: set[asyncio.Task[Any]] = set()  # the requests being answered
    running: dict[str, Prometheus] = {}  # while the server runs: its /metrics

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await chain.warmup()  # before the port opens: the first request pays no model load
        if settings.metrics:  # made here, not with the app: an app never started adds no reader
            running["prometheus"] = Prometheus()
        try:
            yield
        finally:
            if in_flight:  # cancelled by uvicorn when the grace ran out: let them send their 503
                await asyncio.wait(set(in_flight), timeout=5)
            await chain.aclose()
            if prometheus := running.pop("prometheus", None):
                prometheus.close()

    app = FastAPI(title="stt-core", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        # The status is for anyone (a load balancer's probe has no key); which engines the chain
        # has is for clients with the key, when there is one.
        engines = chain.ready()
        status = 200 if engines else 503
        if settings.api_key is not None and _check_key(request, settings) is not None:
            return JSONResponse({"ready": bool(engines)}, status_code=status)
        return JSONResponse({"ready": bool(engines), "engines": engines, "chain": chain.model},
                            status_code=status)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        if denied := _check_key(request, settings):
            return denied
        if (prometheus := running.get("prometheus")) is None:
            return error_response(404, "metrics are off ([serve] metrics = false)", "invalid_request_error")
        body, media_type = prometheus.text()
        return Response(body, media_type=media_type)

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        if denied := _check_key(request, settings):
            return denied
        return JSONResponse({"object": "list", "data": [
            {"id": MODEL_ID, "object": "model", "created": 0, "owned_by": chain.model},
        ]})

    if settings.page:
        @app.get("/", include_in_schema=False)
        async def index() -> Response:
            return page(chain, needs_key=settings.api_key is not None)

    @app.websocket("/v1/realtime")
    async def realtime_session(websocket: WebSocket) -> None:
        await serve_realtime(websocket, models=named, settings=settings, realtime=realtime, seats=seats)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request) -> Response:
        if denied := _check_key(request, settings):
            return denied
        form: dict[str, Any] = {}
        streaming, engines = False, chain  # engines: the chain the request's model names
        try:
            try:
                async with asyncio.timeout(settings.body_timeout):
                    form = await _read_form(request)
            except TimeoutError:
                raise _Refused(408, f"the upload did not arrive within {settings.body_timeout:g} s "
                                    "(body_timeout)", code="body_timeout") from None
            try:
                engines = named.resolve(form["model"])
            except UnknownEngine as e:
                raise _Refused(400, str(e), param="model") from None
            _check_servable(engines, form)
            if not line.admit():
                raise _Refused(429, f"the server is busy ({settings.max_concurrent} requests transcribing "
                                    f"and {settings.max_waiting} waiting): retry later", "rate_limit_error",
                               headers={"Retry-After": "1"})
            try:
                with telemetry.remote_parent(request.headers):  # the client's trace goes on here
                    if form["stream"]:
                        answer = await streamed(engines, form, line, request,
                                                lambda e: _error_body(e, engines, form))
                        streaming = True  # the stream leaves its place in line when it ends
                        return answer
                    transcribing = line.in_turn(lambda: _transcribe(engines, form))
                    return await unless_the_client_leaves(request, transcribing)
            finally:
                if not streaming:
                    line.leave()
        except TooLarge:
            return too_large(settings.max_upload_mb)
        except _Refused as e:
            return error_response(e.status, e.message, e.kind, param=e.param, code=e.code, headers=e.headers)
        except STTError as e:
            return _stt_error(e, engines, form)
        except ClientLeft:
            return Response(status_code=499)  # nobody reads it: the client closed the connection
        finally:
            if upload := form.get("upload"):
                await upload.close()

    app.add_middleware(BodyLimit, limit=int(settings.max_upload_mb * 1_000_000))
    app.add_middleware(AnswerWhenCancelled, in_flight=in_flight)
    return app


class Prometheus:
    """stt-core's metrics for ``/metrics``: an OpenTelemetry SDK meter provider of the server's own,
    read by the Prometheus exporter into a registry of its own, added to the global one (which
    an application's own OpenTelemetry set-up keeps exporting wherever it does)."""

    def __init__(self) -> None:
        try:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.resources import SERVICE_NAME, Resource
            from prometheus_client import CollectorRegistry
        except ImportError as e:
            raise ConfigError(f"/metrics needs the serve extra: {install_command('serve')} ({e}); "
                              "or set [serve] metrics = false") from e
        self.registry = CollectorRegistry()
        resource = Resource.create()  # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, where set
        if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
            resource = Resource.create({SERVICE_NAME: "stt-core"})
        self.provider = MeterProvider(metric_readers=[PrometheusMetricReader(registry=self.registry)],
                                      resource=resource)
        telemetry.add_meter_provider(self.provider)

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        telemetry.remove_meter_provider(self.provider)
        self.provider.shutdown()


class _Refused(Exception):
    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", *,
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param
        self.code, self.headers = code, headers


async def _read_form(request: Request) -> dict[str, Any]:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise _Refused(400, "expected a multipart/form-data body with a file field")
    try:
        form = await request.form(max_files=1, max_fields=32)
    except TooLarge:
        raise
    except Exception as e:  # starlette's parse errors: a malformed body
        raise _Refused(400, f"cannot read the multipart body: {e}") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise _Refused(400, "the file field is missing: send the audio as multipart field 'file'",
                       param="file")
    fields = {key: value for key, value in form.multi_items() if isinstance(value, str)}
    if not fields.get("model"):
        raise _Refused(400, f"the model field is missing ({MODEL_ID!r} or any name: the server's chain; "
                            "an engine of it, or engines joined by commas: those)", param="model")
    response_format = fields.get("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise _Refused(400, f"response_format {response_format!r} is not one of "
                            f"{', '.join(RESPONSE_FORMATS)}", param="response_format")
    granularities = tuple(str(v) for k, v in form.multi_items() if k == "timestamp_granularities[]")
    if unknown := set(granularities) - {"word", "segment"}:
        raise _Refused(400, f"timestamp_granularities {sorted(unknown)} are not word or segment",
                       param="timestamp_granularities")
    stream = (fields.get("stream") or "false").lower()
    if stream not in ("true", "false"):
        raise _Refused(400, f"stream {fields.get('stream')!r} is not true or false", param="stream")
    if stream == "true" and response_format not in STREAMED_FORMATS:
        raise _Refused(400, "stream=true answers with transcript.text.delta events: response_format "
                            f"{' or '.join(STREAMED_FORMATS)}, not {response_format!r}",
                       param="response_format")
    return {
        "upload": upload,
        "model": fields["model"],
        "stream": stream == "true",
        "language": language_hint(fields.get("language") or None,
                                  tuple(str(v) for k, v in form.multi_items() if k == "languages[]")),
        "prompt": fields.get("prompt") or None,
        "response_format": response_format,
        "granularities": granularities or ("segment",),
    }


def _check_servable(chain: Chain, form: dict[str, Any]) -> None:
    """A request no engine of the chain declares it can take is the client's to change (400 naming
    the parameter), not a 503 the client would retry: no wait makes it servable. Judged only when
    every engine is installed: one that is not declares nothing, and the chain's own answer (503,
    naming it and how to install it) is the true one."""
    if any(isinstance(engine, UnusableEngine) for engine in chain.providers):
        return
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
        if not await asyncio.to_thread(save_upload, upload.file, path):
            raise InvalidAudioError(f"audio is empty: {name} has no bytes")
        try:
            transcript = await transcribe_file(  # a piece no engine heard fails it: the client may ask again
                chain, path, language=form["language"], prompt=form["prompt"],
                word_timestamps="word" in form["granularities"], partial=False,
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


def _error_body(e: STTError, chain: Chain, form: dict[str, Any]) -> dict[str, Any]:
    """The chain's error as the body ``_stt_error`` answers (a streamed answer's error event)."""
    body: dict[str, Any] = json.loads(bytes(_stt_error(e, chain, form).body))
    return body


def _stt_error(e: STTError, chain: Chain, form: dict[str, Any]) -> JSONResponse:
    """The chain's error as an honest status: 400 bad input; 503 when no engine could take it
    (try again after the breakers' cool-down, or, when no wait will help, told not to retry:
    OpenAI's ``x-should-retry: false``, which its SDKs obey); 504 when they ran out of time; 502
    when they failed."""
    if isinstance(e, InvalidAudioError):
        return error_response(400, str(e), "invalid_request_error", param="file", code="invalid_audio")
    if isinstance(e, ConfigError):
        return error_response(400, str(e), "invalid_request_error")
    causes = [cause for _, cause in e.errors] if isinstance(e, AllProvidersFailed) else [e]
    if all(isinstance(c, ProviderUnavailable) for c in causes):
        if chain.never_serves(e, language=form["language"], word_timestamps="word" in form["granularities"]):
            return error_response(503, str(e), "server_error", code="unavailable",
                                  headers={"x-should-retry": "false"})
        wait = max(1, math.ceil(chain.breaker_policy.cooldown))
        return error_response(503, str(e), "server_error", code="unavailable",
                              headers={"Retry-After": str(wait)})
    if any(isinstance(c, ProviderTimeout) for c in causes):
        return error_response(504, str(e), "server_error", code="timeout")
    return error_response(502, str(e), "server_error", code="engines_failed")


def _check_key(request: Request, settings: ServeSettings) -> JSONResponse | None:
    if settings.api_key is None or holds_the_key([bearer(request.headers)], settings):
        return None
    return error_response(401, "invalid or missing API key (Authorization: Bearer ...)",
                          "invalid_request_error", code="invalid_api_key")


def serve(chain: Chain, settings: ServeSettings, *, realtime: RealtimeSettings | None = None) -> None:
    """Run the server until SIGINT / SIGTERM (then finish the requests in flight)."""
    import uvicorn

    warn_if_open(settings)
    uvicorn.run(create_app(chain, settings, realtime=realtime), host=settings.host, port=settings.port,
                log_level="info", timeout_graceful_shutdown=settings.shutdown_timeout, lifespan="on",
                # asyncio's own loop, even where uvloop is installed (uvicorn[standard], ray[serve]):
                # the WebSocket protocol's stall timeout wraps its transport's close, and uvloop's
                # transports are read-only (every WebSocket upgrade failed with a 500 there)
                loop="asyncio",
                http=head_timeout_protocol(settings.head_timeout),
                ws=websocket_protocol(settings.head_timeout),
                # a message over max_message_mb is read, then refused with a reason (realtime);
                # one four times past it is cut off by the WebSocket layer itself (1009, too)
                ws_max_size=int(4 * settings.max_message_mb * 1_000_000))


