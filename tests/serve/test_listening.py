"""How a /v1/realtime session holds its audio (stt_core/_serve/listening.py), with the real VAD on
speech fixtures and an engine slower than the audio arrives (stt_core.testing's FakeProvider, as
the far end): the audio held never passes the bound, the reader is made to wait, and every
utterance is answered, in order."""

from __future__ import annotations

import asyncio
from typing import Any

from realtime_clients import encoded, speech
from stt_core import Chain, RealtimeSettings
from stt_core._serve.listening import Listening
from stt_core._serve.protocol import decode
from stt_core._types import Capabilities
from stt_core.testing import FakeProvider

BOUND = 4.0  # max_buffer_seconds


async def test_a_client_faster_than_the_engine_is_held_to_the_bound_and_loses_nothing() -> None:
    slow = FakeProvider(delay=0.3, text="heard", capabilities=Capabilities())  # no interims: finals only
    sent: list[dict[str, Any]] = []
    listening = Listening(Chain([slow]), RealtimeSettings(), language="en", send=sent.append,
                          max_buffer=BOUND, offset=0.0, item=None, previous=None, committing=lambda _: None)
    data, per_second = encoded(speech(*["fox", "lights", "weather"] * 2, gap=1.0), "audio/pcm")
    step = per_second // 10 // 2 * 2  # 0.1 s a message, as fast as it can go
    held, waits = [], 0
    for i in range(0, len(data), step):
        listening.put(decode(data[i:i + step], "audio/pcm"))
        held.append(listening.held)
        if listening.held > BOUND:  # what the session does after each append
            waits += 1
            await listening.wait_room()
        await asyncio.sleep(0)
    listening.end()
    await listening.task
    started = [e["item_id"] for e in sent if e["type"] == "input_audio_buffer.speech_started"]
    completed = [e["item_id"] for e in sent if e["type"].endswith("transcription.completed")]
    assert len(started) == 6 and completed == started
    assert waits > 0, "the reader was never held back"
    # The bound, plus the utterance whose end was heard past it (the clips are under 4 s each)
    assert max(held) <= BOUND + 4.0, max(held)
