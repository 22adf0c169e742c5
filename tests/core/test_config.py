from __future__ import annotations

from pathlib import Path

import pytest

from stt_core import AllProvidersFailed, Audio, Capabilities, ConfigError, Registry, load_config
from stt_core.testing import FakeProvider

SECRET = "sk-test-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith(("STT_", "FUNASR_")) or name in ("GROQ_API_KEY", "DEEPGRAM_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray ./stt.toml


@pytest.fixture
def plugins() -> Registry:
    reg = Registry()
    reg.add(FakeProvider)
    return reg


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "stt.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_config() -> None:
    config = load_config().config
    assert config.chain_order == ["funasr", "groq", "whisper"]
    assert config.retry.attempts == 3


def test_file_then_env_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins: Registry) -> None:
    path = write(
        tmp_path,
        'chain = ["fake", "groq"]\nattempt_timeout = 5\n'
        '[retry]\nattempts = 4\n[fake]\ntext = "from file"\nlanguage = "de"\n',
    )
    loaded = load_config(path)
    assert loaded.config.chain_order == ["fake", "groq"]
    assert loaded.config.retry.attempts == 4 and loaded.config.attempt_timeout == 5
    monkeypatch.setenv("STT_CHAIN", "groq -> fake")
    monkeypatch.setenv("STT_RETRY__ATTEMPTS", "2")
    monkeypatch.setenv("STT_FAKE__TEXT", "from env")
    loaded = load_config(path)
    assert loaded.config.chain_order == ["groq", "fake"]
    assert loaded.config.retry.attempts == 2
    chain = loaded.build_chain(plugins=plugins)
    fake = chain.providers[1]
    assert (fake.settings.text, fake.settings.language) == ("from env", "de")  # type: ignore[attr-defined]
    assert chain.retry.attempts == 2 and chain.attempt_timeout == 5


def test_overrides_win_over_file_and_env_and_reach_nested_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What ``serve run stt_core_ray:app chain=... ray.autoscaling.max_replicas=...`` passes."""
    path = write(tmp_path, 'chain = ["whisper"]\n[ray]\nnum_cpus = 2\n[ray.autoscaling]\nmin_replicas = 1\n')
    monkeypatch.setenv("STT_CHAIN", "funasr")
    monkeypatch.setenv("STT_RAY__ENGINES__FUNASR__NUM_GPUS", "1")  # a table in a table, from the environment
    loaded = load_config(overrides={"config": str(path), "chain": "whisper,funasr",
                                    "ray.autoscaling.max_replicas": "4", "whisper.model": "bundled"})
    assert loaded.path == path and loaded.config.chain_order == ["whisper", "funasr"]
    assert loaded.provider_settings("ray") == {
        "num_cpus": 2, "autoscaling": {"min_replicas": 1, "max_replicas": "4"},
        "engines": {"funasr": {"num_gpus": "1"}}}
    assert loaded.provider_settings("whisper") == {"model": "bundled"}
    with pytest.raises(ConfigError, match=r"unknown setting chian in the arguments; did you mean 'chain'\?"):
        load_config(overrides={"chian": "whisper"})
    monkeypatch.setenv("STT_RAY__ENGINES", "x")  # a table's variable and one for its field: either order
    either = r"(STT_RAY__ENGINES and STT_RAY__ENGINES__FUNASR__NUM_GPUS are both|STT_RAY__ENGINES is set)"
    with pytest.raises(ConfigError, match=either):
        load_config()


def test_a_mistake_in_the_overrides_is_said_to_be_in_the_arguments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve run stt_core_ray:app funasr.vda=none``: the error says where the user wrote it."""
    monkeypatch.chdir(tmp_path)  # no stt.toml
    with pytest.raises(ConfigError, match=r"provider 'funasr' in the arguments: funasr\.vda: unknown key"):
        load_config(overrides={"chain": "funasr", "funasr.vda": "none"}).build_chain()
    with pytest.raises(ConfigError, match=r"unknown engine 'funasrr' in chain in the arguments"):
        load_config(overrides={"chain": "funasrr"}).build_chain()
    path = write(tmp_path, '[funasr]\nvad = "none"\n')
    with pytest.raises(ConfigError, match=r"provider 'funasr' in \S+stt.toml or the arguments: funasr\.vda"):
        load_config(path, overrides={"funasr.vda": "none"}).build_chain(names=["funasr"])


def test_stt_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, 'chain = "whisper"\n')
    monkeypatch.setenv("STT_CONFIG", str(path))
    loaded = load_config()
    assert loaded.path == path and loaded.config.chain_order == ["whisper"]


def test_seed_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STT_PROVIDER", "groq")
    monkeypatch.setenv("GROQ_API_KEY", SECRET)
    monkeypatch.setenv("FUNASR_MODEL_DIR", "/models/sv")
    monkeypatch.setenv("FUNASR_USE_EXTERNAL_VAD", "false")
    monkeypatch.setenv("FUNASR_MAX_SEGMENT_TIME", "30000")
    loaded = load_config()
    assert loaded.config.chain_order == ["groq", "funasr", "whisper"]
    assert loaded.provider_settings("groq") == {"api_key": SECRET}
    assert loaded.provider_settings("funasr") == {
        "model": "/models/sv",
        "vad": "none",
        "max_single_segment_time": "30000",
    }


def test_new_name_beats_alias(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "old")
    monkeypatch.setenv("STT_GROQ__API_KEY", "new")
    assert load_config().provider_settings("groq") == {"api_key": "new"}


def test_unknown_provider_key_names_key_and_file(tmp_path: Path, plugins: Registry) -> None:
    path = write(tmp_path, '[fake]\ntxet = "typo"\n')
    with pytest.raises(ConfigError, match=r"fake\.txet: unknown key") as info:
        load_config(path).build_chain(plugins=plugins)
    assert str(path) in str(info.value)


def test_bad_value_from_env_says_environment(monkeypatch: pytest.MonkeyPatch, plugins: Registry) -> None:
    monkeypatch.setenv("STT_FAKE__LANGUAGE", "")
    monkeypatch.setenv("STT_FAKE__MODEL", "x")
    monkeypatch.setenv("STT_FAKE__API_KEY", SECRET)
    monkeypatch.setenv("STT_FAKE__BOGUS", "1")
    with pytest.raises(ConfigError, match="the environment") as info:
        load_config().build_chain(plugins=plugins)
    assert "fake.bogus" in str(info.value) and SECRET not in str(info.value)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("chian = []\n", "unknown config key 'chian'"),
        ("[retry]\nattempts = 0\n", r"retry\.attempts"),
        ("[retry]\nattmepts = 2\n", r"retry\.attmepts: unknown key"),
        ("attempt_timeout = 'soon'\n", "attempt_timeout"),
        ("chain = [\n", "cannot read config file"),
    ],
)
def test_bad_core_config(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as info:
        load_config(write(tmp_path, text))
    assert "stt.toml" in str(info.value)


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/no/such/stt.toml")


def test_not_installed_providers_become_unavailable_links(plugins: Registry) -> None:
    chain = load_config().build_chain(plugins=plugins, names=["funasr", "fake"])
    assert [p.name for p in chain.providers] == ["funasr", "fake"]
    # How to install it, as this checkout installs it: the repository's own directory, which pip
    # can install (`pip install 'stt-core[funasr]'` fails while stt-core is not on the index).
    root = Path(__file__).parents[2]
    assert f"pip install -e '{root / 'providers' / 'funasr'}'" in (chain.providers[0].why_unavailable() or "")


async def test_an_engine_that_is_not_installed_says_so_when_a_language_is_given(plugins: Registry) -> None:
    """Not "does not support language 'en'": it declares nothing, so its own reason is recorded,
    with how to install it (the README's Python example printed the first on a whisper install)."""
    english = FakeProvider(capabilities=Capabilities(languages=frozenset({"en"}), offline=True))
    chain = load_config().build_chain(plugins=plugins, names=["funasr", "fake"],
                                      adapt=lambda p: p if p.name == "funasr" else english)
    async with chain:
        result = await chain.transcribe(Audio.silence(0.5), language="en")
        with pytest.raises(AllProvidersFailed) as failed:
            await chain.transcribe(Audio.silence(0.5), language="zh")
    funasr = result.attempts[0]
    assert (funasr.provider, funasr.outcome) == ("funasr", "unavailable") and result.provider == "fake"
    assert "provider 'funasr' is not installed" in (funasr.error or "")
    assert "does not support" not in (funasr.error or "")
    said = str(failed.value)  # Chinese: funasr is missing, and the English-only engine says so
    assert "funasr: provider 'funasr' is not installed" in said
    assert "fake: does not support language 'zh'" in said
    assert chain.never_serves(failed.value, language="zh") == {
        "funasr": chain.providers[0].why_unavailable(), "fake": "does not support language 'zh'"}
    assert chain.never_serves(language="en") == {}


def test_redacted_hides_secrets_of_installed_and_unknown_providers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins: Registry
) -> None:
    monkeypatch.setenv("DEEPGRAM_API_KEY", SECRET)
    path = write(tmp_path, f'chain = ["fake"]\n[fake]\napi_key = "{SECRET}"\n')
    shown = load_config(path).redacted(plugins)
    assert SECRET not in repr(shown)
    assert shown["fake"]["api_key"] == "**********"
    assert shown["deepgram"]["api_key"] == "**********"
    assert shown["fake"]["text"] == "hello world"  # defaults are shown too


def test_config_show_hides_credentials_inside_a_url(tmp_path: Path) -> None:
    url = "https://user:hunter2secret@gpu-box:8000/v1?api_key=zzzsecretzzz"  # a server behind basic auth
    path = write(tmp_path, f'chain = ["vllm"]\n[vllm]\nprovider = "openai"\nbase_url = "{url}"\n')
    shown = load_config(path).redacted()
    assert "hunter2secret" not in repr(shown) and "zzzsecretzzz" not in repr(shown)
    assert shown["vllm"]["base_url"] == "https://user:[redacted]@gpu-box:8000/v1?api_key=[redacted]"


def test_secrets_are_scrubbed_in_tables_and_lists_within_a_table_and_only_there() -> None:
    # Only a table's own strings were scrubbed (and the adapters' tables, [serve], [ray], a third
    # party's, not at all: they go through this too now).
    from stt_core._errors import without_secrets_in

    table = {"upstream": {"url": "https://u:hunter2@box/v1", "token": "t0ps3cret"},
             "mirrors": ["https://u:hunter2@m1/", "plain"], "api_key": None, "port": 8000}
    shown = without_secrets_in(table)
    assert "hunter2" not in repr(shown) and "t0ps3cret" not in repr(shown)
    assert shown["mirrors"][1] == "plain" and shown["api_key"] is None and shown["port"] == 8000
    words = without_secrets_in({"keywords": ["deepgram"], "max_tokens": 5, "client_secret": "s3"})
    assert words == {"keywords": ["deepgram"], "max_tokens": 5, "client_secret": "**********"}


def test_min_confidence_at_the_top_per_engine_and_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins: Registry
) -> None:
    defaults = load_config().config
    assert (defaults.min_confidence, defaults.max_reasks) == (0.5, 1)  # on by default
    path = write(tmp_path, 'chain = ["fake", "other"]\nmin_confidence = 0.6\nmax_reasks = 2\n'
                           '[fake]\nmin_confidence = 0.3\ntext = "hi"\n[other]\nprovider = "fake"\n')
    chain = load_config(path).build_chain(plugins=plugins)
    assert (chain.quality.min_confidence, chain.quality.max_reasks) == (0.6, 2)
    assert chain.quality.per_engine == {"fake": 0.3}  # the chain's key: the provider never sees it
    assert chain.providers[0].settings.text == "hi"  # type: ignore[attr-defined]
    shown = load_config(path).redacted(plugins)
    assert (shown["min_confidence"], shown["max_reasks"], shown["fake"]["min_confidence"]) == (0.6, 2, 0.3)
    assert "min_confidence" not in shown["other"]
    monkeypatch.setenv("STT_MIN_CONFIDENCE", "0")
    monkeypatch.setenv("STT_OTHER__MIN_CONFIDENCE", "0.45")
    chain = load_config(path).build_chain(plugins=plugins)
    assert chain.quality.min_confidence == 0 and chain.quality.per_engine == {"fake": 0.3, "other": 0.45}


@pytest.mark.parametrize(("text", "match"), [
    ("min_confidence = 2\n", "min_confidence: Input should be less than or equal to 1"),
    ("max_reasks = -1\n", "max_reasks: Input should be greater than or equal to 0"),
    ('chain = ["fake"]\n[fake]\nmin_confidence = "high"\n', r"bad min_confidence: fake: .*number"),
    ('chain = ["fake"]\n[fake]\nmin_confidence = 1.5\n', "bad min_confidence: fake: .*less than or equal"),
    # true was read as 1.0, and every answer re-asked of every engine
    ("min_confidence = true\n", "min_confidence: should be a number from 0 to 1, not true or false"),
    ('chain = ["fake"]\n[fake]\nmin_confidence = false\n', "fake: should be a number from 0 to 1, not true"),
])
def test_bad_min_confidence_is_a_config_error_naming_it(tmp_path: Path, plugins: Registry, text: str,
                                                         match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text)).build_chain(plugins=plugins)
