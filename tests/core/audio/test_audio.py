from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_core import Audio, InvalidAudioError

FIXTURE = Path(__file__).parents[2] / "fixtures" / "audio" / "fox.wav"


def sine(hz: float, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32)
    return np.repeat(wave[:, None], channels, axis=1)


def dominant_hz(audio: Audio) -> float:
    samples = audio.mono_float32()
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / audio.sample_rate)[spectrum.argmax()])


@pytest.mark.parametrize(("fmt", "subtype"), [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS")])
def test_decodes_container_formats(tmp_path: Path, fmt: str, subtype: str) -> None:
    path = tmp_path / f"tone.{fmt.lower()}"
    sf.write(path, sine(440, 1.0, 16_000), 16_000, format=fmt, subtype=subtype)
    audio = Audio.from_file(path)
    assert audio.sample_rate == 16_000 and audio.channels == 1
    assert audio.duration == pytest.approx(1.0, abs=0.01)
    assert dominant_hz(audio) == pytest.approx(440, abs=2)
    assert dominant_hz(Audio.from_bytes(path.read_bytes())) == pytest.approx(440, abs=2)


def test_raw_pcm_int16_and_float32() -> None:
    stereo = (sine(440, 0.5, 8_000, channels=2) * 32767).astype("<i2")
    audio = Audio.from_bytes(stereo.tobytes(), sample_rate=8_000, channels=2)
    assert (audio.channels, audio.num_frames, audio.sample_format) == (2, 4_000, "int16")
    floats = sine(440, 0.5, 8_000).astype("<f4")
    assert Audio.from_bytes(floats.tobytes(), sample_rate=8_000, sample_format="float32").num_frames == 4_000
    with pytest.raises(InvalidAudioError, match="not a whole number"):
        Audio.from_bytes(b"\x00\x01\x02", sample_rate=16_000)


def test_resample_with_soxr_keeps_pitch_and_downmixes() -> None:
    audio = Audio.from_numpy(sine(1000, 1.0, 48_000, channels=2), 48_000)
    mono16k = audio.to(sample_rate=16_000, channels=1)
    assert (mono16k.sample_rate, mono16k.channels, mono16k.num_frames) == (16_000, 1, 16_000)
    assert dominant_hz(mono16k) == pytest.approx(1000, abs=2)
    telephone = Audio.from_numpy(sine(300, 1.0, 8_000), 8_000).to(16_000)
    assert dominant_hz(telephone) == pytest.approx(300, abs=2)


def test_int16_float_round_trip_and_encoding() -> None:
    audio = Audio.from_file(FIXTURE)
    again = Audio.from_bytes(audio.encode("FLAC"))
    assert np.abs(again.float32() - audio.float32()).max() < 1e-4
    assert len(audio.pcm_bytes()) == audio.num_frames * 2
    assert audio.to(sample_format="int16").sample_format == "int16"


def test_slice_and_concat() -> None:
    audio = Audio.from_numpy(np.arange(16_000, dtype=np.float32) / 16_000, 16_000)
    first, rest = audio.slice(0, 0.25), audio.slice(0.25)
    assert (first.num_frames, rest.num_frames) == (4_000, 12_000)
    assert np.array_equal(Audio.concat([first, rest]).samples, audio.samples)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b""), "file is empty"),
        (lambda p: sf.write(p, np.zeros(0, np.float32), 16_000), "no audio samples"),
        (lambda p: p.write_bytes(FIXTURE.read_bytes()[:30]), "cannot decode"),
        (lambda p: p.write_bytes(np.random.default_rng(1).bytes(5000)), "cannot decode"),
    ],
    ids=["empty", "header-only", "truncated-header", "random-bytes"],
)
def test_bad_files_give_one_clear_error(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "bad.wav"
    make(path)
    with pytest.raises(InvalidAudioError, match=message):
        Audio.from_file(path)


def test_missing_file() -> None:
    with pytest.raises(InvalidAudioError, match="cannot read"):
        Audio.from_file("/no/such/file.wav")


@pytest.mark.parametrize("rate", [0, -16_000, 10_000_000])
def test_bad_sample_rates(rate: int) -> None:
    with pytest.raises(InvalidAudioError, match="sample rate"):
        Audio.from_numpy(np.zeros(100, np.float32), rate)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(bad: float) -> None:
    samples = np.zeros(100, np.float32)
    samples[50] = bad
    with pytest.raises(InvalidAudioError, match="NaN or infinite"):
        Audio.from_numpy(samples, 16_000)


def test_empty_array() -> None:
    with pytest.raises(InvalidAudioError, match="empty"):
        Audio.from_numpy(np.zeros(0, np.float32), 16_000)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_any_bytes_decode_or_raise_invalid_audio(data: bytes) -> None:
    try:
        audio = Audio.from_bytes(data)
    except InvalidAudioError:
        return
    assert audio.num_frames > 0 and np.isfinite(audio.float32()).all()


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=44, max_size=2048))
def test_any_wav_body_after_a_real_header_decodes_or_raises_invalid_audio(body: bytes) -> None:
    header = io.BytesIO()
    sf.write(header, np.zeros(10, np.int16), 16_000, format="WAV", subtype="PCM_16")
    data = header.getvalue()[:44] + body
    with contextlib.suppress(InvalidAudioError):
        Audio.from_bytes(data)


@settings(max_examples=100, deadline=None)
@given(
    st.binary(min_size=2, max_size=4096),
    st.integers(min_value=-10, max_value=10_000_000),
    st.integers(min_value=-2, max_value=8),
    st.sampled_from(["int16", "float32"]),
)
def test_any_raw_pcm_decodes_or_raises_invalid_audio(data: bytes, rate: int, channels: int, fmt: str) -> None:
    with contextlib.suppress(InvalidAudioError):
        Audio.from_bytes(data, sample_rate=rate, channels=channels, sample_format=fmt)  # type: ignore[arg-type]


def test_split_at_silences_cuts_in_the_pause_and_keeps_every_sample() -> None:
    speech = Audio(np.full(16_000, 0.5, dtype=np.float32), 16_000)  # 1 s "speech" blocks
    audio = Audio.concat([speech, Audio.silence(0.5), speech, Audio.silence(0.5), speech])
    pieces = audio.split_at_silences(2.0)
    assert sum(p.num_frames for _, p in pieces) == audio.num_frames
    assert all(p.duration <= 2.0 for _, p in pieces)
    assert 1.0 <= pieces[1][0] <= 1.5  # the first cut fell in the first pause
    assert [start for start, _ in audio.split_at_silences(10.0)] == [0.0]
    with pytest.raises(ValueError, match="max_duration must be positive"):
        audio.split_at_silences(0)


def test_split_at_silences_takes_the_pause_between_sentences_not_a_commas() -> None:
    # In digital silence every 100 ms of a pause tied, and the first (a comma's 0.25 s) was taken:
    # a stream=true answer then read "last quarter. Mostly on travel".
    def speech(seconds: float) -> Audio:
        return Audio(np.full(int(seconds * 16_000), 0.3, dtype=np.float32), 16_000)

    audio = Audio.concat([speech(16), Audio.silence(0.25), speech(8.75), Audio.silence(1.5), speech(13.5)])
    (_, first), (second, _) = audio.split_at_silences(30.0)
    assert 25.0 <= second <= 26.5 and first.duration == pytest.approx(second)
