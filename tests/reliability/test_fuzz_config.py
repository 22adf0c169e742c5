"""Fuzzing config parsing: any file content and any environment values give a config or a
ConfigError, never another exception; and building the chain from it behaves the same."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import stt_core
from stt_core import ConfigError

KEYS = ["chain", "provider", "attempt_timeout", "retry", "breaker", "whisper", "funasr", "groq", "deepgram",
        "attempts", "max_retry_after", "failures", "cooldown", "model", "api_key", "language", "vad",
        "min_confidence", "max_reasks", "x"]
scalars = st.one_of(st.text(max_size=20), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.booleans(), st.lists(st.text(max_size=8), max_size=4))
sections = st.dictionaries(st.sampled_from(KEYS), scalars, max_size=4)
tables = st.dictionaries(st.sampled_from(KEYS), st.one_of(scalars, sections), max_size=6)
ENV_NAMES = ["STT_CHAIN", "STT_ATTEMPT_TIMEOUT", "STT_RETRY__ATTEMPTS", "STT_BREAKER__COOLDOWN",
             "STT_WHISPER__BEAM_SIZE", "STT_PROVIDER", "FUNASR_USE_ITN", "FUNASR_MAX_SEGMENT_TIME",
             "FUNASR_USE_EXTERNAL_VAD", "STT_GROQ__TIMEOUT", "STT_MIN_CONFIDENCE", "STT_MAX_REASKS",
             "STT_WHISPER__MIN_CONFIDENCE", "STT_NOPE"]
env_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                   max_size=20)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value == float("inf") else
                                             "-inf" if value == float("-inf") else repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_toml(data: dict[str, object]) -> str:
    top = [f"{k} = {toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    sections = [f"[{k}]\n" + "\n".join(f"{kk} = {toml_value(vv)}" for kk, vv in v.items())
                for k, v in data.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(sections) + "\n"


def load_and_build(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "stt.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        with contextlib.suppress(ConfigError):  # the one error allowed
            stt_core.load_config(path).build_chain()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables)
@example({"whisper": {"provider": []}})  # found by this test: a provider key that is no name
def test_any_structured_config_is_a_chain_or_a_config_error(data: dict[str, object]) -> None:
    load_and_build(to_toml(data))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_file_text_is_a_chain_or_a_config_error(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return
    load_and_build(text)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(ENV_NAMES), env_text, max_size=5))
def test_any_environment_is_a_chain_or_a_config_error(values: dict[str, str]) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith(("STT_", "FUNASR_"))]:
            patch.delenv(name)
        for name, value in values.items():
            patch.setenv(name, value)
        load_and_build("")
