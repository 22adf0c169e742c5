"""OpenAI's Realtime API in transcription mode, as ``/v1/realtime`` speaks it: a session's
configuration read from a client's ``session.update`` (the GA shape) or
``transcription_session.update`` (the beta shape) and written back in the shape it came in,
the server's events, and the input audio decoded.

Only the fields an update names change (as OpenAI's API does). What is mapped where:

- ``format``: ``audio/pcm`` (16-bit little-endian mono at 24 kHz; beta ``pcm16``), ``audio/pcmu``
  and ``audio/pcma`` (G.711 at 8 kHz; beta ``g711_ulaw``, ``g711_alaw``), decoded by libsndfile
  (soundfile, already the core's decoder: no new dependency, and its G.711 tables are the
  reference ones, the same as Python's audioop).
- ``transcription.model``: the chain or engine (``models.Models``); ``language`` as a request's,
  and ``languages`` (the possible ones) as ``language_hint`` reads them; ``prompt`` is kept and
  shown, not used (real time sends no prompt to its engines).
- ``turn_detection``: ``server_vad`` onto the real-time VAD (``threshold``, ``prefix_padding_ms``
  -> ``pre_roll``, ``silence_duration_ms`` -> ``min_silence``; what a client leaves out is the
  server's ``[realtime]`` setting); ``semantic_vad`` is heard as ``server_vad`` with its
  ``eagerness`` as the silence that ends a turn (``low`` 1 s, ``high`` 0.3 s, else
  ``min_silence``); ``null``: the client commits, and the VAD only finds the speech in what it
  commits.
- ``noise_reduction`` and ``include`` are accepted and answered as not applied (``null``, ``[]``).
"""

from __future__ import annotations

import base64
import binascii
import io
import uuid
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import soundfile as sf

from .._audio.audio import Audio
from .._realtime import RealtimeSettings

PCM_RATE, G711_RATE = 24_000, 8_000
EMPTY_COMMIT = "input_audio_buffer_commit_empty"  # the error code of a commit with no audio
FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")
BETA_FORMATS = {"pcm16": "audio/pcm", "g711_ulaw": "audio/pcmu", "g711_alaw": "audio/pcma"}
_G711 = {"audio/pcmu": "ULAW", "audio/pcma": "ALAW"}
_EAGERNESS_SILENCE = {"low": 1.0, "high": 0.3}  # seconds; medium and auto: the server's min_silence
NULL_SILENCE = 10.0  # with turn_detection null: the VAD ends nothing itself short of this


class BadEvent(Exception):
    """A client event the server cannot take: answered with an ``error`` event naming it."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_value") -> None:
        super().__init__(message)
        self.message, self.param, self.code = message, param, code


@dataclass(frozen=True)
class TurnDetection:
    type: Literal["server_vad", "semantic_vad"] = "server_vad"
    threshold: float | None = None
    prefix_padding_ms: int | None = None
    silence_duration_ms: int | None = None
    eagerness: str | None = None


@dataclass(frozen=True)
class SessionConfig:
    """A session's configuration, in neither shape: what both updates change."""

    format: str = "audio/pcm"
    model: str | None = None
    language: str | None = None
    languages: tuple[str, ...] | None = None
    prompt: str | None = None
    turn_detection: TurnDetection | None = TurnDetection()

    @property
    def hint(self) -> str | None:
        """The language the engines are asked for."""
        return language_hint(self.language, self.languages)

    @property
    def hint_field(self) -> str:
        """The field ``hint`` came from: an error about it names that one."""
        return "languages" if not self.language and self.languages else "language"

    def settings(self, base: RealtimeSettings) -> RealtimeSettings:
        """The real-time stream's settings: the server's ``[realtime]``, with the client's VAD."""
        turns = self.turn_detection
        if turns is None:
            return base.model_copy(update={"min_silence": NULL_SILENCE})
        update: dict[str, float] = {}
        if turns.threshold is not None:
            update["threshold"] = turns.threshold
        if turns.prefix_padding_ms is not None:
            update["pre_roll"] = turns.prefix_padding_ms / 1000
        if turns.silence_duration_ms is not None:
            update["min_silence"] = turns.silence_duration_ms / 1000
        elif turns.type == "semantic_vad" and turns.eagerness in _EAGERNESS_SILENCE:
            update["min_silence"] = _EAGERNESS_SILENCE[turns.eagerness]
        return base.model_copy(update=update)

    def hears_like(self, other: SessionConfig) -> bool:
        """Whether the same real-time stream serves both (only the format, or nothing, changed)."""
        same = replace(self, format=other.format, prompt=other.prompt, language=other.language,
                       languages=other.languages)
        return same == other and self.hint == other.hint


# -- reading an update -----------------------------------------------------------------------------


def read_ga(config: SessionConfig, session: object) -> SessionConfig:
    """``config`` changed by a ``session.update``'s ``session`` object."""
    session = _object(session, "session")
    kind = session.get("type", "transcription")
    if kind != "transcription":
        raise BadEvent(f"session.type {_said(kind)}: this server only transcribes; send session.type "
                       "'transcription' (and connect with ?intent=transcription)", param="session.type")
    audio = _object(session.get("audio", {}), "session.audio")
    given = _object(audio.get("input", {}), "session.audio.input")
    changes: dict[str, Any] = {}
    if (fmt := given.get("format")) is not None:
        fmt = _object(fmt, "session.audio.input.format")
        kind = fmt.get("type", "audio/pcm")
        if kind not in FORMATS:
            raise BadEvent(f"audio format {_said(kind)} is not one of {', '.join(FORMATS)}",
                           param="session.audio.input.format.type")
        if kind == "audio/pcm" and fmt.get("rate", PCM_RATE) != PCM_RATE:
            raise BadEvent(f"audio/pcm is taken at {PCM_RATE} Hz only, not {_said(fmt.get('rate'))}",
                           param="session.audio.input.format.rate")
        changes["format"] = kind
    if "transcription" in given:
        changes |= _transcription(given["transcription"], "session.audio.input.transcription")
    if "turn_detection" in given:
        changes["turn_detection"] = _turns(given["turn_detection"], "session.audio.input.turn_detection")
    return replace(config, **changes)


def read_beta(config: SessionConfig, session: object) -> SessionConfig:
    """``config`` changed by a ``transcription_session.update``'s ``session`` object."""
    session = _object(session, "session")
    changes: dict[str, Any] = {}
    if (fmt := session.get("input_audio_format")) is not None:
        if fmt not in BETA_FORMATS:
            raise BadEvent(f"input_audio_format {_said(fmt)} is not one of {', '.join(BETA_FORMATS)}",
                           param="session.input_audio_format")
        changes["format"] = BETA_FORMATS[fmt]
    if "input_audio_transcription" in session:
        changes |= _transcription(session["input_audio_transcription"], "session.input_audio_transcription")
    if "turn_detection" in session:
        changes["turn_detection"] = _turns(session["turn_detection"], "session.turn_detection")
    return replace(config, **changes)


def _transcription(value: object, param: str) -> dict[str, Any]:
    if value is None:
        raise BadEvent("transcription cannot be turned off in a transcription session", param=param)
    given = _object(value, param)
    changes: dict[str, Any] = {}
    for key in ("model", "language", "prompt"):
        if key in given:
            if given[key] is not None and not isinstance(given[key], str):
                raise BadEvent(f"{key} must be a string", param=f"{param}.{key}")
            changes[key] = given[key] or None
    if "languages" in given:
        languages = given["languages"]
        listed = isinstance(languages, list) and all(isinstance(code, str) for code in languages)
        if languages is not None and not listed:
            raise BadEvent("languages must be a list of strings", param=f"{param}.languages")
        changes["languages"] = tuple(code for code in languages or [] if code) or None
    return changes


def language_hint(language: str | None, languages: tuple[str, ...] | None) -> str | None:
    """What the engines are asked for: ``language``, else the one of ``languages`` (OpenAI's possible
    languages of the audio, ``languages[]`` in a form); with several, none: each engine detects it."""
    codes = {code for code in languages or () if code}
    return language or (codes.pop() if len(codes) == 1 else None)


def _turns(value: object, param: str) -> TurnDetection | None:
    if value is None:
        return None
    given = _object(value, param)
    kind = given.get("type") or "server_vad"
    if kind != "server_vad" and kind != "semantic_vad":
        raise BadEvent(f"turn_detection.type {_said(kind)} is not server_vad, semantic_vad or null",
                       param=f"{param}.type")
    threshold = _number(given, "threshold", param, 0, 1, exclusive=True)
    padding = _number(given, "prefix_padding_ms", param, 0, 2000)
    silence = _number(given, "silence_duration_ms", param, 64, 10_000)
    eagerness = given.get("eagerness")
    if eagerness is not None and eagerness not in ("low", "medium", "high", "auto"):
        raise BadEvent(f"eagerness {_said(eagerness)} is not low, medium, high or auto",
                       param=f"{param}.eagerness")
    return TurnDetection("semantic_vad" if kind == "semantic_vad" else "server_vad", threshold,
                         None if padding is None else round(padding),
                         None if silence is None else round(silence), eagerness)


def _said(value: object) -> str:
    """A client's value in an error, cut short (an error never echoes a megabyte back)."""
    text = repr(value)
    return text if len(text) <= 64 else text[:60] + "..."


def _object(value: object, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadEvent(f"{param} must be an object, not {type(value).__name__}", param=param)
    return value


def _number(given: dict[str, Any], key: str, param: str, low: float, high: float, *,
            exclusive: bool = False) -> float | None:
    value = given.get(key)
    if value is None:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not ((low < value < high) if exclusive else (low <= value <= high)):
        bounds = f"between {low:g} and {high:g}" + (" (exclusive)" if exclusive else "")
        raise BadEvent(f"{key} must be a number {bounds}, not {_said(value)}", param=f"{param}.{key}")
    return float(value)


# -- writing it back ---------------------------------------------------------------------------------


def ga_session(config: SessionConfig, session_id: str, effective: RealtimeSettings) -> dict[str, Any]:
    """The session as the GA shape states it (``session.created``, ``session.updated``)."""
    fmt: dict[str, Any] = {"type": config.format}
    if config.format == "audio/pcm":
        fmt["rate"] = PCM_RATE
    return {
        "type": "transcription", "object": "realtime.transcription_session", "id": session_id,
        "audio": {"input": {
            "format": fmt,
            "transcription": _transcription_out(config),
            "turn_detection": _turns_out(config, effective),
            "noise_reduction": None,
        }},
        "include": [],
    }


def beta_session(config: SessionConfig, session_id: str, effective: RealtimeSettings) -> dict[str, Any]:
    """The session as the beta shape states it (``transcription_session.updated``)."""
    beta_format = next(name for name, kind in BETA_FORMATS.items() if kind == config.format)
    return {
        "id": session_id, "object": "realtime.transcription_session", "modalities": ["text"],
        "input_audio_format": beta_format,
        "input_audio_transcription": _transcription_out(config),
        "turn_detection": _turns_out(config, effective),
        "input_audio_noise_reduction": None, "include": [], "client_secret": None,
    }


def _transcription_out(config: SessionConfig) -> dict[str, Any]:
    stated = {"model": config.model, "language": config.language, "prompt": config.prompt}
    return stated if config.languages is None else {**stated, "languages": list(config.languages)}


def _turns_out(config: SessionConfig, effective: RealtimeSettings) -> dict[str, Any] | None:
    if config.turn_detection is None:
        return None
    out = turn_detection(effective, config.turn_detection.type)
    if config.turn_detection.type == "semantic_vad":
        out["eagerness"] = config.turn_detection.eagerness or "auto"
    return out


def turn_detection(settings: RealtimeSettings, kind: str = "server_vad") -> dict[str, Any]:
    """``settings``' VAD as a ``turn_detection`` object: what ``SessionConfig.settings`` reads back."""
    return {"type": kind, "threshold": settings.threshold,
            "prefix_padding_ms": round(settings.pre_roll * 1000),
            "silence_duration_ms": round(settings.min_silence * 1000)}


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """A server event: its type, a fresh ``event_id``, and ``fields``."""
    return {"type": kind, "event_id": new_id("event"), **fields}


def error_event(message: str, *, kind: str = "invalid_request_error", code: str | None = None,
                param: str | None = None, event_id: str | None = None) -> dict[str, Any]:
    return event("error", error={"type": kind, "code": code, "message": message, "param": param,
                                 "event_id": event_id})


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


# -- input audio ---------------------------------------------------------------------------------------


def decode(data: bytes, fmt: str) -> Audio:
    """Appended bytes in ``fmt`` as audio (an odd byte of 16-bit PCM is the caller's to keep)."""
    if fmt == "audio/pcm":
        return Audio(np.frombuffer(data, dtype="<i2").astype(np.int16), PCM_RATE)  # little-endian anywhere
    samples, _ = sf.read(io.BytesIO(data), format="RAW", subtype=_G711[fmt], samplerate=G711_RATE,
                         channels=1, dtype="int16")
    return Audio(samples, G711_RATE)


def base64_audio(value: object) -> bytes:
    if not isinstance(value, str):
        raise BadEvent("audio must be a base64 string", param="audio")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadEvent("audio is not valid base64", param="audio") from None
