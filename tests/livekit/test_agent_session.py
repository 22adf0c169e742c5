"""Offline end to end: a real LiveKit AgentSession, no room, no LLM, no server, with our STT and
Silero VAD, fed fixture speech through a custom AudioInput."""

from __future__ import annotations

import time
from typing import Any

import pytest
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    AgentSession,
    APIConnectOptions,
    llm,
)
from livekit.plugins import silero

import stt_core
from agent_sessions import FixtureAudio, heard
from speech import FIXTURES, MAX_WER, PATIENT, warm_whisper, wer
from stt_core import Audio
from stt_core_livekit import STT


@pytest.fixture(scope="module")
def whisper() -> stt_core.Provider:
    return warm_whisper()


async def test_agent_session_emits_the_users_words(whisper: stt_core.Provider) -> None:
    session = AgentSession(stt=STT(whisper, realtime_settings=PATIENT), vad=silero.VAD.load(),
                           turn_handling={"turn_detection": "stt"})
    events = await heard(session, FixtureAudio(Audio.from_file(FIXTURES / "lights.wav")))
    transcript = next(e.transcript for e, _ in events if e.is_final)
    assert wer("lights", transcript) <= MAX_WER, transcript


class RecordingLLM(llm.LLM):
    """An LLM that answers at once and notes when it was asked, and with which user words."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[float, str]] = []

    def chat(self, *, chat_ctx: llm.ChatContext, tools: list[Any] | None = None,
             conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS, **_: Any
             ) -> llm.LLMStream:
        said = [m.text_content or "" for m in chat_ctx.messages() if m.role == "user"]
        self.asked.append((time.monotonic(), said[-1] if said else ""))
        return _Answer(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _Answer(llm.LLMStream):
    async def _run(self) -> None:
        answer = llm.ChoiceDelta(role="assistant", content="OK.")
        self._event_ch.send_nowait(llm.ChatChunk(id="1", delta=answer))


async def test_preemptive_generation_starts_from_our_preflight_before_the_final(
    whisper: stt_core.Provider,
) -> None:
    # Fed in real time. whisper tiny.en (float32) took 1.4 s for the clip on this 2-core VM, idle
    # (a CI run saw the preflight miss a 1.2 s window, and one on two busy workers a 4 s one), so
    # the utterance ends 8 s after the speech here: the preflight has the time to come first (the
    # default 0.55 s suits an engine of SenseVoiceSmall's speed).
    ours = STT(whisper, realtime_settings=PATIENT.model_copy(update={"min_silence": 8.0}))
    assert ours.realtime and ours.capabilities.interim_results
    model = RecordingLLM()
    session = AgentSession(stt=ours, vad=silero.VAD.load(), llm=model,
                           turn_handling={"turn_detection": "stt",
                                          "preemptive_generation": {"enabled": True}})
    lights = FixtureAudio(Audio.from_file(FIXTURES / "lights.wav"), pace=0.02)  # in real time
    events = await heard(session, lights, linger=0.5)
    finals = [at for e, at in events if e.is_final]
    assert model.asked, "no generation started"
    asked_at, words = model.asked[-1]
    assert wer("lights", words) <= MAX_WER, model.asked  # the preflight's words
    assert asked_at < finals[0], (model.asked, finals)  # from the preflight, before the final
