"""Files of any length: long ones are decoded and sent in pieces, never held whole."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stt_core import (
    AllProvidersFailed,
    Audio,
    Chain,
    InvalidAudioError,
    Provider,
    ProviderError,
    Segment,
    Transcript,
    transcribe_file,
)
from stt_core.testing import FakeProvider

RATE = 16_000


def speech_like(seconds: int) -> np.ndarray:
    """4 s of tone, 1 s of silence, repeated: pauses to cut at, like speech."""
    t = np.arange(5 * RATE) / RATE
    cycle = np.where(t < 4, 0.3 * np.sin(2 * np.pi * 220 * t), 0.0).astype(np.float32)
    return np.tile(cycle, seconds // 5)


class Recorder(Provider):
    """Notes what each piece was (length, how it ends) without keeping its samples."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.pieces: list[tuple[float, float]] = []  # (duration, loudest sample of the last 50 ms)

    async def _transcribe(self, audio: Audio, *, language, prompt, word_timestamps):  # type: ignore[no-untyped-def]
        self.pieces.append((audio.duration, float(abs(audio.mono_float32()[-800:]).max())))
        return Transcript("piece", segments=(Segment("piece", 0.0, audio.duration),))


@pytest.fixture(scope="module")
def hour_long(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "hour.wav"
    sf.write(path, speech_like(3600), RATE, subtype="PCM_16")
    return path


async def test_an_hour_long_file_goes_in_pieces_with_bounded_memory(hour_long: Path) -> None:
    engine = Recorder()
    tracemalloc.start()
    try:
        result = await transcribe_file(Chain([engine]), hour_long, piece_seconds=300)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.metadata["pieces"] == len(engine.pieces) >= 12
    assert sum(d for d, _ in engine.pieces) == pytest.approx(3600, abs=0.01)
    assert all(d <= 300 for d, _ in engine.pieces)
    assert result.duration == pytest.approx(3600)
    # The whole hour as float32 is 230 MB, and a naive path holds it several times over.
    assert peak < 120 * 2**20, f"peak {peak / 2**20:.0f} MB"
    # Each cut fell in a pause: every piece but the last ends in silence.
    assert all(loudest < 0.05 for _, loudest in engine.pieces[:-1])


async def test_segment_times_run_on_the_file_clock(tmp_path: Path) -> None:
    path = tmp_path / "twelve_minutes.wav"
    sf.write(path, speech_like(720), RATE, subtype="PCM_16")
    engine = FakeProvider(name="engine", text="piece")
    result = await transcribe_file(engine, path, piece_seconds=300)
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and starts[0] == 0.0 and starts[-1] > 300


async def test_short_files_are_one_request_and_bad_files_one_clear_error(tmp_path: Path) -> None:
    short = tmp_path / "short.wav"
    sf.write(short, speech_like(10), RATE)
    engine = FakeProvider(name="engine")
    await transcribe_file(engine, short)
    assert len(engine.calls) == 1
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(InvalidAudioError, match="file is empty"):
        await transcribe_file(engine, empty)
    noise = tmp_path / "noise.wav"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(InvalidAudioError, match="cannot decode"):
        await transcribe_file(engine, noise)
    assert len(engine.calls) == 1  # bad files never reached the engine


async def test_a_piece_no_engine_transcribed_is_said_and_the_pieces_around_it_are_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # 40 s in pieces of 10: the second fails at every engine. It raised, and the three pieces
    # transcribed (for a cloud engine, paid for) were thrown away.
    path = tmp_path / "forty.wav"
    sf.write(path, speech_like(40), RATE, subtype="PCM_16")
    down = ProviderError("upstream 503", provider="cloud", retryable=False)
    engine = FakeProvider(name="cloud", script=["one", down], text="more")
    result = await transcribe_file(Chain([engine]), path, piece_seconds=10)
    pieces = len(engine.calls)  # cut at pauses: about 5 s each
    # and the piece after it was asked though the failure opened the engine's breaker: its last hope
    assert pieces >= 4 and result.text.split() == ["one"] + ["more"] * (pieces - 2), result.text
    [[start, end]] = result.metadata["untranscribed"]
    assert 4 <= start < end <= 20
    assert "not transcribed" in result.metadata["warnings"][0] and "upstream 503" in caplog.text
    every = FakeProvider(name="cloud", script=[down] * 100)
    with pytest.raises(AllProvidersFailed):  # nothing heard at all: the error, as before
        await transcribe_file(Chain([every]), path, piece_seconds=10)


async def test_a_file_stops_at_the_first_piece_whose_failure_every_piece_would_meet(tmp_path: Path) -> None:
    # A refused key failed each piece in turn: a two-hour file uploaded 24 pieces, all refused.
    path = tmp_path / "forty.wav"
    sf.write(path, speech_like(40), RATE, subtype="PCM_16")
    refused = ProviderError("401: invalid api key", provider="cloud", status_code=401, retryable=False)
    engine = FakeProvider(name="cloud", script=[refused] * 100)
    with pytest.raises(AllProvidersFailed, match="invalid api key"):
        await transcribe_file(Chain([engine]), path, piece_seconds=10)
    assert len(engine.calls) == 1
    alone = FakeProvider(name="cloud", script=[refused] * 100)  # an engine outside a chain, the same
    with pytest.raises(ProviderError, match="invalid api key"):
        await transcribe_file(alone, path, piece_seconds=10)
    assert len(alone.calls) == 1
    revoked = FakeProvider(name="cloud", script=["one", "two", refused], text="never")  # mid-way
    result = await transcribe_file(Chain([revoked]), path, piece_seconds=10)
    assert result.text == "one two" and len(revoked.calls) == 3  # the pieces paid for are kept
    [[start, end]] = result.metadata["untranscribed"]
    assert end == pytest.approx(40.0) and 8 <= start < 20  # all that was left


async def test_a_piece_an_engine_refuses_as_bad_audio_is_that_pieces_loss_only(tmp_path: Path) -> None:
    path = tmp_path / "forty.wav"
    sf.write(path, speech_like(40), RATE, subtype="PCM_16")
    engine = FakeProvider(name="cloud", script=["one", InvalidAudioError("the engine could not decode it")],
                          text="more")
    result = await transcribe_file(Chain([engine]), path, piece_seconds=10)
    assert result.text.split() == ["one"] + ["more"] * (len(engine.calls) - 2)
    assert len(result.metadata["untranscribed"]) == 1
    # refused before any piece was heard: the file's format, most likely, which every piece shares
    first = FakeProvider(name="cloud", script=[InvalidAudioError("the engine could not decode it")] * 100)
    with pytest.raises(InvalidAudioError, match="could not decode"):
        await transcribe_file(Chain([first]), path, piece_seconds=10)
    assert len(first.calls) == 1
