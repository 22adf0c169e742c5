"""The OpenAI transcription API (``POST /v1/audio/transcriptions``), in both directions.

OpenAI, Groq, vLLM, speaches and LocalAI all speak it, so it lives here once:

- ``OpenAICompatibleProvider``: a provider over any SDK of the OpenAI SDK's shape (``openai``,
  ``groq``: both generated from one template, with the same client, errors and raw responses).
  A provider dist sets ``sdk`` and ``new_client``; sending, checking the answer, cutting long audio
  and mapping the SDK's errors to the tree are done here.
- ``transcript_from_response`` / ``response_body``: a transcription answer read into a
  ``Transcript``, and a ``Transcript`` written as one (``stt-core serve`` speaks it).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import math
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal

from pydantic import Field

from ._audio.audio import Audio
from ._chain.quality import WhisperWindow, finite, whisper_speech
from ._errors import ConfigError, ProviderError, ProviderTimeout, STTError, error_for_status, without_secrets
from ._provider import ApiKey, Provider, ProviderSettings
from ._types import Capabilities, Segment, Transcript, Word, primary_language

SAMPLE_RATE = 16_000  # Whisper's own rate: sending more only costs upload time
NO_KEY = "none"  # the SDKs insist on a key; a server that asks for none ignores it
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
# The languages Whisper models transcribe (faster-whisper's list; a test holds the two equal).
_WHISPER_CODES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr "
    "ht hu hy id is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc "
    "pa pl ps pt ro ru sa sd si sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo yue zh"
)
WHISPER_LANGUAGES = frozenset(_WHISPER_CODES.split())


class OpenAICompatibleSettings(ProviderSettings):
    api_key: ApiKey | None = None
    model: str = "whisper-1"
    base_url: str = "https://api.openai.com/v1"
    timeout: float = Field(30.0, gt=0, le=600)
    language: str | None = None
    prompt: str | None = None
    temperature: float = Field(0.0, ge=0, le=1)
    response_format: Literal["verbose_json", "json", "text"] = "verbose_json"
    """verbose_json brings segments, word times and the detected language back; models that only
    answer json or text (gpt-4o-transcribe) need that set here."""
    audio_format: Literal["flac", "wav"] = "flac"
    max_upload_mb: float = Field(25.0, gt=0, le=1000)
    """The server's upload limit (OpenAI's and Groq's free tier: 25 MB); longer audio is cut at
    silences into pieces that fit."""
    max_answer_mb: float = Field(64.0, gt=0, le=2000)
    """An answer larger than this is a broken server, not a transcript: refused as it arrives."""


class OpenAICompatibleProvider(Provider):
    """Whisper-style transcription over an OpenAI-shaped SDK, with the SDK's own retries off: the
    chain owns retries."""

    sdk: ClassVar[str]
    """The SDK's module name, imported when its client is first made (never at import)."""
    client_class: ClassVar[str]
    """Its async client's class name in that module: ``AsyncOpenAI``, ``AsyncGroq``."""
    Settings: ClassVar[type[ProviderSettings]] = OpenAICompatibleSettings
    capabilities = Capabilities(languages=WHISPER_LANGUAGES, word_timestamps=True)

    def __init__(self, settings: ProviderSettings | None = None, /, **fields: Any) -> None:
        super().__init__(settings, **fields)
        self.settings: OpenAICompatibleSettings
        self._client: Any = None
        model = self.settings.model.lower().rsplit("/", 1)[-1]  # Systran/faster-distil-whisper-large-v3
        if model.endswith((".en", "-en")) or model.startswith(("distil-", "faster-distil-")):  # English only
            self.capabilities = Capabilities(languages=frozenset({"en"}), word_timestamps=True)

    def new_client(self) -> Any:
        """The SDK's async client for these settings, with ``max_retries=0``."""
        client = getattr(importlib.import_module(self.sdk), self.client_class)
        key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
        return client(
            api_key=key or NO_KEY,
            base_url=self.settings.base_url,
            timeout=self.settings.timeout,
            max_retries=0,  # one retry layer: the chain's
            http_client=http_client(self.name, int(self.settings.max_answer_mb * 1_000_000)),
        )

    def answer_metadata(self, data: dict[str, Any]) -> dict[str, Any]:
        """What to keep in ``Transcript.metadata`` from a JSON answer (a request id)."""
        return {}

    async def health(self) -> bool:
        """Listing models is free and needs a valid key: a cheap probe for the breaker."""
        try:
            await self.client().models.list()
        except Exception:  # any failure means "not healthy"; the probe never raises
            return False
        return True

    def client(self) -> Any:
        if self._client is None:
            self._client = self.new_client()
        return self._client

    async def _transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        audio = audio.to(sample_rate=SAMPLE_RATE, channels=1)
        encoded = audio.encode(self._format())
        limit = int(self.settings.max_upload_mb * 1_000_000)
        if len(encoded) <= limit:
            return await self._request(encoded, language, prompt)
        # Too big for one upload: cut at silences into pieces of about the size that fits, then shift
        # their times. FLAC compresses unevenly (silence to almost nothing), so a piece still too big
        # is cut again, the same way; down to a second, past which the limit is the mistake.
        if audio.duration <= 1.0:
            raise ConfigError(f"{self.name}: max_upload_mb = {self.settings.max_upload_mb:g} is less than "
                              f"a second of audio ({len(encoded)} bytes)")
        pieces = audio.split_at_silences(audio.duration * limit / len(encoded) * 0.9)
        results = []
        for offset, piece in pieces:
            heard = await self._transcribe(piece, language=language, prompt=prompt,
                                           word_timestamps=word_timestamps)
            results.append((offset, heard))
        return Transcript.joined(results, audio.duration)

    async def _request(self, encoded: bytes, language: str | None, prompt: str | None) -> Transcript:
        settings = self.settings
        options: dict[str, Any] = {
            "model": settings.model,
            "response_format": settings.response_format,
            "temperature": settings.temperature,
        }
        if language := whisper_language(language or settings.language):
            options["language"] = language
        if prompt := prompt or settings.prompt:
            options["prompt"] = prompt
        if settings.response_format == "verbose_json":
            options["timestamp_granularities"] = ["word", "segment"]
        try:
            # The SDK's timeout bounds each read; this bounds the whole answer (a server that
            # trickles a byte at a time never trips a read timeout).
            async with asyncio.timeout(settings.timeout):
                raw = await self.client().audio.transcriptions.with_raw_response.create(
                    file=(f"audio.{self._format().lower()}", encoded), **options
                )
                result = raw.parse()
                if inspect.isawaitable(result):  # groq's raw response parses async, openai's at once
                    result = await result
        except TimeoutError as e:
            raise ProviderTimeout(f"{self.name} did not answer within the timeout ({settings.timeout:g} s)",
                                  provider=self.name) from e
        except Exception as e:
            raise self._map_error(e) from e
        self._check_answer(result, raw.headers.get("content-type", ""))
        data = _as_dict(result)
        metadata = self.answer_metadata(data) if isinstance(data, dict) else {}
        return transcript_from_response(data, language).replace(metadata=metadata)

    def _format(self) -> Literal["WAV", "FLAC"]:
        return "FLAC" if self.settings.audio_format == "flac" else "WAV"

    def _map_error(self, e: Exception) -> STTError:
        """Every SDK error, in one place, as the stt-core tree; the key is never in a message."""
        sdk, name = importlib.import_module(self.sdk), self.name
        if isinstance(e, STTError):
            return e
        if isinstance(e.__cause__, STTError):  # ours, raised inside the SDK's transport
            return e.__cause__
        if isinstance(e, sdk.APITimeoutError):
            return ProviderTimeout(f"{name} did not answer within the timeout", provider=name)
        if isinstance(e, sdk.APIStatusError):
            key = self.settings.api_key.get_secret_value() if self.settings.api_key else ""
            return error_for_status(
                e.status_code, without_secrets(error_message(e.body) or e.response.reason_phrase, key),
                provider=name, retry_after=e.response.headers.get("retry-after"),
            )
        if isinstance(e, sdk.APIConnectionError):
            return ProviderError(f"cannot reach {name}: {type(e.__cause__ or e).__name__}", provider=name,
                                 retryable=True)
        if isinstance(e, (sdk.APIResponseValidationError, ValueError)):  # ValueError: bad JSON
            return ProviderError(f"{name} sent an unreadable answer: {type(e).__name__}", provider=name,
                                 retryable=True)
        return ProviderError(f"{name} failed: {type(e).__name__}", provider=name)

    def _check_answer(self, result: Any, content_type: str) -> None:
        """A 200 that is not a transcript (a proxy's HTML page, ``{}``, JSON without text) is a
        retryable failure, never text for the caller."""
        kind = content_type.split(";")[0].strip().lower() or "no content type"
        if self.settings.response_format == "text":
            ok = isinstance(result, str) and kind == "text/plain"
        else:
            ok = kind.endswith("json") and isinstance(getattr(result, "text", None), str)
        if not ok:
            what = kind if kind != "application/json" else "JSON without a text field"
            raise ProviderError(f"{self.name} answered HTTP 200 with {what}, not a transcript",
                                provider=self.name, retryable=True)

    async def _aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


# -- the transport --------------------------------------------------------------------------------


def http_client(name: str, max_answer_bytes: int) -> Any:
    """The SDKs' httpx client, made here: no redirects followed (a 307 to another origin would
    send the audio, and the key, there), and no answer over ``max_answer_bytes`` read. The cap is a
    response hook, so httpx's own transport (proxies from the environment included) stays."""
    import httpx

    def too_large() -> ProviderError:
        return ProviderError(f"{name} sent an answer larger than {max_answer_bytes / 1_000_000:g} MB "
                             "(max_answer_mb): not a transcript", provider=name)

    class CappedStream(httpx.AsyncByteStream):
        def __init__(self, stream: httpx.AsyncByteStream) -> None:
            self.stream = stream

        async def __aiter__(self) -> AsyncIterator[bytes]:
            received = 0
            async for chunk in self.stream:
                received += len(chunk)
                if received > max_answer_bytes:
                    raise too_large()
                yield chunk

        async def aclose(self) -> None:
            await self.stream.aclose()

    async def cap(response: httpx.Response) -> None:  # before httpx reads the body
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_answer_bytes:
            raise too_large()
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = CappedStream(response.stream)

    return httpx.AsyncClient(follow_redirects=False, event_hooks={"response": [cap]})


# -- the wire format -----------------------------------------------------------------------------


def _as_dict(result: Any) -> dict[str, Any] | str:
    if isinstance(result, str):
        return result
    return result.model_dump() if hasattr(result, "model_dump") else dict(result)


def transcript_from_response(data: dict[str, Any] | str, language: str | None = None) -> Transcript:
    """A transcription answer (``text``, or ``json`` / ``verbose_json`` as a dict) as a Transcript.

    Times are the upstream's word, and checked: a segment or word whose times are not finite
    numbers is left out (its words stay in ``text``), a negative time is 0, an end before its
    start is the start, and segments come in order, so subtitles made from them are valid."""
    if isinstance(data, str):  # response_format = "text"
        return Transcript(text=data.strip(), language=language)
    words = sorted((Word(str(w.get("word", "")).strip(), *times) for w in data.get("words") or ()
                    if (times := _span(w)) is not None), key=lambda w: w.start)
    raw = [s for s in data.get("segments") or () if _span(s) is not None]
    text = str(data.get("text", "")).strip()
    confidence = finite(data.get("confidence"))  # stt-core serve's own; else Whisper's signals
    windows = [w for s in raw if (w := WhisperWindow.from_segment(s)) is not None]
    if windows and len(windows) == len(raw):  # every segment says how sure the model was
        kept, judged = whisper_speech(windows)
        confidence = judged if confidence is None else confidence
        if len(kept) < len(raw):  # silence and phantoms ("Thank you.") are no speech
            raw, words = [raw[i] for i in kept], words if kept else []
            text = " ".join(str(s.get("text", "")).strip() for s in raw)
    segments = []
    for s in raw:
        start, end = _span(s) or (0.0, 0.0)
        inside = tuple(w for w in words if start <= w.start < end)
        segments.append(Segment(str(s.get("text", "")).strip(), start, end, words=inside))
    segments.sort(key=lambda s: s.start)
    if words and not segments:
        segments.append(Segment(text, words[0].start, words[-1].end, words=tuple(words)))
    return Transcript(
        text=text,
        language=language_code(data.get("language")) or language,
        confidence=None if confidence is None else min(1.0, max(0.0, confidence)),
        segments=tuple(segments),
        duration=_seconds(data.get("duration")),
    )


def _seconds(value: object) -> float | None:
    """A time from an upstream: a finite number (a negative one is 0), else ``None``."""
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _span(item: object) -> tuple[float, float] | None:
    """A segment's or word's (start, end), or ``None`` where either is unusable."""
    if not isinstance(item, dict):
        return None
    start, end = _seconds(item.get("start")), _seconds(item.get("end"))
    if start is None or end is None:
        return None
    return start, max(start, end)


def response_body(
    transcript: Transcript, response_format: str, *, granularities: tuple[str, ...] = ("segment",)
) -> tuple[str, str]:
    """``transcript`` as the API answers it in ``response_format``: (body, media type)."""
    if response_format == "text":
        return transcript.text + "\n", "text/plain; charset=utf-8"
    if response_format == "srt":
        return transcript.to_srt(), "text/plain; charset=utf-8"
    if response_format == "vtt":
        return transcript.to_vtt(), "text/vtt; charset=utf-8"
    if response_format == "json":
        return json.dumps({"text": transcript.text}, ensure_ascii=False), "application/json"
    body: dict[str, Any] = {
        "task": "transcribe",
        "language": language_name(transcript.language),
        "duration": transcript.duration if transcript.duration is not None else _end(transcript),
        "text": transcript.text,
        "confidence": transcript.confidence,  # stt-core's own field: the answering engine's, 0 to 1
    }
    if "segment" in granularities:  # a segment's confidence (else the answer's) as Whisper's average log
        body["segments"] = [  # probability; 0.0 (sure) only where the engine gives none at all
            {"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [],
             "temperature": 0.0, "avg_logprob": _logprob(s.confidence, transcript.confidence),
             "compression_ratio": 0.0, "no_speech_prob": 0.0}
            for i, s in enumerate(transcript.segments)
        ]
    if "word" in granularities:
        body["words"] = [{"word": w.text, "start": w.start, "end": w.end} for w in transcript.words]
    return json.dumps(body, ensure_ascii=False), "application/json"


def _logprob(*confidences: float | None) -> float:
    known = next((c for c in confidences if c is not None), None)
    return 0.0 if known is None else math.log(max(known, 1e-6))  # 0 is no certainty, not log(0)


def _end(transcript: Transcript) -> float:
    return max((s.end for s in transcript.segments), default=0.0)


def error_message(body: object) -> str:
    """The ``{"error": {"message": ...}}`` text of an OpenAI-style error body."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message", ""))
        return str(error)
    return "" if body is None else str(body)


def whisper_language(language: str | None) -> str | None:
    """Whisper takes ISO-639-1 codes: 'en-US' and 'en_US' -> 'en'; 'auto' means detect."""
    if not language or language == "auto":
        return None
    return primary_language(language)


# verbose_json names the detected language ("english"); these are Whisper's own names.
_LANGUAGE_NAMES = {
    "english": "en", "chinese": "zh", "german": "de", "spanish": "es", "russian": "ru", "korean": "ko",
    "french": "fr", "japanese": "ja", "portuguese": "pt", "turkish": "tr", "polish": "pl",
    "catalan": "ca", "dutch": "nl", "arabic": "ar", "swedish": "sv", "italian": "it",
    "indonesian": "id", "hindi": "hi", "finnish": "fi", "vietnamese": "vi", "hebrew": "he",
    "ukrainian": "uk", "greek": "el", "malay": "ms", "czech": "cs", "romanian": "ro", "danish": "da",
    "hungarian": "hu", "tamil": "ta", "norwegian": "no", "thai": "th", "urdu": "ur", "croatian": "hr",
    "bulgarian": "bg", "lithuanian": "lt", "latin": "la", "cantonese": "yue", "persian": "fa",
    "bengali": "bn", "serbian": "sr", "slovak": "sk", "slovenian": "sl", "tagalog": "tl",
}
_CODES = {code: name for name, code in _LANGUAGE_NAMES.items()}


def language_code(name: object) -> str | None:
    """'english' (or 'en') -> 'en'."""
    if not isinstance(name, str) or not name:
        return None
    lowered = name.lower()
    return _LANGUAGE_NAMES.get(lowered, lowered if len(lowered) <= 3 else None)


def language_name(code: str | None) -> str | None:
    """'en' -> 'english', as verbose_json names it; an unknown code is passed through."""
    if not code:
        return None
    return _CODES.get(primary_language(code), code)
