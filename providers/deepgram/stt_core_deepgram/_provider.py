"""The ``deepgram`` provider: Deepgram's pre-recorded API for ``transcribe`` and its live WebSocket
API for ``stream``, through the official ``deepgram-sdk`` (async client, v7).

The SDK's retries and stream reconnection are off: the chain owns retries and stream failover.
Every SDK and transport error is mapped to the stt-core tree in ``_map_error``.

Confidence (``Transcript.confidence``, and each final's ``StreamEvent.confidence``) is Deepgram's
own for its best alternative. Without a language, a batch request asks Deepgram to detect it
(``detect_language``), so ``Transcript.language`` is what it heard. The languages it declares are
the model's (Nova-3's and Nova-2's published lists; any for another model).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from stt_core import (
    ApiKey,
    Audio,
    Capabilities,
    Provider,
    ProviderError,
    ProviderSettings,
    ProviderTimeout,
    Segment,
    StreamEvent,
    STTError,
    Transcript,
    Word,
    error_for_status,
)

if TYPE_CHECKING:
    import httpx
    from deepgram import AsyncDeepgramClient

SAMPLE_RATE = 16_000
_END_OF_INPUT = None
_NOVA_2 = ("bg ca cs da de el en es et fi fr hi hu id it ja ko lt lv ms nl no pl pt ro ru sk sv th tr uk vi "
           "zh")
_NOVA_3 = _NOVA_2 + " be bn bs hr kn mk mr sl sr ta te tl"
MODEL_LANGUAGES = {"nova-2": frozenset(_NOVA_2.split()), "nova-3": frozenset(_NOVA_3.split())}
"""What each model transcribes, from Deepgram's model and language overview (2026)."""


class DeepgramSettings(ProviderSettings):
    api_key: ApiKey | None = None
    """DEEPGRAM_API_KEY or STT_DEEPGRAM__API_KEY."""
    model: str = "nova-3"
    language: str | None = None
    """A code such as 'en' or 'es', or 'multi' for Nova-3's code-switching; none: the model's default."""
    smart_format: bool = True
    punctuate: bool = True
    endpointing: Annotated[int, Field(ge=0, le=60_000)] | bool = 300
    """Live: silence (ms) that ends an utterance, or false to leave it to Deepgram."""
    interim_results: bool = True
    keepalive_interval: float = Field(5.0, ge=0.1, le=9)
    """Live: send KeepAlive after this many idle seconds (Deepgram closes after 10 s without data)."""
    base_url: str = "https://api.deepgram.com"
    timeout: float = Field(30.0, gt=0, le=600)


class DeepgramProvider(Provider):
    name = "deepgram"
    Settings = DeepgramSettings
    capabilities = Capabilities(streaming=True, word_timestamps=True)

    def __init__(self, settings: ProviderSettings | None = None, /, **fields: Any) -> None:
        super().__init__(settings, **fields)
        self.settings: DeepgramSettings
        self._client: AsyncDeepgramClient | None = None
        self._http: httpx.AsyncClient | None = None  # the SDK's HTTP client: ours, so we close it
        family = "-".join(self.settings.model.split("-")[:2])  # nova-3-medical is nova-3's
        if languages := MODEL_LANGUAGES.get(family):
            self.capabilities = Capabilities(streaming=True, languages=languages | {"multi"},
                                             word_timestamps=True)

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        assert isinstance(settings, DeepgramSettings)
        if settings.api_key is None or not settings.api_key.get_secret_value():
            return "no API key; set DEEPGRAM_API_KEY (or [deepgram] api_key)"
        return None

    # -- batch: the pre-recorded API ------------------------------------------------------------

    async def _transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        settings = self.settings
        body = audio.to(sample_rate=SAMPLE_RATE, channels=1).encode("FLAC")
        try:
            chosen = _language(language or settings.language)
            response = await self._deepgram().listen.v1.media.transcribe_file(
                request=body, model=settings.model, language=chosen, detect_language=chosen is None or None,
                smart_format=settings.smart_format, punctuate=settings.punctuate,
                request_options={"timeout_in_seconds": int(settings.timeout) or 1},
            )
        except Exception as e:
            raise _map_error(e) from e
        try:
            channel = response.results.channels[0]
            best = channel.alternatives[0]
            if not isinstance(best.transcript, str):
                raise TypeError("no transcript")
        except (AttributeError, IndexError, TypeError) as e:
            raise _not_a_transcript(self.name) from e
        words = tuple(_word(w) for w in best.words or ())
        segments: tuple[Segment, ...] = ()
        if words:
            segments = (Segment(best.transcript, words[0].start, words[-1].end, best.confidence, words),)
        return Transcript(
            text=best.transcript,
            language=getattr(channel, "detected_language", None) or chosen,
            confidence=best.confidence,
            segments=segments,
            duration=getattr(response.metadata, "duration", None),
            metadata={"request_id": getattr(response.metadata, "request_id", None)},
        )

    # -- live: the WebSocket API ----------------------------------------------------------------

    async def _stream(
        self, audio: AsyncIterable[Audio], *, language: str | None
    ) -> AsyncIterator[StreamEvent]:
        settings = self.settings
        options: dict[str, Any] = {
            "model": settings.model, "encoding": "linear16", "sample_rate": SAMPLE_RATE, "channels": 1,
            "interim_results": str(settings.interim_results).lower(),
            "punctuate": str(settings.punctuate).lower(), "smart_format": str(settings.smart_format).lower(),
            "endpointing": str(settings.endpointing).lower(),
        }
        if code := _language(language or settings.language):
            options["language"] = code
        try:
            async with self._deepgram().listen.v1.connect(**options) as socket:
                sender = asyncio.create_task(self._send(socket, audio))
                try:
                    async for message in socket:
                        try:
                            event = _event(message, self.name)
                        except (AttributeError, IndexError, TypeError, ValueError) as e:
                            raise _not_a_transcript(self.name) from e
                        if event:
                            yield event
                finally:
                    if not sender.done():
                        sender.cancel()
                    # Always collected: a send that failed on an aborted socket is reported by the
                    # reader above, not as an asyncio "exception was never retrieved".
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await sender
                if sender.cancelled() or not sender.result():
                    raise ProviderError("deepgram closed the stream before the end of the audio",
                                        provider=self.name, retryable=True)
        except Exception as e:
            raise _map_error(e) from e

    async def _send(self, socket: Any, audio: AsyncIterable[Audio]) -> bool:
        """Push PCM as it comes, KeepAlive while idle, then Finalize and CloseStream at the end.

        Returns True once the whole input has been sent and the stream closed from our side.
        """
        chunks: asyncio.Queue[Audio | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for chunk in audio:
                    await chunks.put(chunk)
            finally:
                await chunks.put(_END_OF_INPUT)

        reader = asyncio.create_task(pump())
        try:
            while True:
                try:
                    chunk = await asyncio.wait_for(chunks.get(), self.settings.keepalive_interval)
                except TimeoutError:
                    await socket.send_keep_alive()
                    continue
                if chunk is _END_OF_INPUT:
                    break
                await socket.send_media(chunk.to(sample_rate=SAMPLE_RATE, channels=1).pcm_bytes())
            reader.result()  # the audio source's own error, if it had one, is the caller's
            await socket.send_finalize()
            await socket.send_close_stream()
            return True
        finally:
            reader.cancel()

    # -- the client -----------------------------------------------------------------------------

    def _deepgram(self) -> AsyncDeepgramClient:
        if self._client is None:
            import httpx
            from deepgram import AsyncDeepgramClient, DeepgramClientEnvironment

            base = self.settings.base_url.rstrip("/")
            socket_base = "ws" + base.removeprefix("http")  # http -> ws, https -> wss
            assert self.settings.api_key is not None  # checked by unavailable_reason first
            # Never follow a redirect: it would send the audio (and, on the same origin, the key) on
            self._http = httpx.AsyncClient(timeout=self.settings.timeout, follow_redirects=False)
            self._client = AsyncDeepgramClient(
                api_key=self.settings.api_key.get_secret_value(),
                environment=DeepgramClientEnvironment(
                    base=base, production=socket_base, agent=socket_base, agent_rest=base
                ),
                timeout=self.settings.timeout,
                max_retries=0,  # one retry layer: the chain's
                httpx_client=self._http, follow_redirects=False,
                stream_reconnection_enabled=False,
                reconnect=False,  # a dropped stream is the chain's to fail over, with its audio
            )
        return self._client

    async def _aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        self._client = self._http = None


def _event(message: Any, provider: str) -> StreamEvent | None:
    """A live ``Results`` message as a StreamEvent; an ``Error`` message raises; others pass."""
    kind = getattr(message, "type", None) or (message.get("type") if isinstance(message, dict) else None)
    if kind == "Error":
        description = getattr(message, "description", None) or str(message)
        raise ProviderError(f"deepgram stream error: {description}", provider=provider, retryable=True)
    if kind != "Results":
        return None
    best = message.channel.alternatives[0]
    if not best.transcript and not message.is_final:
        return None
    start = float(message.start)
    return StreamEvent(
        "final" if message.is_final else "interim",
        best.transcript,
        start=start,
        end=start + float(message.duration),
        confidence=best.confidence,
        words=tuple(_word(w) for w in best.words or ()),
        language=(best.languages or [None])[0] if getattr(best, "languages", None) else None,
        provider=provider,
    )


def _not_a_transcript(provider: str) -> ProviderError:
    return ProviderError(f"{provider} answered with something that is not a transcript", provider=provider,
                         retryable=True)


def _word(w: Any) -> Word:
    return Word(getattr(w, "punctuated_word", None) or w.word, float(w.start), float(w.end), w.confidence)


def _language(language: str | None) -> str | None:
    return None if not language or language == "auto" else language


def _map_error(e: Exception) -> STTError:
    """Every deepgram-sdk, httpx and websockets error, in one place, as the stt-core tree."""
    import httpx
    from deepgram.core.api_error import ApiError
    from websockets.exceptions import ConnectionClosed, InvalidHandshake

    if isinstance(e, STTError):
        return e
    if isinstance(e, ApiError):
        status = e.status_code or 0
        if 200 <= status < 300:  # the SDK reports a 2xx with an unreadable body this way
            return ProviderError("deepgram sent an unreadable answer", provider="deepgram", retryable=True)
        headers = {k.lower(): v for k, v in (e.headers or {}).items()}
        return error_for_status(status, _error_message(e.body), provider="deepgram",
                                retry_after=headers.get("retry-after"))
    if isinstance(e, httpx.TimeoutException | TimeoutError):
        return ProviderTimeout("deepgram did not answer within the timeout", provider="deepgram")
    if isinstance(e, ConnectionClosed):
        return ProviderError(f"deepgram dropped the stream (close code {e.rcvd.code if e.rcvd else 1006})",
                             provider="deepgram", retryable=True)
    if isinstance(e, httpx.TransportError | InvalidHandshake | OSError):
        return ProviderError(f"cannot reach deepgram: {type(e).__name__}", provider="deepgram",
                             retryable=True)
    if isinstance(e, ValueError):  # bad JSON on the socket
        return ProviderError("deepgram sent an unreadable answer", provider="deepgram", retryable=True)
    return ProviderError(f"deepgram failed: {type(e).__name__}", provider="deepgram")


def _error_message(body: object) -> str:
    """Deepgram's ``{"err_code", "err_msg"}`` (or ``{"message"}``) error text."""
    if isinstance(body, str):
        with contextlib.suppress(ValueError):
            body = json.loads(body)
    if isinstance(body, dict):
        return str(body.get("err_msg") or body.get("message") or body.get("err_code") or body)
    return "" if body is None else str(body)
