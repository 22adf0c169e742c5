"""One ``stt-core serve`` for the real-time tests of every module here (started once per run, on
first use: each start loads whisper and the tiny SenseVoice, so sharing it keeps CI short)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from realtime_clients import REALTIME_KEY
from serving import FUNASR_TABLE, WHISPER_TABLE, ServeProcess


@pytest.fixture(scope="session")
def realtime_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """Whisper first, the tiny SenseVoice behind it, behind a key, as a user would serve them."""
    config = f"""
chain = ["whisper", "funasr"]
{WHISPER_TABLE}{FUNASR_TABLE}[serve]
api_key = "{REALTIME_KEY}"
[realtime]  # tests of words and the protocol, not of time (speech.PATIENT: CI's two busy cores)
attempt_timeout = 120
drain_timeout = 120
"""
    server = ServeProcess(tmp_path_factory.mktemp("realtime"), config)
    yield server
    server.stop()
