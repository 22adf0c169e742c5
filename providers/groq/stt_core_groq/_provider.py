"""The ``groq`` provider: Whisper on Groq's cloud, through the official ``groq`` SDK (async client).

The SDK's own retries are off: the chain owns retries. Every SDK and transport error is mapped to
the stt-core tree in ``_map_error``; the key never appears in a message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

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
    STTError,
    Transcript,
    Word,
    error_for_status,
)

if TYPE_CHECKING:
    from groq import AsyncGroq

SAMPLE_RATE = 16_000  # Whisper's own rate: sending more only costs upload time


class GroqSettings(ProviderSettings):
    api_key: ApiKey | None = None
    """GROQ_API_KEY or STT_GROQ__API_KEY."""
    model: str = "whisper-large-v3-turbo"
    base_url: str = "https://api.groq.com"
    timeout: float = Field(30.0, gt=0, le=600)
    language: str | None = None
    prompt: str | None = None
    temperature: float = Field(0.0, ge=0, le=1)
    response_format: Literal["verbose_json", "json", "text"] = "verbose_json"
    """verbose_json brings segments, word times and the detected language back."""
    audio_format: Literal["flac", "wav"] = "flac"
    max_upload_mb: float = Field(25.0, gt=0, le=1000)
    """Groq's upload limit (25 MB on the free tier); longer audio is cut at silences to fit."""


class GroqProvider(Provider):
    name = "groq"
    Settings = GroqSettings
    capabilities = Capabilities(word_timestamps=True)

    def __init__(self, settings: ProviderSettings | None = None, /, **fields: Any) -> None:
        super().__init__(settings, **fields)
        self.settings: GroqSettings
        self._client: AsyncGroq | None = None

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        assert isinstance(settings, GroqSettings)
        if settings.api_key is None or not settings.api_key.get_secret_value():
            return "no API key: set GROQ_API_KEY (or [groq] api_key)"
        return None

    async def health(self) -> bool:
        """Listing models is free and needs a valid key: a cheap probe for the breaker."""
        try:
            await self._groq().models.list()
        except Exception:  # any failure means "not healthy"; the probe never raises
            return False
        return True

    async def _transcribe(
        self, audio: Audio, *, language: str | None, prompt: str | None, word_timestamps: bool
    ) -> Transcript:
        audio = audio.to(sample_rate=SAMPLE_RATE, channels=1)
        encoded = audio.encode(self._format())
        limit = int(self.settings.max_upload_mb * 1_000_000)
        if len(encoded) <= limit:
            return await self._request(encoded, language, prompt)
        # Too big for one upload: cut at silences into pieces that fit, then shift their times.
        pieces = audio.split_at_silences(audio.duration * limit / len(encoded) * 0.9)
        results = [(offset, await self._request(piece.encode(self._format()), language, prompt))
                   for offset, piece in pieces]
        return Transcript.joined(results, audio.duration)

    async def _request(self, encoded: bytes, language: str | None, prompt: str | None) -> Transcript:
        settings = self.settings
        options: dict[str, Any] = {
            "model": settings.model,
            "response_format": settings.response_format,
            "temperature": settings.temperature,
        }
        if language := _whisper_language(language or settings.language):
            options["language"] = language
        if prompt := prompt or settings.prompt:
            options["prompt"] = prompt
        if settings.response_format == "verbose_json":
            options["timestamp_granularities"] = ["word", "segment"]
        try:
            raw = await self._groq().audio.transcriptions.with_raw_response.create(
                file=(f"audio.{self._format().lower()}", encoded), **options
            )
            result = await raw.parse()
        except Exception as e:
            raise _map_error(e) from e
        _check_answer(result, raw.headers.get("content-type", ""), settings.response_format)
        return _transcript(result, language)

    def _format(self) -> Literal["WAV", "FLAC"]:
        return "FLAC" if self.settings.audio_format == "flac" else "WAV"

    def _groq(self) -> AsyncGroq:
        if self._client is None:
            from groq import AsyncGroq

            assert self.settings.api_key is not None  # checked by unavailable_reason first
            self._client = AsyncGroq(
                api_key=self.settings.api_key.get_secret_value(),
                base_url=self.settings.base_url,
                timeout=self.settings.timeout,
                max_retries=0,  # one retry layer: the chain's
            )
        return self._client

    async def _aclose(self) -> None:
        if self._client is not None:
            await self._client.close()


def _map_error(e: Exception) -> STTError:
    """Every groq SDK error, in one place, as the stt-core tree."""
    import groq

    if isinstance(e, STTError):
        return e
    if isinstance(e, groq.APITimeoutError):
        return ProviderTimeout("groq did not answer within the timeout", provider="groq")
    if isinstance(e, groq.APIStatusError):
        return error_for_status(
            e.status_code, _error_message(e.body) or e.response.reason_phrase, provider="groq",
            retry_after=e.response.headers.get("retry-after"),
        )
    if isinstance(e, groq.APIConnectionError):
        return ProviderError(f"cannot reach groq: {type(e.__cause__ or e).__name__}", provider="groq",
                             retryable=True)
    if isinstance(e, (groq.APIResponseValidationError, ValueError)):  # ValueError: bad JSON
        return ProviderError(f"groq sent an unreadable answer: {type(e).__name__}", provider="groq",
                             retryable=True)
    return ProviderError(f"groq failed: {type(e).__name__}", provider="groq")


def _check_answer(result: Any, content_type: str, response_format: str) -> None:
    """A 200 that is not a transcript (a proxy's HTML page, ``{}``, JSON without text) is a
    retryable failure, never text for the caller."""
    kind = content_type.split(";")[0].strip().lower() or "no content type"
    if response_format == "text":
        ok = isinstance(result, str) and kind == "text/plain"
    else:
        ok = kind.endswith("json") and isinstance(getattr(result, "text", None), str)
    if not ok:
        what = kind if kind != "application/json" else "JSON without a text field"
        raise ProviderError(f"groq answered HTTP 200 with {what}, not a transcript", provider="groq",
                            retryable=True)


def _error_message(body: object) -> str:
    """The ``{"error": {"message": ...}}`` text of an OpenAI-style error body."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            return str(error.get("message", ""))
        return str(error)
    return "" if body is None else str(body)


def _transcript(result: Any, language: str | None) -> Transcript:
    if isinstance(result, str):  # response_format = "text"
        return Transcript(text=result.strip(), language=language)
    data = result.model_dump() if hasattr(result, "model_dump") else dict(result)
    words = [Word(w["word"].strip(), float(w["start"]), float(w["end"])) for w in data.get("words") or ()]
    segments = []
    for s in data.get("segments") or ():
        start, end = float(s["start"]), float(s["end"])
        inside = tuple(w for w in words if start <= w.start < end)
        segments.append(Segment(s["text"].strip(), start, end, words=inside))
    if words and not segments:
        text = str(data.get("text", "")).strip()
        segments.append(Segment(text, words[0].start, words[-1].end, words=tuple(words)))
    return Transcript(
        text=str(data.get("text", "")).strip(),
        language=_language_code(data.get("language")) or language,
        segments=tuple(segments),
        duration=data.get("duration"),
        metadata={"request_id": (data.get("x_groq") or {}).get("id")},
    )


def _whisper_language(language: str | None) -> str | None:
    """Whisper takes ISO-639-1 codes: 'en-US' -> 'en'; 'auto' means detect."""
    if not language or language == "auto":
        return None
    return language.lower().split("-")[0]


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


def _language_code(name: object) -> str | None:
    if not isinstance(name, str) or not name:
        return None
    lowered = name.lower()
    return _LANGUAGE_NAMES.get(lowered, lowered if len(lowered) <= 3 else None)
