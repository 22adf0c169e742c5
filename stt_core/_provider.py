"""The provider base class every engine (and the chain) derives from.

As in livekit-agents' STT base, the public methods own validation, timing and error mapping;
a provider implements ``_transcribe`` (and ``_stream`` if its engine streams natively).
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from types import TracebackType
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, BeforeValidator, SecretStr, ValidationError

from ._audio.audio import Audio, AudioSource, as_audio
from ._audio.decode import MIN_AUDIO_SECONDS
from ._audio.files import FilePieces, file_pieces
from ._errors import (
    ConfigError,
    InvalidAudioError,
    ProviderTimeout,
    ProviderUnavailable,
    STTError,
    UnmappedError,
    refused_key,
    validation_problems,
)
from ._types import SETTINGS_MODEL, Capabilities, StreamEvent, Transcript, has_words

logger = logging.getLogger("stt_core")


def _clean_api_key(value: Any) -> Any:
    """Surrounding whitespace is dropped (a key read from a file ends in a newline); a key with
    spaces, control or non-ASCII characters inside is refused, without echoing it, since it would
    end in an HTTP header error that prints it."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        value = value.strip()
        if any(not 0x21 <= ord(c) <= 0x7E for c in value):
            raise ValueError("the key holds spaces, control or non-ASCII characters (it is not shown)")
    return value


ApiKey = Annotated[SecretStr, BeforeValidator(_clean_api_key)]
"""The type for a provider's API key setting: a ``SecretStr``, stripped and checked."""


class ProviderSettings(BaseModel):
    """Base of every provider's settings: unknown keys are errors, secrets are ``SecretStr``."""

    model_config = SETTINGS_MODEL


class Provider(abc.ABC):
    """A speech-to-text engine behind the one stt-core interface.

    Subclasses set ``name``, ``Settings`` and ``capabilities`` and implement ``_transcribe``.
    Building a provider must be cheap: load models in ``warmup()`` or on first use.
    """

    name: ClassVar[str]
    Settings: ClassVar[type[ProviderSettings]] = ProviderSettings
    capabilities: Capabilities = Capabilities()

    def __init__(self, settings: ProviderSettings | None = None, /, **fields: Any) -> None:
        if settings is None:
            settings = self.build_settings(fields)
        elif fields:
            raise TypeError("pass either a settings object or keyword settings, not both")
        self.settings = settings
        self._closed = False

    @classmethod
    def build_settings(cls, fields: dict[str, Any], *, source: str = "") -> ProviderSettings:
        """Validate ``fields`` into ``cls.Settings``; a bad key or value is a ``ConfigError``."""
        try:
            return cls.Settings(**fields)
        except ValidationError as e:
            where = f" in {source}" if source else ""
            problem = f"bad settings for provider {cls.name!r}{where}: " + \
                validation_problems(e, cls.Settings, f"{cls.name}.")
        # Raised out here, so the error carries no context: pydantic's holds the values, secrets too.
        raise ConfigError(problem)

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        """Why this provider cannot serve with ``settings`` (no key, no model), or ``None``.

        Must be cheap: no model loading, no network. ``stt-core providers`` shows it.
        """
        return None

    @classmethod
    def model_status(cls, settings: ProviderSettings) -> str | None:
        """A short note on the model for ``stt-core providers`` (where it is, whether it is
        present), found without loading it; ``None`` for engines without a local model."""
        return None

    @classmethod
    def download_model(
        cls, settings: ProviderSettings, *, model: str | None = None, target: Path | None = None
    ) -> Path:
        """Fetch ``model`` (default: the configured one) for offline use; returns where it went.

        ``stt-core models download NAME`` calls this. Engines with no local model keep the default.
        """
        raise ConfigError(f"provider {cls.name!r} has no model to download")

    @classmethod
    def export_model(cls, settings: ProviderSettings, *, model: str | None = None) -> list[Path]:
        """Convert the model (default: the configured one) into the form serving runs, once, in an
        install that has the tools; returns the files made. ``stt-core models export NAME``."""
        raise ConfigError(f"provider {cls.name!r} has no model to export")

    def why_unavailable(self) -> str | None:
        """Why this instance cannot serve now, or ``None``; checked before every request.

        A check that raises (a plugin's bug) is a reason not to call the engine, not a crash.
        """
        try:
            return type(self).unavailable_reason(self.settings)
        except Exception as e:
            return f"{self.name} could not tell whether it can serve: {type(e).__name__}: {e}"

    def named(self, name: str) -> Self:
        """This instance under the name config gives it (``[vllm]`` with ``provider = "openai"``):
        its errors, attempts, breaker and transcripts then say which engine it was."""
        if name != self.name:
            self.name = name  # type: ignore[misc]  # the class's name, shadowed for this instance
        return self

    @property
    def model(self) -> str | None:
        model = getattr(self.settings, "model", None)
        return None if model is None else str(model)

    # -- the public methods -----------------------------------------------------------------

    async def transcribe(
        self,
        audio: AudioSource,
        *,
        language: str | None = None,
        prompt: str | None = None,
        word_timestamps: bool = False,
    ) -> Transcript:
        """Transcribe one utterance or file. Raises only errors of the ``STTError`` tree.

        A file path is read as it is needed: a long file goes through in pieces
        (``transcribe_file``), so no request holds more than the decoding limits allow.
        """
        if isinstance(audio, str | os.PathLike):
            return await transcribe_file(
                self, audio, language=language, prompt=prompt, word_timestamps=word_timestamps
            )
        check_language(language)
        audio = as_audio(audio)
        check_audio(audio)
        self._check_ready()
        started = time.perf_counter()
        try:
            result = await self._transcribe(
                audio, language=language, prompt=prompt, word_timestamps=word_timestamps
            )
        except Exception as e:
            raise self._map_unexpected(e) from e
        if result.text and not has_words(result.text):  # "." alone: no word heard, so no text
            result = result.replace(text="", segments=())
        # Stamped by the engine that answered; a chain passes its engine's stamp on untouched
        # (its own "model" is only a description of its members).
        answered: dict[str, Any] = (
            {"provider": self.name, "model": result.model or self.model} if not result.provider else {}
        )
        if audio.notes:  # what the caller should know about the input (a truncated file)
            answered["metadata"] = {**result.metadata, "warnings": list(audio.notes)}
        return result.replace(
            **answered,
            duration=audio.duration if result.duration is None else result.duration,
            latency=time.perf_counter() - started,
        )

    async def stream(
        self, audio: AsyncIterable[Audio], *, language: str | None = None
    ) -> AsyncGenerator[StreamEvent, None]:
        """Transcribe live audio: push chunks in, get interim and final events out."""
        check_language(language)
        self._check_ready()
        try:
            async for event in self._stream(audio, language=language):
                yield event
        except Exception as e:
            raise self._map_unexpected(e) from e

    async def warmup(self) -> None:
        """Load models ahead of the first request. Default: nothing to load."""

    async def health(self) -> bool | None:
        """A cheap check that the provider can serve: ``None`` if it has none.

        The chain's breaker probes with this instead of a paid transcription where it exists.
        """
        return None

    async def aclose(self) -> None:
        """Release sockets, models and tasks. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            await self._aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, settings={self.settings!r})"

    # -- what a provider implements ---------------------------------------------------------

    async def _transcribe_piece(self, piece: Audio, **options: Any) -> Transcript:
        """One piece of a long file (``file_transcripts``); a chain asks it as it asks a live
        utterance's final, since no one will ask for that piece again."""
        return await self.transcribe(piece, **options)

    def _fails_every_piece(self, error: STTError, *, language: str | None, word_timestamps: bool) -> bool:
        """Would ``error``, met by one piece of a file, meet every piece after it (not installed,
        a refused key)? Then the file stops there, and no more pieces are paid for."""
        return self.why_unavailable() is not None or refused_key(error)

    @abc.abstractmethod
    async def _transcribe(
        self,
        audio: Audio,
        *,
        language: str | None,
        prompt: str | None,
        word_timestamps: bool,
    ) -> Transcript:
        """Transcribe ``audio``; map the engine's own errors to the stt-core tree."""

    async def _stream(
        self, audio: AsyncIterable[Audio], *, language: str | None
    ) -> AsyncIterator[StreamEvent]:
        """Default for engines without native streaming: one final result at end of input."""
        pieces = [chunk async for chunk in audio]
        if not pieces:
            return
        joined = Audio.concat(pieces)
        result = await self.transcribe(joined, language=language)
        yield StreamEvent(
            "final", result.text, start=0.0, end=joined.duration,
            language=result.language, confidence=result.confidence, provider=result.provider,
        )

    async def _aclose(self) -> None:
        """Release what the provider holds; called once."""

    # -- helpers ----------------------------------------------------------------------------

    def _check_ready(self) -> None:
        if self._closed:
            raise ProviderUnavailable(f"{self.name} is closed", provider=self.name)
        reason = self.why_unavailable()
        if reason:
            raise ProviderUnavailable(reason, provider=self.name)

    def _map_unexpected(self, e: Exception) -> STTError:
        """Keep the tree's errors as they are; anything else is this engine failing."""
        if isinstance(e, STTError):
            return e
        if isinstance(e, MemoryError):
            # This request was too big for the memory left: not a fault of the engine, so it opens
            # no breaker for everyone else, and a lighter engine further on may still answer.
            return ProviderUnavailable(f"{self.name} ran out of memory for this request", provider=self.name)
        detail = f"{type(e).__name__}: {e}".rstrip(": ")
        if isinstance(e, TimeoutError):
            return ProviderTimeout(f"{self.name} timed out ({detail})", provider=self.name)
        retryable = isinstance(e, ConnectionError)
        return UnmappedError(f"{self.name} failed: {detail}", provider=self.name, retryable=retryable)


_LANGUAGE_CODE = re.compile(r"(auto|multi|[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*)")


async def transcribe_file(
    engine: Provider,
    path: str | os.PathLike[str],
    *,
    language: str | None = None,
    prompt: str | None = None,
    word_timestamps: bool = False,
    piece_seconds: float = 300.0,
    progress: Callable[[float, float], None] | None = None,
    partial: bool = True,
) -> Transcript:
    """Transcribe the audio file at ``path`` with ``engine`` (a provider or a chain).

    ``engine.transcribe(path)`` comes here too, so a path is never decoded whole when it is long:
    it goes in pieces (``file_transcripts``), whose transcripts are joined with their times shifted.
    ``progress(done, total)`` is called with seconds of audio after each piece of a long file.
    A piece no engine transcribed is said and left out (``metadata["untranscribed"]``); with
    ``partial=False`` its error is raised instead (a server, whose client can ask again).
    """
    file = file_pieces(path, piece_seconds)
    results: list[tuple[float, Transcript]] = []
    lost: list[tuple[float, float, STTError]] = []  # pieces no engine transcribed
    heard = file_transcripts(engine, file, language=language, prompt=prompt, word_timestamps=word_timestamps)
    async with contextlib.aclosing(heard):
        async for start, end, result in heard:
            if isinstance(result, Transcript):
                results.append((start, result))
            elif not partial:
                raise result
            else:  # that piece only: the pieces already paid for, and those after, are kept
                lost.append((start, end, result))
                logger.warning("%s: %.1f-%.1f s not transcribed: %s", os.fspath(path), start, end, result)
            if progress is not None and file.whole is None:
                progress(end, file.duration or end)
    if not results:
        if lost:
            raise lost[0][2]
        raise InvalidAudioError(f"{os.fspath(path)} has no audio samples")
    if len(results) == 1 and not lost:  # one request (a short file, a truncated one)
        result = results[0][1]
    else:
        end = results[-1][0] + (results[-1][1].duration or 0.0)
        result = Transcript.joined(results, file.duration if file.duration is not None else end)
    warnings = [*file.notes, *(f"{start:.1f}-{end:.1f} s not transcribed: {e}" for start, end, e in lost)]
    if warnings:  # untranscribed: the seconds no engine heard, for a caller to act on (the CLI exits 1)
        extra = {"untranscribed": [[start, end] for start, end, _ in lost]} if lost else {}
        return result.replace(metadata={**result.metadata, "warnings": warnings, **extra})
    return result


async def file_transcripts(
    engine: Provider, file: FilePieces, *, language: str | None, prompt: str | None, word_timestamps: bool
) -> AsyncGenerator[tuple[float, float, Transcript | STTError]]:
    """Each request ``file`` goes in, in order: (start, end, its transcript, or the error no engine
    got past). A file that fits one request is one ``engine.transcribe``, its error raised; a long
    file's piece that failed is that piece's loss (the caller keeps the others). The request's own
    mistake (``ConfigError``), or audio refused before any piece was heard (the file's format, most
    likely), is raised; an error every later piece would meet too (a refused key) ends the file,
    given as the loss of all that is left."""
    options: dict[str, Any] = {"language": language, "prompt": prompt, "word_timestamps": word_timestamps}
    if file.whole is not None:
        yield 0.0, file.whole.duration, await engine.transcribe(file.whole, **options)
        return
    heard = asked = False
    for start, piece in file.pieces:  # a file that cannot be read raises here, whole
        if piece.duration < MIN_AUDIO_SECONDS and asked:
            continue  # a long file's last few samples: too short to hold a word, or to recognise
        asked, end = True, start + piece.duration
        result: Transcript | STTError
        try:
            result = await engine._transcribe_piece(piece, **options)
        except STTError as e:
            if isinstance(e, ConfigError) or (isinstance(e, InvalidAudioError) and not heard):
                raise
            result = e
        if isinstance(result, Transcript):
            heard = True
        elif engine._fails_every_piece(result, language=language, word_timestamps=word_timestamps):
            yield start, max(end, file.duration or end), result
            return
        yield start, end, result


def check_audio(audio: Audio) -> None:
    """Audio no engine could hear is bad input, refused before any engine or batch sees it (one
    such clip failed a whole batch)."""
    if audio.num_frames == 0:
        raise InvalidAudioError("audio is empty (no samples)")
    if audio.duration < MIN_AUDIO_SECONDS:
        raise InvalidAudioError(f"audio is too short to recognise: {audio.duration * 1000:.1f} ms "
                                f"(at least {MIN_AUDIO_SECONDS * 1000:.0f} ms)")


def check_language(language: str | None) -> None:
    """A request's language is a code (en, zh, yue, en-US), 'auto' or 'multi': anything else is a
    mistake to report, not a language no engine happens to declare."""
    if language is not None and not _LANGUAGE_CODE.fullmatch(language):
        raise ConfigError(f"language {language!r} is not a language code (such as en, zh, yue or en-US; "
                          "'auto' detects it)")


