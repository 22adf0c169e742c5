"""stt-core: one speech-to-text interface over many engines, with fallback chains and plugins.

    import stt_core
    chain = stt_core.load_config().build_chain()        # stt.toml + environment
    transcript = await chain.transcribe("meeting.wav")
"""

from ._audio import Audio, AudioSource, SileroVAD, VADSettings, as_audio, find_vad_model, speech_segments
from ._chain import (
    DEFAULT_MIN_CONFIDENCE,
    BreakerPolicy,
    Chain,
    QualityPolicy,
    RetryPolicy,
    WhisperWindow,
    whisper_speech,
)
from ._config import CONFIG_ENV, DEFAULT_CHAIN, LoadedConfig, STTConfig, load_config
from ._errors import (
    AllProvidersFailed,
    ConfigError,
    InvalidAudioError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    STTError,
    error_for_status,
    parse_retry_after,
)
from ._provider import ApiKey, Provider, ProviderSettings, transcribe_file
from ._realtime import Hearing, RealtimeSettings, queued_audio, realtime
from ._registry import (
    PluginError,
    ProviderInfo,
    Registry,
    get_provider,
    install_command,
    list_providers,
    registry,
)
from ._types import Attempt, Capabilities, Segment, StreamEvent, Transcript, Word, primary_language
from .hookspecs import hookimpl, hookspec
from .openai_api import WHISPER_LANGUAGES

__version__ = "0.1.0"

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CHAIN",
    "DEFAULT_MIN_CONFIDENCE",
    "WHISPER_LANGUAGES",
    "AllProvidersFailed",
    "ApiKey",
    "Attempt",
    "Audio",
    "AudioSource",
    "BreakerPolicy",
    "Capabilities",
    "Chain",
    "ConfigError",
    "Hearing",
    "InvalidAudioError",
    "LoadedConfig",
    "PluginError",
    "Provider",
    "ProviderError",
    "ProviderInfo",
    "ProviderSettings",
    "ProviderTimeout",
    "ProviderUnavailable",
    "QualityPolicy",
    "RealtimeSettings",
    "Registry",
    "RetryPolicy",
    "STTConfig",
    "STTError",
    "Segment",
    "SileroVAD",
    "StreamEvent",
    "Transcript",
    "VADSettings",
    "WhisperWindow",
    "Word",
    "__version__",
    "as_audio",
    "error_for_status",
    "find_vad_model",
    "get_provider",
    "hookimpl",
    "hookspec",
    "install_command",
    "list_providers",
    "load_config",
    "parse_retry_after",
    "primary_language",
    "queued_audio",
    "realtime",
    "registry",
    "speech_segments",
    "transcribe_file",
    "whisper_speech",
]
