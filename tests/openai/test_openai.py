"""The openai provider on the real openai SDK, against a fake OpenAI-compatible API on 127.0.0.1;
and named instances: two sections of one provider in one chain."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import stt_core
from fakes.groq_api import KEY, FakeOpenAI
from stt_core import ConfigError, InvalidAudioError, ProviderError, ProviderTimeout, ProviderUnavailable
from stt_core.testing.conformance import ProviderConformance
from stt_core_openai._provider import OpenAIProvider

AUDIO = Path(__file__).parents[1] / "fixtures" / "audio"


@pytest.fixture
async def openai(serve) -> FakeOpenAI:  # type: ignore[no-untyped-def]
    fake = FakeOpenAI()
    fake.url = await serve(fake.app()) + "/v1"
    return fake


def provider(fake: FakeOpenAI, **settings: object) -> OpenAIProvider:
    return OpenAIProvider(api_key=KEY, base_url=fake.url, **{"timeout": 2.0, **settings})


async def test_transcribes_through_the_real_sdk_with_segments_words_and_language(openai: FakeOpenAI) -> None:
    async with provider(openai, language="en-US", prompt="animals") as p:
        result = await p.transcribe(AUDIO / "fox.wav", word_timestamps=True)
    assert result.text == "hello from openai" and result.language == "en"
    assert [w.text for w in result.words] == ["hello", "from", "openai"]
    assert result.provider == "openai" and result.model == "whisper-1"
    sent = openai.requests[0]
    assert sent.fields["model"] == "whisper-1" and sent.fields["language"] == "en"
    assert sent.fields["prompt"] == "animals" and sent.fields["response_format"] == "verbose_json"
    assert sent.fields["timestamp_granularities"] == ["word", "segment"]
    assert (sent.audio.sample_rate, sent.audio.channels, sent.filename) == (16_000, 1, "audio.flac")


@pytest.mark.parametrize("response_format", ["json", "text"])
async def test_servers_that_only_answer_json_or_text(openai: FakeOpenAI, response_format: str) -> None:
    result = await provider(openai, response_format=response_format, model="gpt-4o-transcribe").transcribe(
        AUDIO / "fox.wav", language="en")
    assert (result.text, result.language, result.segments) == ("hello from openai", "en", ())
    assert "timestamp_granularities" not in openai.requests[0].fields


async def test_a_server_that_asks_for_no_key(serve) -> None:  # type: ignore[no-untyped-def]
    fake = FakeOpenAI(key=None)
    fake.url = await serve(fake.app()) + "/v1"
    p = OpenAIProvider(base_url=fake.url)
    assert p.why_unavailable() is None
    assert (await p.transcribe(AUDIO / "fox.wav")).text == "hello from openai"


def test_openai_itself_needs_a_key() -> None:
    assert OpenAIProvider().why_unavailable() == "no API key; set OPENAI_API_KEY (or [openai] api_key)"


@pytest.mark.parametrize(
    ("fault", "error", "retryable", "message"),
    [
        ("429", ProviderError, True, "openai is rate limiting (HTTP 429, retry after 1 s)"),
        ("500", ProviderError, True, "openai failed (HTTP 500)"),
        ("401", ProviderUnavailable, None, "openai rejected the API key (HTTP 401)"),
        ("slow", ProviderTimeout, True, "openai did not answer within the timeout"),
        ("drop", ProviderError, True, "openai"),
        ("bad_json", ProviderError, True, "unreadable answer"),
        ("html", ProviderError, True, "HTTP 200 with text/html, not a transcript"),
        ("empty_object", ProviderError, True, "not a transcript"),
        ("bad_audio", InvalidAudioError, None, "refused the audio (HTTP 400)"),
    ],
)
async def test_each_fault_maps_to_the_error_tree(
    openai: FakeOpenAI, fault: str, error: type[Exception], retryable: bool | None, message: str
) -> None:
    openai.faults.append(fault)
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        await provider(openai, timeout=1.0).transcribe(AUDIO / "fox.wav")
    if retryable is not None:
        assert info.value.retryable is retryable  # type: ignore[attr-defined]
    assert openai.attempts == 1  # the SDK's own retries are off
    assert KEY not in str(info.value) and KEY not in repr(info.value)


async def test_health_probe(openai: FakeOpenAI) -> None:
    assert await provider(openai).health() is True
    assert await OpenAIProvider(api_key="wrong", base_url=openai.url).health() is False


def test_registered_through_its_entry_point() -> None:
    assert stt_core.registry(reload=True).get("openai").provider_class is OpenAIProvider


class TestOpenAIConformance(ProviderConformance):
    @pytest.fixture
    def threaded_openai(self, serve_in_thread) -> FakeOpenAI:  # type: ignore[no-untyped-def]
        fake = FakeOpenAI()
        fake.url = serve_in_thread(fake.app()) + "/v1"
        return fake

    @pytest.fixture
    def provider(self, threaded_openai: FakeOpenAI) -> OpenAIProvider:
        return provider(threaded_openai)

    @pytest.fixture
    def failing_provider(self, fault_server) -> OpenAIProvider:  # type: ignore[no-untyped-def]
        return OpenAIProvider(api_key=KEY, base_url=fault_server.url)


# -- two instances of one provider in one chain ---------------------------------------------------


def _config(tmp_path: Path, text: str) -> stt_core.LoadedConfig:
    path = tmp_path / "stt.toml"
    path.write_text(text)
    return stt_core.load_config(path)


async def test_two_openai_compatible_servers_in_one_chain(serve, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    vllm, cloud = FakeOpenAI(text="from vllm", down=True, key=None), FakeOpenAI(text="from the cloud")
    vllm.url, cloud.url = await serve(vllm.app()), await serve(cloud.app())
    config = _config(tmp_path, f"""
chain = ["vllm", "openai"]
[vllm]
provider = "openai"
base_url = "{vllm.url}/v1"
model = "openai/whisper-large-v3"
[openai]
api_key = "{KEY}"
base_url = "{cloud.url}/v1"
""")
    async with config.build_chain() as chain:
        assert [type(p).__name__ for p in chain.providers] == ["OpenAIProvider", "OpenAIProvider"]
        result = await chain.transcribe(AUDIO / "fox.wav")
        assert (result.text, result.provider) == ("from the cloud", "openai")
        assert [(a.provider, a.outcome) for a in result.attempts] == [("vllm", "error"), ("openai", "ok")]
        assert vllm.attempts == 1 and vllm.requests == []
        vllm.down = False
        chain.breakers[0].probe_passed()  # as its health probe would, once it answers again
        again = await chain.transcribe(AUDIO / "fox.wav")
        assert (again.text, again.provider, again.model) == ("from vllm", "vllm", "openai/whisper-large-v3")
        assert vllm.requests[0].fields["model"] == "openai/whisper-large-v3"


def test_a_named_instance_of_a_provider_that_is_not_installed_is_a_config_error(tmp_path: Path) -> None:
    config = _config(tmp_path, 'chain = ["vllm"]\n[vllm]\nprovider = "opena"\n')
    with pytest.raises(ConfigError, match=r"\[vllm\] in .* names provider 'opena'.*did you mean 'openai'"):
        config.build_chain()


def test_a_section_without_a_provider_still_has_to_be_a_known_name(tmp_path: Path) -> None:
    config = _config(tmp_path, 'chain = ["whisper"]\n[vllm]\nbase_url = "http://x/v1"\n')
    with pytest.raises(ConfigError, match=r'unknown section \[vllm\].*provider = "\.\.\."'):
        config.build_chain()


def test_a_named_instance_is_validated_by_its_provider(tmp_path: Path) -> None:
    config = _config(tmp_path, 'chain = ["vllm"]\n[vllm]\nprovider = "openai"\ntemprature = 0.2\n')
    with pytest.raises(ConfigError, match="temprature"):
        config.build_chain()


def test_config_show_names_the_provider_and_hides_every_instances_key(tmp_path: Path) -> None:
    path = tmp_path / "stt.toml"
    path.write_text(f'chain = ["vllm", "openai"]\n[vllm]\nprovider = "openai"\napi_key = "{KEY}"\n'
                    f'base_url = "http://gpu:8000/v1"\n')
    env = {**os.environ, "STT_OPENAI__API_KEY": KEY + "2"}
    done = subprocess.run([sys.executable, "-m", "stt_core.cli", "config", "show", "--config", str(path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert shown["chain"] == ["vllm", "openai"]
    assert shown["vllm"]["provider"] == "openai" and shown["vllm"]["base_url"] == "http://gpu:8000/v1"
    assert KEY not in done.stdout and KEY not in done.stderr


def test_an_instance_can_be_declared_from_the_environment_alone(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STT_CHAIN", "local,whisper")
    monkeypatch.setenv("STT_LOCAL__PROVIDER", "openai")
    monkeypatch.setenv("STT_LOCAL__BASE_URL", "http://127.0.0.1:8000/v1")
    chain = stt_core.load_config().build_chain()
    assert [p.name for p in chain.providers] == ["local", "whisper"]
    assert chain.providers[0].settings.base_url == "http://127.0.0.1:8000/v1"  # type: ignore[attr-defined]


async def test_the_timeout_bounds_the_whole_answer_not_each_read(openai: FakeOpenAI) -> None:
    import time

    openai.faults.append("trickle")  # a byte every 0.2 s: each read is quick, the answer takes minutes
    started = time.monotonic()
    with pytest.raises(ProviderTimeout, match="did not answer within the timeout"):
        await provider(openai, timeout=2.0).transcribe(AUDIO / "fox.wav")
    assert time.monotonic() - started < 4


async def test_an_answer_past_max_answer_mb_is_refused_as_it_arrives(openai: FakeOpenAI) -> None:
    import psutil

    before = psutil.Process().memory_info().rss
    openai.faults.append("huge")
    with pytest.raises(ProviderError, match=r"answer larger than 1 MB \(max_answer_mb\)") as refused:
        await provider(openai, max_answer_mb=1).transcribe(AUDIO / "fox.wav")
    assert refused.value.retryable is False  # a broken server: the chain moves on
    assert psutil.Process().memory_info().rss - before < 50 * 2**20


async def test_a_redirect_to_another_origin_is_not_followed(openai: FakeOpenAI, serve) -> None:  # type: ignore[no-untyped-def]
    elsewhere = FakeOpenAI(key=None)
    elsewhere.url = await serve(elsewhere.app()) + "/v1"
    openai.redirect_to = f"{elsewhere.url}/audio/transcriptions"
    openai.faults.append("redirect")
    with pytest.raises(ProviderError, match=r"HTTP 307"):
        await provider(openai).transcribe(AUDIO / "fox.wav")
    assert elsewhere.attempts == 0  # neither the audio nor the key went there


@pytest.mark.parametrize("response_format", ["srt", "vtt", "verbose_json"])
async def test_nan_infinite_negative_and_unordered_times_become_valid_output(
    openai: FakeOpenAI, response_format: str
) -> None:
    from stt_core.openai_api import response_body

    openai.faults.append("bad_times")
    result = await provider(openai).transcribe(AUDIO / "fox.wav")
    assert [s.text for s in result.segments] == ["first"]  # the segments with unusable times are out
    assert result.segments[0].start == 0.0 and result.duration is not None
    body, _ = response_body(result, response_format, granularities=("word", "segment"))
    assert "NaN" not in body and "Infinity" not in body and "-1" not in body
    if response_format == "verbose_json":
        assert json.loads(body)["segments"][0]["start"] == 0.0


async def test_confidence_from_verbose_json_whisper_signals_through_the_openai_sdk(
    openai: FakeOpenAI,
) -> None:
    async with provider(openai) as p:
        sure = await p.transcribe(AUDIO / "fox.wav")
        openai.avg_logprob, openai.temperature = -0.95, 0.4  # unsure, and it fell back to sampling
        unsure = await p.transcribe(AUDIO / "fox.wav")
        openai.text, openai.avg_logprob, openai.no_speech_prob = "Thank you.", -1.1, 0.6
        openai.temperature = 0.0
        phantom = await p.transcribe(AUDIO / "fox.wav")
    assert sure.confidence is not None and sure.confidence > 0.75  # avg_logprob -0.2
    assert unsure.confidence is not None and unsure.confidence < 0.3 and unsure.text == "hello from openai"
    assert phantom.text == "" and not phantom.segments  # near-silence is no speech


def test_verbose_json_segments_carry_the_answers_confidence_where_a_segment_has_none() -> None:
    # SenseVoice's segments have no confidence: they went out as avg_logprob 0.0, perfect certainty.
    from stt_core import Segment, Transcript
    from stt_core.openai_api import response_body

    segments = (Segment("你好", 0.0, 1.0), Segment("吗", 1.0, 1.2, confidence=0.0))
    unsure = Transcript("你好吗", confidence=0.2, segments=segments)
    answered = json.loads(response_body(unsure, "verbose_json")[0])["segments"]
    assert answered[0]["avg_logprob"] == pytest.approx(math.log(0.2))
    assert answered[1]["avg_logprob"] < -10  # a confidence of 0: none at all, not log(0) nor 0.0
