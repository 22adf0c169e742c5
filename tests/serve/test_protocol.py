"""Reading a client's session.update (GA) and transcription_session.update (beta) into one config,
and what the real-time VAD is given from it (stt_core/_serve/protocol.py): a table, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from stt_core import RealtimeSettings
from stt_core._serve.protocol import (
    BadEvent,
    SessionConfig,
    TurnDetection,
    beta_session,
    ga_session,
    read_beta,
    read_ga,
)

BASE = RealtimeSettings(min_silence=0.55, pre_roll=0.3, threshold=0.5)


def ga(**input_: Any) -> dict[str, Any]:
    return {"type": "transcription", "audio": {"input": input_}}


@pytest.mark.parametrize(("session", "expected"), [
    (ga(), SessionConfig()),
    (ga(format={"type": "audio/pcmu"}), SessionConfig(format="audio/pcmu")),
    (ga(transcription={"model": "funasr,whisper", "language": "zh", "prompt": "names"}),
     SessionConfig(model="funasr,whisper", language="zh", prompt="names")),
    (ga(transcription={"model": "gpt-transcribe", "languages": ["zh"]}),
     SessionConfig(model="gpt-transcribe", languages=("zh",))),
    (ga(turn_detection=None), SessionConfig(turn_detection=None)),
    (ga(turn_detection={"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 600,
                        "silence_duration_ms": 350}),
     SessionConfig(turn_detection=TurnDetection("server_vad", 0.6, 600, 350))),
    (ga(turn_detection={"type": "semantic_vad", "eagerness": "high"}),
     SessionConfig(turn_detection=TurnDetection("semantic_vad", eagerness="high"))),
], ids=["nothing changes", "pcmu", "transcription", "possible languages", "client turns", "server VAD",
        "semantic VAD"])
def test_the_ga_shape(session: dict[str, Any], expected: SessionConfig) -> None:
    assert read_ga(SessionConfig(), session) == expected


@pytest.mark.parametrize(("session", "param", "says"), [
    ({"type": "realtime"}, "session.type", "only transcribes"),
    (ga(format={"type": "audio/opus"}), "session.audio.input.format.type", "'audio/opus'"),
    (ga(format={"type": "audio/pcm", "rate": 16000}), "session.audio.input.format.rate", "24000 Hz only"),
    (ga(turn_detection={"type": "server_vad", "threshold": 1}),
     "session.audio.input.turn_detection.threshold", "between 0 and 1 (exclusive)"),
    (ga(turn_detection={"type": "server_vad", "silence_duration_ms": 20}),
     "session.audio.input.turn_detection.silence_duration_ms", "between 64 and 10000"),
    (ga(turn_detection={"type": "loud"}), "session.audio.input.turn_detection.type", "'loud'"),
    (ga(transcription=None), "session.audio.input.transcription", "cannot be turned off"),
    (ga(transcription={"model": 7}), "session.audio.input.transcription.model", "a string"),
    (ga(transcription={"languages": "en"}), "session.audio.input.transcription.languages", "a list"),
    ("x" * 1000, "session", "must be an object"),
    (ga(turn_detection={"type": "x" * 1000}), "session.audio.input.turn_detection.type", "..."),
], ids=["conversation", "format", "rate", "threshold", "silence", "vad type", "no transcription",
        "model type", "languages type", "not an object", "a long value is cut short"])
def test_what_the_ga_shape_refuses_names_the_field(session: Any, param: str, says: str) -> None:
    with pytest.raises(BadEvent) as refused:
        read_ga(SessionConfig(), session)
    assert refused.value.param == param and says in refused.value.message
    assert len(refused.value.message) < 300


@pytest.mark.parametrize(("language", "languages", "hint"), [
    (None, None, None), ("en", None, "en"), (None, ("zh",), "zh"), (None, ("zh", "zh"), "zh"),
    (None, ("zh", "en"), None), ("en", ("zh", "en"), "en"), (None, ("", "zh"), "zh"),
], ids=["none", "language", "one possible", "one, twice", "several: detected", "language first", "empty"])
def test_the_language_the_engines_are_asked_for(language: str | None, languages: tuple[str, ...] | None,
                                                hint: str | None) -> None:
    config = SessionConfig(language=language, languages=languages)
    assert config.hint == hint
    stated = ga_session(config, "s", BASE)["audio"]["input"]["transcription"]
    assert stated.get("languages") == (list(languages) if languages else None)  # stated back as sent


def test_the_beta_shape_and_each_answered_in_its_own() -> None:
    config = read_beta(SessionConfig(), {"input_audio_format": "g711_alaw", "turn_detection": None,
                                         "input_audio_transcription": {"model": "whisper"}})
    assert config == SessionConfig(format="audio/pcma", model="whisper", turn_detection=None)
    with pytest.raises(BadEvent) as refused:
        read_beta(config, {"input_audio_format": "audio/pcm"})
    assert refused.value.param == "session.input_audio_format"
    beta = beta_session(config, "sess_1", config.settings(BASE))
    assert (beta["input_audio_format"], beta["turn_detection"]) == ("g711_alaw", None)
    ga_shape = ga_session(SessionConfig(), "sess_1", SessionConfig().settings(BASE))
    assert ga_shape["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert ga_shape["audio"]["input"]["turn_detection"] == {
        "type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 550}


@pytest.mark.parametrize(("turns", "threshold", "pre_roll", "min_silence"), [
    (TurnDetection(), 0.5, 0.3, 0.55),  # what the client leaves out is the server's [realtime]
    (TurnDetection("server_vad", 0.7, 500, 800), 0.7, 0.5, 0.8),
    (TurnDetection("semantic_vad", eagerness="high"), 0.5, 0.3, 0.3),
    (TurnDetection("semantic_vad", eagerness="low"), 0.5, 0.3, 1.0),
    (TurnDetection("semantic_vad", eagerness="auto"), 0.5, 0.3, 0.55),
    (None, 0.5, 0.3, 10.0),  # client turns: the VAD ends nothing itself short of 10 s
])
def test_what_the_vad_is_given(turns: TurnDetection | None, threshold: float, pre_roll: float,
                               min_silence: float) -> None:
    settings = SessionConfig(turn_detection=turns).settings(BASE)
    assert (settings.threshold, settings.pre_roll, settings.min_silence) == (threshold, pre_roll, min_silence)


def test_only_the_format_or_prompt_changing_keeps_the_stream() -> None:
    now = SessionConfig(model="whisper")
    assert now.hears_like(SessionConfig(model="whisper", format="audio/pcmu", prompt="x"))
    assert not now.hears_like(SessionConfig(model="funasr"))
    assert not now.hears_like(SessionConfig(model="whisper", turn_detection=None))
    english = SessionConfig(model="whisper", language="en")
    assert english.hears_like(SessionConfig(model="whisper", languages=("en",)))  # the same language asked
    assert not english.hears_like(SessionConfig(model="whisper", languages=("en", "zh")))
