"""Reliability, round two: the faults real services and real users produce, each found by an
adversarial pass and each pinned here on real parts (real SDKs over real sockets to fault-injecting
servers on 127.0.0.1, real files, the real CLI in a subprocess).

Streams that stall or hang up, answers that are not transcripts, a breaker that sticks, inputs
that exhaust memory, retries into an opened breaker, bogus stream times, malformed keys, absurd
config values, and paths that are not audio files.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import stt_core
from fakes.deepgram_api import KEY as DEEPGRAM_KEY
from fakes.deepgram_api import FakeDeepgram
from fakes.groq_api import KEY as GROQ_KEY
from fakes.groq_api import NOT_TRANSCRIPTS, FakeGroq
from stt_core import (
    Audio,
    BreakerPolicy,
    Capabilities,
    Chain,
    ConfigError,
    InvalidAudioError,
    ProviderError,
    RetryPolicy,
)
from stt_core.testing import FakeProvider, level_chunks
from stt_core_deepgram._provider import DeepgramProvider
from stt_core_groq._provider import GroqProvider

FIXTURES = Path(__file__).parents[1] / "fixtures" / "audio"
FOX = FIXTURES / "fox.wav"
# two_utterances.wav: good_morning, 1.5 s of silence, begin_meeting.
SCRIPT = [(0.0, 1.69, "Good morning everyone."), (3.19, 5.10, "Let us begin the meeting.")]


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STT_", "GROQ", "DEEPGRAM"))}
    return subprocess.run([sys.executable, "-m", "stt_core.cli", *args], capture_output=True, text=True,
                          env={**clean, **(env or {})}, cwd=cwd, timeout=timeout, check=False)


def batch_only(name: str = "local") -> FakeProvider:
    """A second engine that answers at the end of the input with one token per 0.1 s of audio."""
    return FakeProvider(name=name, echo=True, capabilities=Capabilities(streaming=False))


async def paced(chunks: list[Audio], pace: float = 0.02) -> AsyncIterator[Audio]:
    for chunk in chunks:
        yield chunk
        await asyncio.sleep(pace)


def tokens(events: list[stt_core.StreamEvent]) -> list[str]:
    return " ".join(e.text for e in events if e.is_final).split()


# -- 1. a LiveKit stream closed mid-utterance ------------------------------------------------------


async def test_a_livekit_stream_closed_mid_utterance_closes_its_socket_and_tasks(serve) -> None:  # type: ignore[no-untyped-def]
    from stt_core_livekit import STT, audio_to_frames

    fake = FakeDeepgram(utterances=list(SCRIPT))
    fake.url = await serve(fake.app())
    before = asyncio.all_tasks()
    deepgram = DeepgramProvider(api_key=DEEPGRAM_KEY, base_url=fake.url, keepalive_interval=0.5)
    adapter = STT(Chain([deepgram, stt_core.registry().create("whisper")]))
    stream = adapter.stream()
    speech = Audio.from_file(FIXTURES / "two_utterances.wav").to(sample_rate=48_000)
    for frame in audio_to_frames(speech.slice(0, 1.0)):  # the caller says one second, then hangs up
        stream.push_frame(frame)
        await asyncio.sleep(0.002)
    for _ in range(100):
        if fake.streamed:
            break
        await asyncio.sleep(0.02)
    assert fake.open_sockets == 1
    await stream.aclose()
    for _ in range(100):
        if fake.open_sockets == 0:
            break
        await asyncio.sleep(0.02)
    assert fake.open_sockets == 0, "the engine's socket outlived the stream"
    sent = len(fake.control)
    await asyncio.sleep(1.2)  # two KeepAlive intervals
    assert len(fake.control) == sent, "KeepAlives still flowing after the stream closed"
    await adapter.aclose()
    await asyncio.sleep(0.05)
    assert asyncio.all_tasks() - before == set(), "tasks left running"


# -- 2. a stream that takes audio and says nothing -------------------------------------------------


@pytest.mark.parametrize("mode", ["mute", "skipped"])
async def test_a_stream_that_says_nothing_fails_over_with_all_its_audio(serve, mode: str) -> None:  # type: ignore[no-untyped-def]
    fake = FakeDeepgram(utterances=list(SCRIPT), mode=mode)
    fake.url = await serve(fake.app())
    deepgram = DeepgramProvider(api_key=DEEPGRAM_KEY, base_url=fake.url)
    chain = Chain([deepgram, batch_only()], stream_stall_timeout=1.0)
    words = level_chunks(range(1, 33))  # 32 "words" of 0.1 s
    started = asyncio.get_running_loop().time()
    async with chain:
        events = [e async for e in chain.stream(paced(words, 0.05))]
    assert tokens(events) == [str(n) for n in range(1, 33)]  # not one word lost
    assert events[-1].provider == "local"
    assert asyncio.get_running_loop().time() - started < 10  # not the 43 s of a ping timeout


# -- 3. answers that are not transcripts -----------------------------------------------------------


@pytest.mark.parametrize("fault", sorted(NOT_TRANSCRIPTS))
async def test_a_groq_200_that_is_not_a_transcript_is_a_retryable_failure(serve, fault: str) -> None:  # type: ignore[no-untyped-def]
    fake = FakeGroq()
    fake.url = await serve(fake.app())
    groq = GroqProvider(api_key=GROQ_KEY, base_url=fake.url)
    fake.faults.append(fault)
    with pytest.raises(ProviderError, match=r"not a transcript|unreadable answer") as info:
        await groq.transcribe(FOX)
    assert info.value.retryable
    fake.faults.append(fault)
    result = await Chain([groq, FakeProvider(name="local", text="the real words")]).transcribe(FOX)
    assert (result.provider, result.text) == ("local", "the real words")
    await groq.aclose()


async def test_a_groq_text_answer_must_be_plain_text(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeGroq()
    fake.url = await serve(fake.app())
    fake.faults.append("html")
    async with GroqProvider(api_key=GROQ_KEY, base_url=fake.url, response_format="text") as groq:
        with pytest.raises(ProviderError, match="text/html, not a transcript"):
            await groq.transcribe(FOX)


@pytest.mark.parametrize("fault", ["html", "empty_object"])
async def test_a_deepgram_200_that_is_not_a_transcript_is_a_retryable_failure(serve, fault: str) -> None:  # type: ignore[no-untyped-def]
    fake = FakeDeepgram(utterances=list(SCRIPT))
    fake.url = await serve(fake.app())
    fake.faults.append(fault)
    async with DeepgramProvider(api_key=DEEPGRAM_KEY, base_url=fake.url) as deepgram:
        with pytest.raises(ProviderError) as info:
            await deepgram.transcribe(FOX)
    assert info.value.retryable
    assert "not a transcript" in str(info.value) or "unreadable answer" in str(info.value)


# -- 4. a breaker that sticks half-open -------------------------------------------------------------


async def test_cancelled_requests_during_probes_never_keep_an_engine_from_traffic(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeGroq(down=True)
    fake.url = await serve(fake.app())
    groq = GroqProvider(api_key=GROQ_KEY, base_url=fake.url)
    async with Chain([groq, FakeProvider(name="local", delay=0.2)],
                     breaker=BreakerPolicy(failures=1, probe_interval=0.1)) as chain:
        await chain.transcribe(FOX)
        assert chain.breakers[0].state == "open"
        for _ in range(10):  # callers give up while the background probes run
            task = asyncio.create_task(chain.transcribe(FOX))
            await asyncio.sleep(0.05)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert fake.health_checks >= 2
        fake.down = False
        for _ in range(60):
            if (await chain.transcribe(FOX)).provider == "groq":
                break
            await asyncio.sleep(0.05)
        assert chain.breakers[0].state == "closed"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("kind", ["batch", "stream"])
async def test_a_probing_request_cancelled_by_its_caller_lets_the_next_one_probe(kind: str) -> None:
    clock = Clock()
    a = FakeProvider(name="a", script=[ProviderError("down")])  # no health check: requests probe it
    chain = Chain([a, FakeProvider(name="b")], breaker=BreakerPolicy(failures=1, cooldown=10), clock=clock)
    await chain.transcribe(Audio.silence(0.5))
    await asyncio.sleep(0.05)  # the chain learns that a has no health check
    clock.now = 11
    a.delay = 5.0
    if kind == "batch":
        task = asyncio.create_task(chain.transcribe(Audio.silence(0.5)))
    else:
        async def consume() -> None:
            async for _ in chain.stream(paced(level_chunks(range(1, 50)), 0.1)):
                pass
        task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    assert chain.breakers[0].state == "half_open"  # this request is the probe
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert chain.breakers[0].state == "open"  # released, not stuck half-open
    a.delay = 0.0
    result = await chain.transcribe(Audio.silence(0.5))
    assert result.provider == "a" and chain.breakers[0].state == "closed"


# -- 5. inputs that would exhaust memory -----------------------------------------------------------


def with_header_rate(source: Path, target: Path, rate: int) -> Path:
    data = bytearray(source.read_bytes())
    fmt = data.index(b"fmt ")
    channels, bits = struct.unpack_from("<H", data, fmt + 10)[0], struct.unpack_from("<H", data, fmt + 22)[0]
    struct.pack_into("<II", data, fmt + 12, rate, rate * channels * bits // 8)
    target.write_bytes(bytes(data))
    return target


def sparse_wav(path: Path, data_bytes: int) -> Path:
    """A WAV header promising ``data_bytes`` of 16 kHz mono PCM, the rest a hole in the file."""
    header = (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt "
              + struct.pack("<IHHIIHH", 16, 1, 1, 16_000, 32_000, 2, 16)
              + b"data" + struct.pack("<I", data_bytes))
    with path.open("wb") as f:
        f.write(header)
        f.truncate(len(header) + data_bytes)
    return path


async def test_a_tiny_file_claiming_a_rate_of_one_hertz_is_bad_audio(tmp_path: Path) -> None:
    bad = with_header_rate(FOX, tmp_path / "one_hertz.wav", 1)
    engine = FakeProvider(name="local")
    with pytest.raises(InvalidAudioError, match="1 Hz is not plausible"):
        await Chain([engine]).transcribe(bad)
    assert engine.calls == []
    done = cli("transcribe", str(bad), env={"STT_CHAIN": "whisper"}, timeout=30)
    assert done.returncode == 2 and "1 Hz is not plausible" in done.stderr


async def test_a_sparse_two_gigabyte_wav_is_refused_at_its_header(tmp_path: Path) -> None:
    huge = sparse_wav(tmp_path / "huge.wav", 2 * 2**30)
    engine = FakeProvider(name="local")
    with pytest.raises(InvalidAudioError, match=r"18\.6 h long, over the 4 h limit"):
        await Chain([engine]).transcribe(huge)
    with pytest.raises(InvalidAudioError, match="over the 4 h limit"):
        Audio.from_file(huge)
    assert engine.calls == []


async def test_audio_held_in_memory_is_bounded_and_a_path_streams_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wide = tmp_path / "wide.wav"
    wide.write_bytes(Audio.from_file(FOX).to(sample_rate=48_000, channels=2).encode())
    monkeypatch.setenv("STT_MAX_DECODED_MB", "1")  # fox at 48 kHz stereo decodes to about 2.6 MB
    with pytest.raises(InvalidAudioError, match="over the 1 MB limit"):
        Audio.from_bytes(wide.read_bytes())
    engine = FakeProvider(name="local", echo=True)
    result = await Chain([engine]).transcribe(wide)  # by path: read in 16 kHz mono pieces instead
    assert result.provider == "local" and engine.calls[0].sample_rate == 16_000


async def test_running_out_of_memory_on_one_request_opens_no_breaker() -> None:
    heavy = FakeProvider(name="heavy", script=[MemoryError()] * 5)
    chain = Chain([heavy, FakeProvider(name="light")])
    for _ in range(5):
        result = await chain.transcribe(Audio.silence(0.5))
        assert result.provider == "light" and result.attempts[0].outcome == "unavailable"
    assert chain.breakers[0].state == "closed"
    assert (await chain.transcribe(Audio.silence(0.5))).provider == "heavy"


# -- 6. retries into a breaker that opened meanwhile ------------------------------------------------


def closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed


async def test_retries_stop_once_the_breaker_opens_under_concurrent_load() -> None:
    calls: list[str] = []
    groq = GroqProvider(api_key=GROQ_KEY, base_url=closed_port())
    chain = Chain([groq, FakeProvider(name="local")],
                  retry=RetryPolicy(attempts=3, initial_backoff=0.05, retry_before_fallover=True),
                  on_attempt=lambda a: calls.append(a.provider))
    async with chain:
        results = await asyncio.gather(*(chain.transcribe(Audio.silence(0.2)) for _ in range(400)))
    assert {r.provider for r in results} == {"local"}
    assert calls.count("groq") <= 400 + 10  # one call each, not three: the breaker opened after 3


# -- 7. stream event times past the audio ------------------------------------------------------------


async def test_a_bogus_final_result_does_not_throw_away_the_utterance_in_progress(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeDeepgram(utterances=[(0.0, 2.95, "one two three four five six seven eight nine")],
                        mode="bogus_final", drop_after=2.5)
    fake.url = await serve(fake.app())
    chain = Chain([DeepgramProvider(api_key=DEEPGRAM_KEY, base_url=fake.url), batch_only()])
    async with chain:
        events = [e async for e in chain.stream(paced(level_chunks(range(1, 31)), 0.01))]
    assert any(e.is_final and e.end == 1000.0 for e in events)  # the bogus result was seen
    assert tokens(events) == [str(n) for n in range(1, 31)]  # and the fallback heard every word


# -- 8. malformed keys --------------------------------------------------------------------------------

CANARY = "gsk_CANARY_7f3a9c1e5b"


@pytest.mark.parametrize("key", [
    f"{CANARY}\r\nX-Injected: 1", f"{CANARY} more", f"{CANARY}é", f"\x00{CANARY}",
])
def test_a_key_with_control_or_non_ascii_characters_is_a_config_error_that_hides_it(key: str) -> None:
    with pytest.raises(ConfigError, match=r"groq\.api_key") as info:
        GroqProvider(api_key=key)
    everything = f"{info.value} {info.value!r} {info.value.__cause__!r} {info.value.__context__!r}"
    assert CANARY not in everything
    if "\x00" in key:
        return  # no environment variable can hold a NUL
    done = cli("--debug", "transcribe", str(FOX), env={"GROQ_API_KEY": key, "STT_CHAIN": "groq"})
    assert done.returncode == 2 and "groq.api_key" in done.stderr
    assert CANARY not in done.stdout + done.stderr


async def test_a_key_read_from_a_file_with_its_newline_works(serve, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    fake = FakeGroq()
    fake.url = await serve(fake.app())
    async with GroqProvider(api_key=f"  {GROQ_KEY}\n", base_url=fake.url) as groq:
        assert (await groq.transcribe(FOX)).text == "hello from groq"
    assert GROQ_KEY not in caplog.text


# -- 9. config values that are accepted and then crash or flood -------------------------------------

DEEP = "a = " + "[" * 3000 + "]" * 3000


@pytest.mark.parametrize(("toml", "env", "named"), [
    ("[whisper]\ncpu_threads = 1000000", {}, "whisper.cpu_threads"),
    ("[whisper]\nnum_workers = 100000", {}, "whisper.num_workers"),
    ("[whisper]\nbeam_size = 1000000000", {}, "whisper.beam_size"),
    ("[deepgram]\nkeepalive_interval = 1e-9", {}, "deepgram.keepalive_interval"),
    ("[retry]\nmax_retry_after = inf", {}, "retry.max_retry_after"),
    ("[breaker]\ncooldown = inf", {}, "breaker.cooldown"),
    ("attempt_timeout = 1e-300", {}, "attempt_timeout"),
    ("chain = [" + ", ".join(['"whisper"'] * 1000) + "]", {}, "chain"),
    ("", {"STT_RETRY": "x", "STT_RETRY__ATTEMPTS": "5"}, "STT_RETRY"),
    (DEEP, {}, "nested too deeply"),
    ("hedge_after = 'soon'", {}, "hedge_after"),
])
def test_absurd_config_is_one_clear_line(tmp_path: Path, toml: str, env: dict[str, str], named: str) -> None:
    (tmp_path / "stt.toml").write_text(toml)
    done = cli("config", "show", env=env, cwd=tmp_path, timeout=30)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and len(done.stderr) < 2500


@pytest.mark.parametrize("what", ["fifo", "/dev/zero", "directory"])
def test_a_config_path_that_is_no_regular_file_is_refused_at_once(tmp_path: Path, what: str) -> None:
    path = {"fifo": tmp_path / "fifo", "/dev/zero": Path("/dev/zero"), "directory": tmp_path}[what]
    if what == "fifo":
        os.mkfifo(path)
    done = cli("config", "show", env={"STT_CONFIG": str(path)}, timeout=20)
    assert done.returncode == 2 and "not a regular file" in done.stderr


# -- 10. paths that are not audio files, and one-line errors -----------------------------------------


async def test_a_directory_is_bad_audio_everywhere(tmp_path: Path) -> None:
    with pytest.raises(InvalidAudioError, match="is a directory"):
        await Chain([FakeProvider(name="local")]).transcribe(tmp_path)
    for command in (["transcribe", str(tmp_path)], ["bench", str(tmp_path)]):
        done = cli(*command, env={"STT_CHAIN": "whisper"})
        assert done.returncode == 2 and "is a directory" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr


def test_an_unreadable_file_is_bad_audio() -> None:
    # In a folder anyone may enter (pytest's tmp_path is not), so the size check passes and the
    # read itself is refused.
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    folder.chmod(0o755)
    locked = folder / "locked.wav"
    locked.write_bytes(FOX.read_bytes())
    locked.chmod(0)
    as_root = os.geteuid() == 0
    if as_root:
        os.seteuid(65534)  # root reads anything: read as nobody, as a user would
    try:
        with pytest.raises(InvalidAudioError, match="Permission denied"):
            Audio.from_file(locked)
        with pytest.raises(InvalidAudioError, match="Permission denied"):
            asyncio.run(Chain([FakeProvider(name="local")]).transcribe(locked))
    finally:
        if as_root:
            os.seteuid(0)
        shutil.rmtree(folder)


def test_error_lines_stay_one_line(tmp_path: Path) -> None:
    odd = tmp_path / "two\nlines.wav"
    odd.mkdir()
    done = cli("transcribe", str(odd), env={"STT_CHAIN": "whisper"})
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "two\\nlines.wav" in done.stderr
    names = ",".join(f"nosuch{n}" for n in range(1000))
    done = cli("transcribe", str(FOX), "--chain", names)
    assert done.returncode == 2 and len(done.stderr) < 2500 and "too long" in done.stderr


async def test_an_aborted_deepgram_socket_leaves_no_unretrieved_task_exception(
    serve, caplog: pytest.LogCaptureFixture  # type: ignore[no-untyped-def]
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    fake = FakeDeepgram(utterances=list(SCRIPT), drop_after=0.5)
    fake.url = await serve(fake.app())
    speech = Audio.from_file(FIXTURES / "two_utterances.wav")
    async with DeepgramProvider(api_key=DEEPGRAM_KEY, base_url=fake.url) as deepgram:
        pieces = [speech.slice(t / 50, t / 50 + 0.02) for t in range(250)]  # 20 ms frames, unpaced:
        for _ in range(5):  # the sender is mid-send when the socket dies
            fake.streamed.clear()
            with pytest.raises(ProviderError):
                async for _event in deepgram.stream(paced(pieces, 0)):
                    pass
    await asyncio.sleep(0.1)
    gc.collect()
    await asyncio.sleep(0.05)
    assert "exception was never retrieved" not in caplog.text

